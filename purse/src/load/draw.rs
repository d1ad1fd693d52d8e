//! The load request: what the widget gathered from the card (SELECT, the
//! card's log, INITIALIZE FOR LOAD with S1), and the HSM's credit command in
//! answer.
//!
//! # Format
//! ```text
//! POST /v1/loads/draw
//! {"session": {…LoadSession…}, "session_mac": "<hex>", "etsk": "<hex>",
//!  "load_request": "<LoadDrawRequest sealed under TSK, label load-request>"}
//! → {"txn_id": "L-1",
//!    "credit_command": "<CreditCommand sealed under TSK, label credit-command>"}
//! ```
//! The load server verifies S1 (the card's word for its balance, the amount
//! and the ATC), stores the load (state `drawn`) durably, then answers the
//! CREDIT FOR LOAD command with S2. The log records settle the server's open
//! transactions on that card first (DESIGN §4 "Recovery").

use crate::prelude::*;
use serde::{Deserialize, Serialize};

use crate::apdu::Command;
use crate::command::{CreditLoad, Request};
use crate::session::label;
use crate::types::PurseId;
use crate::wire::{Hex, Sealed};

use super::session::LoadSession;

/// Body of `POST /v1/loads/draw`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadEnvelope {
    pub session: LoadSession,
    /// HMAC-SHA256(K_bl, canonical load session || ETSK), 32 bytes.
    pub session_mac: Hex,
    /// TSK sealed under DK (label `etsk`).
    pub etsk: Hex,
    /// A [`LoadDrawRequest`] sealed under TSK (label `load-request`).
    pub load_request: Hex,
}

/// What the widget gathered from the card, sealed under TSK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadDrawRequest {
    pub txn_id: String,
    /// Origin of the page embedding the widget, as the browser reported it.
    pub page_origin: String,
    /// Amount the widget put into INITIALIZE FOR LOAD (must equal the session's).
    pub amount: u32,
    pub purse: PurseId,
    /// Data of the card's SELECT response (without SW).
    pub select: Hex,
    /// Data of the card's INITIALIZE FOR LOAD response (without SW): balance,
    /// ATC, key version, algorithm, R, S1.
    pub initialize: Hex,
    /// The card's newest log records (READ LOG 1, 2, …; 37 bytes each), at
    /// most [`super::MAX_LOG_RECORDS`].
    #[serde(default)]
    pub log: Vec<Hex>,
}

crate::json::lite::encode_struct!(LoadDrawRequest {
    txn_id,
    page_origin,
    amount,
    purse,
    select,
    initialize,
    log,
});

impl From<crate::client::CardEvidence> for LoadDrawRequest {
    fn from(e: crate::client::CardEvidence) -> Self {
        Self {
            txn_id: e.txn_id,
            page_origin: e.page_origin,
            amount: e.amount,
            purse: e.purse,
            select: e.select,
            initialize: e.initialize,
            log: e.log,
        }
    }
}

impl Sealed for LoadDrawRequest {
    const LABEL: &'static str = label::LOAD_REQUEST;
    fn txn_id(&self) -> &str {
        &self.txn_id
    }
}

/// Why a load request does not fit its session: the purchase's check
/// ([`crate::purchase::draw::DrawMismatch`]), one implementation for both.
pub type LoadMismatch = crate::purchase::draw::DrawMismatch;

impl LoadDrawRequest {
    /// The request must be for the session's amount, purse and page origin.
    pub fn check(&self, s: &LoadSession) -> Result<(), LoadMismatch> {
        crate::purchase::draw::check_fit(
            (&self.page_origin, self.amount, self.purse, self.log.len()),
            (&s.origin, s.amount, s.purse),
        )
    }
}

/// Answer of `POST /v1/loads/draw`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadDrawResponse {
    pub txn_id: String,
    /// A [`CreditCommand`] sealed under TSK (label `credit-command`).
    pub credit_command: Hex,
}

crate::json::lite::decode_struct!(LoadDrawResponse {
    txn_id,
    credit_command,
});

/// The HSM's credit command, sealed under TSK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditCommand {
    pub txn_id: String,
    /// The complete CREDIT FOR LOAD command APDU for the card.
    pub apdu: Hex,
    /// The amount the card will credit (the widget checks it is the session's).
    pub amount: u32,
    /// The balance the card will report after the credit.
    pub balance_after: u32,
}

crate::json::lite::decode_struct!(
    CreditCommand,
    deny_unknown_fields {
        txn_id,
        apdu,
        amount,
        balance_after,
    }
);

impl Sealed for CreditCommand {
    const LABEL: &'static str = label::CREDIT_COMMAND;
    fn txn_id(&self) -> &str {
        &self.txn_id
    }
}

/// The credit command is not for what the shopper approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the credit command is not for exactly the session's amount and purse")]
pub struct CreditChanged;

/// Proof that the CREDIT about to be sent is for the approved load: only
/// [`CreditCommand::check`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditChecked {
    apdu: Vec<u8>,
}

impl CreditChecked {
    /// The CREDIT APDU to send to the card.
    pub fn apdu(&self) -> &[u8] {
        &self.apdu
    }
}

impl CreditCommand {
    /// The widget's check before CREDIT: the APDU is a CREDIT FOR LOAD of the
    /// session's purse, the stated amount is the session's (the card credits
    /// the amount of its own INITIALIZE, which the widget made with the
    /// session's amount), and the txn id matches.
    pub fn check(&self, s: &LoadSession) -> Result<CreditChecked, CreditChanged> {
        let apdu_ok = Command::parse(self.apdu.as_slice())
            .ok()
            .and_then(|c| Request::parse(&c).ok())
            .is_some_and(
                |r| matches!(r, Request::CreditLoad(CreditLoad { purse, .. }) if purse == s.purse),
            );
        if apdu_ok && self.amount == s.amount && self.txn_id == s.txn_id {
            Ok(CreditChecked {
                apdu: self.apdu.0.clone(),
            })
        } else {
            Err(CreditChanged)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{BcdDate, BcdTime};

    fn command(amount: u32, purse: PurseId) -> CreditCommand {
        CreditCommand {
            txn_id: "L-1".into(),
            apdu: Hex(Request::CreditLoad(CreditLoad {
                purse,
                date: BcdDate::parse("20261123").unwrap(),
                time: BcdTime::parse("120000").unwrap(),
                s2: [0; 8],
            })
            .to_bytes()),
            amount,
            balance_after: 6_000,
        }
    }

    #[test]
    fn credit_check_reads_the_apdu_itself() {
        let s = super::super::session::tests::session();
        assert!(command(5_000, PurseId::Money).check(&s).is_ok());
        assert_eq!(command(5_001, PurseId::Money).check(&s), Err(CreditChanged));
        assert_eq!(
            command(5_000, PurseId::Points).check(&s),
            Err(CreditChanged)
        );
        let mut other = command(5_000, PurseId::Money);
        other.txn_id = "L-2".into();
        assert_eq!(other.check(&s), Err(CreditChanged));
        let mut not_credit = command(5_000, PurseId::Money);
        not_credit.apdu = Hex(vec![0x80, 0x5C, 0x00, 0x00, 0x04]);
        assert_eq!(not_credit.check(&s), Err(CreditChanged));
    }

    #[test]
    fn load_request_checks_its_session() {
        let s = super::super::session::tests::session();
        let mut r = LoadDrawRequest {
            txn_id: "L-1".into(),
            page_origin: s.origin.clone(),
            amount: s.amount,
            purse: s.purse,
            select: Hex::default(),
            initialize: Hex::default(),
            log: vec![],
        };
        assert_eq!(r.check(&s), Ok(()));
        r.amount += 1;
        assert_eq!(r.check(&s), Err(LoadMismatch::Amount));
        r.amount -= 1;
        r.page_origin = "http://evil".into();
        assert_eq!(r.check(&s), Err(LoadMismatch::Origin));
        r.page_origin = s.origin.clone();
        r.log = vec![Hex::default(); 11];
        assert_eq!(r.check(&s), Err(LoadMismatch::LogTooLong));
    }
}
