//! The few calls a bank's backend makes to load its customers' cards.
//!
//! - [`Bank::build_session`]: after the bank has **held** the amount on the
//!   account, make TSK, wrap it as ETSK under DK and MAC the load session with
//!   `K_bl`; the page hands the [`LoadWidgetSession`] to the widget
//!   (`Cardpay.mount(el, {session, mode: 'load'})`).
//! - [`Bank::verify_result`]: what the widget brought back. A result B
//!   (sealed under DK, which the client never has) decides: post the hold on
//!   `credited`, release it on `not_credited`. The widget's own word that
//!   nothing was loaded decides nothing: void the load at the load server
//!   ([`Bank::void_path`]) and act on its answer ([`Bank::check_view`]).
//! - [`Bank::verify_webhook`]: the load server's signed webhooks (every
//!   decision, delivered until acknowledged). Deduplicate by event id.
//! - [`Bank::sign`]: sign requests to the bank API (`/v1/bank/loads/…`).
//!
//! The account is debited if and only if the card was credited: post only on
//! `credited`, release only on `not_credited`/`voided`, keep holding otherwise.

use purse::load::bank_api::{self, LoadEvent, LoadState, LoadView};
use purse::load::{BankResult, LoadResultB, LoadSession, LoadStatus, LoadWidgetSession};
use purse::session::{self, Key32};
use purse::types::{PurseId, Terminal};
use purse::webhook::{self, WebhookError};
use purse::wire::Sealed;
use serde::{Deserialize, Serialize};

use crate::random_bytes;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    #[error("random source failed")]
    Random,
    #[error("result does not open under this load's key (forged, or for another load)")]
    BadSeal,
    #[error("result is for another load or bank: {0}")]
    WrongLoad(&'static str),
}

/// A bank's identity and its key `K_bl` shared with the load server.
#[derive(Clone)]
pub struct Bank {
    pub id: String,
    pub name: String,
    key: Key32,
    webhook_key: Key32,
}

impl core::fmt::Debug for Bank {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bank")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What the bank decides for one load (after holding the amount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadParams {
    /// A fresh id per load.
    pub txn_id: String,
    /// The bank's reference of the account (opaque; never a full account number).
    pub account_ref: String,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    pub expires_at: u64,
    pub result_url: String,
    /// The bank page's origin.
    pub origin: String,
    /// The load server's HSM terminal id.
    pub terminal: Terminal,
}

/// The hold a result must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRef<'a> {
    pub txn_id: &'a str,
    pub account_ref: &'a str,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    pub origin: &'a str,
}

/// A load decision the bank may book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedLoad {
    pub txn_id: String,
    pub amount: u32,
    /// Masked card id.
    pub card: String,
    /// The card's reference for this bank (32 hex digits, stable, never the
    /// card number; empty for a load never drawn or from an older server).
    #[serde(default)]
    pub card_ref: String,
    pub atc: u16,
    /// How it was verified: `result_b`, `webhook` or `view`.
    pub evidence: String,
}

/// What to do with the hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Booking {
    /// The card was credited: debit the held amount (once per txn id).
    Post(VerifiedLoad),
    /// The card was not (and can never be) credited: release the hold.
    Release(VerifiedLoad),
    /// Not decided: ask the load server (`POST /v1/bank/loads/{txn}/void`).
    AskServer { txn_id: String },
    /// Still open at the load server: keep holding.
    Keep,
}

impl Bank {
    pub fn new(id: impl Into<String>, name: impl Into<String>, key: Key32) -> Self {
        let id = id.into();
        let webhook_key = webhook::webhook_key(&key, &id);
        Self {
            id,
            name: name.into(),
            key,
            webhook_key,
        }
    }

    pub fn key(&self) -> &Key32 {
        &self.key
    }

    /// DK of one load.
    pub fn dk(&self, txn_id: &str) -> Key32 {
        session::derive_dk(&self.key, txn_id, &self.id)
    }

    /// Build the load session (hold the amount first): fresh TSK, ETSK, MAC.
    pub fn build_session(&self, p: LoadParams) -> Result<LoadWidgetSession, BankError> {
        let tsk = Key32::new(random_bytes().map_err(|_| BankError::Random)?);
        let nonce = random_bytes().map_err(|_| BankError::Random)?;
        Ok(self.build_session_with(p, tsk, nonce))
    }

    /// [`Self::build_session`] with the caller's TSK and nonce (tests, vectors).
    pub fn build_session_with(
        &self,
        p: LoadParams,
        tsk: Key32,
        nonce: [u8; 12],
    ) -> LoadWidgetSession {
        let s = LoadSession {
            bank_id: self.id.clone(),
            bank_name: self.name.clone(),
            txn_id: p.txn_id,
            account_ref: p.account_ref,
            amount: p.amount,
            currency: p.currency,
            exponent: p.exponent,
            purse: p.purse,
            expires_at: p.expires_at,
            result_url: p.result_url,
            origin: p.origin,
            terminal: p.terminal,
        };
        LoadWidgetSession::build(&self.key, s, &tsk, nonce)
    }

    /// Open a result B of `txn_id`.
    pub fn open_result_b(&self, txn_id: &str, sealed: &[u8]) -> Result<LoadResultB, BankError> {
        LoadResultB::open(&self.dk(txn_id), txn_id, sealed).map_err(|_| BankError::BadSeal)
    }

    /// What the widget brought back, against the hold.
    pub fn verify_result(&self, hold: &HoldRef<'_>, r: &BankResult) -> Result<Booking, BankError> {
        if r.txn_id() != hold.txn_id {
            return Err(BankError::WrongLoad("txn_id"));
        }
        match r {
            BankResult::NotLoaded { txn_id, .. } => Ok(Booking::AskServer {
                txn_id: txn_id.clone(),
            }),
            BankResult::ResultB { txn_id, result_b } => {
                let b = self.open_result_b(txn_id, result_b.as_slice())?;
                let checks: [(bool, &'static str); 7] = [
                    (b.bank_id == self.id, "bank_id"),
                    (b.account_ref == hold.account_ref, "account_ref"),
                    (b.amount == hold.amount, "amount"),
                    (b.currency == hold.currency, "currency"),
                    (b.exponent == hold.exponent, "exponent"),
                    (b.purse == hold.purse, "purse"),
                    (b.origin == hold.origin, "origin"),
                ];
                if let Some((_, what)) = checks.iter().find(|(ok, _)| !ok) {
                    return Err(BankError::WrongLoad(what));
                }
                let v = VerifiedLoad {
                    txn_id: b.txn_id,
                    amount: b.amount,
                    card: b.card,
                    card_ref: b.card_ref,
                    atc: b.atc,
                    evidence: "result_b".into(),
                };
                Ok(match b.status {
                    LoadStatus::Credited => Booking::Post(v),
                    LoadStatus::NotCredited => Booking::Release(v),
                })
            }
        }
    }

    /// The load server's view of a load (from `GET` or `void`), against the hold.
    pub fn check_view(&self, hold: &HoldRef<'_>, v: &LoadView) -> Result<Booking, BankError> {
        if v.bank_id != self.id || v.txn_id != hold.txn_id {
            return Err(BankError::WrongLoad("txn_id"));
        }
        let verified = || VerifiedLoad {
            txn_id: v.txn_id.clone(),
            amount: hold.amount,
            card: v.card.clone(),
            card_ref: v.card_ref.clone(),
            atc: v.atc,
            evidence: "view".into(),
        };
        if v.state == LoadState::Voided {
            return Ok(Booking::Release(verified()));
        }
        if v.amount != hold.amount || v.account_ref != hold.account_ref || v.purse != hold.purse {
            return Err(BankError::WrongLoad("amount"));
        }
        Ok(match v.state {
            s if s.is_credited() => Booking::Post(verified()),
            s if s.is_not_credited() => Booking::Release(verified()),
            _ => Booking::Keep,
        })
    }

    /// A signed webhook from the load server.
    pub fn verify_webhook(
        &self,
        event_id: &str,
        timestamp: &str,
        signature: &str,
        body: &[u8],
        now: u64,
    ) -> Result<LoadEvent, WebhookError> {
        let ev = bank_api::verify_load_event(
            &self.webhook_key,
            event_id,
            timestamp,
            signature,
            body,
            now,
        )?;
        if ev.bank_id != self.id {
            return Err(WebhookError::Body("event for another bank".into()));
        }
        Ok(ev)
    }

    /// What a verified webhook books for the hold.
    pub fn book_event(&self, hold: &HoldRef<'_>, ev: &LoadEvent) -> Result<Booking, BankError> {
        if ev.txn_id != hold.txn_id {
            return Err(BankError::WrongLoad("txn_id"));
        }
        let v = VerifiedLoad {
            txn_id: ev.txn_id.clone(),
            amount: hold.amount,
            card: ev.card.clone(),
            card_ref: ev.card_ref.clone(),
            atc: ev.atc,
            evidence: "webhook".into(),
        };
        if ev.state == LoadState::Voided {
            return Ok(Booking::Release(v));
        }
        if ev.amount != hold.amount || ev.account_ref != hold.account_ref || ev.purse != hold.purse
        {
            return Err(BankError::WrongLoad("amount"));
        }
        Ok(match ev.state {
            s if s.is_credited() => Booking::Post(v),
            s if s.is_not_credited() => Booking::Release(v),
            _ => Booking::Keep,
        })
    }

    /// Headers of a signed bank API request.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        ts: u64,
        body: &[u8],
    ) -> [(&'static str, String); 3] {
        bank_api::auth::sign(&self.id, &self.key, method, path, ts, body)
    }

    /// `/v1/bank/loads/{txn}/void`.
    pub fn void_path(txn_id: &str) -> String {
        format!("/v1/bank/loads/{txn_id}/void")
    }

    /// `/v1/bank/loads/{txn}`.
    pub fn view_path(txn_id: &str) -> String {
        format!("/v1/bank/loads/{txn_id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use purse::load::LoadResultB;

    fn bank() -> Bank {
        Bank::new("bank", "Bank", Key32::new([3; 32]))
    }

    fn hold() -> HoldRef<'static> {
        HoldRef {
            txn_id: "L-1",
            account_ref: "acct-1",
            amount: 5000,
            currency: 978,
            exponent: 2,
            purse: PurseId::Money,
            origin: "http://bank",
        }
    }

    fn result_b(status: LoadStatus) -> LoadResultB {
        LoadResultB {
            bank_id: "bank".into(),
            txn_id: "L-1".into(),
            account_ref: "acct-1".into(),
            status,
            amount: 5000,
            currency: 978,
            exponent: 2,
            purse: PurseId::Money,
            origin: "http://bank".into(),
            card: "…0001".into(),
            card_ref: "00112233445566778899aabbccddeeff".into(),
            atc: 3,
            balance_after: Some(6000),
            proof: "s3".into(),
            date: "20261129".into(),
            time: "120000".into(),
        }
    }

    #[test]
    fn result_b_books_only_what_the_load_server_sealed() {
        let b = bank();
        let sealed = result_b(LoadStatus::Credited).seal(&b.dk("L-1"), [1; 12]);
        let r = BankResult::ResultB {
            txn_id: "L-1".into(),
            result_b: sealed.clone(),
        };
        assert!(matches!(b.verify_result(&hold(), &r), Ok(Booking::Post(_))));
        let released = result_b(LoadStatus::NotCredited).seal(&b.dk("L-1"), [2; 12]);
        assert!(matches!(
            b.verify_result(
                &hold(),
                &BankResult::ResultB {
                    txn_id: "L-1".into(),
                    result_b: released
                }
            ),
            Ok(Booking::Release(_))
        ));
        // Another amount than the hold.
        let mut other = result_b(LoadStatus::Credited);
        other.amount = 1;
        let r2 = BankResult::ResultB {
            txn_id: "L-1".into(),
            result_b: other.seal(&b.dk("L-1"), [3; 12]),
        };
        assert_eq!(
            b.verify_result(&hold(), &r2),
            Err(BankError::WrongLoad("amount"))
        );
        // Sealed by someone without DK (another bank's key).
        let evil = Bank::new("bank", "Bank", Key32::new([4; 32]));
        let r3 = BankResult::ResultB {
            txn_id: "L-1".into(),
            result_b: result_b(LoadStatus::Credited).seal(&evil.dk("L-1"), [4; 12]),
        };
        assert_eq!(b.verify_result(&hold(), &r3), Err(BankError::BadSeal));
        // Moved to another load.
        let mut h2 = hold();
        h2.txn_id = "L-2";
        let r4 = BankResult::ResultB {
            txn_id: "L-2".into(),
            result_b: sealed,
        };
        assert_eq!(b.verify_result(&h2, &r4), Err(BankError::BadSeal));
        // The widget's word asks the server.
        let n = BankResult::NotLoaded {
            txn_id: "L-1".into(),
            reason: "card_refused".into(),
        };
        assert!(matches!(
            b.verify_result(&hold(), &n),
            Ok(Booking::AskServer { .. })
        ));
    }
}
