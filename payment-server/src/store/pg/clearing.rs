//! The payment database's side of clearing on PostgreSQL: the same queries
//! as [`crate::store::clearing`]. Two instances closing batches at once
//! meet on the rows: each transaction is marked by a compare-and-set
//! (`batch_id IS NULL`), and a batch whose rows another close took rolls
//! back whole.

use std::sync::OnceLock;

use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::Row;

use super::{big, num, pg_error};
use crate::error::PaymentError;
use crate::store::txn::COLUMN_NAMES;
use crate::store::{CapturedTxn, ClosedBatch, LoadCandidate, TxnRow};

fn captured_row(r: &Row) -> Result<CapturedTxn, PaymentError> {
    Ok(CapturedTxn {
        merchant_id: r.try_get("merchant_id").map_err(pg_error)?,
        txn_id: r.try_get("txn_id").map_err(pg_error)?,
        state: r.try_get("state").map_err(pg_error)?,
        amount: num(r.try_get("amount").map_err(pg_error)?, "amount")?,
        card_id: r.try_get("card_id").map_err(pg_error)?,
        atc: num(r.try_get("atc").map_err(pg_error)?, "atc")?,
        batch_id: r.try_get("batch_id").map_err(pg_error)?,
        debited_at: num(r.try_get("debited_at").map_err(pg_error)?, "time")?,
    })
}

fn closed_row(r: &Row) -> Result<ClosedBatch, PaymentError> {
    Ok(ClosedBatch {
        batch_id: r.try_get("batch_id").map_err(pg_error)?,
        kind: r.try_get("kind").map_err(pg_error)?,
        party: r.try_get("party").map_err(pg_error)?,
        closed_at: num(r.try_get("closed_at").map_err(pg_error)?, "time")?,
        record_count: num(r.try_get("record_count").map_err(pg_error)?, "count")?,
        total: num(r.try_get("total").map_err(pg_error)?, "total")?,
        file: r.try_get("file").map_err(pg_error)?,
    })
}

async fn strings(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<String>, PaymentError> {
    let st = c.prepare_cached(sql).await.map_err(pg_error)?;
    Ok(c.query(&st, params)
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

pub async fn unbatched_banks(c: &impl GenericClient) -> Result<Vec<String>, PaymentError> {
    strings(
        c,
        "SELECT DISTINCT bank_id FROM loads
         WHERE batch_id IS NULL AND state = 'credited' AND purse = 0 ORDER BY bank_id",
        &[],
    )
    .await
}

pub async fn unbatched_loads(
    c: &impl GenericClient,
    bank_id: &str,
    limit: u32,
) -> Result<Vec<LoadCandidate>, PaymentError> {
    let st = c
        .prepare_cached(
            "SELECT bank_id, txn_id, amount, card_id, key_version, atc, card_random, balance_before,
                    balance_after, date, time, card_s3, COALESCE(proof, '') AS proof,
                    COALESCE(decided_at, updated_at) AS decided_at
             FROM loads WHERE bank_id = $1 AND batch_id IS NULL AND state = 'credited' AND purse = 0
             ORDER BY decided_at, txn_id LIMIT $2",
        )
        .await
        .map_err(pg_error)?;
    c.query(&st, &[&bank_id, &i64::from(limit)])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| {
            let int = |c: &str| -> Result<i64, PaymentError> { r.try_get(c).map_err(pg_error) };
            Ok(LoadCandidate {
                bank_id: r.get("bank_id"),
                txn_id: r.get("txn_id"),
                amount: num(int("amount")?, "amount")?,
                card_id: r.get("card_id"),
                key_version: num(int("key_version")?, "key version")?,
                atc: num(int("atc")?, "atc")?,
                card_random: r.get("card_random"),
                balance_before: num(int("balance_before")?, "balance")?,
                balance_after: num(int("balance_after")?, "balance")?,
                date: r.get("date"),
                time: r.get("time"),
                card_s3: r.get("card_s3"),
                proof: r.get("proof"),
                decided_at: num(int("decided_at")?, "time")?,
            })
        })
        .collect()
}

pub async fn credited_loads(c: &impl GenericClient) -> Result<Vec<CapturedTxn>, PaymentError> {
    let st = c
        .prepare_cached(
            "SELECT bank_id AS merchant_id, txn_id, state, amount, card_id, atc, batch_id,
                    COALESCE(decided_at, updated_at) AS debited_at
             FROM loads WHERE state IN ('credited', 'settled') AND purse = 0
             ORDER BY bank_id, txn_id",
        )
        .await
        .map_err(pg_error)?;
    c.query(&st, &[])
        .await
        .map_err(pg_error)?
        .iter()
        .map(captured_row)
        .collect()
}

pub async fn unbatched_merchants(c: &impl GenericClient) -> Result<Vec<String>, PaymentError> {
    strings(
        c,
        "SELECT DISTINCT merchant_id FROM transactions
         WHERE batch_id IS NULL AND state IN ('debited', 'confirmed') AND purse = 0 AND amount > 0
         ORDER BY merchant_id",
        &[],
    )
    .await
}

pub async fn unbatched(
    c: &impl GenericClient,
    merchant_id: &str,
    limit: u32,
) -> Result<Vec<TxnRow>, PaymentError> {
    static SQL: OnceLock<String> = OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "SELECT {} FROM transactions
             WHERE merchant_id = $1 AND batch_id IS NULL AND state IN ('debited', 'confirmed')
               AND purse = 0 AND amount > 0
             ORDER BY debited_at, txn_id LIMIT $2",
            COLUMN_NAMES.join(", ")
        )
    });
    let st = c.prepare_cached(sql).await.map_err(pg_error)?;
    c.query(&st, &[&merchant_id, &i64::from(limit)])
        .await
        .map_err(pg_error)?
        .iter()
        .map(super::txn::txn_row)
        .collect()
}

/// Record a closed batch: every transaction must still be captured and
/// unbatched, else the whole transaction rolls back (`WrongState`: another
/// close, perhaps another instance's, took it).
pub async fn record_batch(
    c: &mut Object,
    b: &ClosedBatch,
    sha256: &[u8],
    txn_ids: &[String],
) -> Result<(), PaymentError> {
    let mark = match b.kind.as_str() {
        "loads" => {
            "UPDATE loads SET batch_id = $3 WHERE bank_id = $1 AND txn_id = $2
               AND batch_id IS NULL AND state = 'credited'"
        }
        _ => {
            "UPDATE transactions SET batch_id = $3 WHERE merchant_id = $1 AND txn_id = $2
               AND batch_id IS NULL AND state IN ('debited', 'confirmed')"
        }
    };
    let tx = c.transaction().await.map_err(pg_error)?;
    let st = tx.prepare_cached(mark).await.map_err(pg_error)?;
    for t in txn_ids {
        let n = tx
            .execute(&st, &[&b.party, t, &b.batch_id])
            .await
            .map_err(pg_error)?;
        if n != 1 {
            tx.rollback().await.map_err(pg_error)?;
            return Err(PaymentError::WrongState);
        }
    }
    let st = tx
        .prepare_cached(
            "INSERT INTO clearing_batches (batch_id, kind, party, closed_at, record_count, total, sha256, file)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await
        .map_err(pg_error)?;
    tx.execute(
        &st,
        &[
            &b.batch_id,
            &b.kind,
            &b.party,
            &big(b.closed_at),
            &big(b.record_count),
            &big(b.total),
            &sha256,
            &b.file,
        ],
    )
    .await
    .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)
}

pub async fn unexported(c: &impl GenericClient) -> Result<Vec<ClosedBatch>, PaymentError> {
    let st = c
        .prepare_cached(
            "SELECT batch_id, kind, party, closed_at, record_count, total, file FROM clearing_batches
             WHERE exported_at IS NULL ORDER BY closed_at, batch_id",
        )
        .await
        .map_err(pg_error)?;
    c.query(&st, &[])
        .await
        .map_err(pg_error)?
        .iter()
        .map(closed_row)
        .collect()
}

pub async fn mark_exported(
    c: &impl GenericClient,
    batch_id: &str,
    now: u64,
) -> Result<(), PaymentError> {
    let st = c
        .prepare_cached("UPDATE clearing_batches SET exported_at = $2 WHERE batch_id = $1")
        .await
        .map_err(pg_error)?;
    c.execute(&st, &[&batch_id, &big(now)])
        .await
        .map_err(pg_error)?;
    Ok(())
}

pub async fn batch(
    c: &impl GenericClient,
    batch_id: &str,
) -> Result<Option<ClosedBatch>, PaymentError> {
    let st = c
        .prepare_cached(
            "SELECT batch_id, kind, party, closed_at, record_count, total, file FROM clearing_batches
             WHERE batch_id = $1",
        )
        .await
        .map_err(pg_error)?;
    c.query_opt(&st, &[&batch_id])
        .await
        .map_err(pg_error)?
        .as_ref()
        .map(closed_row)
        .transpose()
}

pub async fn last_close(
    c: &impl GenericClient,
    kind: &str,
) -> Result<Vec<(String, u64)>, PaymentError> {
    let st = c
        .prepare_cached(
            "SELECT party, MAX(closed_at) FROM clearing_batches WHERE kind = $1 GROUP BY party",
        )
        .await
        .map_err(pg_error)?;
    c.query(&st, &[&kind])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| Ok((r.get(0), num(r.get(1), "time")?)))
        .collect()
}

pub async fn captured(c: &impl GenericClient) -> Result<Vec<CapturedTxn>, PaymentError> {
    let st = c
        .prepare_cached(
            "SELECT merchant_id, txn_id, state, amount, card_id, atc, batch_id,
                    COALESCE(debited_at, 0) AS debited_at
             FROM transactions WHERE state IN ('debited', 'confirmed', 'settled') AND purse = 0 AND amount > 0
             ORDER BY merchant_id, txn_id",
        )
        .await
        .map_err(pg_error)?;
    c.query(&st, &[])
        .await
        .map_err(pg_error)?
        .iter()
        .map(captured_row)
        .collect()
}

pub async fn daily_takings(
    c: &impl GenericClient,
    merchant_id: &str,
    since: u64,
) -> Result<Vec<(u64, u64, u64)>, PaymentError> {
    let st = c
        .prepare_cached(
            "SELECT debited_at / 86400 AS day, SUM(amount)::bigint, COUNT(*) FROM transactions
             WHERE merchant_id = $1 AND state IN ('debited', 'confirmed', 'settled') AND purse = 0 AND amount > 0
               AND debited_at >= $2
             GROUP BY day ORDER BY day",
        )
        .await
        .map_err(pg_error)?;
    c.query(&st, &[&merchant_id, &big(since)])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| {
            Ok((
                num(r.get(0), "day")?,
                num(r.get(1), "sum")?,
                num(r.get(2), "count")?,
            ))
        })
        .collect()
}
