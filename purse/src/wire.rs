//! JSON messages between the widget and the payment server (DESIGN §4).
//!
//! Owned by the payment-server work; kept free of server-only dependencies so the
//! wasm widget can use the same types. Binary fields are lowercase hex strings
//! ([`Hex`]). "Sealed" fields are `nonce || ciphertext || tag` made by
//! [`crate::session::seal`] under the key and label named on the field, with
//! associated data [`crate::session::aad`]`(label, txn_id)`.
//!
//! Purchase (mode `payment_server` or `security_module`):
//! 1. widget → `POST /v1/purchases/draw` with [`DrawEnvelope`]; its
//!    `draw_request` is a [`DrawRequest`] sealed under TSK
//!    (label `draw-request`). Answer: [`DrawResponse`]; its `debit_command` is a
//!    [`DebitCommand`] sealed under TSK (label `debit-command`).
//! 2. widget sends the DEBIT APDU to the card, then
//!    `POST /v1/purchases/complete` with [`CompleteEnvelope`]; its
//!    `debit_response` is a [`DebitResponseMsg`] sealed under TSK (label
//!    `debit-response`). Answer: [`CompleteResponse`] with a [`ResultC`] sealed
//!    under TSK (label `result-c`) and a [`ResultM`] sealed under DK (label
//!    `result-m`).
//! 3. widget posts [`MerchantResult::ResultM`] to the session's `result_url`.
//!
//! Modes `client` and `merchant` (one round trip): the draw answer also carries
//! `expected_s3_m`, an [`ExpectedS3`] sealed under DK (label `expected-s3`); in
//! `client` mode the sealed debit command also carries the expected S3 in clear
//! so the widget compares itself. The widget posts [`MerchantResult::S3`] to the
//! merchant and (best effort, in the background) still calls `complete` so the
//! payment server captures without waiting for the merchant.

use serde::{Deserialize, Serialize};

use crate::session::{Session, VerifyMode};
use crate::types::PurseId;

/// Bytes carried as a lowercase hex string in JSON.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Hex(pub Vec<u8>);

impl Hex {
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Hex {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl From<&[u8]> for Hex {
    fn from(v: &[u8]) -> Self {
        Self(v.to_vec())
    }
}

impl core::fmt::Debug for Hex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Hex({})", hex::encode(&self.0))
    }
}

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(s.as_ref())
            .map(Hex)
            .map_err(|_| serde::de::Error::custom("expected a hex string"))
    }
}

/// Body of `POST /v1/purchases/draw`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrawEnvelope {
    pub session: Session,
    /// HMAC-SHA256(K_mp, canonical session || ETSK), 32 bytes.
    pub session_mac: Hex,
    /// TSK sealed under DK (label `etsk`).
    pub etsk: Hex,
    /// A [`DrawRequest`] sealed under TSK (label `draw-request`).
    pub draw_request: Hex,
}

/// What the widget gathered from the card, sealed under TSK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrawRequest {
    pub txn_id: String,
    /// Origin of the page embedding the widget, as the browser reported it.
    pub page_origin: String,
    /// Amount the widget put into INITIALIZE (must equal the session's).
    pub amount: u32,
    pub purse: PurseId,
    /// Data of the card's SELECT response (without SW).
    pub select: Hex,
    /// Data of the card's INITIALIZE FOR PURCHASE response (without SW).
    pub initialize: Hex,
    /// Whether a VERIFY succeeded in this selection (informational).
    #[serde(default)]
    pub pin_verified: bool,
}

/// Answer of `POST /v1/purchases/draw`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrawResponse {
    pub txn_id: String,
    pub verify_mode: VerifyMode,
    /// A [`DebitCommand`] sealed under TSK (label `debit-command`).
    pub debit_command: Hex,
    /// Modes `client` and `merchant`: an [`ExpectedS3`] sealed under DK
    /// (label `expected-s3`), for the merchant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_s3_m: Option<Hex>,
}

/// The security module's debit command, sealed under TSK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebitCommand {
    pub txn_id: String,
    /// The complete DEBIT FOR PURCHASE command APDU for the card.
    pub apdu: Hex,
    /// The debit amount (the widget checks it equals the session's).
    pub amount: u32,
    /// The balance the card will report after the debit.
    pub balance_after: u32,
    /// Mode `client` only: the S3 the card must answer (8 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_s3: Option<Hex>,
}

/// Expected S3 for the merchant (modes `client`/`merchant`), sealed under DK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedS3 {
    pub merchant_id: String,
    pub txn_id: String,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    pub origin: String,
    /// Masked card id (last four digits).
    pub card: String,
    pub atc: u16,
    pub seq: u32,
    pub balance_after: u32,
    pub expected_s3: Hex,
}

/// The card's answer to DEBIT, sealed under TSK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebitResponseMsg {
    pub txn_id: String,
    /// The card's complete response APDU: data (balance after, S3) then SW.
    pub response: Hex,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseStatus {
    /// The card was debited and its S3 verified.
    Debited,
    /// The card refused the debit (nothing was taken).
    Failed,
}

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

/// Result for the merchant, sealed under DK (the client cannot read or forge it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultM {
    pub merchant_id: String,
    pub txn_id: String,
    pub status: PurchaseStatus,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    pub origin: String,
    pub verify_mode: VerifyMode,
    /// Masked card id (last four digits).
    pub card: String,
    pub atc: u16,
    pub seq: u32,
    pub date: String,
    pub time: String,
}

/// What the widget posts to the merchant's `result_url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MerchantResult {
    /// Modes `payment_server`/`security_module`: result M from `complete`.
    ResultM { txn_id: String, result_m: Hex },
    /// Modes `client`/`merchant`: the card's raw S3 and the DK-sealed expected S3.
    S3 {
        txn_id: String,
        balance_after: u32,
        s3: Hex,
        expected_s3_m: Hex,
    },
}

impl MerchantResult {
    pub fn txn_id(&self) -> &str {
        match self {
            Self::ResultM { txn_id, .. } | Self::S3 { txn_id, .. } => txn_id,
        }
    }
}

/// Body of `POST /v1/purchases/suspicious` ("this is not my purchase").
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

/// Answer of `POST /v1/purchases/suspicious`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspiciousAck {
    pub txn_id: String,
    pub recorded: bool,
}

/// Every refusal: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code (see the payment server's OpenAPI document).
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip_and_rejects_garbage() {
        let h = Hex(vec![0xde, 0xad, 0x01]);
        let j = serde_json::to_string(&h).unwrap();
        assert_eq!(j, "\"dead01\"");
        assert_eq!(serde_json::from_str::<Hex>(&j).unwrap(), h);
        assert_eq!(serde_json::from_str::<Hex>("\"DEAD01\"").unwrap(), h);
        assert!(serde_json::from_str::<Hex>("\"xyz\"").is_err());
        assert!(serde_json::from_str::<Hex>("\"abc\"").is_err());
    }

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

    #[test]
    fn draw_request_refuses_unknown_fields() {
        let v = serde_json::json!({
            "txn_id": "T", "page_origin": "http://a", "amount": 1, "purse": "money",
            "select": "", "initialize": "", "evil": 1
        });
        assert!(serde_json::from_value::<DrawRequest>(v).is_err());
    }
}
