//! The `clearing` subcommands: thin wrappers over `payment_server::clearing`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use payment_server::clearing::{self, reconcile, settle, ClearingConfig};
use payment_server::purchase::{system_clock, PaymentService};
use payment_server::store::Store;

use crate::report;

#[derive(Subcommand)]
pub enum ClearingCmd {
    /// Clear the batch files in the inbox, every `interval_secs` (or once).
    Run {
        #[arg(long, env = "CARDPAY_CLEARING_CONFIG")]
        config: PathBuf,
        /// One pass, then exit.
        #[arg(long)]
        once: bool,
        /// Also settle (payouts through yesterday) after each pass.
        #[arg(long)]
        settle: bool,
        /// Records per commit.
        #[arg(long, default_value_t = clearing::post::DEFAULT_CHUNK)]
        chunk: usize,
    },
    /// Clear the given batch files (exit 1 if any was refused).
    Submit {
        #[arg(long, env = "CARDPAY_CLEARING_CONFIG")]
        config: PathBuf,
        #[arg(long, default_value_t = clearing::post::DEFAULT_CHUNK)]
        chunk: usize,
        files: Vec<PathBuf>,
    },
    /// Pay out: a payout per merchant per business day through `--through`
    /// (`YYYY-MM-DD`, `today`; default yesterday), and write the files.
    Settle {
        #[arg(long, env = "CARDPAY_CLEARING_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        through: Option<String>,
    },
    /// Prove the books: exit 0 with the figures, or 1 naming the first discrepancy.
    Reconcile {
        #[arg(long, env = "CARDPAY_CLEARING_CONFIG")]
        config: PathBuf,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A new Ed25519 batch signing key: the seed (for the source's config)
    /// and the public key (for clearing's `[[signers]]`).
    Keygen,
}

/// `close-batches`.
pub async fn close_batches(config: &Path) -> anyhow::Result<()> {
    let cfg = payment_server::Config::load(config).context("loading config")?;
    let producer = cfg
        .clearing
        .as_ref()
        .context("the config has no [clearing] section")?;
    let store = Store::open(&cfg.database)
        .await
        .map_err(report)
        .context("opening the payment database")?;
    let service = PaymentService::new(&cfg, store, system_clock()).map_err(report)?;
    let ids = service
        .close_batches(&payment_server::batch_signer(producer))
        .await
        .map_err(report)?;
    for id in &ids {
        println!("{id}");
    }
    eprintln!(
        "{} batches closed into {}",
        ids.len(),
        producer.spool.display()
    );
    Ok(())
}

struct Opened {
    cfg: ClearingConfig,
    clearing: clearing::Clearing,
    payment: Arc<PaymentService>,
}

async fn open(config: &Path, chunk: usize) -> anyhow::Result<Opened> {
    let cfg = ClearingConfig::load(config).context("loading clearing config")?;
    let mut c = clearing::open(&cfg, system_clock()).context("opening the clearing database")?;
    c.chunk = chunk.max(1);
    let store = Store::open(&cfg.payment.database)
        .await
        .map_err(report)
        .context("opening the payment database")?;
    let payment =
        Arc::new(PaymentService::new(&cfg.payment, store, system_clock()).map_err(report)?);
    Ok(Opened {
        cfg,
        clearing: c,
        payment,
    })
}

fn today_offset(days: i64) -> String {
    let now = (system_clock())() as i64;
    clearing::db::iso_date((now + days * 86_400) as u64)
}

/// Run a subcommand; the process exit code.
pub async fn run(cmd: ClearingCmd) -> anyhow::Result<i32> {
    match cmd {
        ClearingCmd::Keygen => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).context("OS random source")?;
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            println!("signing_key = \"{}\"", hex::encode(seed));
            println!(
                "public_key = \"{}\"",
                hex::encode(key.verifying_key().to_bytes())
            );
            Ok(0)
        }
        ClearingCmd::Run {
            config,
            once,
            settle: and_settle,
            chunk,
        } => {
            let mut o = open(&config, chunk).await?;
            loop {
                let results = clearing::run_pass(&mut o.clearing, &o.payment, &o.cfg.inbox).await?;
                for r in &results {
                    match r {
                        Ok(c) => {
                            tracing::info!(batch = %c.batch_id, again = c.again, accepted = c.accepted, rejected = c.rejected, "cleared")
                        }
                        Err(e) => tracing::warn!(error = %e, "batch not cleared"),
                    }
                }
                if and_settle {
                    let now = (system_clock())();
                    let p = settle::settle(&mut o.clearing, &o.cfg, &today_offset(-1), now)?;
                    settle::export(&o.clearing, &o.cfg, now)?;
                    if !p.is_empty() {
                        tracing::info!(payouts = p.len(), "settled");
                    }
                }
                if once {
                    return Ok(0);
                }
                tokio::time::sleep(std::time::Duration::from_secs(o.cfg.interval_secs)).await;
            }
        }
        ClearingCmd::Submit {
            config,
            chunk,
            files,
        } => {
            let mut o = open(&config, chunk).await?;
            clearing::resume(&mut o.clearing, &o.payment).await?;
            let mut code = 0;
            for f in files {
                let bytes =
                    std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
                let name = f.display().to_string();
                match clearing::clear_file(&mut o.clearing, &o.payment, &name, &bytes).await {
                    Ok(c) => println!(
                        "{} {}: {} posted, {} rejected{}",
                        name,
                        c.batch_id,
                        c.accepted,
                        c.rejected,
                        if c.again {
                            " (submitted before: nothing changed)"
                        } else {
                            ""
                        }
                    ),
                    Err(
                        e @ (clearing::ClearingError::Refused(_)
                        | clearing::ClearingError::IdReused(_)),
                    ) => {
                        println!("{name}: {e}");
                        code = 1;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(code)
        }
        ClearingCmd::Settle { config, through } => {
            let mut o = open(&config, clearing::post::DEFAULT_CHUNK).await?;
            let through = match through.as_deref() {
                None => today_offset(-1),
                Some("today") => today_offset(0),
                Some(d) => d.to_string(),
            };
            let now = (system_clock())();
            let payouts = settle::settle(&mut o.clearing, &o.cfg, &through, now)?;
            let dirs = settle::export(&o.clearing, &o.cfg, now)?;
            for p in &payouts {
                println!(
                    "{} {} {} {} purchases, gross {} fees {} pays {} ref {}",
                    p.payout_id,
                    p.merchant_id,
                    p.business_date,
                    p.count,
                    p.gross,
                    p.fees,
                    p.amount,
                    p.reference
                );
            }
            for d in dirs {
                println!("files: {}", d.display());
            }
            Ok(0)
        }
        ClearingCmd::Reconcile { config, json } => {
            let o = open(&config, clearing::post::DEFAULT_CHUNK).await?;
            let view = clearing::payment_view(&o.payment).await.map_err(report)?;
            match reconcile::reconcile(
                o.clearing.db(),
                o.clearing.security_module(),
                &o.cfg.signers,
                &view,
            ) {
                Ok(s) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&s)?);
                    } else {
                        println!("reconciled: the ledger balances ({} entries), {} batches, {} records posted, {} rejected", s.journal_entries, s.batches, s.records_posted, s.records_rejected);
                        println!(
                            "issuer float {} = loads {} − purchases {}",
                            s.issuer_float, s.loads_total, s.purchases_total
                        );
                        println!(
                            "captured {} ({} not batched yet), fees {}, paid out {}",
                            s.captured, s.captured_unbatched, s.fees_total, s.paid_out_total
                        );
                        for (a, b) in &s.balances {
                            println!("  {a:40} {b:>14}");
                        }
                    }
                    Ok(0)
                }
                Err(d) => {
                    println!("DISCREPANCY in {}: {}", d.check, d.detail);
                    Ok(1)
                }
            }
        }
    }
}
