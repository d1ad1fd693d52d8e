//! Clearing and settlement (DESIGN §4 "Clearing"; the seed's concentration
//! point and clearing and administration system): captured purchases and
//! completed loads are closed into signed batches by their sources, checked
//! again record by record, posted to a double-entry ledger, acknowledged back
//! (purchases become `settled`, merchants get the `settled` webhook), paid
//! out per merchant per day, and reconciled against the transaction stores.
//!
//! # Layout
//! - [`batch`]: the signed batch file and its records (sans-IO);
//! - [`produce`]: the payment server closes batches per merchant, the load server per bank;
//! - [`proof`]: a record's S3 checked again through the security module;
//! - [`post`]: receiving and posting a batch in crash-safe steps ([`post::Clearing`]);
//! - [`ledger`]: accounts, journal entries, balances;
//! - [`settle`]: payouts per merchant per day, CSV and pain.001 files, bank float;
//! - [`pain001`]: the ISO 20022 credit transfer writer;
//! - [`reconcile`]: the proofs that the books and the stores agree;
//! - [`report`]: what the merchant and operator pages show;
//! - [`config`], [`db`]: the clearing TOML and database.

pub mod batch;
pub mod config;
pub mod db;
pub mod ledger;
pub mod pain001;
pub mod post;
pub mod produce;
pub mod proof;
pub mod reconcile;
pub mod report;
pub mod settle;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use purse::security_module::SecurityModule;

pub use batch::{Batch, BatchFile, BatchKind, Record};
pub use config::ClearingConfig;
pub use post::{Cleared, Clearing, ClearingError};

use crate::purchase::PaymentService;

/// The issuer's security module of the payment server's config (software
/// keys or the PKCS#11 token), to check every record's proof again.
pub fn security_module(cfg: &crate::Config) -> Result<SecurityModule, ClearingError> {
    crate::purchase::security_module(cfg).map_err(|e| ClearingError::Other(e.detail()))
}

/// The engine for a clearing config.
pub fn open(
    cfg: &ClearingConfig,
    clock: crate::purchase::Clock,
) -> Result<Clearing, ClearingError> {
    let conn = db::open(&cfg.db_path)?;
    let fees = cfg
        .merchants
        .iter()
        .map(|(k, m)| (k.clone(), m.fee))
        .collect();
    Ok(Clearing::new(
        conn,
        Arc::new(security_module(&cfg.payment)?),
        cfg.signers.clone(),
        fees,
        clock,
    ))
}

/// Acknowledgements per commit to the payment database.
const ACK_CHUNK: usize = 5_000;

/// Clear one file: receive, post, acknowledge.
pub async fn clear_file(
    clearing: &mut Clearing,
    payment: &PaymentService,
    name: &str,
    bytes: &[u8],
) -> Result<Cleared, ClearingError> {
    let (batch, again) = clearing.receive(name, bytes)?;
    let stored = clearing.post(&batch)?;
    acknowledge(clearing, payment).await?;
    Ok(Cleared {
        batch_id: batch.batch_id,
        again,
        accepted: stored.accepted_count,
        rejected: stored.rejected_count,
    })
}

/// Finish what a crash left: post received batches, acknowledge posted ones.
pub async fn resume(
    clearing: &mut Clearing,
    payment: &PaymentService,
) -> Result<usize, ClearingError> {
    let todo = clearing.unposted()?;
    let n = todo.len();
    for (id, file) in todo {
        let (batch, _) = clearing.receive(&id, &file)?;
        clearing.post(&batch)?;
    }
    acknowledge(clearing, payment).await?;
    Ok(n)
}

/// Step 4 for every posted batch: purchases move to `settled` in the payment
/// database, loads to `settled` (each chunk one commit there; idempotent),
/// then the batch is acked.
pub async fn acknowledge(
    clearing: &mut Clearing,
    payment: &PaymentService,
) -> Result<(), ClearingError> {
    for post::Unacked {
        batch_id,
        kind,
        items,
    } in clearing.unacked()?
    {
        match kind {
            BatchKind::Purchases => {
                for chunk in items.chunks(ACK_CHUNK) {
                    payment
                        .settle_cleared(&batch_id, chunk)
                        .await
                        .map_err(|e| {
                            ClearingError::Other(format!(
                                "acknowledging {batch_id}: {}",
                                e.detail()
                            ))
                        })?;
                    clearing.ack_step();
                }
            }
            BatchKind::Loads => {
                for chunk in items.chunks(ACK_CHUNK) {
                    payment
                        .settle_cleared_loads(&batch_id, chunk)
                        .await
                        .map_err(|e| {
                            ClearingError::Other(format!(
                                "acknowledging {batch_id}: {}",
                                e.detail()
                            ))
                        })?;
                    clearing.ack_step();
                }
            }
        }
        clearing.mark_acked(&batch_id)?;
    }
    Ok(())
}

/// What reconciliation reads from the payment (and load) database.
pub async fn payment_view(
    payment: &PaymentService,
) -> Result<reconcile::PaymentView, crate::PaymentError> {
    let st = payment.store();
    Ok(reconcile::PaymentView {
        captured: st.captured_transactions().await?,
        last_close: st.last_batch_close().await?.into_iter().collect(),
        loads: st.credited_loads().await?,
        last_load_close: st.last_load_batch_close().await?.into_iter().collect(),
    })
}

/// One pass of `clearing run`: resume, then clear every `*.batch` file in the
/// inbox (oldest name first), moving each to `done/` or `refused/` beside it.
pub async fn run_pass(
    clearing: &mut Clearing,
    payment: &PaymentService,
    inbox: &Path,
) -> Result<Vec<Result<Cleared, String>>, ClearingError> {
    resume(clearing, payment).await?;
    let mut files: Vec<PathBuf> = match std::fs::read_dir(inbox) {
        Ok(d) => d
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "batch") && p.is_file())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => {
            return Err(ClearingError::Other(format!(
                "reading {}: {e}",
                inbox.display()
            )))
        }
    };
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(&path)
            .map_err(|e| ClearingError::Other(format!("reading {}: {e}", path.display())))?;
        let r = clear_file(clearing, payment, &name, &bytes).await;
        let dest = match &r {
            Ok(_) => "done",
            Err(ClearingError::Refused(_) | ClearingError::IdReused(_)) => "refused",
            Err(_) => {
                // The database or the payment server failed: try again next pass.
                out.push(r.map_err(|e| e.to_string()));
                continue;
            }
        };
        let dir = inbox.join(dest);
        std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::rename(&path, dir.join(&name)))
            .map_err(|e| ClearingError::Other(format!("moving {}: {e}", path.display())))?;
        out.push(r.map_err(|e| e.to_string()));
    }
    Ok(out)
}
