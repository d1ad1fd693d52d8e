//! Webhooks waiting for delivery. A row is written in the same database
//! transaction as the state change it reports, so a change is never lost
//! and never reported without having happened. Deliverers lease due rows
//! (so several deliverers, or instances, never send one at the same time),
//! and reschedule them with backoff until the merchant acknowledges.

use purse::webhook::WebhookEvent;
use rusqlite::{params, Connection};

use super::sqlite::exec;
use crate::error::PaymentError;

/// A fresh event id: `evt_` and 32 random hex digits.
pub fn new_event_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("OS random source");
    format!("evt_{}", hex::encode(b))
}

pub fn enqueue(c: &Connection, ev: &WebhookEvent, now: u64) -> Result<(), PaymentError> {
    enqueue_to(
        c,
        Audience::Merchant,
        &ev.event_id,
        &ev.merchant_id,
        &ev.txn_id,
        ev.kind.as_str(),
        ev,
        now,
    )
}

/// Who a webhook goes to: a merchant (purchases) or a bank (loads). The
/// recipient's id is kept in the `merchant_id` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Merchant,
    Bank,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Merchant => "merchant",
            Self::Bank => "bank",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "merchant" => Some(Self::Merchant),
            "bank" => Some(Self::Bank),
            _ => None,
        }
    }
}

/// Queue any event body for a recipient.
#[allow(clippy::too_many_arguments)]
pub fn enqueue_to<T: serde::Serialize>(
    c: &Connection,
    audience: Audience,
    event_id: &str,
    recipient: &str,
    txn_id: &str,
    kind: &str,
    body: &T,
    now: u64,
) -> Result<(), PaymentError> {
    let body = serde_json::to_string(body).map_err(|e| PaymentError::Internal(e.to_string()))?;
    exec(
        c,
        "INSERT INTO webhook_outbox (event_id, merchant_id, txn_id, kind, body, created_at, next_attempt_at, audience)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
        params![event_id, recipient, txn_id, kind, body, now, audience.as_str()],
    )?;
    Ok(())
}

/// One leased delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub id: i64,
    pub event_id: String,
    /// Merchant or bank.
    pub audience: Audience,
    /// The recipient's id (merchant id, or bank id for loads).
    pub merchant_id: String,
    pub body: String,
    pub attempts: u32,
}

/// Lease up to `limit` due events for `lease_secs`.
pub fn lease_due(
    c: &Connection,
    now: u64,
    lease_secs: u64,
    limit: u32,
) -> Result<Vec<Due>, PaymentError> {
    let mut stmt = c.prepare_cached(
        "UPDATE webhook_outbox SET lease_until = ?2
         WHERE id IN (SELECT id FROM webhook_outbox
                      WHERE delivered_at IS NULL AND next_attempt_at <= ?1
                        AND (lease_until IS NULL OR lease_until <= ?1)
                      ORDER BY next_attempt_at LIMIT ?3)
         RETURNING id, event_id, merchant_id, body, attempts, audience",
    )?;
    let rows = stmt.query_map(params![now, now + lease_secs, limit], |r| {
        let audience: String = r.get("audience")?;
        Ok(Due {
            id: r.get("id")?,
            event_id: r.get("event_id")?,
            audience: Audience::parse(&audience).unwrap_or(Audience::Merchant),
            merchant_id: r.get("merchant_id")?,
            body: r.get("body")?,
            attempts: r.get("attempts")?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn mark_delivered(c: &Connection, id: i64, now: u64) -> Result<(), PaymentError> {
    exec(
        c,
        "UPDATE webhook_outbox SET delivered_at = ?2, attempts = attempts + 1, lease_until = NULL, last_error = NULL WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

pub fn reschedule(c: &Connection, id: i64, next_at: u64, error: &str) -> Result<(), PaymentError> {
    exec(
        c,
        "UPDATE webhook_outbox SET next_attempt_at = ?2, attempts = attempts + 1, lease_until = NULL, last_error = ?3 WHERE id = ?1",
        params![id, next_at, error],
    )?;
    Ok(())
}

/// Counts for the operator: (waiting, delivered).
pub fn counts(c: &Connection) -> Result<(u64, u64), PaymentError> {
    let (w, d): (i64, i64) = c.query_row(
        "SELECT COALESCE(SUM(delivered_at IS NULL), 0), COALESCE(SUM(delivered_at IS NOT NULL), 0) FROM webhook_outbox",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((w as u64, d as u64))
}
