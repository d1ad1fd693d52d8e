//! The draw: what the widget gathered from the card, and the security
//! module's debit command in answer.
//!
//! # Format
//! ```text
//! POST /v1/purchases/draw
//! {"session": {…}, "session_mac": "<hex>", "etsk": "<hex>",
//!  "draw_request": "<DrawRequest sealed under TSK, label draw-request>"}
//! → {"txn_id": "T-1", "verify_mode": "payment_server",
//!    "debit_command": "<DebitCommand sealed under TSK, label debit-command>",
//!    "expected_s3_m": "<ExpectedS3 sealed under DK, label expected-s3>"}   (client, merchant)
//! ```
//! The draw request carries the card's newest log records (READ LOG, 37 bytes
//! each, newest first): the server settles its open transactions on that card
//! with them before it draws a new one (DESIGN §4 "Recovery").

use crate::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::apdu::Command;
use crate::command::{DebitPurchase, CLA_PURSE, INS_DEBIT};
use crate::session::{label, Session, VerifyMode};
use crate::types::PurseId;
use crate::wire::{Hex, Sealed};

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
    /// Data of the card's answer to an INITIALIZE FOR LOAD of amount 0 sent
    /// just before the INITIALIZE FOR PURCHASE (without SW): its S1 proves
    /// that the card named in `select` is present and what its ATC is, which
    /// nothing in a purchase's INITIALIZE does (it carries no MAC).
    pub initialize_load: Hex,
    /// Data of the card's INITIALIZE FOR PURCHASE response (without SW); its
    /// ATC must be the proven one plus 1.
    pub initialize: Hex,
    /// Whether a VERIFY succeeded in this selection (informational).
    #[serde(default)]
    pub pin_verified: bool,
    /// The card's newest log records (READ LOG 1, 2, …; 37 bytes each), at
    /// most [`super::MAX_LOG_RECORDS`].
    #[serde(default)]
    pub log: Vec<Hex>,
}

crate::json::lite::encode_struct!(DrawRequest {
    txn_id,
    page_origin,
    amount,
    purse,
    select,
    initialize_load,
    initialize,
    pin_verified,
    log,
});

impl DrawRequest {
    /// The draw request for what the card said.
    pub(crate) fn from_card(
        e: crate::client::CardEvidence,
        initialize_load: Vec<u8>,
        pin_verified: bool,
    ) -> Self {
        Self {
            txn_id: e.txn_id,
            page_origin: e.page_origin,
            amount: e.amount,
            purse: e.purse,
            select: e.select,
            initialize_load: Hex(initialize_load),
            initialize: e.initialize,
            pin_verified,
            log: e.log,
        }
    }
}

impl Sealed for DrawRequest {
    const LABEL: &'static str = label::DRAW_REQUEST;
    fn txn_id(&self) -> &str {
        &self.txn_id
    }
}

/// Why a draw request (purchase or load) does not fit its session (checked
/// by the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DrawMismatch {
    #[error("page origin differs from the session's")]
    Origin,
    #[error("amount or purse differs from the session's")]
    Amount,
    #[error("too many log records")]
    LogTooLong,
}

/// What a draw request says against what its session says: the page origin,
/// amount and purse must be the session's, the log at most
/// [`super::MAX_LOG_RECORDS`] records. One check for purchases and loads.
pub(crate) fn check_fit(
    (origin, amount, purse, log_len): (&str, u32, PurseId, usize),
    (s_origin, s_amount, s_purse): (&str, u32, PurseId),
) -> Result<(), DrawMismatch> {
    if origin != s_origin {
        return Err(DrawMismatch::Origin);
    }
    if amount != s_amount || purse != s_purse {
        return Err(DrawMismatch::Amount);
    }
    if log_len > super::MAX_LOG_RECORDS {
        return Err(DrawMismatch::LogTooLong);
    }
    Ok(())
}

impl DrawRequest {
    /// The request must be for the session's amount, purse and page origin.
    pub fn check(&self, s: &Session) -> Result<(), DrawMismatch> {
        check_fit(
            (&self.page_origin, self.amount, self.purse, self.log.len()),
            (&s.origin, s.amount, s.purse),
        )
    }
}

/// Answer of `POST /v1/purchases/draw`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrawResponse {
    pub txn_id: String,
    pub verify_mode: VerifyMode,
    /// A [`DebitCommand`] sealed under TSK (label `debit-command`).
    pub debit_command: Hex,
    /// Modes `client` and `merchant`: an [`ExpectedS3`] sealed under DK
    /// (label `expected-s3`), which only the merchant can open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_s3_m: Option<Hex>,
}

crate::json::lite::decode_struct!(DrawResponse {
    txn_id,
    verify_mode,
    debit_command,
    expected_s3_m: opt,
});

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
    /// Mode `client` only: [`check_value`] of the expected answer. The widget
    /// can tell the card's answer is right; it never learns S3 itself, so it
    /// cannot forge a debit response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_value: Option<Hex>,
}

crate::json::lite::decode_struct!(
    DebitCommand,
    deny_unknown_fields {
        txn_id,
        apdu,
        amount,
        balance_after,
        check_value: opt,
    }
);

impl Sealed for DebitCommand {
    const LABEL: &'static str = label::DEBIT_COMMAND;
    fn txn_id(&self) -> &str {
        &self.txn_id
    }
}

/// The amount check failed: the debit command would charge something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the debit command does not charge exactly the session's amount and purse")]
pub struct AmountChanged;

/// Proof that the DEBIT about to be sent charges exactly what the shopper
/// approved: only [`DebitCommand::check`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountChecked {
    apdu: Vec<u8>,
}

impl AmountChecked {
    /// The DEBIT APDU to send to the card.
    pub fn apdu(&self) -> &[u8] {
        &self.apdu
    }
}

impl DebitCommand {
    /// The widget's check before DEBIT: the stated amount, the APDU's real
    /// amount and purse, and the txn id all match the session.
    pub fn check(&self, s: &Session) -> Result<AmountChecked, AmountChanged> {
        let apdu_ok = Command::parse(self.apdu.as_slice())
            .ok()
            .filter(|c| (c.cla, c.ins) == (CLA_PURSE, INS_DEBIT))
            .and_then(|c| DebitPurchase::parse(&c).ok())
            .is_some_and(|d| d.purse == s.purse && d.amount == s.amount);
        if apdu_ok && self.amount == s.amount && self.txn_id == s.txn_id {
            Ok(AmountChecked {
                apdu: self.apdu.0.clone(),
            })
        } else {
            Err(AmountChanged)
        }
    }

    /// Mode `client`: is `digest`, the SHA-256 of the card's answer's
    /// [`check_value_input`], the check value? (Constant time; false when the
    /// command carries none.)
    pub fn answer_matches(&self, digest: &[u8]) -> bool {
        self.check_value
            .as_ref()
            .is_some_and(|c| crate::crypto::mac_eq(c.as_slice(), digest))
    }
}

/// Client-mode check value:
/// `SHA-256("cardpay/s3-check" || txn id || balance after (4, BE) || S3 (8))`.
/// One-way, so holding it does not let the client make the S3 that captures.
pub fn check_value(txn_id: &str, balance_after: u32, s3: &[u8; 8]) -> [u8; 32] {
    Sha256::digest(check_value_input(txn_id, balance_after, s3)).into()
}

/// What [`check_value`] hashes (the widget has the browser hash it).
pub fn check_value_input(txn_id: &str, balance_after: u32, s3: &[u8; 8]) -> Vec<u8> {
    [
        b"cardpay/s3-check",
        txn_id.as_bytes(),
        &balance_after.to_be_bytes(),
        s3,
    ]
    .concat()
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
    /// The card's reference for this merchant (32 hex digits, stable, not the
    /// card number; empty from an older server). See docs/protocol.md.
    #[serde(default)]
    pub card_ref: String,
    pub atc: u16,
    pub seq: u32,
    pub balance_after: u32,
    pub expected_s3: Hex,
}

impl Sealed for ExpectedS3 {
    const LABEL: &'static str = label::EXPECTED_S3;
    fn txn_id(&self) -> &str {
        &self.txn_id
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::command::Request;
    use crate::types::{BcdDate, BcdTime, Terminal};

    pub(crate) fn session() -> Session {
        Session {
            merchant_id: "m".into(),
            merchant_name: "M".into(),
            txn_id: "T-1".into(),
            order_ref: String::new(),
            amount: 250,
            currency: 978,
            exponent: 2,
            purse: PurseId::Money,
            expires_at: 1,
            verify_mode: VerifyMode::Client,
            result_url: "http://m/r".into(),
            origin: "http://m".into(),
            terminal: Terminal([0, 0, 0, 0, 0, 1]),
        }
    }

    fn command(amount: u32, apdu_amount: u32) -> DebitCommand {
        let apdu = Request::DebitPurchase(DebitPurchase {
            purse: PurseId::Money,
            amount: apdu_amount,
            seq: 1,
            date: BcdDate::parse("20261123").unwrap(),
            time: BcdTime::parse("120000").unwrap(),
            s2: [0; 8],
        })
        .to_bytes();
        DebitCommand {
            txn_id: "T-1".into(),
            apdu: Hex(apdu),
            amount,
            balance_after: 750,
            check_value: Some(Hex(check_value("T-1", 750, &[7; 8]).to_vec())),
        }
    }

    #[test]
    fn amount_check_reads_the_apdu_itself() {
        let s = session();
        assert!(command(250, 250).check(&s).is_ok());
        assert_eq!(command(250, 251).check(&s), Err(AmountChanged));
        assert_eq!(command(251, 251).check(&s), Err(AmountChanged));
        let mut other = command(250, 250);
        other.txn_id = "T-2".into();
        assert_eq!(other.check(&s), Err(AmountChanged));
        // A hostile server's command that is no DEBIT FOR PURCHASE of the
        // session's amount and purse, whatever it says next to it: another
        // CLA, another INS (an INITIALIZE FOR PURCHASE of that amount), P1,
        // purse, length, or a date that is no date.
        let bytes = command(250, 250).apdu.0;
        let with = |at: usize, b: u8| {
            let mut c = command(250, 250);
            c.apdu.0[at] = b;
            c
        };
        for (at, b) in [
            (0, 0x00),
            (1, 0x50),
            (2, 0x02),
            (3, 0x02),
            (4, 0x16),
            (15, 0x13),
        ] {
            assert_ne!(bytes[at], b);
            assert_eq!(
                with(at, b).check(&s),
                Err(AmountChanged),
                "byte {at} = {b:02X}"
            );
        }
        let mut short = command(250, 250);
        short.apdu.0.truncate(5 + 22);
        assert_eq!(short.check(&s), Err(AmountChanged));
    }

    #[test]
    fn check_value_binds_txn_balance_and_s3() {
        let c = command(250, 250);
        let matches = |c: &DebitCommand, b, s3| c.answer_matches(&check_value("T-1", b, s3));
        assert!(matches(&c, 750, &[7; 8]));
        assert!(!matches(&c, 751, &[7; 8]));
        assert!(!matches(&c, 750, &[8; 8]));
        assert!(!c.answer_matches(&[]));
        assert_ne!(
            check_value("T-1", 750, &[7; 8]),
            check_value("T-2", 750, &[7; 8])
        );
        let none = DebitCommand {
            check_value: None,
            ..c
        };
        assert!(!matches(&none, 750, &[7; 8]));
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
