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

use rusqlite::{params, Connection};

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
    c: &Connection,
    kind: &str,
    reference: &str,
    memo: &str,
    at: u64,
    lines: &[(&str, i64)],
) -> rusqlite::Result<i64> {
    assert_eq!(
        lines.iter().map(|l| l.1).sum::<i64>(),
        0,
        "unbalanced journal entry {kind} {reference}"
    );
    c.prepare_cached("INSERT INTO journal (kind, ref, memo, at) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![kind, reference, memo, at])?;
    let id = c.last_insert_rowid();
    let mut stmt =
        c.prepare_cached("INSERT INTO postings (journal_id, account, amount) VALUES (?1, ?2, ?3)")?;
    for (account, amount) in lines {
        if *amount != 0 {
            stmt.execute(params![id, account, amount])?;
        }
    }
    Ok(id)
}

/// Every account's balance (debits positive).
pub fn balances(c: &Connection) -> rusqlite::Result<BTreeMap<String, i64>> {
    let mut stmt =
        c.prepare_cached("SELECT account, SUM(amount) FROM postings GROUP BY account")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

pub fn balance(c: &Connection, account: &str) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT COALESCE(SUM(amount), 0) FROM postings WHERE account = ?1")?
        .query_row(params![account], |r| r.get(0))
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
pub fn entries(c: &Connection) -> rusqlite::Result<Vec<Entry>> {
    let mut out: Vec<Entry> = Vec::new();
    let mut stmt = c.prepare(
        "SELECT j.id, j.kind, j.ref, p.account, p.amount FROM journal j
         LEFT JOIN postings p ON p.journal_id = j.id ORDER BY j.id, p.id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
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
pub fn fingerprint(c: &Connection) -> rusqlite::Result<Fingerprint> {
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
