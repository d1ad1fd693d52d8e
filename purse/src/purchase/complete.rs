//! Complete: the card's DEBIT answer goes to the server, which captures only
//! on the card's own S3 and answers a result for each party.
//!
//! # Format
//! ```text
//! POST /v1/purchases/complete
//! {"session": {…}, "session_mac": "<hex>", "etsk": "<hex>",
//!  "debit_response": "<DebitResponseMsg sealed under TSK, label debit-response>"}
//! → {"txn_id": "T-1", "status": "debited",
//!    "result_c": "<ResultC sealed under TSK, label result-c>",
//!    "result_m": "<ResultM sealed under DK, label result-m>"}
//! ```

use crate::prelude::*;
use serde::{Deserialize, Serialize};

use crate::session::{label, Session, VerifyMode};
use crate::types::PurseId;
use crate::wire::{Hex, Sealed};

/// The card's answer to DEBIT, sealed under TSK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebitResponseMsg {
    pub txn_id: String,
    /// The card's complete response APDU: data (balance after, S3) then SW.
    pub response: Hex,
}

crate::json::lite::encode_struct!(DebitResponseMsg { txn_id, response });

impl Sealed for DebitResponseMsg {
    const LABEL: &'static str = label::DEBIT_RESPONSE;
    fn txn_id(&self) -> &str {
        &self.txn_id
    }
}

/// Body of `POST /v1/purchases/complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteEnvelope {
    pub session: Session,
    pub session_mac: Hex,
    pub etsk: Hex,
    /// A [`DebitResponseMsg`] sealed under TSK (label `debit-response`).
    pub debit_response: Hex,
}

/// Outcome of a purchase as results report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PurchaseStatus {
    /// The card was debited and its S3 verified.
    Debited,
    /// The card refused the debit, or its log proves no debit came (nothing was taken).
    Failed,
}

crate::json::wire_strings!(PurchaseStatus {
    Debited => "debited",
    Failed => "failed",
});

/// Answer of `POST /v1/purchases/complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteResponse {
    pub txn_id: String,
    pub status: PurchaseStatus,
    /// A [`ResultC`] sealed under TSK (label `result-c`).
    pub result_c: Hex,
    /// A [`ResultM`] sealed under DK (label `result-m`).
    pub result_m: Hex,
}

crate::json::lite::decode_struct!(CompleteResponse {
    txn_id,
    status,
    result_c,
    result_m,
});

/// Result for the shopper, sealed under TSK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultC {
    pub txn_id: String,
    pub status: PurchaseStatus,
    pub merchant_name: String,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    /// Balance after the debit (when debited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_after: Option<u32>,
    /// Card status word when the card refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_sw: Option<String>,
    /// `YYYYMMDD` and `HHMMSS` of the debit command.
    pub date: String,
    pub time: String,
}

crate::json::lite::decode_struct!(ResultC {
    txn_id,
    status,
    merchant_name,
    amount,
    currency,
    exponent,
    balance_after: opt,
    card_sw: opt,
    date,
    time,
});

impl Sealed for ResultC {
    const LABEL: &'static str = label::RESULT_C;
    fn txn_id(&self) -> &str {
        &self.txn_id
    }
}

/// Result for the merchant, sealed under DK (the client cannot read or forge it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultM {
    pub merchant_id: String,
    pub txn_id: String,
    /// The merchant's order this transaction pays (from the session).
    #[serde(default)]
    pub order_ref: String,
    pub status: PurchaseStatus,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    pub origin: String,
    pub verify_mode: VerifyMode,
    /// Masked card id (last four digits).
    pub card: String,
    /// The card's reference for this merchant (32 hex digits, stable, not the
    /// card number; empty from an older server). See docs/protocol.md.
    #[serde(default)]
    pub card_ref: String,
    pub atc: u16,
    pub seq: u32,
    pub date: String,
    pub time: String,
}

impl Sealed for ResultM {
    const LABEL: &'static str = label::RESULT_M;
    fn txn_id(&self) -> &str {
        &self.txn_id
    }
}

/// What the widget posts to the merchant's `result_url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MerchantResult {
    /// Modes `payment_server`/`security_module` (and any mode after recovery):
    /// result M from `complete` or `recover`.
    ResultM { txn_id: String, result_m: Hex },
    /// Modes `client`/`merchant`: the card's raw S3 and the DK-sealed expected
    /// S3. The merchant compares, then confirms with the server, which
    /// captures only on that S3.
    S3 {
        txn_id: String,
        balance_after: u32,
        s3: Hex,
        expected_s3_m: Hex,
    },
}

impl crate::json::lite::Encode for MerchantResult {
    fn encode(&self, w: &mut crate::json::lite::Writer) {
        let mut o = w.object();
        match self {
            Self::ResultM { txn_id, result_m } => {
                o.field("kind", "result_m");
                o.field("txn_id", txn_id);
                o.field("result_m", result_m);
            }
            Self::S3 {
                txn_id,
                balance_after,
                s3,
                expected_s3_m,
            } => {
                o.field("kind", "s3");
                o.field("txn_id", txn_id);
                o.field("balance_after", balance_after);
                o.field("s3", s3);
                o.field("expected_s3_m", expected_s3_m);
            }
        }
        o.end();
    }
}

impl MerchantResult {
    pub fn txn_id(&self) -> &str {
        match self {
            Self::ResultM { txn_id, .. } | Self::S3 { txn_id, .. } => txn_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merchant_result_is_tagged() {
        let m = MerchantResult::ResultM {
            txn_id: "T1".into(),
            result_m: Hex(vec![1, 2]),
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["kind"], "result_m");
        assert_eq!(v["result_m"], "0102");
        let s: MerchantResult = serde_json::from_value(serde_json::json!({
            "kind": "s3", "txn_id": "T2", "balance_after": 5, "s3": "0011", "expected_s3_m": "22"
        }))
        .unwrap();
        assert_eq!(s.txn_id(), "T2");
    }
}
