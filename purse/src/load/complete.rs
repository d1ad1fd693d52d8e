//! Complete: the card's CREDIT answer goes to the load server, whose HSM
//! verifies S3; the bank gets a result sealed under DK (which the client
//! never has), the shopper one sealed under TSK.
//!
//! # Format
//! ```text
//! POST /v1/loads/complete
//! {"session": {…}, "session_mac": "<hex>", "etsk": "<hex>",
//!  "credit_response": "<CreditResponseMsg sealed under TSK, label credit-response>"}
//! → {"txn_id": "L-1", "status": "credited",
//!    "result_c": "<LoadResultC sealed under TSK, label load-result-c>",
//!    "result_b": "<LoadResultB sealed under DK, label load-result-b>"}
//! ```
//! Only a CREDIT the card answered with `9000` and result `00` is taken
//! here. A refusal (9402, 9403, …) or another result code is a *negative
//! result*: the widget proves it with a zero-value INITIALIZE FOR LOAD at
//! `POST /v1/loads/recover` ([`super::recover`]).

use crate::prelude::*;
use serde::{Deserialize, Serialize};

use crate::session::label;
use crate::types::PurseId;
use crate::wire::{Hex, Sealed};

use super::session::LoadSession;

/// The card's answer to CREDIT, sealed under TSK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditResponseMsg {
    pub txn_id: String,
    /// The card's complete response APDU: result, balance after, S3, then SW.
    pub response: Hex,
}

crate::json::lite::encode_struct!(CreditResponseMsg { txn_id, response });

impl Sealed for CreditResponseMsg {
    const LABEL: &'static str = label::CREDIT_RESPONSE;
    fn txn_id(&self) -> &str {
        &self.txn_id
    }
}

/// Body of `POST /v1/loads/complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadCompleteEnvelope {
    pub session: LoadSession,
    pub session_mac: Hex,
    pub etsk: Hex,
    /// A [`CreditResponseMsg`] sealed under TSK (label `credit-response`).
    pub credit_response: Hex,
}

/// Outcome of a load as results report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadStatus {
    /// The card was credited (its S3, or its own S1 after, proves it): the
    /// bank debits the account.
    Credited,
    /// The card proved it was not credited (or the load was never drawn):
    /// the bank releases the hold.
    NotCredited,
}

crate::json::wire_strings!(LoadStatus {
    Credited => "credited",
    NotCredited => "not_credited",
});

/// Answer of `POST /v1/loads/complete` (and of a decided recover).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadCompleteResponse {
    pub txn_id: String,
    pub status: LoadStatus,
    /// A [`LoadResultC`] sealed under TSK (label `load-result-c`).
    pub result_c: Hex,
    /// A [`LoadResultB`] sealed under DK (label `load-result-b`).
    pub result_b: Hex,
}

crate::json::lite::decode_struct!(LoadCompleteResponse {
    txn_id,
    status,
    result_c,
    result_b,
});

/// Result for the shopper, sealed under TSK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadResultC {
    pub txn_id: String,
    pub status: LoadStatus,
    pub bank_name: String,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    /// Balance before the load (the card's S1 vouched for it).
    pub balance_before: u32,
    /// Balance after (when credited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_after: Option<u32>,
    /// `YYYYMMDD` and `HHMMSS` of the credit command.
    pub date: String,
    pub time: String,
}

crate::json::lite::decode_struct!(LoadResultC {
    txn_id,
    status,
    bank_name,
    amount,
    currency,
    exponent,
    purse,
    balance_before,
    balance_after: opt,
    date,
    time,
});

impl Sealed for LoadResultC {
    const LABEL: &'static str = label::LOAD_RESULT_C;
    fn txn_id(&self) -> &str {
        &self.txn_id
    }
}

/// Result for the bank, sealed under DK: the client can neither read nor
/// forge it. The bank posts the held amount on `credited` and releases it on
/// `not_credited`, once per txn id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadResultB {
    pub bank_id: String,
    pub txn_id: String,
    pub account_ref: String,
    pub status: LoadStatus,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    pub origin: String,
    /// Masked card id (last four digits).
    pub card: String,
    /// The card's reference for this bank (32 hex digits, stable, not the
    /// card number; empty before a draw or from an older server).
    #[serde(default)]
    pub card_ref: String,
    pub atc: u16,
    /// Balance after the credit (when credited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_after: Option<u32>,
    /// How it was decided: `s3` (the card's answer), `log` (a log record
    /// with its S3), `s1` (a later INITIALIZE FOR LOAD of the card).
    pub proof: String,
    pub date: String,
    pub time: String,
}

impl Sealed for LoadResultB {
    const LABEL: &'static str = label::LOAD_RESULT_B;
    fn txn_id(&self) -> &str {
        &self.txn_id
    }
}

/// What the widget posts to the bank's `result_url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BankResult {
    /// The load server's decision (credited or not credited), sealed for the bank.
    ResultB { txn_id: String, result_b: Hex },
    /// The widget's own word that the load did not go ahead (refused by the
    /// card before any credit, cancelled, or undecided yet). Not a proof: the
    /// bank asks the load server (`POST /v1/bank/loads/{txn}/void`), which
    /// voids a load never drawn and otherwise tells where it stands.
    NotLoaded { txn_id: String, reason: String },
}

impl crate::json::lite::Encode for BankResult {
    fn encode(&self, w: &mut crate::json::lite::Writer) {
        let mut o = w.object();
        match self {
            Self::ResultB { txn_id, result_b } => {
                o.field("kind", "result_b");
                o.field("txn_id", txn_id);
                o.field("result_b", result_b);
            }
            Self::NotLoaded { txn_id, reason } => {
                o.field("kind", "not_loaded");
                o.field("txn_id", txn_id);
                o.field("reason", reason);
            }
        }
        o.end();
    }
}

impl BankResult {
    pub fn txn_id(&self) -> &str {
        match self {
            Self::ResultB { txn_id, .. } | Self::NotLoaded { txn_id, .. } => txn_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bank_result_is_tagged() {
        let r = BankResult::ResultB {
            txn_id: "L-1".into(),
            result_b: Hex(vec![1]),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["kind"], "result_b");
        let n: BankResult = serde_json::from_value(serde_json::json!({
            "kind": "not_loaded", "txn_id": "L-2", "reason": "card_refused"
        }))
        .unwrap();
        assert_eq!(n.txn_id(), "L-2");
        assert_eq!(
            serde_json::to_value(LoadStatus::NotCredited).unwrap(),
            "not_credited"
        );
    }
}
