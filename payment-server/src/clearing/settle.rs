//! Settlement: per merchant per business day, one payout of the posted,
//! unpaid purchases of that day (gross − fees), posted to the ledger
//! (`payable` → `bank`) in the same commit as the records are marked paid.
//! Then the files: a CSV a bank would take and an ISO 20022 pain.001 of the
//! run, a CSV of the transactions behind each payout, and per bank the float
//! it owes the issuer. Files are written after the commit and marked
//! exported; a crash in between writes them on the next run.
//!
//! # Files of a run `SR-<YYYY-MM-DD>T<HHMMSS>Z` (in `out_dir/<run id>/`)
//! - `payouts.csv`: `payout_id,merchant_id,merchant_name,iban,bic,business_date,currency,amount,gross,fees,count,reference`
//! - `pain001.xml`: one credit transfer per payout, end-to-end id = reference
//! - `<payout_id>.transactions.csv`: `payout_id,txn_id,batch_id,business_date,amount,fee,net`
//! - `bank-float.csv`: `bank_id,bank_name,loads,owed` (amounts in EUR, `12.34`)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::config::ClearingConfig;
use super::db::{iso_date, vals, Db, DbError, Row};
use super::ledger;
use super::pain001::{self, decimal};
use super::post::{Clearing, ClearingError};
use super::produce::write_atomic;

/// One payout instruction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Payout {
    pub payout_id: String,
    pub merchant_id: String,
    pub business_date: String,
    pub gross: u64,
    pub fees: u64,
    pub amount: u64,
    pub count: u64,
    pub reference: String,
    pub run_id: String,
    pub created_at: u64,
}

pub(crate) fn payout_from_row(r: &Row) -> Result<Payout, DbError> {
    Ok(Payout {
        payout_id: r.get("payout_id")?,
        merchant_id: r.get("merchant_id")?,
        business_date: r.get("business_date")?,
        gross: r.get("gross")?,
        fees: r.get("fees")?,
        amount: r.get("amount")?,
        count: r.get("count")?,
        reference: r.get("reference")?,
        run_id: r.get("run_id")?,
        created_at: r.get("created_at")?,
    })
}

pub(crate) const PAYOUT_COLUMNS: &str =
    "payout_id, merchant_id, business_date, gross, fees, amount, count, reference, run_id, created_at";

/// `CP-<YYYYMMDD>-<12 hex>`: 24 characters, unique per payout, fits every
/// bank's 35-character reference.
pub fn reference(payout_id: &str, business_date: &str) -> String {
    let h = Sha256::digest(payout_id.as_bytes());
    format!(
        "CP-{}-{}",
        business_date.replace('-', ""),
        &hex::encode(h)[..12]
    )
}

fn run_id(now: u64) -> String {
    let t = purse::types::BcdTime::from_unix(now).bytes();
    format!(
        "SR-{}T{}Z",
        purse::types::BcdDate::from_unix(now),
        hex::encode(t)
    )
}

/// Create the payouts of every merchant with settlement terms for the
/// business days up to `through` (`YYYY-MM-DD`, inclusive). One commit.
pub fn settle(
    clearing: &mut Clearing,
    cfg: &ClearingConfig,
    through: &str,
    now: u64,
) -> Result<Vec<Payout>, ClearingError> {
    let run = run_id(now);
    clearing.conn.transaction(|tx| {
        let groups: Vec<(String, String, i64, i64, i64)> = tx
            .query(
                "SELECT party, business_date, CAST(SUM(amount) AS BIGINT), CAST(SUM(fee) AS BIGINT), COUNT(*) FROM records
                 WHERE status = 'posted' AND kind = 'purchase' AND payout_id IS NULL AND business_date <= ?1
                 GROUP BY party, business_date ORDER BY party, business_date",
                vals![through],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .collect::<Result<_, DbError>>()?;
        let mut out = Vec::new();
        for (merchant, day, gross, fees, count) in groups {
            if !cfg.merchants.contains_key(&merchant) {
                tracing::warn!(merchant = %merchant, day = %day, "no settlement terms (IBAN): not paid out");
                continue;
            }
            let seq: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM payouts WHERE merchant_id = ?1 AND business_date = ?2",
                    vals![&merchant, &day],
                )?
                .get(0)?;
            let payout_id = format!("PO-{merchant}-{}-{seq}", day.replace('-', ""));
            let net = gross - fees;
            let p = Payout {
                reference: reference(&payout_id, &day),
                payout_id,
                merchant_id: merchant.clone(),
                business_date: day.clone(),
                gross: gross as u64,
                fees: fees as u64,
                amount: net as u64,
                count: count as u64,
                run_id: run.clone(),
                created_at: now,
            };
            tx.execute(
                "INSERT INTO payouts (payout_id, merchant_id, business_date, seq, gross, fees, amount, count,
                    reference, run_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                vals![
                    &p.payout_id, &p.merchant_id, &p.business_date, seq, gross, fees, net, count,
                    &p.reference, &p.run_id, now
                ],
            )?;
            let n = tx.execute(
                "UPDATE records SET payout_id = ?1 WHERE status = 'posted' AND kind = 'purchase'
                   AND payout_id IS NULL AND party = ?2 AND business_date = ?3",
                vals![&p.payout_id, &merchant, &day],
            )?;
            if n as i64 != count {
                return Err(ClearingError::Other(format!(
                    "payout {}: {n} records, expected {count}",
                    p.payout_id
                )));
            }
            if net > 0 {
                ledger::post(
                    tx,
                    "payout",
                    &p.payout_id,
                    &format!("{count} purchases of {day}, reference {}", p.reference),
                    now,
                    &[
                        (&ledger::payable(&merchant), net),
                        (&ledger::merchant_bank(&merchant), -net),
                    ],
                )?;
            }
            out.push(p);
        }
        Ok(out)
    })
}

/// Write the files of every payout not exported yet; returns the run folders.
pub fn export(
    clearing: &Clearing,
    cfg: &ClearingConfig,
    now: u64,
) -> Result<Vec<PathBuf>, ClearingError> {
    let c = clearing.db();
    let pending: Vec<Payout> = {
        c.query(
            &format!(
                "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE exported_at IS NULL ORDER BY run_id, payout_id"
            ),
            vec![],
        )?
        .iter()
        .map(payout_from_row)
        .collect::<Result<_, _>>()?
    };
    let mut runs: BTreeMap<String, Vec<Payout>> = BTreeMap::new();
    for p in pending {
        runs.entry(p.run_id.clone()).or_default().push(p);
    }
    let mut dirs = Vec::new();
    for (run, payouts) in runs {
        let dir = cfg.out_dir.join(&run);
        write_run(c, cfg, &dir, &run, &payouts)?;
        for p in &payouts {
            c.execute(
                "UPDATE payouts SET exported_at = ?2 WHERE payout_id = ?1",
                vals![&p.payout_id, now],
            )?;
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

fn csv_field(s: &str) -> String {
    // Quote always; double quotes doubled; a leading = + - @ neutralised
    // (the file may be opened in a spreadsheet).
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn io(e: std::io::Error) -> ClearingError {
    ClearingError::Other(format!("writing settlement files: {e}"))
}

fn write_run(
    c: &Db,
    cfg: &ClearingConfig,
    dir: &Path,
    run: &str,
    payouts: &[Payout],
) -> Result<(), ClearingError> {
    let mut csv = String::from(
        "payout_id,merchant_id,merchant_name,iban,bic,business_date,currency,amount,gross,fees,count,reference\n",
    );
    let mut transfers = Vec::new();
    for p in payouts {
        let terms = cfg.merchants.get(&p.merchant_id);
        let (name, iban, bic) = terms
            .map(|t| (t.name.as_str(), t.iban.as_str(), t.bic.as_str()))
            .unwrap_or((p.merchant_id.as_str(), "", ""));
        csv.push_str(&format!(
            "{},{},{},{},{},{},EUR,{},{},{},{},{}\n",
            csv_field(&p.payout_id),
            csv_field(&p.merchant_id),
            csv_field(name),
            csv_field(iban),
            csv_field(bic),
            p.business_date,
            decimal(p.amount),
            decimal(p.gross),
            decimal(p.fees),
            p.count,
            csv_field(&p.reference),
        ));
        if p.amount > 0 {
            transfers.push(pain001::Transfer {
                end_to_end_id: p.reference.clone(),
                amount: p.amount,
                creditor_name: name.to_string(),
                creditor_iban: iban.to_string(),
                creditor_bic: bic.to_string(),
                remittance: format!(
                    "Cardpay payout {} {} ({} purchases)",
                    p.merchant_id, p.business_date, p.count
                ),
            });
        }
        let mut tcsv = String::from("payout_id,txn_id,batch_id,business_date,amount,fee,net\n");
        let rows = c.query(
            "SELECT txn_id, batch_id, business_date, amount, fee FROM records WHERE payout_id = ?1 ORDER BY batch_id, idx",
            vals![&p.payout_id],
        )?;
        for r in &rows {
            let (t, b, d, a, f): (String, String, String, i64, i64) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
            tcsv.push_str(&format!(
                "{},{},{},{d},{},{},{}\n",
                csv_field(&p.payout_id),
                csv_field(&t),
                csv_field(&b),
                decimal(a as u64),
                decimal(f as u64),
                decimal((a - f) as u64)
            ));
        }
        write_atomic(
            dir,
            &format!("{}.transactions.csv", p.payout_id),
            tcsv.as_bytes(),
        )
        .map_err(io)?;
    }
    write_atomic(dir, "payouts.csv", csv.as_bytes()).map_err(io)?;
    let created = payouts.first().map(|p| p.created_at).unwrap_or(0);
    let (h, m, s) = {
        let t = created % 86_400;
        (t / 3600, t / 60 % 60, t % 60)
    };
    let xml = pain001::write(
        run,
        &format!("{}T{h:02}:{m:02}:{s:02}", iso_date(created)),
        &iso_date(created + 86_400),
        &pain001::Debtor {
            name: cfg.issuer.name.clone(),
            iban: cfg.issuer.iban.clone(),
            bic: cfg.issuer.bic.clone(),
        },
        &transfers,
    );
    write_atomic(dir, "pain001.xml", xml.as_bytes()).map_err(io)?;
    // The float each loading bank owes the issuer.
    let mut fcsv = String::from("bank_id,bank_name,loads,owed\n");
    let rows: Vec<(String, i64)> = c
        .query(
            "SELECT party, COUNT(*) FROM records WHERE kind = 'load' AND status = 'posted' GROUP BY party ORDER BY party",
            vec![],
        )?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect::<Result<_, DbError>>()?;
    for (bank, n) in rows {
        let owed = ledger::balance(c, &ledger::bank_due(&bank))?;
        let name = cfg
            .banks
            .get(&bank)
            .map(|b| b.name.as_str())
            .unwrap_or(&bank);
        fcsv.push_str(&format!(
            "{},{},{n},{}\n",
            csv_field(&bank),
            csv_field(name),
            decimal(owed.max(0) as u64)
        ));
    }
    write_atomic(dir, "bank-float.csv", fcsv.as_bytes()).map_err(io)?;
    Ok(())
}
