//! Reconciliation: prove from the ledger, the clearing records and the
//! transaction stores that the books are right, or name the first thing that
//! is not. In order:
//!
//! 1. every journal entry balances (and so the ledger);
//! 2. every stored batch still opens under its source's key, every record is
//!    the one the batch carried, and every posted record's proof checks again;
//! 3. every captured purchase is in exactly one batch, and every posted record
//!    is a captured purchase with the same amount, card and ATC;
//! 4. each batch is in the ledger once, with the totals of its posted records;
//! 5. issuer float = Σ loads − Σ purchases (ledger = records = payment store);
//! 6. per merchant: Σ paid out + payable = Σ its settled purchases − fees;
//!    every payout = Σ of its records net of fees.

use std::collections::{BTreeMap, HashMap};

use purse::security_module::SecurityModule;

use super::batch::{BatchFile, Record, Signer};
use super::db::{Db, DbError};
use super::ledger;
use super::proof;
use crate::store::CapturedTxn;

/// What reconciliation reads from the payment database.
#[derive(Debug, Clone, Default)]
pub struct PaymentView {
    pub captured: Vec<CapturedTxn>,
    /// Newest purchase batch close per merchant.
    pub last_close: HashMap<String, u64>,
    /// Credited loads (`merchant_id` holds the bank).
    pub loads: Vec<CapturedTxn>,
    /// Newest load batch close per bank.
    pub last_load_close: HashMap<String, u64>,
}

/// The first discrepancy: which check, and what exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{check}: {detail}")]
pub struct Discrepancy {
    pub check: &'static str,
    pub detail: String,
}

/// What a passing reconciliation proved, in figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub journal_entries: u64,
    pub batches: u64,
    pub records_posted: u64,
    pub records_rejected: u64,
    pub captured: u64,
    pub captured_unbatched: u64,
    pub issuer_float: i64,
    pub loads_total: i64,
    pub purchases_total: i64,
    pub fees_total: i64,
    pub paid_out_total: i64,
    pub balances: BTreeMap<String, i64>,
}

fn fail<T>(check: &'static str, detail: String) -> Result<T, Discrepancy> {
    Err(Discrepancy { check, detail })
}

fn db(e: DbError) -> Discrepancy {
    Discrepancy {
        check: "database",
        detail: e.to_string(),
    }
}

struct StoredRecord {
    batch_id: String,
    idx: i64,
    kind: String,
    party: String,
    txn_id: String,
    atc: i64,
    amount: i64,
    fee: i64,
    status: String,
    body: String,
    payout_id: Option<String>,
}

/// Run every check.
pub fn reconcile(
    c: &Db,
    sm: &SecurityModule,
    signers: &[Signer],
    payment: &PaymentView,
) -> Result<Summary, Discrepancy> {
    let mut s = Summary::default();

    // 1. The ledger balances, entry by entry.
    let entries = ledger::entries(c).map_err(db)?;
    for e in &entries {
        let sum: i64 = e.lines.iter().map(|l| l.1).sum();
        if sum != 0 {
            return fail(
                "ledger balances",
                format!(
                    "journal entry {} ({} {}) does not balance: debits − credits = {sum}",
                    e.id, e.kind, e.reference
                ),
            );
        }
    }
    s.journal_entries = entries.len() as u64;
    s.balances = ledger::balances(c).map_err(db)?;
    let total: i64 = s.balances.values().sum();
    if total != 0 {
        return fail("ledger balances", format!("accounts sum to {total}, not 0"));
    }

    // 2. Batches open, records are theirs, proofs check again.
    let records: Vec<StoredRecord> = {
        let rows = c
            .query(
                "SELECT batch_id, idx, kind, party, txn_id, atc, amount, fee, status, body, payout_id
                 FROM records ORDER BY batch_id, idx",
                vec![],
            )
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(StoredRecord {
                    batch_id: r.get(0)?,
                    idx: r.get(1)?,
                    kind: r.get(2)?,
                    party: r.get(3)?,
                    txn_id: r.get(4)?,
                    atc: r.get(5)?,
                    amount: r.get(6)?,
                    fee: r.get(7)?,
                    status: r.get(8)?,
                    body: r.get(9)?,
                    payout_id: r.get(10)?,
                })
            })
            .collect::<Result<_, DbError>>()
            .map_err(db)?
    };
    let batches: Vec<(String, String, String, String, i64, i64)> = {
        let rows = c
            .query("SELECT batch_id, kind, state, file, COALESCE(accepted_total, 0), COALESCE(fee_total, 0) FROM batches ORDER BY batch_id", vec![])
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .collect::<Result<_, DbError>>()
            .map_err(db)?
    };
    s.batches = batches.len() as u64;
    let mut by_batch: HashMap<&str, Vec<&StoredRecord>> = HashMap::new();
    for r in &records {
        by_batch.entry(r.batch_id.as_str()).or_default().push(r);
    }
    for (id, _, state, file, _, _) in &batches {
        let batch = match BatchFile::open(file.as_bytes(), signers) {
            Ok((_, b)) => b,
            Err(e) => {
                return fail(
                    "batches and records",
                    format!("stored batch {id} no longer opens: {e}"),
                )
            }
        };
        if &batch.batch_id != id {
            return fail(
                "batches and records",
                format!("stored batch {id} carries id {}", batch.batch_id),
            );
        }
        let stored = by_batch.get(id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        if state != "received" && stored.len() != batch.records.len() {
            return fail(
                "batches and records",
                format!(
                    "batch {id} carried {} records, clearing holds {} (a record dropped or added)",
                    batch.records.len(),
                    stored.len()
                ),
            );
        }
        for r in stored {
            let Some(orig) = batch.records.get(r.idx as usize) else {
                return fail(
                    "batches and records",
                    format!("batch {id} has no record {}", r.idx),
                );
            };
            let same_body = serde_json::to_string(orig)
                .map(|b| b == r.body)
                .unwrap_or(false);
            if !same_body
                || orig.txn_id() != r.txn_id
                || orig.party() != r.party
                || i64::from(orig.amount()) != r.amount
                || i64::from(orig.atc()) != r.atc
            {
                return fail(
                    "batches and records",
                    format!(
                        "record {}/{} of batch {id} differs from the signed batch (altered)",
                        r.party, r.txn_id
                    ),
                );
            }
            if r.status == "posted" {
                if let Err(e) = proof::verify(sm, orig) {
                    return fail(
                        "batches and records",
                        format!("posted record {}/{} of batch {id}: {e}", r.party, r.txn_id),
                    );
                }
            }
        }
    }

    // 3. Every captured purchase and credited load in exactly one batch;
    //    every posted record a captured purchase or credited load.
    let received: HashMap<&str, &str> = batches
        .iter()
        .map(|b| (b.0.as_str(), b.2.as_str()))
        .collect();
    s.records_posted = records.iter().filter(|r| r.status == "posted").count() as u64;
    s.records_rejected = records.iter().filter(|r| r.status == "rejected").count() as u64;
    let mut settled_sum: HashMap<&str, i64> = HashMap::new();
    let mut settled_loads: i64 = 0;
    for (kind, txns, last_close, what) in [
        (
            "purchase",
            &payment.captured,
            &payment.last_close,
            "captured purchase",
        ),
        (
            "load",
            &payment.loads,
            &payment.last_load_close,
            "credited load",
        ),
    ] {
        let mut posted: HashMap<(&str, &str), Vec<&StoredRecord>> = HashMap::new();
        let mut seen_in: HashMap<(&str, &str), Vec<&StoredRecord>> = HashMap::new();
        for r in records.iter().filter(|r| r.kind == kind) {
            seen_in
                .entry((r.party.as_str(), r.txn_id.as_str()))
                .or_default()
                .push(r);
            if r.status == "posted" {
                posted
                    .entry((r.party.as_str(), r.txn_id.as_str()))
                    .or_default()
                    .push(r);
            }
        }
        let mut known: HashMap<(&str, &str), &CapturedTxn> = HashMap::new();
        for t in txns.iter() {
            if kind == "purchase" {
                s.captured += 1;
            }
            let key = (t.merchant_id.as_str(), t.txn_id.as_str());
            known.insert(key, t);
            let name = format!("{what} {}/{}", t.merchant_id, t.txn_id);
            let check = "every captured transaction in one batch";
            let p = posted.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            if p.len() > 1 {
                return fail(check, format!("{name} is posted in {} batches", p.len()));
            }
            if t.state == "settled" {
                if kind == "purchase" {
                    *settled_sum.entry(t.merchant_id.as_str()).or_default() += i64::from(t.amount);
                } else {
                    settled_loads += i64::from(t.amount);
                }
                match (p.first(), &t.batch_id) {
                    (Some(r), Some(b)) if &r.batch_id == b => {}
                    (Some(r), _) => {
                        return fail(
                            check,
                            format!(
                                "{name} was closed into batch {:?} but cleared in {}",
                                t.batch_id, r.batch_id
                            ),
                        )
                    }
                    (None, _) => {
                        return fail(check, format!("{name} is settled but in no cleared batch"))
                    }
                }
            }
            match &t.batch_id {
                Some(b) if received.get(b.as_str()).is_some_and(|st| *st != "received") => {
                    let here = seen_in
                        .get(&key)
                        .map(|v| v.iter().any(|r| &r.batch_id == b))
                        .unwrap_or(false);
                    if !here {
                        return fail(
                            check,
                            format!(
                                "{name} was closed into batch {b}, which clearing holds without it"
                            ),
                        );
                    }
                }
                Some(_) => {}
                None => {
                    if kind == "purchase" {
                        s.captured_unbatched += 1;
                    }
                    let last = last_close.get(&t.merchant_id).copied().unwrap_or(0);
                    if t.debited_at < last {
                        return fail(
                            check,
                            format!("{name} was captured before its last batch closed, and is in no batch"),
                        );
                    }
                }
            }
            if let Some(r) = p.first() {
                if r.amount != i64::from(t.amount) || r.atc != i64::from(t.atc) {
                    return fail(
                        check,
                        format!(
                            "{name}: the payment store says {} cents at ATC {}, clearing {} at ATC {}",
                            t.amount, t.atc, r.amount, r.atc
                        ),
                    );
                }
                let card_ok = serde_json::from_str::<Record>(&r.body)
                    .map(|b| b.card_id().full() == t.card_id)
                    .unwrap_or(false);
                if !card_ok {
                    return fail(
                        check,
                        format!("{name}: the card differs between the stores"),
                    );
                }
            }
        }
        for ((m, t), v) in &posted {
            if !known.contains_key(&(*m, *t)) {
                return fail(
                    "every captured transaction in one batch",
                    format!(
                        "posted record {m}/{t} of batch {} is no {what} of the payment store",
                        v[0].batch_id
                    ),
                );
            }
        }
    }

    // 4. Each batch once in the ledger, with the totals of its posted records.
    let mut entries_of: HashMap<&str, Vec<&ledger::Entry>> = HashMap::new();
    for e in &entries {
        entries_of.entry(e.reference.as_str()).or_default().push(e);
    }
    for (id, kind, state, _, accepted_total, fee_total) in &batches {
        let stored = by_batch.get(id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let gross: i64 = stored
            .iter()
            .filter(|r| r.status == "posted")
            .map(|r| r.amount)
            .sum();
        let fees: i64 = stored
            .iter()
            .filter(|r| r.status == "posted")
            .map(|r| r.fee)
            .sum();
        let es = entries_of
            .get(id.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let main_kind = if kind == "loads" {
            "loads"
        } else {
            "purchases"
        };
        let count = |k: &str| es.iter().filter(|e| e.kind == k).count();
        if state == "received" {
            if !es.is_empty() {
                return fail(
                    "batches in the ledger",
                    format!("batch {id} is not posted yet but has ledger entries"),
                );
            }
            continue;
        }
        if count(main_kind) > 1 || count("fees") > 1 {
            return fail(
                "batches in the ledger",
                format!(
                    "batch {id} is in the ledger {} times (replayed)",
                    count(main_kind).max(count("fees"))
                ),
            );
        }
        let amount_of = |k: &str, acct: &str| -> i64 {
            es.iter()
                .filter(|e| e.kind == k)
                .flat_map(|e| e.lines.iter())
                .filter(|l| l.0 == acct)
                .map(|l| l.1)
                .sum()
        };
        let (posted_gross, posted_fees) = if kind == "loads" {
            (-amount_of("loads", ledger::FLOAT), 0)
        } else {
            (
                amount_of("purchases", ledger::FLOAT),
                -amount_of("fees", ledger::FEES),
            )
        };
        if posted_gross != gross || gross != *accepted_total {
            return fail(
                "batches in the ledger",
                format!("batch {id}: ledger {posted_gross}, posted records {gross}, batch total {accepted_total}"),
            );
        }
        if posted_fees != fees || fees != *fee_total {
            return fail(
                "batches in the ledger",
                format!("batch {id}: fees in the ledger {posted_fees}, in its records {fees}"),
            );
        }
    }

    // 5. Issuer float = Σ loads − Σ purchases.
    s.loads_total = records
        .iter()
        .filter(|r| r.kind == "load" && r.status == "posted")
        .map(|r| r.amount)
        .sum();
    s.purchases_total = records
        .iter()
        .filter(|r| r.kind == "purchase" && r.status == "posted")
        .map(|r| r.amount)
        .sum();
    s.issuer_float = -s.balances.get(ledger::FLOAT).copied().unwrap_or(0);
    if s.issuer_float != s.loads_total - s.purchases_total {
        return fail(
            "issuer float",
            format!(
                "ledger float {} ≠ Σ loads {} − Σ purchases {}",
                s.issuer_float, s.loads_total, s.purchases_total
            ),
        );
    }
    let acked_purchases: i64 = records
        .iter()
        .filter(|r| {
            r.kind == "purchase"
                && r.status == "posted"
                && received.get(r.batch_id.as_str()) == Some(&"acked")
        })
        .map(|r| r.amount)
        .sum();
    let settled_total: i64 = settled_sum.values().sum();
    if settled_total < acked_purchases {
        return fail(
            "issuer float",
            format!("payment store has {settled_total} settled, clearing acknowledged {acked_purchases}"),
        );
    }
    if settled_total > s.purchases_total {
        return fail(
            "issuer float",
            format!(
                "payment store has {settled_total} settled, clearing posted only {}",
                s.purchases_total
            ),
        );
    }
    let acked_loads: i64 = records
        .iter()
        .filter(|r| {
            r.kind == "load"
                && r.status == "posted"
                && received.get(r.batch_id.as_str()) == Some(&"acked")
        })
        .map(|r| r.amount)
        .sum();
    if settled_loads < acked_loads || settled_loads > s.loads_total {
        return fail(
            "issuer float",
            format!(
                "the load store has {settled_loads} settled, clearing posted {} and acknowledged {acked_loads}",
                s.loads_total
            ),
        );
    }

    // 6. Per merchant and per payout.
    let mut merchants: BTreeMap<&str, (i64, i64)> = BTreeMap::new(); // (gross, fees) posted
    for r in records
        .iter()
        .filter(|r| r.kind == "purchase" && r.status == "posted")
    {
        let e = merchants.entry(r.party.as_str()).or_default();
        e.0 += r.amount;
        e.1 += r.fee;
    }
    s.fees_total = merchants.values().map(|v| v.1).sum();
    for (m, (gross, fees)) in &merchants {
        let payable = -s.balances.get(&ledger::payable(m)).copied().unwrap_or(0);
        let paid = -s
            .balances
            .get(&ledger::merchant_bank(m))
            .copied()
            .unwrap_or(0);
        s.paid_out_total += paid;
        if paid + payable != gross - fees {
            return fail(
                "merchant settlement",
                format!(
                    "{m}: paid out {paid} + payable {payable} ≠ Σ captured {gross} − fees {fees}"
                ),
            );
        }
        let settled = settled_sum.get(m).copied().unwrap_or(0);
        if settled > *gross {
            return fail(
                "merchant settlement",
                format!("{m}: {settled} settled in the payment store, {gross} cleared"),
            );
        }
    }
    let payouts: Vec<(String, String, i64, i64, i64)> = {
        c.query(
            "SELECT payout_id, merchant_id, amount, gross, fees FROM payouts ORDER BY payout_id",
            vec![],
        )
        .map_err(db)?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .collect::<Result<_, DbError>>()
        .map_err(db)?
    };
    for (id, m, amount, gross, fees) in &payouts {
        let covered: Vec<&StoredRecord> = records
            .iter()
            .filter(|r| r.payout_id.as_deref() == Some(id.as_str()))
            .collect();
        let g: i64 = covered.iter().map(|r| r.amount).sum();
        let f: i64 = covered.iter().map(|r| r.fee).sum();
        let in_ledger: i64 = entries_of
            .get(id.as_str())
            .map(|es| {
                es.iter()
                    .flat_map(|e| e.lines.iter())
                    .filter(|l| l.0 == ledger::merchant_bank(m))
                    .map(|l| -l.1)
                    .sum()
            })
            .unwrap_or(0);
        if g != *gross || f != *fees || g - f != *amount || in_ledger != *amount {
            return fail(
                "payouts",
                format!("payout {id} of {m}: instructs {amount}, its records net {}, the ledger paid {in_ledger}", g - f),
            );
        }
    }
    Ok(s)
}
