//! `POST /v1/loads/complete`: a load is credited only on the card's own S3,
//! verified by the HSM against what it expected at the draw (the client never
//! saw it).

use purse::apdu::{Response, StatusWord};
use purse::command::CreditResponse;
use purse::load::bank_api::{LoadEventKind, LoadState};
use purse::load::{CreditResponseMsg, LoadCompleteEnvelope, LoadCompleteResponse, LoadStatus};
use purse::wire::Sealed;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::proof::{CreditProven, How};
use super::results::seal_load_results;
use crate::error::PaymentError;
use crate::purchase::{malformed, sealed_error, PaymentService};
use crate::store::{LoadRow, LoadTransition};

impl PaymentService {
    /// `POST /v1/loads/complete`.
    pub async fn load_complete(
        &self,
        env: LoadCompleteEnvelope,
    ) -> Result<LoadCompleteResponse, PaymentError> {
        let span = tracing::info_span!("load_complete", txn = %env.session.txn_id, bank = %env.session.bank_id);
        let r = self.load_complete_inner(env).instrument(span.clone()).await;
        span.in_scope(|| match &r {
            Ok(c) => tracing::info!(status = ?c.status, "load completed"),
            Err(e) => tracing::warn!(code = e.code().as_str(), "load complete refused"),
        });
        r
    }

    async fn load_complete_inner(
        &self,
        env: LoadCompleteEnvelope,
    ) -> Result<LoadCompleteResponse, PaymentError> {
        let s = env.session;
        let keys =
            self.open_load_session(&s, env.session_mac.as_slice(), env.etsk.as_slice(), false)?;
        let msg = CreditResponseMsg::open(&keys.tsk, &s.txn_id, env.credit_response.as_slice())
            .map_err(sealed_error)?;
        let card_resp = Response::parse(msg.response.as_slice()).map_err(malformed)?;
        if card_resp.sw != StatusWord::OK {
            return Err(PaymentError::Malformed(
                "a refused CREDIT is a negative result: POST /v1/loads/recover with a zero-value \
                 INITIALIZE FOR LOAD"
                    .into(),
            ));
        }
        let answer = CreditResponse::decode(&card_resp.data).map_err(malformed)?;
        let fingerprint = Sha256::digest(msg.response.as_slice()).to_vec();
        let row = self
            .store
            .get_load(&s.bank_id, &s.txn_id)
            .await?
            .ok_or(PaymentError::UnknownTxn)?;
        if let Some(stored) = stored_load_complete(&row, &fingerprint)? {
            return Ok(stored);
        }
        let Some(d) = row.drawn.clone() else {
            return Err(PaymentError::WrongState);
        };
        // The only way to `credited` from here: the card's S3 for result 00
        // and exactly the balance the HSM expects.
        d.authorization(row.purse)
            .verify_s3(&answer)
            .map_err(|_| PaymentError::S3Mismatch)?;
        let proof = CreditProven::new(How::S3);
        let now = self.now();
        let mut change = if row.state.is_credited() {
            LoadTransition::record_complete(&row, now)
        } else {
            let mut t = LoadTransition::credit(&row, proof, "complete", now);
            t.card_s3 = Some(answer.s3);
            t.detail = "S3 verified".into();
            t.webhook = self.load_webhook(
                &row,
                LoadEventKind::Credited,
                LoadState::Credited,
                "card S3 verified",
                now,
            );
            t
        };
        let resp = seal_load_results(
            self.store.card_ref_key(),
            &s,
            &row,
            &d,
            LoadStatus::Credited,
            How::S3.as_str(),
            &keys,
        );
        change.complete = Some((
            fingerprint.clone(),
            serde_json::to_string(&resp).map_err(malformed)?,
        ));
        if self.apply_loads(vec![change]).await?[0] {
            return Ok(resp);
        }
        // Changed under us (a concurrent retry): decide again from the store.
        let row = self
            .store
            .get_load(&s.bank_id, &s.txn_id)
            .await?
            .ok_or(PaymentError::UnknownTxn)?;
        match stored_load_complete(&row, &fingerprint)? {
            Some(stored) => Ok(stored),
            None if row.state.is_credited() => Ok(resp),
            None => Err(PaymentError::WrongState),
        }
    }
}

/// The stored answer of a `complete` with the same card response, if any.
fn stored_load_complete(
    row: &LoadRow,
    fingerprint: &[u8],
) -> Result<Option<LoadCompleteResponse>, PaymentError> {
    if row.complete_hash.as_deref() != Some(fingerprint) {
        return Ok(None);
    }
    let stored = row.complete_response.as_deref().unwrap_or_default();
    serde_json::from_str(stored)
        .map(Some)
        .map_err(|e| PaymentError::Internal(e.to_string()))
}
