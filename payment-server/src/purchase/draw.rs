//! `POST /v1/purchases/draw`: check the session and the draw request, check
//! that the card proved itself (the S1 of its INITIALIZE FOR LOAD of amount 0,
//! right before the purchase's INITIALIZE), settle the card's undecided
//! transactions from the log it carries, keep one undecided attempt per
//! order, and answer the security module's debit command (stored durably
//! before the answer leaves).

use purse::command::{InitializeLoadResponse, InitializePurchaseResponse, Request, SelectResponse};
use purse::merchant_api::TxnState;
use purse::purchase::{
    check_value, DebitCommand, DrawEnvelope, DrawRequest, DrawResponse, ExpectedS3,
};
use purse::session::VerifyMode;
use purse::types::{BcdDate, BcdTime};
use purse::wire::{Hex, Sealed};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::recover::{decode_log, CardLog};
use super::{
    check_card_answers, draw_mismatch, malformed, random12, sealed_error, sm_error, PaymentService,
    StoredJson,
};
use crate::error::PaymentError;
use crate::store::{InsertConflict, TxnRow};

impl PaymentService {
    /// `POST /v1/purchases/draw`: the [`DrawResponse`] as stored with the row.
    pub async fn draw(&self, env: DrawEnvelope) -> Result<StoredJson, PaymentError> {
        let span = tracing::info_span!("draw", txn = %env.session.txn_id, merchant = %env.session.merchant_id);
        let r = self.draw_inner(env).instrument(span.clone()).await;
        span.in_scope(|| match &r {
            Ok(_) => tracing::info!("drawn"),
            Err(e) => tracing::warn!(code = e.code().as_str(), "draw refused"),
        });
        r
    }

    async fn draw_inner(&self, env: DrawEnvelope) -> Result<StoredJson, PaymentError> {
        let s = env.session;
        let keys = self.open_session(&s, env.session_mac.as_slice(), env.etsk.as_slice(), true)?;
        let dr = DrawRequest::open(&keys.tsk, &s.txn_id, env.draw_request.as_slice())
            .map_err(sealed_error)?;
        dr.check(&s).map_err(draw_mismatch)?;
        let sel = SelectResponse::decode(dr.select.as_slice()).map_err(malformed)?;
        let init =
            InitializePurchaseResponse::decode(dr.initialize.as_slice()).map_err(malformed)?;
        check_card_answers(
            &sel,
            (s.purse, s.currency, s.exponent),
            (init.key_version, init.atc),
        )?;
        let proof =
            InitializeLoadResponse::decode(dr.initialize_load.as_slice()).map_err(malformed)?;
        check_proof(&proof, &init)?;
        // The card named in SELECT is present: S1 under its load key. Nothing
        // else in a draw request is the card's (INITIALIZE FOR PURCHASE has no
        // MAC), and nothing is read, settled or stored before this holds.
        let fact = self.card_proof(&sel.card_id, s.purse, &proof)?;
        let log = decode_log(&dr.log)?;
        // The same draw again (a retry sends the same sealed bytes) gets the stored answer.
        let draw_hash = Sha256::digest(env.draw_request.as_slice()).to_vec();
        // The three reads at once: one trip to the store (SQLite's writer
        // thread takes them together; PostgreSQL's pool in parallel). The
        // settling below changes purchases only, not the loads read here.
        let (stored, undecided, open_loads) = tokio::try_join!(
            self.store.get_txn(&s.merchant_id, &s.txn_id),
            self.store.card_undecided(&sel.card_id),
            self.store.card_open_loads(&sel.card_id),
        )?;
        if let Some(row) = stored {
            return stored_draw(&row, &draw_hash);
        }
        // The card's log, with the ATC it proved, settles what this server
        // still waits for on this card (a forged record refuses the whole draw
        // and changes nothing).
        self.settle_undecided(
            undecided,
            &sel.card_id,
            &CardLog {
                records: log.clone(),
                proven_atc: Some(fact.atc),
            },
        )
        .await?;
        // The same log and the proven balance settle the card's open loads.
        self.settle_open_loads(open_loads, &sel.card_id, &log, Some(fact), None)
            .await?;
        if !s.order_ref.is_empty() {
            let attempts = self
                .store
                .order_attempts(&s.merchant_id, &s.order_ref)
                .await?;
            if attempts.iter().any(|(_, st)| st.is_captured()) {
                return Err(PaymentError::OrderPaid);
            }
            if attempts.iter().any(|(_, st)| st.is_open()) {
                return Err(PaymentError::OrderInFlight);
            }
        }
        let now = self.now();
        let (date, time) = (BcdDate::from_unix(now), BcdTime::from_unix(now));
        let seq = self.next_seq().await?;
        let draw = purse::security_module::PurchaseDraw {
            card_id: sel.card_id,
            expiry: sel.expiry,
            key_version: init.key_version,
            purse: s.purse,
            balance: init.balance,
            atc: init.atc,
            random: init.random,
            amount: s.amount,
            seq,
            date,
            time,
        };
        let auth = self.sm.authorize_purchase(&draw).map_err(sm_error)?;
        let cmd = DebitCommand {
            txn_id: s.txn_id.clone(),
            apdu: Hex(Request::DebitPurchase(auth.debit).to_bytes()),
            amount: s.amount,
            balance_after: auth.balance_after,
            check_value: (s.verify_mode == VerifyMode::Client).then(|| {
                Hex(check_value(&s.txn_id, auth.balance_after, &auth.expected_s3).to_vec())
            }),
        };
        let one_trip = matches!(s.verify_mode, VerifyMode::Client | VerifyMode::Merchant);
        let expected_s3_m = one_trip.then(|| {
            ExpectedS3 {
                merchant_id: s.merchant_id.clone(),
                txn_id: s.txn_id.clone(),
                amount: s.amount,
                currency: s.currency,
                exponent: s.exponent,
                purse: s.purse,
                origin: s.origin.clone(),
                card: sel.card_id.masked(),
                card_ref: self
                    .store
                    .card_ref_key()
                    .card_ref(&s.merchant_id, &sel.card_id),
                atc: init.atc,
                seq,
                balance_after: auth.balance_after,
                expected_s3: Hex(auth.expected_s3.to_vec()),
            }
            .seal(&keys.dk, random12())
        });
        let resp = serde_json::to_string(&DrawResponse {
            txn_id: s.txn_id.clone(),
            verify_mode: s.verify_mode,
            debit_command: cmd.seal(&keys.tsk, random12()),
            expected_s3_m,
        })
        .map_err(malformed)?;
        let row = TxnRow {
            merchant_id: s.merchant_id.clone(),
            txn_id: s.txn_id.clone(),
            order_ref: s.order_ref.clone(),
            state: TxnState::Drawn,
            verify_mode: s.verify_mode,
            amount: s.amount,
            currency: s.currency,
            exponent: s.exponent,
            purse: s.purse,
            origin: s.origin.clone(),
            card_id: sel.card_id,
            card_expiry: sel.expiry,
            key_version: init.key_version,
            atc: init.atc,
            card_random: init.random,
            balance_before: init.balance,
            balance_after: auth.balance_after,
            seq,
            date,
            time,
            expected_s3: auth.expected_s3,
            draw_hash: draw_hash.clone(),
            draw_response: resp.clone(),
            complete_hash: None,
            complete_response: None,
            card_s3: None,
            card_sw: None,
            resolution: None,
            expires_at: s.expires_at,
            created_at: now,
            drawn_at: now,
            debited_at: None,
            confirmed_at: None,
            updated_at: now,
        };
        match self.store.insert_drawn(row).await? {
            Ok(()) => Ok(StoredJson(resp)),
            // A concurrent retry of the same draw won the race.
            Err(InsertConflict::TxnId) => {
                match self.store.get_txn(&s.merchant_id, &s.txn_id).await? {
                    Some(stored) => stored_draw(&stored, &draw_hash),
                    None => Err(PaymentError::Replay),
                }
            }
            Err(InsertConflict::CardAtc) => Err(PaymentError::Replay),
            Err(InsertConflict::OpenOrder) => Err(PaymentError::OrderInFlight),
            // Another attempt at the order was captured since the check above.
            Err(InsertConflict::OrderPaid) => Err(PaymentError::OrderPaid),
        }
    }
}

/// The proving INITIALIZE FOR LOAD must be the purchase's INITIALIZE's
/// immediate predecessor on the same purse: same key version and balance, and
/// the purchase's ATC the proven one plus 1. So the proof is fresh for this
/// draw, and the (card, ATC) this draw takes is one the card really reached.
fn check_proof(
    proof: &InitializeLoadResponse,
    init: &InitializePurchaseResponse,
) -> Result<(), PaymentError> {
    if proof.key_version != init.key_version
        || proof.balance != init.balance
        || proof.atc.checked_add(1) != Some(init.atc)
    {
        return Err(PaymentError::Malformed(
            "the INITIALIZE FOR LOAD of amount 0 must come right before the INITIALIZE FOR PURCHASE (same key version and balance, ATC + 1)".into(),
        ));
    }
    Ok(())
}

/// A draw for a transaction id already used: the stored answer (byte for
/// byte) if it is the same request and nothing happened since, else a replay.
fn stored_draw(row: &TxnRow, draw_hash: &[u8]) -> Result<StoredJson, PaymentError> {
    if row.state == TxnState::Drawn && row.draw_hash == draw_hash {
        Ok(StoredJson(row.draw_response.clone()))
    } else {
        Err(PaymentError::Replay)
    }
}
