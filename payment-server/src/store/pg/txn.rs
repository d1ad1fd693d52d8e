//! The `transactions` table on PostgreSQL: the same rows and rules as
//! [`crate::store::txn`], in PostgreSQL's SQL.

use std::sync::OnceLock;

use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::Row;

use purse::merchant_api::{
    RecoveryItem, ReportsPage, SuspiciousEntry, SuspiciousList, SuspiciousListEntry, TxnState,
    TxnView,
};
use purse::session::VerifyMode;
use purse::types::{BcdDate, BcdTime, CardId, Expiry, PurseId};

use super::outbox::{self, Queued};
use super::{big, num, pg_error, unique_violation};
use crate::card_ref::CardRefKey;
use crate::error::PaymentError;
use crate::store::txn::{Col, TransitionKind, COLUMN_NAMES};
use crate::store::{InsertConflict, Transition, TxnRow};

fn bad(what: &str) -> PaymentError {
    PaymentError::Internal(format!("stored {what} invalid"))
}

/// `SELECT <columns> FROM transactions WHERE <cond>`, built once per query.
fn select(cell: &'static OnceLock<String>, cond: &str) -> &'static str {
    cell.get_or_init(|| {
        format!(
            "SELECT {} FROM transactions WHERE {cond}",
            COLUMN_NAMES.join(", ")
        )
    })
}

/// A row of [`select`], each field read at its column's position.
pub(super) fn txn_row(r: &Row) -> Result<TxnRow, PaymentError> {
    let at = |c: Col| c as usize;
    let int = |c: Col| -> Result<i64, PaymentError> { r.try_get(at(c)).map_err(pg_error) };
    let opt_int =
        |c: Col| -> Result<Option<i64>, PaymentError> { r.try_get(at(c)).map_err(pg_error) };
    let text = |c: Col| -> Result<String, PaymentError> { r.try_get(at(c)).map_err(pg_error) };
    let bytes = |c: Col| -> Result<Vec<u8>, PaymentError> { r.try_get(at(c)).map_err(pg_error) };
    let opt_u64 = |c: Col, what| -> Result<Option<u64>, PaymentError> {
        opt_int(c)?.map(|v| num(v, what)).transpose()
    };
    Ok(TxnRow {
        merchant_id: text(Col::merchant_id)?,
        txn_id: text(Col::txn_id)?,
        order_ref: text(Col::order_ref)?,
        state: TxnState::parse(&text(Col::state)?).ok_or_else(|| bad("state"))?,
        verify_mode: VerifyMode::parse(&text(Col::verify_mode)?)
            .ok_or_else(|| bad("verify mode"))?,
        amount: num(int(Col::amount)?, "amount")?,
        currency: num(int(Col::currency)?, "currency")?,
        exponent: num(int(Col::exponent)?, "exponent")?,
        purse: PurseId::from_p2(num(int(Col::purse)?, "purse")?).map_err(|_| bad("purse"))?,
        origin: text(Col::origin)?,
        card_id: CardId::parse(&text(Col::card_id)?).map_err(|_| bad("card"))?,
        card_expiry: Expiry::parse(&text(Col::card_expiry)?).map_err(|_| bad("expiry"))?,
        key_version: num(int(Col::key_version)?, "key version")?,
        atc: num(int(Col::atc)?, "atc")?,
        card_random: bytes(Col::card_random)?
            .try_into()
            .map_err(|_| bad("random"))?,
        balance_before: num(int(Col::balance_before)?, "balance")?,
        balance_after: num(int(Col::balance_after)?, "balance")?,
        seq: num(int(Col::seq)?, "seq")?,
        date: BcdDate::parse(&text(Col::date)?).map_err(|_| bad("date"))?,
        time: BcdTime::parse(&text(Col::time)?).map_err(|_| bad("time"))?,
        expected_s3: bytes(Col::expected_s3)?
            .try_into()
            .map_err(|_| bad("expected S3"))?,
        draw_hash: bytes(Col::draw_hash)?,
        draw_response: text(Col::draw_response)?,
        complete_hash: r.try_get(at(Col::complete_hash)).map_err(pg_error)?,
        complete_response: r.try_get(at(Col::complete_response)).map_err(pg_error)?,
        card_s3: r.try_get(at(Col::card_s3)).map_err(pg_error)?,
        card_sw: opt_int(Col::card_sw)?
            .map(|v| num(v, "card SW"))
            .transpose()?,
        resolution: r.try_get(at(Col::resolution)).map_err(pg_error)?,
        expires_at: num(int(Col::expires_at)?, "expiry time")?,
        created_at: num(int(Col::created_at)?, "time")?,
        drawn_at: num(int(Col::drawn_at)?, "time")?,
        debited_at: opt_u64(Col::debited_at, "time")?,
        confirmed_at: opt_u64(Col::confirmed_at, "time")?,
        updated_at: num(int(Col::updated_at)?, "time")?,
    })
}

pub async fn get(
    c: &impl GenericClient,
    merchant_id: &str,
    txn_id: &str,
) -> Result<Option<TxnRow>, PaymentError> {
    static SQL: OnceLock<String> = OnceLock::new();
    let st = c
        .prepare_cached(select(&SQL, "merchant_id = $1 AND txn_id = $2"))
        .await
        .map_err(pg_error)?;
    c.query_opt(&st, &[&merchant_id, &txn_id])
        .await
        .map_err(pg_error)?
        .as_ref()
        .map(txn_row)
        .transpose()
}

pub async fn card_undecided(
    c: &impl GenericClient,
    card: &CardId,
) -> Result<Vec<TxnRow>, PaymentError> {
    static SQL: OnceLock<String> = OnceLock::new();
    let st = c
        .prepare_cached(select(
            &SQL,
            "card_id = $1 AND state IN ('drawn', 'unknown', 'failed') ORDER BY atc",
        ))
        .await
        .map_err(pg_error)?;
    c.query(&st, &[&card.full()])
        .await
        .map_err(pg_error)?
        .iter()
        .map(txn_row)
        .collect()
}

pub async fn order_attempts(
    c: &impl GenericClient,
    merchant_id: &str,
    order_ref: &str,
) -> Result<Vec<(String, TxnState)>, PaymentError> {
    let st = c
        .prepare_cached(
            "SELECT txn_id, state FROM transactions WHERE merchant_id = $1 AND order_ref = $2",
        )
        .await
        .map_err(pg_error)?;
    c.query(&st, &[&merchant_id, &order_ref])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| {
            let s: String = r.get(1);
            Ok((r.get(0), TxnState::parse(&s).ok_or_else(|| bad("state"))?))
        })
        .collect()
}

/// The drawn row and its history entry, in one statement.
const INSERT_DRAWN: &str = "WITH ins AS (
    INSERT INTO transactions (merchant_id, txn_id, order_ref, state, verify_mode, amount, currency,
        exponent, purse, origin, card_id, card_expiry, key_version, atc, card_random,
        balance_before, balance_after, seq, date, time, expected_s3, draw_hash, draw_response,
        expires_at, created_at, drawn_at, updated_at)
    VALUES ($1, $2, $3, 'drawn', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
        $17, $18, $19, $20, $21, $22, $23, $24, $24, $24)
    RETURNING merchant_id, txn_id)
INSERT INTO txn_log (merchant_id, txn_id, event, state, detail, at)
SELECT merchant_id, txn_id, 'draw', 'drawn', $25::text, $24 FROM ins";

/// Insert a freshly drawn transaction with its history entry. The unique
/// constraints answer a second draw of the txn id, of the card's ATC, or of
/// an order with an undecided attempt, from whichever instance. An order's
/// insert is then checked, in the same transaction, against an attempt
/// captured since the service looked (see below).
pub async fn insert_drawn(
    c: &mut Object,
    row: &TxnRow,
) -> Result<Result<(), InsertConflict>, PaymentError> {
    let (amount, currency, exponent, purse) = (
        i64::from(row.amount),
        i64::from(row.currency),
        i64::from(row.exponent),
        i64::from(row.purse.p2()),
    );
    let (key_version, atc, before, after, seq) = (
        i64::from(row.key_version),
        i64::from(row.atc),
        i64::from(row.balance_before),
        i64::from(row.balance_after),
        i64::from(row.seq),
    );
    let (card, expiry, date, time) = (
        row.card_id.full(),
        String::from(row.card_expiry),
        String::from(row.date),
        String::from(row.time),
    );
    let (random, expected) = (row.card_random.to_vec(), row.expected_s3.to_vec());
    let (expires, drawn) = (big(row.expires_at), big(row.drawn_at));
    let detail = format!("card {} atc {}", row.card_id, row.atc);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 25] = [
        &row.merchant_id,
        &row.txn_id,
        &row.order_ref,
        &row.verify_mode.as_str(),
        &amount,
        &currency,
        &exponent,
        &purse,
        &row.origin,
        &card,
        &expiry,
        &key_version,
        &atc,
        &random,
        &before,
        &after,
        &seq,
        &date,
        &time,
        &expected,
        &row.draw_hash,
        &row.draw_response,
        &expires,
        &drawn,
        &detail,
    ];
    let conflict = |e: tokio_postgres::Error| match unique_violation(&e) {
        Some("transactions_card_atc") => Ok(Err(InsertConflict::CardAtc)),
        Some("transactions_open_order") => Ok(Err(InsertConflict::OpenOrder)),
        Some("transactions_txn_id") => Ok(Err(InsertConflict::TxnId)),
        _ => Err(pg_error(e)),
    };
    if row.order_ref.is_empty() {
        // One statement: atomic on its own.
        let st = c.prepare_cached(INSERT_DRAWN).await.map_err(pg_error)?;
        return match c.execute(&st, &params).await {
            Ok(_) => Ok(Ok(())),
            Err(e) => conflict(e),
        };
    }
    // The service saw no captured attempt at this order before the security
    // module drew. One captured since must stop this draw: checked after the
    // insert, by a later statement of the same transaction. Under READ
    // COMMITTED that statement sees every commit before it; and a capture
    // cannot commit after our insert, because the attempt it captures was then
    // undecided, so the open-order index would have refused (or held) the insert.
    let tx = c.transaction().await.map_err(pg_error)?;
    let st = tx.prepare_cached(INSERT_DRAWN).await.map_err(pg_error)?;
    if let Err(e) = tx.execute(&st, &params).await {
        let _ = tx.rollback().await;
        return conflict(e);
    }
    let st = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM transactions WHERE merchant_id = $1 AND order_ref = $2
                AND txn_id <> $3 AND state IN ('debited', 'confirmed', 'settled'))",
        )
        .await
        .map_err(pg_error)?;
    let paid: bool = tx
        .query_one(&st, &[&row.merchant_id, &row.order_ref, &row.txn_id])
        .await
        .map_err(pg_error)?
        .get(0);
    if paid {
        tx.rollback().await.map_err(pg_error)?;
        return Ok(Err(InsertConflict::OrderPaid));
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(Ok(()))
}

/// One compare-and-set state change with its history entry and webhook, in
/// one statement; per kind, built once.
fn transition_sql(kind: TransitionKind) -> &'static str {
    static SQL: OnceLock<[String; 5]> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        TransitionKind::ALL.map(|k| {
            let stamp = k.stamp().map(|c| format!(", {c} = $3")).unwrap_or_default();
            format!(
                "WITH up AS (
                    UPDATE transactions SET state = $4::text, updated_at = $3{stamp},
                        complete_hash = COALESCE($5::bytea, complete_hash),
                        complete_response = COALESCE($6::text, complete_response),
                        card_s3 = COALESCE($7::bytea, card_s3),
                        card_sw = COALESCE($8::bigint, card_sw),
                        resolution = COALESCE($9::text, resolution)
                    WHERE merchant_id = $1 AND txn_id = $2 AND state IN ({})
                    RETURNING merchant_id, txn_id),
                 lg AS (
                    INSERT INTO txn_log (merchant_id, txn_id, event, state, detail, at)
                    SELECT merchant_id, txn_id, $10::text, $4::text, $11::text, $3 FROM up),
                 ob AS ({})
                 SELECT count(*) FROM up",
                k.leaves_sql(),
                outbox::insert_from_up("merchant_id", 3, 12),
            )
        })
    });
    &all[kind as usize]
}

/// Apply state changes; one statement for one change, a transaction for more.
pub async fn apply(c: &mut Object, changes: &[Transition]) -> Result<Vec<bool>, PaymentError> {
    // JSON before the connection's round trips.
    let webhooks: Vec<Option<Queued>> = changes
        .iter()
        .map(|t| t.webhook.as_ref().map(Queued::merchant).transpose())
        .collect::<Result<_, _>>()?;
    if let [t] = changes {
        return Ok(vec![apply_one(&*c, t, webhooks[0].as_ref()).await?]);
    }
    let tx = c.transaction().await.map_err(pg_error)?;
    let mut applied = Vec::with_capacity(changes.len());
    for (t, w) in changes.iter().zip(&webhooks) {
        applied.push(apply_one(&tx, t, w.as_ref()).await?);
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(applied)
}

async fn apply_one(
    c: &impl GenericClient,
    t: &Transition,
    webhook: Option<&Queued>,
) -> Result<bool, PaymentError> {
    let (hash, resp) = match &t.complete {
        Some((h, r)) => (Some(h.as_slice()), Some(r.as_str())),
        None => (None, None),
    };
    let s3 = t.card_s3.map(|s| s.to_vec());
    let sw = t.card_sw.map(i64::from);
    let now = big(t.now);
    let (event_id, kind, body) = outbox::columns(webhook);
    let st = c
        .prepare_cached(transition_sql(t.kind()))
        .await
        .map_err(pg_error)?;
    let n: i64 = c
        .query_one(
            &st,
            &[
                &t.merchant_id,
                &t.txn_id,
                &now,
                &t.to().as_str(),
                &hash,
                &resp,
                &s3,
                &sw,
                &t.resolution,
                &t.event,
                &t.detail,
                &event_id,
                &kind,
                &body,
                &"merchant",
            ],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    Ok(n == 1)
}

/// `drawn` past expiry + grace → `unknown`, with history. Rows another
/// instance's sweep holds are skipped (it moves them).
pub async fn sweep_expired(
    c: &impl GenericClient,
    now: u64,
    grace: u64,
) -> Result<usize, PaymentError> {
    super::sweep(
        c,
        "WITH due AS (
                SELECT merchant_id, txn_id FROM transactions
                WHERE state = 'drawn' AND expires_at < $2 FOR UPDATE SKIP LOCKED),
             up AS (
                UPDATE transactions t SET state = 'unknown', updated_at = $1
                FROM due WHERE t.merchant_id = due.merchant_id AND t.txn_id = due.txn_id
                    AND t.state = 'drawn'
                RETURNING t.merchant_id, t.txn_id),
             lg AS (
                INSERT INTO txn_log (merchant_id, txn_id, event, state, detail, at)
                SELECT merchant_id, txn_id, 'sweep', 'unknown', $3::text, $1 FROM up)
             SELECT count(*) FROM up",
        now,
        grace,
        "session expired without an answer from the card: waiting for its log",
    )
    .await
}

/// A transaction with its history and the shopper's reports (three queries,
/// pipelined on one connection).
pub async fn view(
    c: &Object,
    key: &CardRefKey,
    merchant_id: &str,
    txn_id: &str,
) -> Result<TxnView, PaymentError> {
    let log_st = c
        .prepare_cached(
            "SELECT event, state, detail, at FROM txn_log WHERE merchant_id = $1 AND txn_id = $2 ORDER BY id",
        )
        .await
        .map_err(pg_error)?;
    let rep_st = c
        .prepare_cached(
            "SELECT page_origin, reason, at FROM suspicious_reports WHERE merchant_id = $1 AND txn_id = $2 ORDER BY id",
        )
        .await
        .map_err(pg_error)?;
    let (row, log, reports) = tokio::try_join!(
        get(c, merchant_id, txn_id),
        async {
            c.query(&log_st, &[&merchant_id, &txn_id])
                .await
                .map_err(pg_error)
        },
        async {
            c.query(&rep_st, &[&merchant_id, &txn_id])
                .await
                .map_err(pg_error)
        },
    )?;
    let row = row.ok_or(PaymentError::NotFound)?;
    let log = super::log_entries(&log)?;
    let reports = reports
        .iter()
        .map(|r| {
            Ok(SuspiciousEntry {
                page_origin: r.try_get("page_origin").map_err(pg_error)?,
                reason: r.try_get("reason").map_err(pg_error)?,
                at: num(r.try_get("at").map_err(pg_error)?, "time")?,
            })
        })
        .collect::<Result<Vec<_>, PaymentError>>()?;
    Ok(row.into_view(key, log, reports))
}

pub async fn recovery_list(
    c: &impl GenericClient,
    key: &CardRefKey,
    cutoff: u64,
    merchant: Option<&str>,
) -> Result<Vec<RecoveryItem>, PaymentError> {
    let st = c
        .prepare_cached(
            "SELECT merchant_id, txn_id, state, amount, currency, card_id, atc, seq, drawn_at
             FROM transactions WHERE (state = 'unknown' OR (state = 'drawn' AND drawn_at <= $1))
               AND ($2::text IS NULL OR merchant_id = $2) ORDER BY drawn_at",
        )
        .await
        .map_err(pg_error)?;
    c.query(&st, &[&big(cutoff), &merchant])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| {
            let state: String = r.get("state");
            let merchant_id: String = r.get("merchant_id");
            let card = CardId::parse(r.get::<_, &str>("card_id")).map_err(|_| bad("card"))?;
            Ok(RecoveryItem {
                card_ref: key.card_ref(&merchant_id, &card),
                merchant_id,
                txn_id: r.get("txn_id"),
                state: TxnState::parse(&state).ok_or_else(|| bad("state"))?,
                amount: num(r.get("amount"), "amount")?,
                currency: num(r.get("currency"), "currency")?,
                card: card.masked(),
                atc: num(r.get("atc"), "atc")?,
                seq: num(r.get("seq"), "seq")?,
                drawn_at: num(r.get("drawn_at"), "time")?,
            })
        })
        .collect()
}

/// Shopper reports, newest first, with the card of the transaction if it was drawn.
pub async fn suspicious_list(
    c: &impl GenericClient,
    key: &CardRefKey,
    merchant: Option<&str>,
    page: ReportsPage,
) -> Result<SuspiciousList, PaymentError> {
    let st = c
        .prepare_cached(
            "SELECT s.id, s.merchant_id, s.txn_id, s.page_origin, s.reason, s.at, t.card_id
             FROM suspicious_reports s
             LEFT JOIN transactions t ON t.merchant_id = s.merchant_id AND t.txn_id = s.txn_id
             WHERE ($1::text IS NULL OR s.merchant_id = $1) AND ($2::bigint IS NULL OR s.id < $2)
             ORDER BY s.id DESC LIMIT $3",
        )
        .await
        .map_err(pg_error)?;
    let rows = c
        .query(
            &st,
            &[&merchant, &page.before, &(i64::from(page.limit) + 1)],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| {
            let merchant_id: String = r.get("merchant_id");
            let card = match r.get::<_, Option<&str>>("card_id") {
                Some(id) => Some(CardId::parse(id).map_err(|_| bad("card"))?),
                None => None,
            };
            let entry = SuspiciousListEntry {
                card: card.as_ref().map(CardId::masked).unwrap_or_default(),
                card_ref: card
                    .map(|c| key.card_ref(&merchant_id, &c))
                    .unwrap_or_default(),
                merchant_id,
                txn_id: r.get("txn_id"),
                page_origin: r.get("page_origin"),
                reason: r.get("reason"),
                at: num(r.get("at"), "time")?,
            };
            Ok((r.get::<_, i64>("id"), entry))
        })
        .collect::<Result<_, PaymentError>>()?;
    Ok(super::super::reports_page(rows, page))
}

pub async fn captured_total(
    c: &impl GenericClient,
    merchant_id: &str,
) -> Result<u64, PaymentError> {
    let st = c
        .prepare_cached(
            "SELECT COALESCE(SUM(amount), 0)::bigint FROM transactions
             WHERE merchant_id = $1 AND state IN ('debited', 'confirmed', 'settled')",
        )
        .await
        .map_err(pg_error)?;
    let v: i64 = c
        .query_one(&st, &[&merchant_id])
        .await
        .map_err(pg_error)?
        .get(0);
    num(v, "sum")
}
