//! The JSON the widget exchanges with the payment server and the merchant page.
//! The server messages are `purse::wire` (re-exported here).
//!
//! The server messages follow DESIGN §4; bodies that travel through the shopper's
//! machine are sealed under TSK with `purse::session::seal` and a label + txn id as
//! associated data, so nothing can be moved to another transaction or message kind.

use purse::session::Session;
use serde::{Deserialize, Serialize};

/// What the merchant page renders for the widget (`Cardpay.mount(el, {session: …})`).
#[derive(Clone, Serialize, Deserialize)]
pub struct Bundle {
    pub session: Session,
    /// HMAC-SHA256 over the canonical session and ETSK (hex in JSON).
    pub session_mac: Hex,
    /// `AES-256-GCM_DK(TSK)` (hex in JSON).
    #[serde(alias = "ETSK")]
    pub etsk: Hex,
    /// hex TSK: the widget's key for this one transaction.
    #[serde(alias = "TSK")]
    pub tsk: String,
}

impl core::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bundle")
            .field("session", &self.session)
            .field("tsk", &"<redacted>")
            .finish()
    }
}

pub use purse::wire::*;

/// What the receipt screen shows (from result C, or from the card in the one-round-trip modes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub txn_id: String,
    pub merchant_name: String,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub balance_after: u32,
    /// Card number, masked.
    #[serde(default)]
    pub card: String,
    /// `YYYYMMDD HHMMSS` of the debit, when known.
    #[serde(default)]
    pub when: String,
}

pub const PATH_DRAW: &str = "/v1/purchases/draw";
pub const PATH_COMPLETE: &str = "/v1/purchases/complete";
pub const PATH_SUSPICIOUS: &str = "/v1/purchases/suspicious";
