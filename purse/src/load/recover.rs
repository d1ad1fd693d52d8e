//! Negative and missing results (the seed's negative-result handling, and a
//! torn CREDIT): the card proves whether it was credited, the client's word
//! never does.
//!
//! # Format
//! ```text
//! POST /v1/loads/recover
//! {"session": {…}, "session_mac": "<hex>", "etsk": "<hex>",
//!  "recover_request": "<LoadRecoverRequest sealed under TSK, label load-recover-request>"}
//! → {"txn_id": "L-1", "status": "credited" | "not_credited" | "unknown",
//!    "result_c": "<sealed under TSK>", "result_b": "<sealed under DK>"}   (results once decided)
//! ```
//!
//! The widget sends this when CREDIT was refused by the card or answered a
//! result other than `00` (a negative result), or when CREDIT's answer was
//! lost (card pulled, bridge gone) and the card is back. It first makes a
//! **zero-value INITIALIZE FOR LOAD**: a fresh S1 over the card's current
//! balance and ATC (and the end of any pending INITIALIZE, so the lost CREDIT
//! can never apply later). The HSM decides (DESIGN §4, seed fig. 18):
//! - a log record of the load's ATC whose S3 verifies → credited;
//! - the zero-value INITIALIZE is the very next one (ATC + 1) and its S1
//!   verifies over the balance *before* the load → not credited; over the
//!   balance before plus the amount → credited (the negative result was not
//!   true); over anything else → refused (`bad_proof`);
//! - otherwise (the card was used in between and its log holds no record of
//!   the load) → undecided: the card's later use decides, never silence.

use crate::prelude::*;
use serde::{Deserialize, Serialize};

use crate::session::label;
use crate::wire::{Hex, Sealed};

use super::session::LoadSession;

/// Body of `POST /v1/loads/recover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRecoverEnvelope {
    pub session: LoadSession,
    pub session_mac: Hex,
    pub etsk: Hex,
    /// A [`LoadRecoverRequest`] sealed under TSK (label `load-recover-request`).
    pub recover_request: Hex,
}

/// The card's evidence, sealed under TSK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRecoverRequest {
    pub txn_id: String,
    /// The card's answer to CREDIT when it gave one (a refusal SW, or a
    /// result other than `00`): kept for the record, proves nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_answer: Option<Hex>,
    /// The data of the card's answer to a zero-value INITIALIZE FOR LOAD
    /// (balance, ATC, key version, algorithm, R, S1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_initialize: Option<Hex>,
    /// The card's newest log records (READ LOG 1, 2, …; 37 bytes each), at
    /// most [`super::MAX_LOG_RECORDS`].
    #[serde(default)]
    pub log: Vec<Hex>,
}

crate::json::lite::encode_struct!(LoadRecoverRequest {
    txn_id,
    card_answer: some,
    zero_initialize: some,
    log,
});

impl Sealed for LoadRecoverRequest {
    const LABEL: &'static str = label::LOAD_RECOVER_REQUEST;
    fn txn_id(&self) -> &str {
        &self.txn_id
    }
}

/// The load server's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadRecoverStatus {
    Credited,
    NotCredited,
    /// Not decided yet: the card's next use decides.
    Unknown,
}

crate::json::wire_strings!(LoadRecoverStatus {
    Credited => "credited",
    NotCredited => "not_credited",
    Unknown => "unknown",
});

/// Answer of `POST /v1/loads/recover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadRecoverResponse {
    pub txn_id: String,
    pub status: LoadRecoverStatus,
    /// Once decided: a [`super::LoadResultC`] sealed under TSK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_c: Option<Hex>,
    /// Once decided: a [`super::LoadResultB`] sealed under DK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_b: Option<Hex>,
}

crate::json::lite::decode_struct!(LoadRecoverResponse {
    txn_id,
    status,
    result_c: opt,
    result_b: opt,
});
