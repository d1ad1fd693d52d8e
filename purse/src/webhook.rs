//! Signed webhooks: how the payment server tells a merchant about every state
//! change, so goods never depend on the shopper's page alone.
//!
//! # Format
//! ```text
//! POST <merchant webhook_url>
//! cardpay-event-id:  evt_<32 hex>
//! cardpay-timestamp: <unix seconds>
//! cardpay-signature: v1=<hex HMAC-SHA256(K_wh, "cardpay/webhook/v1\n" timestamp "\n" event id "\n" body)>
//! content-type: application/json
//!
//! {"event_id": "evt_…", "type": "captured", "created_at": …, "merchant_id": …, "txn_id": …, …}
//! ```
//! `K_wh = HKDF-SHA256(K_mp, salt = "", info = "cardpay/webhook" || merchant id)`.
//! A 2xx answer acknowledges; anything else is retried with backoff until it is.
//! The receiver checks the signature in constant time, refuses a timestamp
//! more than [`MAX_AGE_SECS`] from its clock, and ignores an event id it has
//! already processed (deliveries are at least once).

use crate::prelude::*;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::merchant_api::TxnState;
use crate::session::Key32;
use crate::types::PurseId;

pub const HEADER_EVENT_ID: &str = "cardpay-event-id";
pub const HEADER_TIMESTAMP: &str = "cardpay-timestamp";
pub const HEADER_SIGNATURE: &str = "cardpay-signature";
/// How far a webhook's timestamp may be from the receiver's clock.
pub const MAX_AGE_SECS: u64 = 300;

/// What happened to a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The card's S3 was verified: the money is the merchant's.
    Captured,
    /// The card refused, or the card's log proved no debit: nothing was taken.
    Failed,
    /// A transaction in recovery was decided by the card's log (`state` says how).
    Recovered,
    /// The shopper said "this is not my purchase".
    Suspicious,
    /// Cleared and paid out.
    Settled,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Captured => "captured",
            Self::Failed => "failed",
            Self::Recovered => "recovered",
            Self::Suspicious => "suspicious",
            Self::Settled => "settled",
        }
    }
}

/// The body of one webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub created_at: u64,
    pub merchant_id: String,
    pub txn_id: String,
    #[serde(default)]
    pub order_ref: String,
    /// The transaction's state after the change.
    pub state: TxnState,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    /// Masked card id (empty before a draw).
    #[serde(default)]
    pub card: String,
    /// The card's reference for this merchant (32 hex digits, stable, not the
    /// card number; empty from an older server). See docs/protocol.md.
    #[serde(default)]
    pub card_ref: String,
    #[serde(default)]
    pub atc: u16,
    #[serde(default)]
    pub detail: String,
}

/// `K_wh` of a merchant.
pub fn webhook_key(k_mp: &Key32, merchant_id: &str) -> Key32 {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(b""), k_mp.bytes());
    let mut info = b"cardpay/webhook".to_vec();
    info.extend_from_slice(merchant_id.as_bytes());
    let mut out = [0u8; 32];
    hk.expand(&info, &mut out)
        .expect("32 bytes is a valid HKDF length");
    Key32::new(out)
}

fn mac(k_wh: &Key32, timestamp: u64, event_id: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut m =
        <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(k_wh.bytes()).expect("any key length");
    m.update(format!("cardpay/webhook/v1\n{timestamp}\n{event_id}\n").as_bytes());
    m.update(body);
    m
}

/// The `cardpay-signature` header value.
pub fn sign(k_wh: &Key32, timestamp: u64, event_id: &str, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(k_wh, timestamp, event_id, body).finalize().into_bytes())
    )
}

/// Why a webhook is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("missing or malformed webhook headers")]
    Headers,
    #[error("webhook signature does not verify")]
    Signature,
    #[error("webhook timestamp outside the {MAX_AGE_SECS} s window")]
    Stale,
    #[error("webhook body is not an event: {0}")]
    Body(String),
    #[error("event id in the body differs from the header")]
    EventId,
}

/// Receiver side: check the signature (constant time) and the timestamp
/// window, then parse the event. Deduplicate by `event_id` after this.
#[cfg(not(target_arch = "wasm32"))]
pub fn verify(
    k_wh: &Key32,
    event_id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: u64,
) -> Result<WebhookEvent, WebhookError> {
    verify_signature(k_wh, event_id, timestamp, signature, body, now)?;
    let ev: WebhookEvent =
        serde_json::from_slice(body).map_err(|e| WebhookError::Body(e.to_string()))?;
    if ev.event_id != event_id {
        return Err(WebhookError::EventId);
    }
    Ok(ev)
}

/// The signature (constant time) and timestamp window of any webhook body
/// (merchants' [`WebhookEvent`]s, banks' load events).
pub fn verify_signature(
    k_wh: &Key32,
    event_id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: u64,
) -> Result<(), WebhookError> {
    let ts: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookError::Headers)?;
    let sig = signature
        .trim()
        .strip_prefix("v1=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(WebhookError::Headers)?;
    mac(k_wh, ts, event_id, body)
        .verify_slice(&sig)
        .map_err(|_| WebhookError::Signature)?;
    if ts.abs_diff(now) > MAX_AGE_SECS {
        return Err(WebhookError::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_without_card_ref_still_parses() {
        let mut v = serde_json::to_value(event()).unwrap();
        v.as_object_mut().unwrap().remove("card_ref");
        let ev: WebhookEvent = serde_json::from_value(v).unwrap();
        assert_eq!((ev.card.as_str(), ev.card_ref.as_str()), ("…0001", ""));
    }

    fn event() -> WebhookEvent {
        WebhookEvent {
            event_id: "evt_1".into(),
            kind: EventKind::Captured,
            created_at: 1000,
            merchant_id: "shop".into(),
            txn_id: "T-1".into(),
            order_ref: "o-1".into(),
            state: TxnState::Debited,
            amount: 250,
            currency: 978,
            exponent: 2,
            purse: PurseId::Money,
            card: "…0001".into(),
            card_ref: "00112233445566778899aabbccddeeff".into(),
            atc: 3,
            detail: String::new(),
        }
    }

    #[test]
    fn signed_events_verify_and_tampering_is_refused() {
        let k = webhook_key(&Key32::new([1; 32]), "shop");
        assert_ne!(
            k,
            webhook_key(&Key32::new([1; 32]), "other"),
            "bound to the merchant"
        );
        let body = serde_json::to_vec(&event()).unwrap();
        let sig = sign(&k, 1000, "evt_1", &body);
        assert_eq!(verify(&k, "evt_1", "1000", &sig, &body, 1100), Ok(event()));
        let mut bad = body.clone();
        bad[10] ^= 1;
        assert_eq!(
            verify(&k, "evt_1", "1000", &sig, &bad, 1100),
            Err(WebhookError::Signature)
        );
        assert_eq!(
            verify(&k, "evt_2", "1000", &sig, &body, 1100),
            Err(WebhookError::Signature),
            "the event id is signed"
        );
        assert_eq!(
            verify(&k, "evt_1", "1001", &sig, &body, 1100),
            Err(WebhookError::Signature),
            "the timestamp is signed"
        );
        assert_eq!(
            verify(&k, "evt_1", "1000", &sig, &body, 1000 + MAX_AGE_SECS + 1),
            Err(WebhookError::Stale)
        );
        let other = webhook_key(&Key32::new([2; 32]), "shop");
        assert_eq!(
            verify(&other, "evt_1", "1000", &sig, &body, 1000),
            Err(WebhookError::Signature)
        );
        assert_eq!(
            verify(&k, "evt_1", "1000", "deadbeef", &body, 1000),
            Err(WebhookError::Headers)
        );
    }
}
