//! The merchant (and operator) API of the payment server: signed server-to-server
//! calls, and what they answer. Declared here once for the server and the
//! merchant kit.
//!
//! # Format
//! ```text
//! GET  /v1/transactions/{txn}            → TxnView
//! POST /v1/transactions/{txn}/confirm    {"balance_after": 750, "s3": "<hex 8>"}? → TxnView
//! GET  /v1/recovery                      → RecoveryList
//! GET  /v1/suspicious[?before=&limit=]   → SuspiciousList (a page, newest first)
//! ```
//! Requests carry `x-cardpay-merchant`, `x-cardpay-timestamp` and
//! `x-cardpay-signature` (see `merchant-kit`'s `auth`), or the operator's bearer token.

use crate::prelude::*;
use serde::{Deserialize, Serialize};

use crate::session::VerifyMode;
use crate::types::PurseId;
use crate::wire::Hex;

/// Transaction states (DESIGN §4): `created → drawn → debited → confirmed →
/// settled`, or `failed`, `reversed`, `unknown` (needs the card's log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnState {
    Created,
    Drawn,
    Debited,
    Confirmed,
    Settled,
    Failed,
    Reversed,
    Unknown,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        Self::Created,
        Self::Drawn,
        Self::Debited,
        Self::Confirmed,
        Self::Settled,
        Self::Failed,
        Self::Reversed,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Drawn => "drawn",
            Self::Debited => "debited",
            Self::Confirmed => "confirmed",
            Self::Settled => "settled",
            Self::Failed => "failed",
            Self::Reversed => "reversed",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// States in which the card's debit is proven (money captured).
    pub fn is_captured(self) -> bool {
        matches!(self, Self::Debited | Self::Confirmed | Self::Settled)
    }

    /// States that still wait for the card's proof one way or the other.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Drawn | Self::Unknown)
    }
}

/// A transaction as the merchant and operator see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnView {
    pub merchant_id: String,
    pub txn_id: String,
    #[serde(default)]
    pub order_ref: String,
    pub state: TxnState,
    pub verify_mode: VerifyMode,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    pub origin: String,
    /// Masked card id.
    pub card: String,
    /// The card's reference for this merchant (32 hex digits, stable, not the
    /// card number; empty from an older server). See docs/protocol.md.
    #[serde(default)]
    pub card_ref: String,
    pub atc: u16,
    pub seq: u32,
    pub created_at: u64,
    pub drawn_at: u64,
    pub debited_at: Option<u64>,
    pub confirmed_at: Option<u64>,
    pub updated_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    pub log: Vec<LogEntry>,
    pub suspicious_reports: Vec<SuspiciousEntry>,
}

/// One entry of a transaction's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub event: String,
    pub state: String,
    pub detail: String,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspiciousEntry {
    pub page_origin: String,
    pub reason: String,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspiciousListEntry {
    pub merchant_id: String,
    pub txn_id: String,
    pub page_origin: String,
    pub reason: String,
    pub at: u64,
    /// Masked card id of the transaction, as in [`TxnView`]; empty when the session
    /// was never drawn (the shopper reported at the amount, before any card debit).
    #[serde(default)]
    pub card: String,
    /// The card's reference for this merchant, as in [`TxnView`], [`RecoveryItem`]
    /// and the webhooks, so a merchant can find the card's other purchases; empty
    /// when never drawn (and from an older server).
    #[serde(default)]
    pub card_ref: String,
}

/// One page of shopper reports, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspiciousList {
    pub reports: Vec<SuspiciousListEntry>,
    /// Older reports exist: ask again with `?before=<next>` (an opaque cursor).
    /// Absent on the last page (and from an older server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// A page of [`SuspiciousList`] (`GET /v1/suspicious?before=…&limit=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportsPage {
    /// Only reports older than this cursor (a previous page's `next`).
    pub before: Option<i64>,
    /// At most this many (1..=[`ReportsPage::MAX`]).
    pub limit: u32,
}

impl ReportsPage {
    /// The largest page, and the page size when none is asked.
    pub const MAX: u32 = 1000;
}

impl Default for ReportsPage {
    fn default() -> Self {
        Self {
            before: None,
            limit: Self::MAX,
        }
    }
}

/// A transaction that waits for the card's log (drawn and silent, or unknown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryItem {
    pub merchant_id: String,
    pub txn_id: String,
    pub state: TxnState,
    pub amount: u32,
    pub currency: u16,
    /// Masked card id.
    pub card: String,
    /// The card's reference for this merchant, as in [`TxnView`] and the
    /// webhooks (empty from an older server).
    #[serde(default)]
    pub card_ref: String,
    pub atc: u16,
    pub seq: u32,
    pub drawn_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryList {
    pub transactions: Vec<RecoveryItem>,
}

/// Merchant confirmation: the goods are released. In `client`/`merchant`
/// mode, on a transaction the server has not captured yet, it carries the
/// card's S3, which the server verifies before it captures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    #[serde(default)]
    pub balance_after: Option<u32>,
    #[serde(default)]
    pub s3: Option<Hex>,
}

/// Operator's resolution of a transaction in recovery, from the card's log
/// read some other way (e.g. at the issuer's counter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// The card's newest log records (READ LOG, 37 bytes each).
    #[serde(default)]
    pub log: Vec<Hex>,
    /// The card's current ATC, if known (a later INITIALIZE).
    #[serde(default)]
    pub card_atc: Option<u16>,
}
