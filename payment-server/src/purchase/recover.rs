//! Recovery (DESIGN §4): the card's log is the truth about a DEBIT whose
//! answer was lost. Its records carry the S3 the card answered, so they prove
//! themselves; nothing else does.
//!
//! For each transaction the server still waits for on a card (`drawn`,
//! `unknown`, or `failed` from the log's silence):
//! - a record with its ATC whose S3 verifies → captured (`debited`); a record
//!   with its ATC that does not verify refuses the whole log (`bad_log_record`)
//!   and nothing changes;
//! - no record with its ATC, the card has **proved** an ATC past it, and the
//!   log reaches back past it (a record with an older ATC, or the whole
//!   history: fewer than 10 records) → `failed`;
//! - otherwise it stays undecided.
//!
//! The proof of the card's ATC is an S1 the security module verifies (an
//! INITIALIZE FOR LOAD: of amount 0 before every purchase's INITIALIZE and in
//! a recovery, or a load's own), or the operator's word. Without it the log's
//! silence decides nothing: INITIALIZE FOR PURCHASE carries no MAC, so a draw
//! or a recover could otherwise name any card whose number is known and have
//! its torn purchases decided from a log made up for it.
//!
//! What a hostile client can still do: hide a record of its own card, so a
//! debited purchase looks failed until the card's next use anywhere brings the
//! record (a proof overrides a decision from silence); it can never capture
//! without the card's S3. Every draw carries the log, so this runs whenever
//! the card is next used, and `POST /v1/purchases/recover` when the widget
//! sees the card come back.

use purse::command::{InitializeLoadResponse, LogKind, LogRecord};
use purse::merchant_api::{ResolveRequest, TxnState, TxnView};
use purse::purchase::{
    PurchaseStatus, RecoverEnvelope, RecoverRequest, RecoverResponse, RecoverStatus,
    MAX_LOG_RECORDS,
};
use purse::types::CardId;
use purse::webhook::EventKind;
use purse::wire::{Hex, Sealed};
use tracing::Instrument;

use super::results::seal_results;
use super::{malformed, sealed_error, Caller, PaymentService};
use crate::error::PaymentError;
use crate::store::{Transition, TxnRow};

/// The card's log as a client presented it.
#[derive(Debug, Clone, Default)]
pub(crate) struct CardLog {
    /// Newest first, at most 10.
    pub records: Vec<LogRecord>,
    /// An ATC the card has proved it reached (a verified S1), or the
    /// operator read: without it, the log's silence decides nothing.
    pub proven_atc: Option<u16>,
}

pub(crate) fn decode_log(log: &[Hex]) -> Result<Vec<LogRecord>, PaymentError> {
    if log.len() > MAX_LOG_RECORDS {
        return Err(PaymentError::Malformed("more than 10 log records".into()));
    }
    log.iter()
        .map(|h| {
            LogRecord::decode(h.as_slice())
                .map_err(|e| PaymentError::Malformed(format!("log record: {e}")))
        })
        .collect()
}

/// What the log says about one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict<'a> {
    Record(&'a LogRecord),
    NoDebit,
    Undecided,
}

impl CardLog {
    fn verdict(&self, atc: u16) -> Verdict<'_> {
        if let Some(r) = self.records.iter().find(|r| r.atc == atc) {
            return Verdict::Record(r);
        }
        let moved_past = self.proven_atc.is_some_and(|a| a > atc);
        let older = self.records.iter().any(|r| r.atc < atc);
        let whole_history = self.records.len() < MAX_LOG_RECORDS;
        if moved_past && (older || whole_history) {
            Verdict::NoDebit
        } else {
            Verdict::Undecided
        }
    }
}

impl PaymentService {
    /// Decide what the card's log decides for this card's undecided
    /// transactions, in one database transaction. A record that does not
    /// verify refuses the whole log before anything changes.
    pub(crate) async fn settle_card(
        &self,
        card: &CardId,
        log: &CardLog,
    ) -> Result<(), PaymentError> {
        let rows = self.store.card_undecided(card).await?;
        self.settle_undecided(rows, card, log).await
    }

    /// [`Self::settle_card`] on the card's undecided transactions read already.
    pub(crate) async fn settle_undecided(
        &self,
        rows: Vec<TxnRow>,
        card: &CardId,
        log: &CardLog,
    ) -> Result<(), PaymentError> {
        if rows.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let mut changes = Vec::new();
        for row in &rows {
            match log.verdict(row.atc) {
                Verdict::Record(r) => {
                    // A proof beats any decision made from the log's silence.
                    let proof = self.record_proves(row, r)?;
                    let mut t = Transition::capture(row, proof, r.s3, "recover", now);
                    t.resolution = Some("card log record proves the debit".into());
                    t.detail = "card log record: S3 verified".into();
                    t.webhook = self.webhook_for(
                        row,
                        EventKind::Recovered,
                        TxnState::Debited,
                        "the card's log proves the debit",
                        now,
                    );
                    changes.push(t);
                }
                Verdict::NoDebit if row.state.is_open() => {
                    let mut t = Transition::fail(row, "recover", now);
                    let how = "card log reaches past this ATC without a debit";
                    t.resolution = Some(how.into());
                    t.detail = how.into();
                    t.webhook =
                        self.webhook_for(row, EventKind::Recovered, TxnState::Failed, how, now);
                    changes.push(t);
                }
                _ => {}
            }
        }
        if !changes.is_empty() {
            let applied = self.apply(changes).await?;
            tracing::info!(card = %card, decided = applied.iter().filter(|a| **a).count(), "card log settled transactions");
        }
        Ok(())
    }

    /// A record of this transaction's ATC must be its debit: same kind,
    /// purse, amount, seq and terminal, and an S3 the security module verifies.
    fn record_proves(
        &self,
        row: &TxnRow,
        r: &LogRecord,
    ) -> Result<purse::security_module::S3Verified, PaymentError> {
        let same = r.kind == LogKind::Purchase
            && r.purse == row.purse
            && r.amount == row.amount
            && r.seq == row.seq
            && r.terminal == self.sm.terminal();
        if !same {
            return Err(PaymentError::BadLogRecord);
        }
        self.verify_s3(row, r.balance_after, &r.s3)
            .map_err(|_| PaymentError::BadLogRecord)
    }

    /// `POST /v1/purchases/recover`: the widget brings the card's log after
    /// the card came back from a torn DEBIT; the answer is the server's
    /// decision, with both results once decided.
    pub async fn recover(&self, env: RecoverEnvelope) -> Result<RecoverResponse, PaymentError> {
        let span = tracing::info_span!("recover", txn = %env.session.txn_id, merchant = %env.session.merchant_id);
        let r = self.recover_inner(env).instrument(span.clone()).await;
        span.in_scope(|| match &r {
            Ok(a) => tracing::info!(status = ?a.status, "recover answered"),
            Err(e) => tracing::warn!(code = e.code().as_str(), "recover refused"),
        });
        r
    }

    async fn recover_inner(&self, env: RecoverEnvelope) -> Result<RecoverResponse, PaymentError> {
        let s = env.session;
        let keys = self.open_session(&s, env.session_mac.as_slice(), env.etsk.as_slice(), false)?;
        let req = RecoverRequest::open(&keys.tsk, &s.txn_id, env.recover_request.as_slice())
            .map_err(sealed_error)?;
        let records = decode_log(&req.log)?;
        let proof = req
            .initialize_load
            .as_ref()
            .map(|h| InitializeLoadResponse::decode(h.as_slice()).map_err(malformed))
            .transpose()?;
        let row = self
            .store
            .get_txn(&s.merchant_id, &s.txn_id)
            .await?
            .ok_or(PaymentError::UnknownTxn)?;
        // The card proves itself (S1 under its load key) before its log's
        // silence may decide anything; a made-up proof refuses the request.
        let fact = proof
            .as_ref()
            .map(|p| self.card_proof(&row.card_id, row.purse, p))
            .transpose()?;
        self.settle_card(
            &row.card_id,
            &CardLog {
                records: records.clone(),
                proven_atc: fact.map(|f| f.atc),
            },
        )
        .await?;
        self.settle_card_loads(&row.card_id, &records, fact, None)
            .await?;
        let row = self
            .store
            .get_txn(&s.merchant_id, &s.txn_id)
            .await?
            .ok_or(PaymentError::UnknownTxn)?;
        let (status, purchase) = match row.state {
            st if st.is_captured() => (RecoverStatus::Debited, Some(PurchaseStatus::Debited)),
            TxnState::Failed => (RecoverStatus::Failed, Some(PurchaseStatus::Failed)),
            _ => (RecoverStatus::Unknown, None),
        };
        let results = purchase.map(|p| {
            let sw = row
                .card_sw
                .filter(|sw| *sw != 0x9000)
                .map(purse::StatusWord);
            seal_results(self.store.card_ref_key(), &s, &row, p, sw, &keys)
        });
        Ok(RecoverResponse {
            txn_id: s.txn_id.clone(),
            status,
            result_c: results.as_ref().map(|r| r.result_c.clone()),
            result_m: results.map(|r| r.result_m),
        })
    }

    /// `POST /v1/recovery/{merchant}/{txn}/resolve` (operator): the card's log,
    /// read some other way, decides exactly as it does for the widget.
    pub async fn resolve(
        &self,
        caller: Caller,
        merchant_id: String,
        txn_id: String,
        req: ResolveRequest,
    ) -> Result<TxnView, PaymentError> {
        if caller != Caller::Operator {
            return Err(PaymentError::Unauthorized);
        }
        let records = decode_log(&req.log)?;
        let row = self
            .store
            .get_txn(&merchant_id, &txn_id)
            .await?
            .ok_or(PaymentError::UnknownTxn)?;
        self.settle_card(
            &row.card_id,
            &CardLog {
                records,
                // The operator read the card some other way: trusted.
                proven_atc: req.card_atc,
            },
        )
        .await?;
        self.store.view(&merchant_id, &txn_id).await
    }

    /// Move `drawn` transactions past their session expiry plus the grace
    /// period to `unknown`. Safe to run from several instances at once.
    pub async fn sweep(&self) -> Result<usize, PaymentError> {
        let now = self.now();
        let grace = self.recovery_grace_secs;
        let n = self.store.sweep_expired(now, grace).await?;
        if n > 0 {
            tracing::info!(moved = n, "drawn transactions past expiry are now unknown");
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use purse::types::{BcdDate, BcdTime, PurseId, Terminal};

    fn rec(atc: u16) -> LogRecord {
        LogRecord {
            kind: LogKind::Purchase,
            purse: PurseId::Money,
            amount: 1,
            balance_after: 1,
            atc,
            terminal: Terminal([0, 0, 0, 0, 0, 1]),
            date: BcdDate::parse("20261123").unwrap(),
            time: BcdTime::parse("120000").unwrap(),
            seq: 1,
            s3: [0; 8],
        }
    }

    fn log(atcs: &[u16], proven: Option<u16>) -> CardLog {
        CardLog {
            records: atcs.iter().map(|a| rec(*a)).collect(),
            proven_atc: proven,
        }
    }

    #[test]
    fn the_log_decides_only_what_it_covers() {
        // A record with the ATC: it decides (if it verifies), proof or not.
        assert!(matches!(log(&[5, 4], None).verdict(5), Verdict::Record(_)));
        // An older record and none for 5, the card proved it moved past 5:
        // 5 never completed.
        assert_eq!(log(&[6, 4], Some(7)).verdict(5), Verdict::NoDebit);
        // The whole history (fewer than 10) and the card proved it moved past 5.
        assert_eq!(log(&[], Some(6)).verdict(5), Verdict::NoDebit);
        assert_eq!(log(&[7], Some(8)).verdict(5), Verdict::NoDebit);
        // Silence without the card's proof decides nothing, whatever the log
        // shows (anyone who knows the card's number can make such a log).
        assert_eq!(log(&[6, 4], None).verdict(5), Verdict::Undecided);
        assert_eq!(log(&[7], None).verdict(5), Verdict::Undecided);
        assert_eq!(log(&[], None).verdict(5), Verdict::Undecided);
        // Not proven past 5: undecided (the DEBIT may still be on its way).
        assert_eq!(log(&[], Some(5)).verdict(5), Verdict::Undecided);
        assert_eq!(log(&[4], Some(3)).verdict(5), Verdict::Undecided);
        // Ten newer records: 5 may have been pushed out of the log.
        let ten: Vec<u16> = (6..16).collect();
        assert_eq!(log(&ten, Some(16)).verdict(5), Verdict::Undecided);
    }
}
