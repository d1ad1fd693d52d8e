//! The payment database's side of clearing: captured money-purse transactions
//! of a non-zero amount (an amount-0 purchase is a sign-in with the card, not
//! a payment record) not yet in a batch, the batches this server closed (with their signed
//! files), and what reports and reconciliation read.

use rusqlite::{params, Connection, OptionalExtension};

use super::sqlite::{exec, qrow};
use super::txn::TxnRow;
use crate::error::PaymentError;

/// A batch as this server closed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedBatch {
    pub batch_id: String,
    pub kind: String,
    pub party: String,
    pub closed_at: u64,
    pub record_count: u64,
    pub total: u64,
    pub file: String,
}

/// One captured transaction as reconciliation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedTxn {
    pub merchant_id: String,
    pub txn_id: String,
    pub state: String,
    pub amount: u32,
    pub card_id: String,
    pub atc: u16,
    pub batch_id: Option<String>,
    pub debited_at: u64,
}

impl CapturedTxn {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            merchant_id: r.get("merchant_id")?,
            txn_id: r.get("txn_id")?,
            state: r.get("state")?,
            amount: r.get("amount")?,
            card_id: r.get("card_id")?,
            atc: r.get("atc")?,
            batch_id: r.get("batch_id")?,
            debited_at: r.get("debited_at")?,
        })
    }
}

/// A credited load waiting for its bank's batch, with the card's receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadCandidate {
    pub bank_id: String,
    pub txn_id: String,
    pub amount: u32,
    pub card_id: String,
    pub key_version: u8,
    pub atc: u16,
    pub card_random: Vec<u8>,
    pub balance_before: u32,
    pub balance_after: u32,
    pub date: String,
    pub time: String,
    /// The card's S3 (CREDIT or log record); None when a later S1 proved it.
    pub card_s3: Option<Vec<u8>>,
    pub proof: String,
    pub decided_at: u64,
}

/// Banks with credited money-purse loads waiting for a batch.
pub fn unbatched_banks(c: &Connection) -> Result<Vec<String>, PaymentError> {
    let mut stmt = c.prepare_cached(
        "SELECT DISTINCT bank_id FROM loads
         WHERE batch_id IS NULL AND state = 'credited' AND purse = 0 ORDER BY bank_id",
    )?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A bank's credited money-purse loads waiting for a batch, oldest first.
pub fn unbatched_loads(
    c: &Connection,
    bank_id: &str,
    limit: u32,
) -> Result<Vec<LoadCandidate>, PaymentError> {
    let mut stmt = c.prepare_cached(
        "SELECT bank_id, txn_id, amount, card_id, key_version, atc, card_random, balance_before,
                balance_after, date, time, card_s3, COALESCE(proof, '') AS proof,
                COALESCE(decided_at, updated_at) AS decided_at
         FROM loads WHERE bank_id = ?1 AND batch_id IS NULL AND state = 'credited' AND purse = 0
         ORDER BY decided_at, txn_id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![bank_id, limit], |r| {
        Ok(LoadCandidate {
            bank_id: r.get("bank_id")?,
            txn_id: r.get("txn_id")?,
            amount: r.get("amount")?,
            card_id: r.get("card_id")?,
            key_version: r.get("key_version")?,
            atc: r.get("atc")?,
            card_random: r.get("card_random")?,
            balance_before: r.get("balance_before")?,
            balance_after: r.get("balance_after")?,
            date: r.get("date")?,
            time: r.get("time")?,
            card_s3: r.get("card_s3")?,
            proof: r.get("proof")?,
            decided_at: r.get("decided_at")?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every credited money-purse load (credited, settled), for reconciliation
/// (`merchant_id` holds the bank).
pub fn credited_loads(c: &Connection) -> Result<Vec<CapturedTxn>, PaymentError> {
    let mut stmt = c.prepare_cached(
        "SELECT bank_id AS merchant_id, txn_id, state, amount, card_id, atc, batch_id,
                COALESCE(decided_at, updated_at) AS debited_at
         FROM loads WHERE state IN ('credited', 'settled') AND purse = 0
         ORDER BY bank_id, txn_id",
    )?;
    let rows = stmt.query_map([], CapturedTxn::from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Merchants with captured money-purse transactions waiting for a batch.
pub fn unbatched_merchants(c: &Connection) -> Result<Vec<String>, PaymentError> {
    let mut stmt = c.prepare_cached(
        "SELECT DISTINCT merchant_id FROM transactions
         WHERE batch_id IS NULL AND state IN ('debited', 'confirmed') AND purse = 0 AND amount > 0
         ORDER BY merchant_id",
    )?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A merchant's captured money-purse transactions waiting for a batch, oldest first.
pub fn unbatched(
    c: &Connection,
    merchant_id: &str,
    limit: u32,
) -> Result<Vec<TxnRow>, PaymentError> {
    let sql = format!(
        "SELECT {} FROM transactions
         WHERE merchant_id = ?1 AND batch_id IS NULL AND state IN ('debited', 'confirmed') AND purse = 0 AND amount > 0
         ORDER BY debited_at, txn_id LIMIT ?2",
        super::txn::columns()
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![merchant_id, limit], TxnRow::from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Record a closed batch: every transaction must still be captured and
/// unbatched (else the whole job rolls back: a concurrent close took it).
pub fn record_batch(
    c: &Connection,
    b: &ClosedBatch,
    sha256: &[u8],
    txn_ids: &[String],
) -> Result<(), PaymentError> {
    let sql = match b.kind.as_str() {
        "loads" => {
            "UPDATE loads SET batch_id = ?3 WHERE bank_id = ?1 AND txn_id = ?2
               AND batch_id IS NULL AND state = 'credited'"
        }
        _ => {
            "UPDATE transactions SET batch_id = ?3 WHERE merchant_id = ?1 AND txn_id = ?2
               AND batch_id IS NULL AND state IN ('debited', 'confirmed')"
        }
    };
    for t in txn_ids {
        let n = exec(c, sql, params![b.party, t, b.batch_id])?;
        if n != 1 {
            return Err(PaymentError::WrongState);
        }
    }
    exec(
        c,
        "INSERT INTO clearing_batches (batch_id, kind, party, closed_at, record_count, total, sha256, file)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            b.batch_id,
            b.kind,
            b.party,
            b.closed_at,
            b.record_count,
            b.total,
            sha256,
            b.file
        ],
    )?;
    Ok(())
}

fn closed_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClosedBatch> {
    Ok(ClosedBatch {
        batch_id: r.get("batch_id")?,
        kind: r.get("kind")?,
        party: r.get("party")?,
        closed_at: r.get("closed_at")?,
        record_count: r.get("record_count")?,
        total: r.get("total")?,
        file: r.get("file")?,
    })
}

/// Batches whose file has not been written to the spool yet.
pub fn unexported(c: &Connection) -> Result<Vec<ClosedBatch>, PaymentError> {
    let mut stmt = c.prepare_cached(
        "SELECT batch_id, kind, party, closed_at, record_count, total, file FROM clearing_batches
         WHERE exported_at IS NULL ORDER BY closed_at, batch_id",
    )?;
    let rows = stmt.query_map([], closed_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn mark_exported(c: &Connection, batch_id: &str, now: u64) -> Result<(), PaymentError> {
    exec(
        c,
        "UPDATE clearing_batches SET exported_at = ?2 WHERE batch_id = ?1",
        params![batch_id, now],
    )?;
    Ok(())
}

pub fn batch(c: &Connection, batch_id: &str) -> Result<Option<ClosedBatch>, PaymentError> {
    Ok(qrow(
        c,
        "SELECT batch_id, kind, party, closed_at, record_count, total, file FROM clearing_batches WHERE batch_id = ?1",
        params![batch_id],
        closed_from_row,
    )
    .optional()?)
}

/// Newest close time per party of a kind (`purchases`, `loads`).
pub fn last_close(c: &Connection, kind: &str) -> Result<Vec<(String, u64)>, PaymentError> {
    let mut stmt = c.prepare_cached(
        "SELECT party, MAX(closed_at) FROM clearing_batches WHERE kind = ?1 GROUP BY party",
    )?;
    let rows = stmt.query_map(params![kind], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every captured money-purse transaction (debited, confirmed, settled).
pub fn captured(c: &Connection) -> Result<Vec<CapturedTxn>, PaymentError> {
    let mut stmt = c.prepare_cached(
        "SELECT merchant_id, txn_id, state, amount, card_id, atc, batch_id, COALESCE(debited_at, 0) AS debited_at
         FROM transactions WHERE state IN ('debited', 'confirmed', 'settled') AND purse = 0 AND amount > 0
         ORDER BY merchant_id, txn_id",
    )?;
    let rows = stmt.query_map([], CapturedTxn::from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Captured (money) takings of a merchant per UTC day: (day number, sum, count).
pub fn daily_takings(
    c: &Connection,
    merchant_id: &str,
    since: u64,
) -> Result<Vec<(u64, u64, u64)>, PaymentError> {
    let mut stmt = c.prepare_cached(
        "SELECT debited_at / 86400 AS day, SUM(amount), COUNT(*) FROM transactions
         WHERE merchant_id = ?1 AND state IN ('debited', 'confirmed', 'settled') AND purse = 0 AND amount > 0
           AND debited_at >= ?2
         GROUP BY day ORDER BY day",
    )?;
    let rows = stmt.query_map(params![merchant_id, since], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
