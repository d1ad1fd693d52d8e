//! The double-entry ledger: journal entries (what and why) with postings
//! (+ debit, − credit, in cents) that sum to zero, on named accounts.
//!
//! | account | what | normal side |
//! |---|---|---|
//! | `bank:<id>:due` | what a loading bank owes the issuer for loads | debit |
//! | `issuer:float` | value on cards the issuer owes their holders | credit |
//! | `merchant:<id>:payable` | cleared purchases not yet paid out, net of fees | credit |
//! | `merchant:<id>:bank` | paid out to the merchant's bank account | credit |
//! | `issuer:fees` | fees earned | credit |
//!
//! Load: `bank:<B>:due` Dr / `issuer:float` Cr. Purchase: `issuer:float` Dr /
//! `merchant:<M>:payable` Cr. Fee: `merchant:<M>:payable` Dr / `issuer:fees` Cr.
//! Payout: `merchant:<M>:payable` Dr / `merchant:<M>:bank` Cr.

use std::collections::BTreeMap;

use super::db::{vals, Db, DbError};

pub const FLOAT: &str = "issuer:float";
pub const FEES: &str = "issuer:fees";

pub fn payable(merchant: &str) -> String {
    format!("merchant:{merchant}:payable")
}
pub fn merchant_bank(merchant: &str) -> String {
    format!("merchant:{merchant}:bank")
}
pub fn bank_due(bank: &str) -> String {
    format!("bank:{bank}:due")
}

/// Post one balanced entry. Panics on an unbalanced entry: a bug, never input.
pub fn post(
    c: &Db,
    kind: &str,
    reference: &str,
    memo: &str,
    at: u64,
    lines: &[(&str, i64)],
) -> Result<i64, DbError> {
    assert_eq!(
        lines.iter().map(|l| l.1).sum::<i64>(),
        0,
        "unbalanced journal entry {kind} {reference}"
    );
    let id: i64 = c
        .query_one(
            "INSERT INTO journal (kind, ref, memo, at) VALUES (?1, ?2, ?3, ?4) RETURNING id",
            vals![kind, reference, memo, at],
        )?
        .get(0)?;
    for (account, amount) in lines {
        if *amount != 0 {
            c.execute(
                "INSERT INTO postings (journal_id, account, amount) VALUES (?1, ?2, ?3)",
                vals![id, *account, *amount],
            )?;
        }
    }
    Ok(id)
}

/// Every account's balance (debits positive).
pub fn balances(c: &Db) -> Result<BTreeMap<String, i64>, DbError> {
    c.query(
        "SELECT account, CAST(SUM(amount) AS BIGINT) FROM postings GROUP BY account",
        vec![],
    )?
    .iter()
    .map(|r| Ok((r.get(0)?, r.get(1)?)))
    .collect()
}

pub fn balance(c: &Db, account: &str) -> Result<i64, DbError> {
    c.query_one(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM postings WHERE account = ?1",
        vals![account],
    )?
    .get(0)
}

/// One entry as reconciliation and tests read it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub id: i64,
    pub kind: String,
    pub reference: String,
    pub lines: Vec<(String, i64)>,
}

/// The whole journal, in order.
pub fn entries(c: &Db) -> Result<Vec<Entry>, DbError> {
    let mut out: Vec<Entry> = Vec::new();
    let rows = c.query(
        "SELECT j.id, j.kind, j.ref, p.account, p.amount FROM journal j
         LEFT JOIN postings p ON p.journal_id = j.id ORDER BY j.id, p.id",
        vec![],
    )?;
    for r in &rows {
        let id: i64 = r.get(0)?;
        if out.last().map(|e| e.id) != Some(id) {
            out.push(Entry {
                id,
                kind: r.get(1)?,
                reference: r.get(2)?,
                lines: Vec::new(),
            });
        }
        let account: Option<String> = r.get(3)?;
        if let Some(a) = account {
            out.last_mut().expect("pushed").lines.push((a, r.get(4)?));
        }
    }
    Ok(out)
}

/// (kind, reference, sorted lines) of every entry, sorted.
pub type Fingerprint = Vec<(String, String, Vec<(String, i64)>)>;

/// The ledger without ids and timestamps, sorted: two runs that posted the
/// same things compare equal.
pub fn fingerprint(c: &Db) -> Result<Fingerprint, DbError> {
    let mut v: Vec<_> = entries(c)?
        .into_iter()
        .map(|mut e| {
            e.lines.sort();
            (e.kind, e.reference, e.lines)
        })
        .collect();
    v.sort();
    Ok(v)
}
