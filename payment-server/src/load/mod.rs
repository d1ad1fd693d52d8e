//! The load server (DESIGN §4, seed figures 17–18): banks with their key
//! `K_bl`, the HSM (the same [`purse::security_module::SecurityModule`], load
//! keys) verifying S1, producing CREDIT with S2, verifying the card's S3, and
//! results for the bank sealed under DK. One module per step, on the same
//! [`PaymentService`] as purchases (one store, one HSM, one outbox), so a
//! card's log and proofs settle its loads and purchases wherever it is used.
//!
//! - [`draw`]: session checks, the card's log and S1 settle what is open on
//!   the card, S1 verified, CREDIT with S2, stored durably before the answer;
//! - [`complete`]: credited only on the card's own S3;
//! - [`recover`]: negative and missing results — the card's proofs (a log
//!   record with S3; a later INITIALIZE FOR LOAD's S1 with every movement in
//!   between accounted for) decide, never the client's word, never silence;
//! - [`bank`]: the bank's signed calls (view, void) and the sweeper;
//! - [`proof`]: the tokens without which no load changes state.
//!
//! Invariant: a load is `credited` iff the card was credited, and it is
//! credited at most once (one CREDIT per INITIALIZE, one row per (card, ATC)).
//! The bank debits the account on `credited` and releases on `failed` or
//! `voided`, so the account is debited iff the card was credited.

pub mod bank;
pub mod complete;
pub mod decide;
pub mod draw;
pub mod proof;
pub mod recover;
pub mod results;

use purse::load::bank_api::{LoadEvent, LoadEventKind, LoadState};
use purse::load::session::{load_dk, verify_load_session_mac};
use purse::load::LoadSession;
use purse::security_module::SecurityModuleError;
use purse::session;

use crate::config::BankEntry;
use crate::error::PaymentError;
use crate::ids;
use crate::purchase::{PaymentService, SessionKeys};
use crate::store::LoadRow;

pub(crate) fn load_sm_error(e: SecurityModuleError) -> PaymentError {
    match e {
        SecurityModuleError::UnknownKeyVersion(_) => PaymentError::UnknownKeyVersion,
        SecurityModuleError::CardExpired => PaymentError::CardExpired,
        SecurityModuleError::OverMaxBalance => PaymentError::OverMaxBalance,
        SecurityModuleError::S1Mismatch => PaymentError::S1Mismatch,
        SecurityModuleError::S3Mismatch => PaymentError::S3Mismatch,
        other => PaymentError::Internal(format!("security module: {other}")),
    }
}

impl PaymentService {
    pub fn bank(&self, id: &str) -> Result<&BankEntry, PaymentError> {
        self.banks.get(id).ok_or(PaymentError::UnknownBank)
    }

    /// Check the load session (bank, MAC, origin, purse, terminal, expiry)
    /// and unwrap TSK. `check_expiry` only for the draw: a card credited just
    /// before expiry must still be completed.
    pub(crate) fn open_load_session(
        &self,
        s: &LoadSession,
        session_mac: &[u8],
        etsk: &[u8],
        check_expiry: bool,
    ) -> Result<SessionKeys, PaymentError> {
        if !ids::ok(&s.txn_id) || !ids::ok(&s.bank_id) || !ids::ok_or_empty(&s.account_ref) {
            return Err(PaymentError::Malformed(format!(
                "txn_id, bank_id and account_ref: {}",
                ids::RULE
            )));
        }
        let b = self.bank(&s.bank_id)?;
        if !verify_load_session_mac(&b.key, s, etsk, session_mac) {
            return Err(PaymentError::BadMac);
        }
        if !b.origins.iter().any(|o| o == &s.origin) {
            return Err(PaymentError::OriginMismatch);
        }
        if !b.purses.contains(&s.purse) {
            return Err(PaymentError::PurseNotAllowed);
        }
        if s.terminal != self.sm.terminal() {
            return Err(PaymentError::TerminalMismatch);
        }
        if s.amount == 0 {
            return Err(PaymentError::Malformed("a load of amount 0".into()));
        }
        if check_expiry && s.expires_at < self.now() {
            return Err(PaymentError::Expired);
        }
        let dk = load_dk(&b.key, s);
        let tsk = session::unwrap_tsk(&dk, &s.txn_id, etsk).map_err(|_| PaymentError::BadSeal)?;
        Ok(SessionKeys { dk, tsk })
    }

    /// The webhook for a change, when the bank has a webhook URL.
    pub(crate) fn load_webhook(
        &self,
        row: &LoadRow,
        kind: LoadEventKind,
        state: LoadState,
        detail: &str,
        now: u64,
    ) -> Option<LoadEvent> {
        self.banks
            .get(&row.bank_id)
            .and_then(|b| b.webhook_url.as_ref())
            .map(|_| row.event(self.store.card_ref_key(), kind, state, detail, now))
    }

    /// Apply load changes in one database transaction; which applied.
    pub(crate) async fn apply_loads(
        &self,
        changes: Vec<crate::store::LoadTransition>,
    ) -> Result<Vec<bool>, PaymentError> {
        let any_webhook = changes.iter().any(|t| t.webhook.is_some());
        let applied = self.store.apply_loads(changes).await?;
        if any_webhook {
            self.webhooks.notify_one();
        }
        Ok(applied)
    }
}
