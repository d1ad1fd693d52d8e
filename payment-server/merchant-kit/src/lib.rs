//! The few calls a merchant backend makes to take Cardpay payments.
//!
//! - [`Merchant::build_session`]: for an order, make the transaction session key
//!   TSK, wrap it as ETSK under the per-transaction derived key DK and MAC the
//!   session; the page hands the [`WidgetSession`] to the widget.
//! - [`Merchant::verify_result`]: check what the widget brought back against
//!   the order. A result M (sealed under DK, which the client never has) means
//!   the server captured: [`Verified::Captured`]. The card's S3 with the
//!   DK-sealed expected S3 (modes `client`/`merchant`) is only a match:
//!   [`Verified::ConfirmWithServer`] — POST its [`ConfirmRequest`] to
//!   `/v1/transactions/{txn}/confirm` and release the goods only when
//!   [`Merchant::check_confirmed`] accepts the server's answer.
//! - [`Merchant::verify_webhook`]: the server's signed webhooks (every state
//!   change, delivered until acknowledged). Deduplicate by event id.
//! - [`auth`]: sign requests to the payment server's merchant API.
//!
//! - [`bank`]: the same for a bank's backend that loads cards (load sessions,
//!   result B, load webhooks, signed bank API calls).
//!
//! No I/O besides the OS random source; the merchant's HTTP stack is its own.

#![forbid(unsafe_code)]

pub mod bank;

use purse::crypto::mac_eq;
use purse::merchant_api::{ConfirmRequest, TxnView};
use purse::purchase::{ExpectedS3, MerchantResult, PurchaseStatus, ResultM, WidgetSession};
use purse::session::{self, Key32, Session, VerifyMode};
use purse::types::{PurseId, Terminal};
use purse::webhook::{self, WebhookError, WebhookEvent};
use purse::wire::{Hex, Sealed};
use serde::{Deserialize, Serialize};

pub use purse;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerchantError {
    #[error("random source failed")]
    Random,
    #[error("result does not open under this order's key (forged, or for another order)")]
    BadSeal,
    #[error("result is not valid JSON: {0}")]
    Malformed(String),
    #[error("result is for another order or merchant: {0}")]
    WrongOrder(&'static str),
    #[error("the card was not debited")]
    NotDebited,
    #[error("card S3 does not match the expected S3")]
    S3Mismatch,
    #[error("this result kind is not accepted in verify mode {0:?}")]
    WrongMode(VerifyMode),
}

/// A merchant's identity and its key `K_mp` shared with the payment server.
#[derive(Clone)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    key: Key32,
}

impl core::fmt::Debug for Merchant {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Merchant")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What the merchant decides for one payment attempt of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    /// This attempt's transaction id (a new one per attempt: reloading the
    /// payment page makes a new attempt for the same order).
    pub txn_id: String,
    /// The order being paid: the server captures at most one attempt per order.
    pub order_ref: String,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    pub expires_at: u64,
    pub verify_mode: VerifyMode,
    pub result_url: String,
    pub origin: String,
    pub terminal: Terminal,
}

/// The order a result must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRef<'a> {
    pub txn_id: &'a str,
    pub order_ref: &'a str,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    pub origin: &'a str,
    pub verify_mode: VerifyMode,
}

/// A payment the merchant may release goods for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedPayment {
    pub txn_id: String,
    pub amount: u32,
    pub currency: u16,
    /// Masked card id (to show the shopper).
    pub card: String,
    /// The card's reference for this merchant (32 hex digits): stable for
    /// one card, different for two cards with the same last four, never the
    /// card number. Key customers on this, not on `card`. Empty from an
    /// older payment server.
    #[serde(default)]
    pub card_ref: String,
    pub atc: u16,
    pub seq: u32,
    /// How the capture was verified: `result_m`, `confirm` (the server
    /// verified the card's S3 on the merchant's confirm) or `webhook`.
    pub evidence: String,
}

/// What a result from the widget proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Result M: the server verified the card's S3 and captured.
    Captured(VerifiedPayment),
    /// The card's S3 matches what the security module expects: confirm with
    /// the server (it verifies S3 itself and captures); not paid until then.
    ConfirmWithServer {
        txn_id: String,
        confirm: ConfirmRequest,
    },
}

pub fn random_bytes<const N: usize>() -> Result<[u8; N], MerchantError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| MerchantError::Random)?;
    Ok(b)
}

/// The fields every result names, checked against the order.
struct Claimed<'a> {
    merchant_id: &'a str,
    txn_id: &'a str,
    amount: u32,
    currency: u16,
    exponent: u8,
    purse: PurseId,
    origin: &'a str,
}

impl Merchant {
    pub fn new(id: impl Into<String>, name: impl Into<String>, key: Key32) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            key,
        }
    }

    pub fn key(&self) -> &Key32 {
        &self.key
    }

    /// DK of one transaction.
    pub fn dk(&self, txn_id: &str) -> Key32 {
        session::derive_dk(&self.key, txn_id, &self.id)
    }

    /// Build the session for one order: fresh TSK, ETSK under DK, session MAC.
    pub fn build_session(&self, p: SessionParams) -> Result<WidgetSession, MerchantError> {
        let tsk = Key32::new(random_bytes()?);
        let nonce = random_bytes()?;
        Ok(self.build_session_with(p, tsk, nonce))
    }

    /// [`Self::build_session`] with the caller's TSK and nonce (tests, vectors).
    pub fn build_session_with(
        &self,
        p: SessionParams,
        tsk: Key32,
        nonce: [u8; 12],
    ) -> WidgetSession {
        let session = Session {
            merchant_id: self.id.clone(),
            merchant_name: self.name.clone(),
            txn_id: p.txn_id,
            order_ref: p.order_ref,
            amount: p.amount,
            currency: p.currency,
            exponent: p.exponent,
            purse: p.purse,
            expires_at: p.expires_at,
            verify_mode: p.verify_mode,
            result_url: p.result_url,
            origin: p.origin,
            terminal: p.terminal,
        };
        let dk = self.dk(&session.txn_id);
        let etsk = session::wrap_tsk(&dk, nonce, &session.txn_id, &tsk);
        let mac = session::session_mac(&self.key, &session, &etsk);
        WidgetSession {
            session,
            session_mac: Hex(mac.to_vec()),
            etsk: Hex(etsk),
            tsk: Hex(tsk.bytes().to_vec()),
        }
    }

    /// Open a result M for this order (does not check its content).
    pub fn open_result_m(&self, txn_id: &str, sealed: &[u8]) -> Result<ResultM, MerchantError> {
        ResultM::open(&self.dk(txn_id), txn_id, sealed).map_err(|_| MerchantError::BadSeal)
    }

    /// Open the DK-sealed expected S3 of a `client`/`merchant` mode purchase.
    pub fn open_expected_s3(
        &self,
        txn_id: &str,
        sealed: &[u8],
    ) -> Result<ExpectedS3, MerchantError> {
        ExpectedS3::open(&self.dk(txn_id), txn_id, sealed).map_err(|_| MerchantError::BadSeal)
    }

    /// Verify what the widget posted to the result URL against the order.
    pub fn verify_result(
        &self,
        order: &OrderRef<'_>,
        result: &MerchantResult,
    ) -> Result<Verified, MerchantError> {
        if result.txn_id() != order.txn_id {
            return Err(MerchantError::WrongOrder("txn_id"));
        }
        match result {
            MerchantResult::ResultM { result_m, .. } => {
                let m = self.open_result_m(order.txn_id, result_m.as_slice())?;
                self.check_fields(
                    order,
                    &Claimed {
                        merchant_id: &m.merchant_id,
                        txn_id: &m.txn_id,
                        amount: m.amount,
                        currency: m.currency,
                        exponent: m.exponent,
                        purse: m.purse,
                        origin: &m.origin,
                    },
                )?;
                if m.order_ref != order.order_ref {
                    return Err(MerchantError::WrongOrder("order_ref"));
                }
                if m.status != PurchaseStatus::Debited {
                    return Err(MerchantError::NotDebited);
                }
                Ok(Verified::Captured(VerifiedPayment {
                    txn_id: m.txn_id,
                    amount: m.amount,
                    currency: m.currency,
                    card: m.card,
                    card_ref: m.card_ref,
                    atc: m.atc,
                    seq: m.seq,
                    evidence: "result_m".into(),
                }))
            }
            MerchantResult::S3 {
                balance_after,
                s3,
                expected_s3_m,
                ..
            } => {
                if !matches!(order.verify_mode, VerifyMode::Client | VerifyMode::Merchant) {
                    return Err(MerchantError::WrongMode(order.verify_mode));
                }
                let e = self.open_expected_s3(order.txn_id, expected_s3_m.as_slice())?;
                self.check_fields(
                    order,
                    &Claimed {
                        merchant_id: &e.merchant_id,
                        txn_id: &e.txn_id,
                        amount: e.amount,
                        currency: e.currency,
                        exponent: e.exponent,
                        purse: e.purse,
                        origin: &e.origin,
                    },
                )?;
                if !compare_s3(&e, *balance_after, s3.as_slice()) {
                    return Err(MerchantError::S3Mismatch);
                }
                Ok(Verified::ConfirmWithServer {
                    txn_id: e.txn_id,
                    confirm: ConfirmRequest {
                        balance_after: Some(*balance_after),
                        s3: Some(s3.clone()),
                    },
                })
            }
        }
    }

    /// The server's answer to a confirm (or a `GET /v1/transactions/{txn}`):
    /// paid only if the server has captured exactly this order.
    pub fn check_confirmed(
        &self,
        order: &OrderRef<'_>,
        view: &TxnView,
    ) -> Result<VerifiedPayment, MerchantError> {
        self.check_fields(
            order,
            &Claimed {
                merchant_id: &view.merchant_id,
                txn_id: &view.txn_id,
                amount: view.amount,
                currency: view.currency,
                exponent: view.exponent,
                purse: view.purse,
                origin: &view.origin,
            },
        )?;
        if view.order_ref != order.order_ref {
            return Err(MerchantError::WrongOrder("order_ref"));
        }
        if !view.state.is_captured() {
            return Err(MerchantError::NotDebited);
        }
        Ok(VerifiedPayment {
            txn_id: view.txn_id.clone(),
            amount: view.amount,
            currency: view.currency,
            card: view.card.clone(),
            card_ref: view.card_ref.clone(),
            atc: view.atc,
            seq: view.seq,
            evidence: "confirm".into(),
        })
    }

    /// Verify a webhook delivery (headers `cardpay-event-id`,
    /// `cardpay-timestamp`, `cardpay-signature`) at time `now`. The caller
    /// then deduplicates by `event_id` and checks the event against its order.
    pub fn verify_webhook(
        &self,
        event_id: &str,
        timestamp: &str,
        signature: &str,
        body: &[u8],
        now: u64,
    ) -> Result<WebhookEvent, WebhookError> {
        let k_wh = webhook::webhook_key(&self.key, &self.id);
        let ev = webhook::verify(&k_wh, event_id, timestamp, signature, body, now)?;
        if ev.merchant_id != self.id {
            return Err(WebhookError::Body("event for another merchant".into()));
        }
        Ok(ev)
    }

    fn check_fields(&self, order: &OrderRef<'_>, c: &Claimed<'_>) -> Result<(), MerchantError> {
        if c.merchant_id != self.id {
            return Err(MerchantError::WrongOrder("merchant_id"));
        }
        if c.txn_id != order.txn_id {
            return Err(MerchantError::WrongOrder("txn_id"));
        }
        if c.amount != order.amount
            || c.currency != order.currency
            || c.exponent != order.exponent
            || c.purse != order.purse
        {
            return Err(MerchantError::WrongOrder("amount"));
        }
        if c.origin != order.origin {
            return Err(MerchantError::WrongOrder("origin"));
        }
        Ok(())
    }
}

/// Constant-time comparison of the card's S3 and balance with the expected ones.
pub fn compare_s3(expected: &ExpectedS3, balance_after: u32, s3: &[u8]) -> bool {
    // Evaluate both sides; no early exit on the balance.
    let mac_ok = mac_eq(s3, expected.expected_s3.as_slice());
    mac_ok & (balance_after == expected.balance_after)
}

/// Merchant API request signing: `HMAC-SHA256(K_mp, "cardpay/merchant-api/v1\n"
/// method "\n" path-and-query "\n" timestamp "\n" hex(SHA-256(body)))`, sent as
/// headers `x-cardpay-merchant`, `x-cardpay-timestamp`, `x-cardpay-signature`.
pub mod auth {
    use super::*;
    use purse::session::request_auth;

    pub use request_auth::{HEADER_SIGNATURE, HEADER_TIMESTAMP, MAX_SKEW_SECS};
    pub const HEADER_MERCHANT: &str = "x-cardpay-merchant";
    const LABEL: &str = "cardpay/merchant-api/v1";

    /// The three headers for a request.
    pub fn sign(
        m: &Merchant,
        method: &str,
        path: &str,
        ts: u64,
        body: &[u8],
    ) -> [(&'static str, String); 3] {
        [
            (HEADER_MERCHANT, m.id.clone()),
            (HEADER_TIMESTAMP, ts.to_string()),
            (
                HEADER_SIGNATURE,
                request_auth::signature(LABEL, m.key(), method, path, ts, body),
            ),
        ]
    }

    /// Server side: check a signature (constant time) and the timestamp window.
    pub fn verify(
        key: &Key32,
        method: &str,
        path: &str,
        ts: u64,
        now: u64,
        body: &[u8],
        sig_hex: &str,
    ) -> bool {
        request_auth::verify(LABEL, key, method, path, ts, now, body, sig_hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merchant() -> Merchant {
        Merchant::new("shop", "Shop", Key32::new([1; 32]))
    }

    fn params(mode: VerifyMode) -> SessionParams {
        SessionParams {
            txn_id: "T-1".into(),
            order_ref: "o-1".into(),
            amount: 250,
            currency: 978,
            exponent: 2,
            purse: PurseId::Money,
            expires_at: 2_000_000_000,
            verify_mode: mode,
            result_url: "http://shop/result".into(),
            origin: "http://shop".into(),
            terminal: Terminal([0, 0, 0, 0, 0, 1]),
        }
    }

    fn order(mode: VerifyMode) -> OrderRef<'static> {
        OrderRef {
            txn_id: "T-1",
            order_ref: "o-1",
            amount: 250,
            currency: 978,
            exponent: 2,
            purse: PurseId::Money,
            origin: "http://shop",
            verify_mode: mode,
        }
    }

    #[test]
    fn session_verifies_and_tsk_unwraps() {
        let m = merchant();
        let ws = m.build_session(params(VerifyMode::PaymentServer)).unwrap();
        assert!(session::verify_session_mac(
            m.key(),
            &ws.session,
            ws.etsk.as_slice(),
            ws.session_mac.as_slice()
        ));
        let tsk = session::unwrap_tsk(&m.dk("T-1"), "T-1", ws.etsk.as_slice()).unwrap();
        assert_eq!(Some(tsk), ws.tsk());
        let ws2 = m.build_session(params(VerifyMode::PaymentServer)).unwrap();
        assert_ne!(ws.tsk, ws2.tsk, "fresh TSK per session");
        assert!(!format!("{ws:?}").contains(&hex::encode(ws.tsk.as_slice())));
    }

    fn result_m(m: &Merchant, txn: &str, amount: u32, status: PurchaseStatus) -> Vec<u8> {
        result_m_exp(m, txn, amount, 2, status)
    }

    fn result_m_exp(
        m: &Merchant,
        txn: &str,
        amount: u32,
        exponent: u8,
        status: PurchaseStatus,
    ) -> Vec<u8> {
        let r = ResultM {
            merchant_id: m.id.clone(),
            txn_id: txn.into(),
            order_ref: "o-1".into(),
            status,
            amount,
            currency: 978,
            exponent,
            purse: PurseId::Money,
            origin: "http://shop".into(),
            verify_mode: VerifyMode::PaymentServer,
            card: "…0001".into(),
            card_ref: "00112233445566778899aabbccddeeff".into(),
            atc: 1,
            seq: 1,
            date: "20261123".into(),
            time: "120000".into(),
        };
        r.seal(&m.dk(txn), [5; 12]).0
    }

    #[test]
    fn result_m_checks() {
        let m = merchant();
        let o = order(VerifyMode::PaymentServer);
        let ok = MerchantResult::ResultM {
            txn_id: "T-1".into(),
            result_m: Hex(result_m(&m, "T-1", 250, PurchaseStatus::Debited)),
        };
        match m.verify_result(&o, &ok).unwrap() {
            Verified::Captured(p) => assert_eq!(
                (p.amount, p.evidence.as_str(), p.card_ref.as_str()),
                (250, "result_m", "00112233445566778899aabbccddeeff")
            ),
            other => panic!("{other:?}"),
        }
        // Same minor units, another exponent: 2.50 EUR is not 25.0 EUR.
        let exp = MerchantResult::ResultM {
            txn_id: "T-1".into(),
            result_m: Hex(result_m_exp(&m, "T-1", 250, 1, PurchaseStatus::Debited)),
        };
        assert_eq!(
            m.verify_result(&o, &exp),
            Err(MerchantError::WrongOrder("amount"))
        );
        let mut other_order = o.clone();
        other_order.order_ref = "o-2";
        assert_eq!(
            m.verify_result(&other_order, &ok),
            Err(MerchantError::WrongOrder("order_ref"))
        );
        // moved from another order: does not open under this order's DK
        let moved = MerchantResult::ResultM {
            txn_id: "T-1".into(),
            result_m: Hex(result_m(&m, "T-2", 250, PurchaseStatus::Debited)),
        };
        assert_eq!(m.verify_result(&o, &moved), Err(MerchantError::BadSeal));
        let cheaper = MerchantResult::ResultM {
            txn_id: "T-1".into(),
            result_m: Hex(result_m(&m, "T-1", 1, PurchaseStatus::Debited)),
        };
        assert_eq!(
            m.verify_result(&o, &cheaper),
            Err(MerchantError::WrongOrder("amount"))
        );
        let failed = MerchantResult::ResultM {
            txn_id: "T-1".into(),
            result_m: Hex(result_m(&m, "T-1", 250, PurchaseStatus::Failed)),
        };
        assert_eq!(m.verify_result(&o, &failed), Err(MerchantError::NotDebited));
        let other = Merchant::new("shop", "Shop", Key32::new([2; 32]));
        assert_eq!(other.verify_result(&o, &ok), Err(MerchantError::BadSeal));
    }

    #[test]
    fn s3_compare() {
        let m = merchant();
        let e = ExpectedS3 {
            merchant_id: "shop".into(),
            txn_id: "T-1".into(),
            amount: 250,
            currency: 978,
            exponent: 2,
            purse: PurseId::Money,
            origin: "http://shop".into(),
            card: "…0001".into(),
            card_ref: "00112233445566778899aabbccddeeff".into(),
            atc: 1,
            seq: 1,
            balance_after: 750,
            expected_s3: Hex(vec![7; 8]),
        };
        let sealed = e.seal(&m.dk("T-1"), [1; 12]).0;
        let mk = |s3: Vec<u8>, bal| MerchantResult::S3 {
            txn_id: "T-1".into(),
            balance_after: bal,
            s3: Hex(s3),
            expected_s3_m: Hex(sealed.clone()),
        };
        let o = order(VerifyMode::Merchant);
        // A match is not a capture: the merchant must confirm with the server.
        assert_eq!(
            m.verify_result(&o, &mk(vec![7; 8], 750)),
            Ok(Verified::ConfirmWithServer {
                txn_id: "T-1".into(),
                confirm: ConfirmRequest {
                    balance_after: Some(750),
                    s3: Some(Hex(vec![7; 8])),
                },
            })
        );
        assert_eq!(
            m.verify_result(&o, &mk(vec![8; 8], 750)),
            Err(MerchantError::S3Mismatch)
        );
        assert_eq!(
            m.verify_result(&o, &mk(vec![7; 8], 751)),
            Err(MerchantError::S3Mismatch)
        );
        assert_eq!(
            m.verify_result(&order(VerifyMode::PaymentServer), &mk(vec![7; 8], 750)),
            Err(MerchantError::WrongMode(VerifyMode::PaymentServer))
        );
    }

    #[test]
    fn request_signing() {
        let m = merchant();
        let h = auth::sign(&m, "GET", "/v1/transactions/T-1", 1000, b"");
        assert_eq!(h[0].1, "shop");
        assert!(auth::verify(
            m.key(),
            "GET",
            "/v1/transactions/T-1",
            1000,
            1100,
            b"",
            &h[2].1
        ));
        assert!(!auth::verify(
            m.key(),
            "GET",
            "/v1/transactions/T-2",
            1000,
            1100,
            b"",
            &h[2].1
        ));
        assert!(!auth::verify(
            m.key(),
            "GET",
            "/v1/transactions/T-1",
            1000,
            2000,
            b"",
            &h[2].1
        ));
        assert!(!auth::verify(
            &Key32::new([9; 32]),
            "GET",
            "/v1/transactions/T-1",
            1000,
            1000,
            b"",
            &h[2].1
        ));
    }
}

#[cfg(test)]
mod confirm_and_webhook_tests {
    use super::*;
    use purse::merchant_api::TxnState;
    use purse::webhook::EventKind;

    fn view(state: TxnState, amount: u32) -> TxnView {
        TxnView {
            merchant_id: "shop".into(),
            txn_id: "T-1".into(),
            order_ref: "o-1".into(),
            state,
            verify_mode: VerifyMode::Merchant,
            amount,
            currency: 978,
            exponent: 2,
            purse: PurseId::Money,
            origin: "http://shop".into(),
            card: "…0001".into(),
            card_ref: "00112233445566778899aabbccddeeff".into(),
            atc: 1,
            seq: 1,
            created_at: 0,
            drawn_at: 0,
            debited_at: None,
            confirmed_at: None,
            updated_at: 0,
            resolution: None,
            log: vec![],
            suspicious_reports: vec![],
        }
    }

    #[test]
    fn only_a_captured_matching_transaction_is_paid() {
        let m = Merchant::new("shop", "Shop", Key32::new([1; 32]));
        let o = OrderRef {
            txn_id: "T-1",
            order_ref: "o-1",
            amount: 250,
            currency: 978,
            exponent: 2,
            purse: PurseId::Money,
            origin: "http://shop",
            verify_mode: VerifyMode::Merchant,
        };
        assert!(m
            .check_confirmed(&o, &view(TxnState::Confirmed, 250))
            .is_ok());
        assert_eq!(
            m.check_confirmed(&o, &view(TxnState::Drawn, 250)),
            Err(MerchantError::NotDebited)
        );
        assert_eq!(
            m.check_confirmed(&o, &view(TxnState::Confirmed, 249)),
            Err(MerchantError::WrongOrder("amount"))
        );
    }

    #[test]
    fn webhooks_verify_under_the_merchant_key_only() {
        let key = Key32::new([1; 32]);
        let m = Merchant::new("shop", "Shop", key.clone());
        let ev = WebhookEvent {
            event_id: "evt_1".into(),
            kind: EventKind::Captured,
            created_at: 10,
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
            atc: 1,
            detail: String::new(),
        };
        let body = serde_json::to_vec(&ev).unwrap();
        let sig = webhook::sign(&webhook::webhook_key(&key, "shop"), 10, "evt_1", &body);
        assert_eq!(
            m.verify_webhook("evt_1", "10", &sig, &body, 20),
            Ok(ev.clone())
        );
        let other = Merchant::new("shop", "Shop", Key32::new([2; 32]));
        assert_eq!(
            other.verify_webhook("evt_1", "10", &sig, &body, 20),
            Err(WebhookError::Signature)
        );
        // Signed by the server for another merchant: refused here.
        let mut theirs = ev;
        theirs.merchant_id = "other".into();
        let body = serde_json::to_vec(&theirs).unwrap();
        let sig = webhook::sign(&webhook::webhook_key(&key, "shop"), 10, "evt_1", &body);
        assert!(m.verify_webhook("evt_1", "10", &sig, &body, 20).is_err());
    }
}
