//! The webhook outbox on PostgreSQL. Deliverers of several instances lease
//! due rows with `FOR UPDATE SKIP LOCKED`: a row one of them is leasing is
//! skipped by the others, and a leased row is not due again until its lease
//! runs out.

use deadpool_postgres::GenericClient;
use purse::webhook::WebhookEvent;

use super::{big, num, pg_error};
use crate::error::PaymentError;
use crate::store::outbox::Audience;
use crate::store::Due;

/// An event ready to queue: its id, kind, recipient and JSON body.
pub(crate) struct Queued {
    pub event_id: String,
    pub kind: String,
    pub recipient: String,
    pub txn_id: String,
    pub body: String,
    pub audience: Audience,
}

impl Queued {
    pub fn merchant(ev: &WebhookEvent) -> Result<Self, PaymentError> {
        Self::new(
            Audience::Merchant,
            &ev.event_id,
            &ev.merchant_id,
            &ev.txn_id,
            ev.kind.as_str(),
            ev,
        )
    }

    pub fn new<T: serde::Serialize>(
        audience: Audience,
        event_id: &str,
        recipient: &str,
        txn_id: &str,
        kind: &str,
        body: &T,
    ) -> Result<Self, PaymentError> {
        Ok(Self {
            event_id: event_id.into(),
            kind: kind.into(),
            recipient: recipient.into(),
            txn_id: txn_id.into(),
            body: serde_json::to_string(body).map_err(|e| PaymentError::Internal(e.to_string()))?,
            audience,
        })
    }
}

/// The (event id, kind, body) parameters of [`insert_from_up`]: all NULL
/// when there is no webhook (the insert then inserts nothing).
pub(crate) fn columns(q: Option<&Queued>) -> (Option<&str>, Option<&str>, Option<&str>) {
    match q {
        Some(q) => (Some(&q.event_id), Some(&q.kind), Some(&q.body)),
        None => (None, None, None),
    }
}

/// The CTE body that queues a webhook for each row of `up` (the changed row,
/// whose `recipient` column names who gets it): event id, kind, body and
/// audience are parameters `$first..$first+3`, the time `$now`.
pub(crate) fn insert_from_up(recipient: &str, now: u8, first: u8) -> String {
    let (e, k, b, a) = (first, first + 1, first + 2, first + 3);
    format!(
        "INSERT INTO webhook_outbox (event_id, merchant_id, txn_id, kind, body, created_at,
            next_attempt_at, audience)
         SELECT ${e}::text, {recipient}, txn_id, ${k}::text, ${b}::text, ${now}, ${now}, ${a}::text
         FROM up WHERE ${e}::text IS NOT NULL"
    )
}

pub(crate) async fn enqueue(
    c: &impl GenericClient,
    q: &Queued,
    now: u64,
) -> Result<(), PaymentError> {
    let st = c
        .prepare_cached(
            "INSERT INTO webhook_outbox (event_id, merchant_id, txn_id, kind, body, created_at, next_attempt_at, audience)
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
        )
        .await
        .map_err(pg_error)?;
    c.execute(
        &st,
        &[
            &q.event_id,
            &q.recipient,
            &q.txn_id,
            &q.kind,
            &q.body,
            &big(now),
            &q.audience.as_str(),
        ],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// Lease up to `limit` due events for `lease_secs`.
pub async fn lease_due(
    c: &impl GenericClient,
    now: u64,
    lease_secs: u64,
    limit: u32,
) -> Result<Vec<Due>, PaymentError> {
    let st = c
        .prepare_cached(
            "UPDATE webhook_outbox SET lease_until = $2
             WHERE id IN (SELECT id FROM webhook_outbox
                          WHERE delivered_at IS NULL AND next_attempt_at <= $1
                            AND (lease_until IS NULL OR lease_until <= $1)
                          ORDER BY next_attempt_at LIMIT $3
                          FOR UPDATE SKIP LOCKED)
             RETURNING id, event_id, merchant_id, body, attempts, audience",
        )
        .await
        .map_err(pg_error)?;
    c.query(&st, &[&big(now), &big(now + lease_secs), &i64::from(limit)])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| {
            let audience: String = r.get("audience");
            Ok(Due {
                id: r.get("id"),
                event_id: r.get("event_id"),
                audience: Audience::parse(&audience).unwrap_or(Audience::Merchant),
                merchant_id: r.get("merchant_id"),
                body: r.get("body"),
                attempts: num(r.get("attempts"), "attempts")?,
            })
        })
        .collect()
}

pub async fn mark_delivered(c: &impl GenericClient, id: i64, now: u64) -> Result<(), PaymentError> {
    let st = c
        .prepare_cached(
            "UPDATE webhook_outbox SET delivered_at = $2, attempts = attempts + 1, lease_until = NULL,
                last_error = NULL WHERE id = $1",
        )
        .await
        .map_err(pg_error)?;
    c.execute(&st, &[&id, &big(now)]).await.map_err(pg_error)?;
    Ok(())
}

pub async fn reschedule(
    c: &impl GenericClient,
    id: i64,
    next_at: u64,
    error: &str,
) -> Result<(), PaymentError> {
    let st = c
        .prepare_cached(
            "UPDATE webhook_outbox SET next_attempt_at = $2, attempts = attempts + 1, lease_until = NULL,
                last_error = $3 WHERE id = $1",
        )
        .await
        .map_err(pg_error)?;
    c.execute(&st, &[&id, &big(next_at), &error])
        .await
        .map_err(pg_error)?;
    Ok(())
}
