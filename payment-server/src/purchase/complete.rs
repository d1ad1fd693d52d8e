//! `POST /v1/purchases/complete` and the merchant's confirm: a capture rests
//! only on the card's own S3, verified against what the client never saw.

use purse::apdu::{Response, StatusWord};
use purse::command::DebitResponse;
use purse::merchant_api::{ConfirmRequest, TxnState, TxnView};
use purse::purchase::{CompleteEnvelope, DebitResponseMsg, PurchaseStatus};
use purse::webhook::EventKind;
use purse::wire::Sealed;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::results::seal_results;
use super::{malformed, sealed_error, Caller, PaymentService, StoredJson};
use crate::error::PaymentError;
use crate::store::{Transition, TxnRow};

/// How often `complete` decides again when the row changed under it: each
/// retry follows another writer's change, and a transaction has few states.
const DECIDE_ATTEMPTS: usize = 3;

impl PaymentService {
    /// `POST /v1/purchases/complete`: the
    /// [`CompleteResponse`](purse::purchase::CompleteResponse) as stored with
    /// the row.
    pub async fn complete(&self, env: CompleteEnvelope) -> Result<StoredJson, PaymentError> {
        let span = tracing::info_span!("complete", txn = %env.session.txn_id, merchant = %env.session.merchant_id);
        let r = self.complete_inner(env).instrument(span.clone()).await;
        span.in_scope(|| match &r {
            Ok((_, Some(status))) => tracing::info!(status = ?status, "completed"),
            Ok((_, None)) => tracing::info!("completed before: stored answer"),
            Err(e) => tracing::warn!(code = e.code().as_str(), "complete refused"),
        });
        r.map(|(json, _)| json)
    }

    /// The answer, and the status it decided (none: the stored answer of an
    /// earlier `complete`).
    async fn complete_inner(
        &self,
        env: CompleteEnvelope,
    ) -> Result<(StoredJson, Option<PurchaseStatus>), PaymentError> {
        let s = env.session;
        let keys = self.open_session(&s, env.session_mac.as_slice(), env.etsk.as_slice(), false)?;
        let msg = DebitResponseMsg::open(&keys.tsk, &s.txn_id, env.debit_response.as_slice())
            .map_err(sealed_error)?;
        let card_resp = Response::parse(msg.response.as_slice()).map_err(malformed)?;
        let debit = if card_resp.sw == StatusWord::OK {
            Some(DebitResponse::decode(&card_resp.data).map_err(malformed)?)
        } else {
            None
        };
        let fingerprint = Sha256::digest(msg.response.as_slice()).to_vec();
        let mut row = self
            .store
            .get_txn(&s.merchant_id, &s.txn_id)
            .await?
            .ok_or(PaymentError::UnknownTxn)?;
        // Decided on the row as read; if it changed under us (a concurrent retry,
        // the merchant's confirm, the card's log, the sweeper), decided again on
        // the row as it is now, a few times at most.
        for _ in 0..DECIDE_ATTEMPTS {
            if let Some(stored) = stored_complete(&row, &fingerprint)? {
                return Ok((stored, None));
            }
            let now = self.now();
            let (status, mut change) = match &debit {
                Some(d) => {
                    // The only way to a capture: the card's S3 against what the
                    // security module expects. A client that never sent DEBIT
                    // cannot make it (client mode holds only a one-way check value).
                    let proof = self.verify_s3(&row, d.balance_after, &d.s3)?;
                    let change = if row.state.is_captured() {
                        // Captured already (the merchant's confirm with S3, or the
                        // card's log): record this answer, capture nothing twice.
                        Transition::record_complete(&row, now)
                    } else {
                        let kind = if row.state == TxnState::Drawn {
                            EventKind::Captured
                        } else {
                            EventKind::Recovered
                        };
                        let mut t = Transition::capture(&row, proof, d.s3, "complete", now);
                        t.detail = "S3 verified".into();
                        t.webhook = self.webhook_for(
                            &row,
                            kind,
                            TxnState::Debited,
                            "card S3 verified",
                            now,
                        );
                        t
                    };
                    (PurchaseStatus::Debited, change)
                }
                None => {
                    if !row.state.is_open() {
                        return Err(PaymentError::Replay);
                    }
                    let detail = format!("card refused: {:04X}", card_resp.sw.0);
                    let mut t = Transition::fail(&row, "complete", now);
                    t.card_sw = Some(card_resp.sw.0);
                    t.webhook =
                        self.webhook_for(&row, EventKind::Failed, TxnState::Failed, &detail, now);
                    t.detail = detail;
                    (PurchaseStatus::Failed, t)
                }
            };
            let sw = debit.is_none().then_some(card_resp.sw);
            let resp = seal_results(self.store.card_ref_key(), &s, &row, status, sw, &keys);
            let json = serde_json::to_string(&resp).map_err(malformed)?;
            change.complete = Some((fingerprint.clone(), json.clone()));
            if self.apply(vec![change]).await?[0] {
                return Ok((StoredJson(json), Some(status)));
            }
            row = self
                .store
                .get_txn(&s.merchant_id, &s.txn_id)
                .await?
                .ok_or(PaymentError::UnknownTxn)?;
        }
        Err(PaymentError::Replay)
    }

    /// `POST /v1/transactions/{id}/confirm` (merchant): the merchant has
    /// released the goods. On a transaction not captured yet (modes `client`
    /// and `merchant`), it must bring the card's S3, which is verified here
    /// exactly as in `complete` before anything is captured.
    pub async fn confirm(
        &self,
        caller: Caller,
        txn_id: String,
        req: ConfirmRequest,
    ) -> Result<TxnView, PaymentError> {
        let Caller::Merchant(merchant_id) = caller else {
            return Err(PaymentError::Unauthorized);
        };
        let row = self
            .store
            .get_txn(&merchant_id, &txn_id)
            .await?
            .ok_or(PaymentError::UnknownTxn)?;
        let now = self.now();
        let changes = match row.state {
            TxnState::Confirmed | TxnState::Settled => vec![],
            TxnState::Debited => vec![Transition::confirm(&row, now)],
            TxnState::Drawn | TxnState::Unknown | TxnState::Failed => {
                let (Some(bal), Some(s3)) = (req.balance_after, &req.s3) else {
                    return Err(PaymentError::WrongState);
                };
                let s3: [u8; 8] = s3
                    .as_slice()
                    .try_into()
                    .map_err(|_| PaymentError::Malformed("s3 must be 8 bytes".into()))?;
                let proof = self.verify_s3(&row, bal, &s3)?;
                let kind = if row.state == TxnState::Drawn {
                    EventKind::Captured
                } else {
                    EventKind::Recovered
                };
                let mut capture = Transition::capture(&row, proof, s3, "confirm", now);
                capture.detail = "S3 verified on the merchant's confirm".into();
                capture.webhook =
                    self.webhook_for(&row, kind, TxnState::Debited, "card S3 verified", now);
                vec![capture, Transition::confirm(&row, now)]
            }
            TxnState::Created | TxnState::Reversed => return Err(PaymentError::WrongState),
        };
        if !changes.is_empty() && !self.apply(changes).await?[0] {
            // Changed concurrently: the view tells the merchant where it stands.
            let v = self.store.view(&merchant_id, &txn_id).await?;
            if !v.state.is_captured() {
                return Err(PaymentError::WrongState);
            }
            return Ok(v);
        }
        self.store.view(&merchant_id, &txn_id).await
    }
}

/// The stored answer (byte for byte) of a `complete` with the same card
/// response, if any.
fn stored_complete(row: &TxnRow, fingerprint: &[u8]) -> Result<Option<StoredJson>, PaymentError> {
    if row.complete_hash.as_deref() != Some(fingerprint) {
        return Ok(None);
    }
    match &row.complete_response {
        Some(stored) => Ok(Some(StoredJson(stored.clone()))),
        None => Err(PaymentError::Internal(
            "complete fingerprint stored without its answer".into(),
        )),
    }
}
