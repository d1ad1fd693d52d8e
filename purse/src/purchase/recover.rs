//! Recovery of a torn DEBIT (card pulled, bridge or network gone after DEBIT
//! was sent): the card's log is the truth, and its records prove themselves
//! (each carries the S3 the card answered).
//!
//! # Format
//! ```text
//! POST /v1/purchases/recover
//! {"session": {…}, "session_mac": "<hex>", "etsk": "<hex>",
//!  "recover_request": "<RecoverRequest sealed under TSK, label recover-request>"}
//! → {"txn_id": "T-1", "status": "debited" | "failed" | "unknown",
//!    "result_c": "<sealed under TSK>", "result_m": "<sealed under DK>"}  (results once decided)
//! ```
//!
//! The server decides (DESIGN §4): a record of this transaction whose S3 the
//! security module verifies → `debited`; a log that reaches back past the
//! transaction's ATC with no record for it → `failed`; otherwise `unknown`
//! (the next use of the card anywhere settles it: every draw carries the log).

use crate::prelude::*;
use serde::{Deserialize, Serialize};

use crate::session::{label, Session};
use crate::wire::{Hex, Sealed};

/// Body of `POST /v1/purchases/recover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverEnvelope {
    pub session: Session,
    pub session_mac: Hex,
    pub etsk: Hex,
    /// A [`RecoverRequest`] sealed under TSK (label `recover-request`).
    pub recover_request: Hex,
}

/// The card's log, read after the card came back, sealed under TSK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    pub txn_id: String,
    /// The card's newest log records (READ LOG 1, 2, …; 37 bytes each), at
    /// most [`super::MAX_LOG_RECORDS`]; the widget reads until it has passed
    /// the transaction's ATC or the log ends.
    pub log: Vec<Hex>,
    /// Data of the card's answer (without SW) to an INITIALIZE FOR LOAD of
    /// amount 0, which the widget sends unless the log holds the
    /// transaction's own record: its S1 proves the card is present and its
    /// ATC now, without which the log's silence decides nothing. That
    /// INITIALIZE also replaces any pending one, so the torn DEBIT can never
    /// apply after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialize_load: Option<Hex>,
}

crate::json::lite::encode_struct!(RecoverRequest {
    txn_id,
    log,
    initialize_load: some,
});

impl Sealed for RecoverRequest {
    const LABEL: &'static str = label::RECOVER_REQUEST;
    fn txn_id(&self) -> &str {
        &self.txn_id
    }
}

/// The server's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecoverStatus {
    /// The card's record proves the debit: captured.
    Debited,
    /// The log shows the card never debited this transaction.
    Failed,
    /// Not decided yet (the log does not reach back far enough, or the card
    /// has not been used since).
    Unknown,
}

crate::json::wire_strings!(RecoverStatus {
    Debited => "debited",
    Failed => "failed",
    Unknown => "unknown",
});

/// Answer of `POST /v1/purchases/recover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverResponse {
    pub txn_id: String,
    pub status: RecoverStatus,
    /// Once decided: a [`super::ResultC`] sealed under TSK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_c: Option<Hex>,
    /// Once decided: a [`super::ResultM`] sealed under DK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_m: Option<Hex>,
}

crate::json::lite::decode_struct!(RecoverResponse {
    txn_id,
    status,
    result_c: opt,
    result_m: opt,
});
