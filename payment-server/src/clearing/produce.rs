//! The concentration point's producers: the payment server closes a batch per
//! merchant of its captured, not yet batched money-purse purchases (on a
//! schedule and on demand), signs it, records it with its transactions in one
//! database transaction, and drops the file into the spool clearing reads.
//!
//! The load server (same process and database) closes a batch per bank of
//! its credited money-purse loads likewise ([`PaymentService::close_load_batches`]).

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use purse::types::{BcdDate, BcdTime};
use purse::wire::Hex;

use super::batch::{Batch, BatchFile, BatchKind, LoadRecord, PurchaseRecord, Record};
use crate::error::PaymentError;
use crate::purchase::PaymentService;
use crate::store::{ClosedBatch, TxnRow};

/// Most records in one batch; a merchant with more gets several.
pub const MAX_PER_BATCH: u32 = 100_000;

/// The source's signing key and the spool it writes to.
pub struct BatchSigner {
    pub key_id: String,
    pub key: SigningKey,
    pub spool: PathBuf,
}

impl core::fmt::Debug for BatchSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BatchSigner")
            .field("key_id", &self.key_id)
            .field("spool", &self.spool)
            .finish_non_exhaustive()
    }
}

/// `PB-<party>-<YYYY-MM-DD>T<HHMMSS>Z-<8 hex>` (`LB-` for loads).
pub fn batch_id(kind: BatchKind, party: &str, now: u64) -> String {
    let mut r = [0u8; 4];
    getrandom::fill(&mut r).expect("OS random source");
    let prefix = match kind {
        BatchKind::Purchases => "PB",
        BatchKind::Loads => "LB",
    };
    let t = BcdTime::from_unix(now).bytes();
    format!(
        "{prefix}-{party}-{}T{}Z-{}",
        BcdDate::from_unix(now),
        hex::encode(t),
        hex::encode(r)
    )
}

/// The clearing record of a captured transaction (None if it carries no S3,
/// which a captured transaction always does).
pub fn purchase_record(row: &TxnRow) -> Option<PurchaseRecord> {
    let s3 = row.card_s3.clone()?;
    Some(PurchaseRecord {
        merchant_id: row.merchant_id.clone(),
        txn_id: row.txn_id.clone(),
        order_ref: row.order_ref.clone(),
        card_id: row.card_id,
        expiry: row.card_expiry,
        key_version: row.key_version,
        purse: row.purse,
        atc: row.atc,
        random: Hex(row.card_random.to_vec()),
        balance_before: row.balance_before,
        amount: row.amount,
        balance_after: row.balance_after,
        seq: row.seq,
        date: row.date,
        time: row.time,
        s3: Hex(s3),
        captured_at: row.debited_at.unwrap_or(row.updated_at),
    })
}

/// The clearing record of a credited load (None if the stored row is not one).
pub fn load_record(l: &crate::store::LoadCandidate) -> Option<LoadRecord> {
    Some(LoadRecord {
        bank_id: l.bank_id.clone(),
        load_id: l.txn_id.clone(),
        card_id: purse::types::CardId::parse(&l.card_id).ok()?,
        key_version: l.key_version,
        purse: purse::types::PurseId::Money,
        atc: l.atc,
        random: Hex(l.card_random.clone()),
        balance_before: l.balance_before,
        amount: l.amount,
        balance_after: l.balance_after,
        date: BcdDate::parse(&l.date).ok()?,
        time: BcdTime::parse(&l.time).ok()?,
        s3: Hex(l.card_s3.clone().unwrap_or_default()),
        proof: if l.proof.is_empty() {
            "s3".into()
        } else {
            l.proof.clone()
        },
        completed_at: l.decided_at,
    })
}

/// A signed batch of a bank's loads, from records made elsewhere.
pub fn load_batch(
    bank_id: &str,
    records: Vec<LoadRecord>,
    now: u64,
    key_id: &str,
    key: &SigningKey,
) -> (Batch, BatchFile) {
    let b = Batch::new(
        batch_id(BatchKind::Loads, bank_id, now),
        BatchKind::Loads,
        "load-server",
        bank_id,
        now,
        records.into_iter().map(Record::Load).collect(),
    );
    let f = b.sign(key_id, key);
    (b, f)
}

/// Write a file atomically: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(path)
}

/// Close batches every `batch_interval_secs` (0: only on demand); at start,
/// write any closed batch a crash left out of the spool.
pub fn spawn_schedule(
    service: std::sync::Arc<PaymentService>,
    c: &crate::config::ClearingProducer,
) -> tokio::task::JoinHandle<()> {
    let signer = crate::batch_signer(c);
    let every = c.batch_interval_secs;
    tokio::spawn(async move {
        if let Err(e) = service.export_batches(&signer.spool).await {
            tracing::error!(error = %e, "exporting closed batches failed");
        }
        if every == 0 {
            return;
        }
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(every)).await;
            match service.close_batches(&signer).await {
                Ok(ids) if !ids.is_empty() => {
                    tracing::info!(batches = ids.len(), "scheduled close")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "closing batches failed"),
            }
        }
    })
}

impl PaymentService {
    /// Close every batch due: purchases per merchant, loads per bank.
    pub async fn close_batches(&self, signer: &BatchSigner) -> Result<Vec<String>, PaymentError> {
        let mut ids = self.close_purchase_batches(signer).await?;
        ids.extend(self.close_load_batches(signer).await?);
        Ok(ids)
    }

    /// Close a batch per bank of its credited, unbatched money-purse loads
    /// (the load server's side of the concentration point); then write
    /// every closed batch not yet in the spool.
    pub async fn close_load_batches(
        &self,
        signer: &BatchSigner,
    ) -> Result<Vec<String>, PaymentError> {
        let mut closed = Vec::new();
        for bank in self.store.unbatched_banks().await? {
            loop {
                let rows = self.store.unbatched_loads(&bank, MAX_PER_BATCH).await?;
                if rows.is_empty() {
                    break;
                }
                let records = rows
                    .iter()
                    .map(|row| {
                        load_record(row).map(Record::Load).ok_or_else(|| {
                            PaymentError::Internal(format!(
                                "credited load {} is incomplete",
                                row.txn_id
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let ids = rows.iter().map(|r| r.txn_id.clone()).collect();
                let Some(id) = self
                    .close_one(BatchKind::Loads, &bank, records, ids, signer)
                    .await?
                else {
                    continue; // another closer took some meanwhile: look again
                };
                closed.push(id);
                if rows.len() < MAX_PER_BATCH as usize {
                    break;
                }
            }
        }
        self.export_batches(&signer.spool).await?;
        Ok(closed)
    }

    /// Close a batch per merchant with captured, unbatched purchases; then
    /// write every closed batch not yet in the spool. Returns the new batch ids.
    pub async fn close_purchase_batches(
        &self,
        signer: &BatchSigner,
    ) -> Result<Vec<String>, PaymentError> {
        let mut closed = Vec::new();
        for merchant in self.store.unbatched_merchants().await? {
            loop {
                let rows = self.store.unbatched(&merchant, MAX_PER_BATCH).await?;
                if rows.is_empty() {
                    break;
                }
                let records = rows
                    .iter()
                    .map(|row| {
                        purchase_record(row).map(Record::Purchase).ok_or_else(|| {
                            PaymentError::Internal(format!(
                                "captured transaction {} has no card S3",
                                row.txn_id
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let ids = rows.iter().map(|r| r.txn_id.clone()).collect();
                let Some(id) = self
                    .close_one(BatchKind::Purchases, &merchant, records, ids, signer)
                    .await?
                else {
                    continue; // another closer took some meanwhile: look again
                };
                closed.push(id);
                if rows.len() < MAX_PER_BATCH as usize {
                    break;
                }
            }
        }
        self.export_batches(&signer.spool).await?;
        Ok(closed)
    }

    /// Sign one batch and record it with its transactions in one commit.
    /// `None`: some of them were batched meanwhile (nothing recorded).
    async fn close_one(
        &self,
        kind: BatchKind,
        party: &str,
        records: Vec<Record>,
        txn_ids: Vec<String>,
        signer: &BatchSigner,
    ) -> Result<Option<String>, PaymentError> {
        let now = self.now();
        let source = match kind {
            BatchKind::Purchases => "payment-server",
            BatchKind::Loads => "load-server",
        };
        let batch = Batch::new(
            batch_id(kind, party, now),
            kind,
            source,
            party,
            now,
            records,
        );
        let file = batch.sign(&signer.key_id, &signer.key);
        let closed = ClosedBatch {
            batch_id: batch.batch_id.clone(),
            kind: kind.as_str().into(),
            party: party.to_string(),
            closed_at: now,
            record_count: batch.totals.count,
            total: batch.totals.amount,
            file: String::from_utf8(file.to_bytes()).expect("JSON is UTF-8"),
        };
        match self
            .store
            .record_batch(closed, file.digest().to_vec(), txn_ids)
            .await
        {
            Ok(()) => {
                tracing::info!(batch = %batch.batch_id, kind = kind.as_str(), party, records = batch.totals.count, total = batch.totals.amount, "batch closed");
                Ok(Some(batch.batch_id))
            }
            Err(PaymentError::WrongState) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Write closed batches that are not in the spool yet (after a crash
    /// between the commit and the write, the next run writes them).
    pub async fn export_batches(&self, spool: &Path) -> Result<usize, PaymentError> {
        let todo = self.store.unexported_batches().await?;
        let n = todo.len();
        for b in todo {
            let name = format!("{}.batch", b.batch_id);
            let dir = spool.to_path_buf();
            let bytes = b.file.clone().into_bytes();
            tokio::task::spawn_blocking(move || write_atomic(&dir, &name, &bytes))
                .await
                .map_err(|e| PaymentError::Internal(e.to_string()))?
                .map_err(|e| PaymentError::Internal(format!("spool write: {e}")))?;
            self.store.batch_exported(b.batch_id, self.now()).await?;
        }
        Ok(n)
    }

    /// Clearing's acknowledgement: these purchases were checked again and
    /// posted in `batch_id`; each moves to `settled` (once) and its merchant
    /// gets the `settled` webhook through the outbox. Returns how many moved.
    pub async fn settle_cleared(
        &self,
        batch_id: &str,
        items: &[(String, String)],
    ) -> Result<usize, PaymentError> {
        use purse::merchant_api::TxnState;
        use purse::webhook::EventKind;
        let now = self.now();
        let mut changes = Vec::with_capacity(items.len());
        for (merchant, txn) in items {
            let Some(row) = self.store.get_txn(merchant, txn).await? else {
                return Err(PaymentError::Internal(format!(
                    "cleared transaction {merchant}/{txn} is not in the payment database"
                )));
            };
            if !matches!(row.state, TxnState::Debited | TxnState::Confirmed) {
                continue;
            }
            let mut t = crate::store::Transition::settle(&row, now);
            t.detail = format!("cleared in batch {batch_id}");
            t.webhook =
                self.webhook_for(&row, EventKind::Settled, TxnState::Settled, &t.detail, now);
            changes.push(t);
        }
        let applied = self.apply(changes).await?;
        Ok(applied.into_iter().filter(|a| *a).count())
    }

    /// Clearing's acknowledgement of a load batch: each posted load moves
    /// from `credited` to `settled` (once). Returns how many moved.
    pub async fn settle_cleared_loads(
        &self,
        batch_id: &str,
        items: &[(String, String)],
    ) -> Result<usize, PaymentError> {
        use purse::load::bank_api::LoadState;
        let now = self.now();
        let mut changes = Vec::with_capacity(items.len());
        for (bank, txn) in items {
            let Some(row) = self.store.get_load(bank, txn).await? else {
                return Err(PaymentError::Internal(format!(
                    "cleared load {bank}/{txn} is not in the payment database"
                )));
            };
            if row.state != LoadState::Credited {
                continue;
            }
            let mut t = crate::store::LoadTransition::settle(&row, now);
            t.detail = format!("cleared in batch {batch_id}");
            changes.push(t);
        }
        let applied = self.store.apply_loads(changes).await?;
        Ok(applied.into_iter().filter(|a| *a).count())
    }
}
