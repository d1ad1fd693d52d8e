//! The bank's side of the load server: signed server-to-server calls, the
//! load states, and the signed webhooks a bank receives. Declared once here
//! for the load server, the bank kit and banks' backends.
//!
//! # Format
//! ```text
//! GET  /v1/bank/loads/{txn}          → LoadView
//! POST /v1/bank/loads/{txn}/void     → LoadView   (a load never drawn becomes `voided`: it can never be drawn)
//! ```
//! Requests carry `x-cardpay-bank`, `x-cardpay-timestamp` and
//! `x-cardpay-signature` = hex HMAC-SHA256(K_bl,
//! `"cardpay/bank-api/v1\n" method "\n" path "\n" timestamp "\n" hex(SHA-256(body))`).
//!
//! Webhooks (`POST <bank webhook_url>`) carry a [`LoadEvent`] signed exactly
//! as merchants' webhooks ([`crate::webhook`]), under
//! `K_wh = HKDF-SHA256(K_bl, salt = "", info = "cardpay/webhook" || bank id)`.

use crate::prelude::*;
use serde::{Deserialize, Serialize};

use crate::types::PurseId;
// The receiver side (verify_load_event) is native only: a bank's server, not the wasm.
#[cfg(not(target_arch = "wasm32"))]
use crate::{
    session::Key32,
    webhook::{self, WebhookError},
};

/// States of a load: `drawn → credited → settled`, or `failed` (the card
/// proved it was not credited), `voided` (the bank voided it before any
/// draw), `unknown` (drawn, silent past its expiry: the card's next use decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadState {
    Drawn,
    Credited,
    Settled,
    Failed,
    Voided,
    Unknown,
}

impl LoadState {
    pub const ALL: [LoadState; 6] = [
        Self::Drawn,
        Self::Credited,
        Self::Settled,
        Self::Failed,
        Self::Voided,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drawn => "drawn",
            Self::Credited => "credited",
            Self::Settled => "settled",
            Self::Failed => "failed",
            Self::Voided => "voided",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The card was credited: the bank debits the account.
    pub fn is_credited(self) -> bool {
        matches!(self, Self::Credited | Self::Settled)
    }

    /// The card was not and can no longer be credited: the bank releases.
    pub fn is_not_credited(self) -> bool {
        matches!(self, Self::Failed | Self::Voided)
    }

    /// Still waiting for the card's proof.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Drawn | Self::Unknown)
    }
}

/// A load as the bank (and the operator) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadView {
    pub bank_id: String,
    pub txn_id: String,
    #[serde(default)]
    pub account_ref: String,
    pub state: LoadState,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    /// Masked card id (empty for a voided load).
    pub card: String,
    /// The card's reference for this bank (32 hex digits, stable, not the
    /// card number; empty before a draw or from an older server).
    #[serde(default)]
    pub card_ref: String,
    pub atc: u16,
    pub created_at: u64,
    pub updated_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    pub log: Vec<crate::merchant_api::LogEntry>,
}

/// What happened to a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadEventKind {
    /// The card was credited (proven): debit the account.
    Credited,
    /// The card proved it was not credited: release the hold.
    NotCredited,
    /// The bank voided a load never drawn.
    Voided,
}

impl LoadEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Credited => "credited",
            Self::NotCredited => "not_credited",
            Self::Voided => "voided",
        }
    }
}

/// The body of one webhook delivery to a bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadEvent {
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: LoadEventKind,
    pub created_at: u64,
    pub bank_id: String,
    pub txn_id: String,
    #[serde(default)]
    pub account_ref: String,
    pub state: LoadState,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    #[serde(default)]
    pub card: String,
    /// The card's reference for this bank (32 hex digits, stable, not the
    /// card number; empty before a draw or from an older server).
    #[serde(default)]
    pub card_ref: String,
    #[serde(default)]
    pub atc: u16,
    #[serde(default)]
    pub detail: String,
}

/// Receiver side: check the signature and timestamp ([`webhook::verify_signature`]),
/// then parse the event. Deduplicate by `event_id` after this.
#[cfg(not(target_arch = "wasm32"))]
pub fn verify_load_event(
    k_wh: &Key32,
    event_id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: u64,
) -> Result<LoadEvent, WebhookError> {
    webhook::verify_signature(k_wh, event_id, timestamp, signature, body, now)?;
    let ev: LoadEvent =
        serde_json::from_slice(body).map_err(|e| WebhookError::Body(e.to_string()))?;
    if ev.event_id != event_id {
        return Err(WebhookError::EventId);
    }
    Ok(ev)
}

/// Request signing of the bank API (both ends): [`crate::session::request_auth`]
/// under `K_bl` with the label `cardpay/bank-api/v1`.
pub mod auth {
    use crate::prelude::*;
    use crate::session::{request_auth, Key32};

    pub use request_auth::{HEADER_SIGNATURE, HEADER_TIMESTAMP, MAX_SKEW_SECS};
    pub const HEADER_BANK: &str = "x-cardpay-bank";
    const LABEL: &str = "cardpay/bank-api/v1";

    /// The three headers of a request by `bank_id` under `K_bl`.
    pub fn sign(
        bank_id: &str,
        k_bl: &Key32,
        method: &str,
        path: &str,
        ts: u64,
        body: &[u8],
    ) -> [(&'static str, String); 3] {
        [
            (HEADER_BANK, bank_id.to_string()),
            (HEADER_TIMESTAMP, ts.to_string()),
            (
                HEADER_SIGNATURE,
                request_auth::signature(LABEL, k_bl, method, path, ts, body),
            ),
        ]
    }

    /// Server side: check a signature (constant time) and the timestamp window.
    pub fn verify(
        k_bl: &Key32,
        method: &str,
        path: &str,
        ts: u64,
        now: u64,
        body: &[u8],
        sig_hex: &str,
    ) -> bool {
        request_auth::verify(LABEL, k_bl, method, path, ts, now, body, sig_hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_roundtrip_and_classes() {
        for s in LoadState::ALL {
            assert_eq!(LoadState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            // Exactly one class, or open.
            let classes = [s.is_credited(), s.is_not_credited(), s.is_open()];
            assert_eq!(classes.iter().filter(|c| **c).count(), 1, "{s:?}");
        }
    }

    #[test]
    fn bank_requests_are_signed_over_method_path_time_and_body() {
        let k = Key32::new([7; 32]);
        let [_, _, (_, sig)] = auth::sign("bank", &k, "POST", "/v1/bank/loads/L/void", 1000, b"");
        assert!(auth::verify(
            &k,
            "POST",
            "/v1/bank/loads/L/void",
            1000,
            1010,
            b"",
            &sig
        ));
        assert!(!auth::verify(
            &k,
            "GET",
            "/v1/bank/loads/L/void",
            1000,
            1010,
            b"",
            &sig
        ));
        assert!(!auth::verify(
            &k,
            "POST",
            "/v1/bank/loads/M/void",
            1000,
            1010,
            b"",
            &sig
        ));
        assert!(!auth::verify(
            &k,
            "POST",
            "/v1/bank/loads/L/void",
            1000,
            1010,
            b"x",
            &sig
        ));
        assert!(!auth::verify(
            &k,
            "POST",
            "/v1/bank/loads/L/void",
            1000,
            2000,
            b"",
            &sig
        ));
        assert!(!auth::verify(
            &Key32::new([8; 32]),
            "POST",
            "/v1/bank/loads/L/void",
            1000,
            1010,
            b"",
            &sig
        ));
    }

    #[test]
    fn load_events_verify_only_with_the_banks_key() {
        let k = webhook::webhook_key(&Key32::new([1; 32]), "bank");
        let ev = LoadEvent {
            event_id: "evt_1".into(),
            kind: LoadEventKind::Credited,
            created_at: 1000,
            bank_id: "bank".into(),
            txn_id: "L-1".into(),
            account_ref: "a".into(),
            state: LoadState::Credited,
            amount: 5000,
            currency: 978,
            exponent: 2,
            purse: PurseId::Money,
            card: "…0001".into(),
            card_ref: "00112233445566778899aabbccddeeff".into(),
            atc: 4,
            detail: String::new(),
        };
        let body = serde_json::to_vec(&ev).unwrap();
        let sig = webhook::sign(&k, 1000, "evt_1", &body);
        assert_eq!(
            verify_load_event(&k, "evt_1", "1000", &sig, &body, 1000),
            Ok(ev)
        );
        let other = webhook::webhook_key(&Key32::new([1; 32]), "other-bank");
        assert_eq!(
            verify_load_event(&other, "evt_1", "1000", &sig, &body, 1000),
            Err(WebhookError::Signature)
        );
    }
}
