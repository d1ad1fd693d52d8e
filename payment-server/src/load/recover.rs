//! Negative and missing results (seed fig. 18): the card's proofs decide a
//! load whose CREDIT was refused, answered with a negative result, or lost.
//!
//! For each load still open on a card:
//! - a log record with its ATC: kind, purse, amount, terminal and balance
//!   after must be the load's, and its S3 must verify → credited; a record
//!   with its ATC that does not verify refuses the whole request
//!   (`bad_log_record`) and nothing changes;
//! - a balance fact — a later INITIALIZE FOR LOAD whose S1 the HSM verifies
//!   (the zero-value INITIALIZE of negative-result handling, or the next
//!   load's) — decides through [`super::decide`]: not credited, credited, or
//!   (evidence that fits neither) `bad_proof`;
//! - nothing else decides: neither the client's word (a refusal status word,
//!   a result code) nor the log's silence, which a hostile client controls.
//!
//! The log is also given to the purchases' recovery: one card, one history.

use purse::apdu::Response;
use purse::command::{CreditResponse, InitializeLoadResponse, LogKind, LogRecord};
use purse::crypto::{self, mac_eq};
use purse::load::bank_api::{LoadEventKind, LoadState};
use purse::load::{
    LoadRecoverEnvelope, LoadRecoverRequest, LoadRecoverResponse, LoadRecoverStatus, LoadStatus,
};
use purse::types::CardId;
use purse::wire::Sealed;
use tracing::Instrument;

use super::decide::{decide, BalanceFact, Decision};
use super::load_sm_error;
use super::proof::{CreditProven, How, NoCreditProven};
use super::results::seal_load_results;
use crate::error::PaymentError;
use crate::purchase::recover::{decode_log, CardLog};
use crate::purchase::{malformed, sealed_error, PaymentService};
use crate::store::{LoadDrawn, LoadRow, LoadTransition};
use purse::types::PurseId;

impl PaymentService {
    /// Verify an INITIALIZE FOR LOAD answer of `card`'s `purse` for `amount`
    /// (0 for the negative-result handling): its S1 makes its balance a fact.
    /// The session key is bound to the purse, so another purse's S1 fails.
    pub(crate) fn verify_load_s1(
        &self,
        card: &CardId,
        purse: PurseId,
        init: &InitializeLoadResponse,
        amount: u32,
    ) -> Result<(), PaymentError> {
        let input = crypto::load_s1_input(init.balance, amount, init.atc, &self.sm.terminal());
        let mac = self
            .sm
            .load_macs(
                init.key_version,
                card,
                init.random,
                init.atc,
                purse,
                &[&input],
            )
            .map_err(load_sm_error)?;
        if mac_eq(&mac[0], &init.s1) {
            Ok(())
        } else {
            Err(PaymentError::S1Mismatch)
        }
    }

    /// The card proving itself: an INITIALIZE FOR LOAD of amount 0 of
    /// `card`'s `purse` whose S1 verifies. Its balance and ATC are then a fact
    /// (for the open loads) and its ATC a proven one (for the purchases' log).
    pub(crate) fn card_proof(
        &self,
        card: &CardId,
        purse: PurseId,
        init: &InitializeLoadResponse,
    ) -> Result<BalanceFact, PaymentError> {
        self.verify_load_s1(card, purse, init, 0)?;
        Ok(BalanceFact {
            atc: init.atc,
            balance: init.balance,
            purse,
        })
    }

    /// A record of this load's ATC must be its credit, with an S3 the HSM verifies.
    fn load_record_proves(
        &self,
        row: &LoadRow,
        d: &LoadDrawn,
        r: &LogRecord,
    ) -> Result<CreditProven, PaymentError> {
        let same = r.kind == LogKind::Load
            && r.purse == row.purse
            && r.amount == row.amount
            && r.terminal == self.sm.terminal();
        let answer = CreditResponse {
            result: CreditResponse::LOADED,
            balance_after: r.balance_after,
            s3: r.s3,
        };
        if same && d.authorization(row.purse).verify_s3(&answer).is_ok() {
            Ok(CreditProven::new(How::Log))
        } else {
            Err(PaymentError::BadLogRecord)
        }
    }

    /// Decide what the card's evidence decides for its open loads, in one
    /// database transaction. Evidence that does not verify refuses the whole
    /// request before anything changes. `card_answer` is kept on the load it
    /// belongs to (`txn`) when that one is decided.
    pub(crate) async fn settle_card_loads(
        &self,
        card: &CardId,
        log: &[LogRecord],
        fact: Option<BalanceFact>,
        card_answer: Option<(&str, &str, Vec<u8>)>,
    ) -> Result<(), PaymentError> {
        let rows = self.store.card_open_loads(card).await?;
        self.settle_open_loads(rows, card, log, fact, card_answer)
            .await
    }

    /// [`Self::settle_card_loads`] on the card's open loads read already.
    pub(crate) async fn settle_open_loads(
        &self,
        rows: Vec<LoadRow>,
        card: &CardId,
        log: &[LogRecord],
        fact: Option<BalanceFact>,
        card_answer: Option<(&str, &str, Vec<u8>)>,
    ) -> Result<(), PaymentError> {
        if rows.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let mut changes = Vec::new();
        let mut decided: Vec<(u16, LoadState)> = Vec::new();
        for row in &rows {
            let Some(d) = &row.drawn else { continue };
            let mut change = if let Some(r) = log.iter().find(|r| r.atc == d.atc) {
                let proof = self.load_record_proves(row, d, r)?;
                let mut t = LoadTransition::credit(row, proof, "recover", now);
                t.card_s3 = Some(r.s3);
                t.detail = "card log record: S3 verified".into();
                Some((t, LoadState::Credited))
            } else if let Some(f) = &fact {
                let between = if u32::from(f.atc) > u32::from(d.atc) + 1 {
                    self.store.card_movements(card, d.atc, f.atc).await?
                } else {
                    Vec::new()
                };
                let known = |a: u16| decided.iter().find(|(x, _)| *x == a).map(|(_, s)| *s);
                match decide(
                    d.atc,
                    d.balance_before,
                    row.amount,
                    row.purse,
                    f,
                    &between,
                    &known,
                ) {
                    Decision::Credited => {
                        let mut t =
                            LoadTransition::credit(row, CreditProven::new(How::S1), "recover", now);
                        t.detail = format!(
                            "the card's S1 at ATC {} shows the credit (a negative result was not true)",
                            f.atc
                        );
                        Some((t, LoadState::Credited))
                    }
                    Decision::NotCredited if row.state.is_open() => {
                        let mut t = LoadTransition::not_credited(
                            row,
                            NoCreditProven::new(),
                            "recover",
                            now,
                        );
                        t.detail = format!(
                            "the card's S1 at ATC {} shows the balance without the credit",
                            f.atc
                        );
                        Some((t, LoadState::Failed))
                    }
                    Decision::Inconsistent => {
                        tracing::warn!(card = %card, atc = d.atc, fact_atc = f.atc, "a verified S1 fits neither outcome of a load: refused");
                        return Err(PaymentError::BadProof);
                    }
                    _ => None,
                }
            } else {
                None
            };
            if let Some((t, to)) = change.as_mut() {
                // A load already credited in the store stays as it is.
                if row.state == *to {
                    continue;
                }
                let (kind, detail) = if *to == LoadState::Credited {
                    (LoadEventKind::Credited, "the card's proof shows the credit")
                } else {
                    (
                        LoadEventKind::NotCredited,
                        "the card's proof shows no credit",
                    )
                };
                t.webhook = self.load_webhook(row, kind, *to, detail, now);
                t.resolution = Some(t.detail.clone());
                if let Some((b, txn, answer)) = &card_answer {
                    if row.bank_id == *b && row.txn_id == *txn {
                        t.card_answer = Some(answer.clone());
                    }
                }
                decided.push((d.atc, *to));
            }
            if let Some((t, _)) = change {
                changes.push(t);
            }
        }
        if !changes.is_empty() {
            let applied = self.apply_loads(changes).await?;
            tracing::info!(card = %card, decided = applied.iter().filter(|a| **a).count(), "card's proofs settled loads");
        }
        Ok(())
    }

    /// `POST /v1/loads/recover`: a negative or missing result. The answer is
    /// the load server's decision, with both results once decided.
    pub async fn load_recover(
        &self,
        env: LoadRecoverEnvelope,
    ) -> Result<LoadRecoverResponse, PaymentError> {
        let span = tracing::info_span!("load_recover", txn = %env.session.txn_id, bank = %env.session.bank_id);
        let r = self.load_recover_inner(env).instrument(span.clone()).await;
        span.in_scope(|| match &r {
            Ok(a) => tracing::info!(status = ?a.status, "load recover answered"),
            Err(e) => tracing::warn!(code = e.code().as_str(), "load recover refused"),
        });
        r
    }

    async fn load_recover_inner(
        &self,
        env: LoadRecoverEnvelope,
    ) -> Result<LoadRecoverResponse, PaymentError> {
        let s = env.session;
        let keys =
            self.open_load_session(&s, env.session_mac.as_slice(), env.etsk.as_slice(), false)?;
        let req = LoadRecoverRequest::open(&keys.tsk, &s.txn_id, env.recover_request.as_slice())
            .map_err(sealed_error)?;
        let log = decode_log(&req.log)?;
        let zero = req
            .zero_initialize
            .as_ref()
            .map(|z| InitializeLoadResponse::decode(z.as_slice()).map_err(malformed))
            .transpose()?;
        if let Some(a) = &req.card_answer {
            // Only its form is checked: a card's answer proves nothing here.
            Response::parse(a.as_slice()).map_err(malformed)?;
        }
        let row = self
            .store
            .get_load(&s.bank_id, &s.txn_id)
            .await?
            .ok_or(PaymentError::UnknownTxn)?;
        let Some(d) = row.drawn.clone() else {
            return Err(PaymentError::WrongState);
        };
        let fact = zero
            .as_ref()
            .map(|z| self.card_proof(&d.card_id, row.purse, z))
            .transpose()?;
        self.settle_card(
            &d.card_id,
            &CardLog {
                records: log.clone(),
                proven_atc: fact.map(|f| f.atc),
            },
        )
        .await?;
        let answer = req
            .card_answer
            .as_ref()
            .map(|a| (s.bank_id.as_str(), s.txn_id.as_str(), a.0.clone()));
        self.settle_card_loads(&d.card_id, &log, fact, answer)
            .await?;
        let row = self
            .store
            .get_load(&s.bank_id, &s.txn_id)
            .await?
            .ok_or(PaymentError::UnknownTxn)?;
        let (status, results) = match row.state {
            st if st.is_credited() => (LoadRecoverStatus::Credited, Some(LoadStatus::Credited)),
            LoadState::Failed => (
                LoadRecoverStatus::NotCredited,
                Some(LoadStatus::NotCredited),
            ),
            _ => (LoadRecoverStatus::Unknown, None),
        };
        let sealed = results.map(|st| {
            let proof = row.proof.clone().unwrap_or_default();
            seal_load_results(self.store.card_ref_key(), &s, &row, &d, st, &proof, &keys)
        });
        Ok(LoadRecoverResponse {
            txn_id: s.txn_id.clone(),
            status,
            result_c: sealed.as_ref().map(|r| r.result_c.clone()),
            result_b: sealed.map(|r| r.result_b),
        })
    }
}
