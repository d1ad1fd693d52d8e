//! "This is not my purchase": the shopper's report, kept for the merchant
//! and the operator even for sessions never drawn.
//!
//! # Format
//! ```text
//! POST /v1/purchases/suspicious
//! {"session": {…}, "session_mac": "<hex>", "etsk": "<hex>",
//!  "report": "<SuspiciousReport sealed under TSK, label suspicious>"}
//! → {"txn_id": "T-1", "recorded": true}
//! ```

use crate::prelude::*;
use serde::{Deserialize, Serialize};

use crate::session::{label, Session};
use crate::wire::{Hex, Sealed};

/// Body of `POST /v1/purchases/suspicious`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspiciousEnvelope {
    pub session: Session,
    pub session_mac: Hex,
    pub etsk: Hex,
    /// A [`SuspiciousReport`] sealed under TSK (label `suspicious`).
    pub report: Hex,
}

/// The shopper's report, sealed under TSK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspiciousReport {
    pub txn_id: String,
    /// Origin of the page that asked for the payment, as the browser reported it.
    pub page_origin: String,
    /// Free text from the shopper (at most 500 characters are kept).
    #[serde(default)]
    pub reason: String,
}

crate::json::lite::encode_struct!(SuspiciousReport {
    txn_id,
    page_origin,
    reason,
});

impl Sealed for SuspiciousReport {
    const LABEL: &'static str = label::SUSPICIOUS;
    fn txn_id(&self) -> &str {
        &self.txn_id
    }
}

/// Answer of `POST /v1/purchases/suspicious`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspiciousAck {
    pub txn_id: String,
    pub recorded: bool,
}
