//! `POST /v1/loads/draw`: check the load session and request, let the card's
//! log and its S1 settle what is open on the card, have the HSM verify S1
//! and build CREDIT with S2 and the expected S3, and store the load durably
//! before the answer leaves.

use purse::command::{InitializeLoadResponse, Request, SelectResponse};
use purse::load::bank_api::LoadState;
use purse::load::{CreditCommand, LoadDrawRequest, LoadDrawResponse, LoadEnvelope};
use purse::security_module::{LoadRequest, SecurityModuleError};
use purse::types::{BcdDate, BcdTime};
use purse::wire::{Hex, Sealed};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::decide::BalanceFact;
use super::load_sm_error;
use crate::error::PaymentError;
use crate::purchase::recover::{decode_log, CardLog};
use crate::purchase::{
    check_card_answers, draw_mismatch, malformed, random12, sealed_error, PaymentService,
};
use crate::store::{LoadConflict, LoadDrawn, LoadRow};

impl PaymentService {
    /// `POST /v1/loads/draw`.
    pub async fn load_draw(&self, env: LoadEnvelope) -> Result<LoadDrawResponse, PaymentError> {
        let span = tracing::info_span!("load_draw", txn = %env.session.txn_id, bank = %env.session.bank_id);
        let r = self.load_draw_inner(env).instrument(span.clone()).await;
        span.in_scope(|| match &r {
            Ok(_) => tracing::info!("load drawn"),
            Err(e) => tracing::warn!(code = e.code().as_str(), "load draw refused"),
        });
        r
    }

    async fn load_draw_inner(&self, env: LoadEnvelope) -> Result<LoadDrawResponse, PaymentError> {
        let s = env.session;
        let keys =
            self.open_load_session(&s, env.session_mac.as_slice(), env.etsk.as_slice(), true)?;
        let req = LoadDrawRequest::open(&keys.tsk, &s.txn_id, env.load_request.as_slice())
            .map_err(sealed_error)?;
        req.check(&s).map_err(draw_mismatch)?;
        let sel = SelectResponse::decode(req.select.as_slice()).map_err(malformed)?;
        let init = InitializeLoadResponse::decode(req.initialize.as_slice()).map_err(malformed)?;
        check_card_answers(
            &sel,
            (s.purse, s.currency, s.exponent),
            (init.key_version, init.atc),
        )?;
        let p = sel.purse(s.purse);
        let log = decode_log(&req.log)?;
        // The same request again (a retry) gets the stored answer.
        let draw_hash = Sha256::digest(serde_json::to_vec(&req).map_err(malformed)?).to_vec();
        if let Some(row) = self.store.get_load(&s.bank_id, &s.txn_id).await? {
            return stored_load_draw(&row, &draw_hash);
        }
        let now = self.now();
        let (date, time) = (BcdDate::from_unix(now), BcdTime::from_unix(now));
        // The HSM checks S1 first: the card's word for its balance, the
        // amount and the ATC. A changed amount or balance, another card or a
        // made-up S1 stop here.
        let auth = self.sm.authorize_load(&LoadRequest {
            card_id: sel.card_id,
            expiry: sel.expiry,
            key_version: init.key_version,
            purse: s.purse,
            balance: init.balance,
            max_balance: p.max_balance,
            atc: init.atc,
            random: init.random,
            amount: s.amount,
            s1: init.s1,
            date,
            time,
        });
        let s1_verified = matches!(
            auth,
            Ok(_) | Err(SecurityModuleError::CardExpired | SecurityModuleError::OverMaxBalance)
        );
        if s1_verified {
            // The card's log and its verified balance settle what this server
            // still waits for on this card (a forged record refuses the whole
            // request and changes nothing).
            self.settle_card(
                &sel.card_id,
                &CardLog {
                    records: log.clone(),
                    proven_atc: Some(init.atc),
                },
            )
            .await?;
            let fact = BalanceFact {
                atc: init.atc,
                balance: init.balance,
                purse: s.purse,
            };
            self.settle_card_loads(&sel.card_id, &log, Some(fact), None)
                .await?;
        }
        let auth = auth.map_err(load_sm_error)?;
        let cmd = CreditCommand {
            txn_id: s.txn_id.clone(),
            apdu: Hex(Request::CreditLoad(auth.credit).to_bytes()),
            amount: s.amount,
            balance_after: auth.balance_after,
        };
        let resp = LoadDrawResponse {
            txn_id: s.txn_id.clone(),
            credit_command: cmd.seal(&keys.tsk, random12()),
        };
        let row = LoadRow {
            bank_id: s.bank_id.clone(),
            txn_id: s.txn_id.clone(),
            account_ref: s.account_ref.clone(),
            state: LoadState::Drawn,
            amount: s.amount,
            currency: s.currency,
            exponent: s.exponent,
            purse: s.purse,
            origin: s.origin.clone(),
            drawn: Some(LoadDrawn {
                card_id: sel.card_id,
                card_expiry: sel.expiry,
                key_version: init.key_version,
                atc: init.atc,
                card_random: init.random,
                balance_before: init.balance,
                balance_after: auth.balance_after,
                max_balance: p.max_balance,
                date,
                time,
                expected_s3: auth.expected_s3,
                draw_hash: draw_hash.clone(),
                draw_response: serde_json::to_string(&resp).map_err(malformed)?,
            }),
            complete_hash: None,
            complete_response: None,
            proof: None,
            resolution: None,
            expires_at: s.expires_at,
            created_at: now,
            decided_at: None,
            updated_at: now,
        };
        match self.store.insert_load_drawn(row).await? {
            Ok(()) => Ok(resp),
            Err(LoadConflict::TxnId) => match self.store.get_load(&s.bank_id, &s.txn_id).await? {
                Some(stored) => stored_load_draw(&stored, &draw_hash),
                None => Err(PaymentError::Replay),
            },
            // This INITIALIZE of the card was drawn before: a replayed request.
            Err(LoadConflict::CardAtc) => Err(PaymentError::Replay),
        }
    }
}

/// A draw for a txn id already used: the stored answer if it is the same
/// request and nothing happened since, else a replay (or a voided load).
fn stored_load_draw(row: &LoadRow, draw_hash: &[u8]) -> Result<LoadDrawResponse, PaymentError> {
    match (&row.drawn, row.state) {
        (_, LoadState::Voided) => Err(PaymentError::WrongState),
        (Some(d), LoadState::Drawn) if d.draw_hash == draw_hash => {
            serde_json::from_str(&d.draw_response)
                .map_err(|e| PaymentError::Internal(e.to_string()))
        }
        _ => Err(PaymentError::Replay),
    }
}
