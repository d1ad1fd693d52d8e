//! Benchmark: records cleared per second. A payment database is filled with
//! `--records` captured purchases whose S3 the security module computed
//! exactly as the card would (TEST keys); then, timed one by one: the payment
//! server closes them into one signed batch; clearing receives it (signature,
//! totals), checks every record's S3 again and posts it (records per commit:
//! `--chunk`); the payment database is acknowledged (every purchase `settled`);
//! reconciliation proves the books. Real SQLite files, synchronous = FULL.
//!
//! `cargo run --release -p payment-testkit --bin bench-clearing -- --records 100000`
//! (`--clearing-db postgres://…` for the clearing database on PostgreSQL).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use payment_server::clearing::{self, reconcile, ClearingConfig};
use payment_server::purchase::{system_clock, PaymentService};
use payment_server::store::Store;
use payment_testkit::clearing::*;
use payment_testkit::*;
use purse::security_module::PurchaseDraw;
use purse::types::{BcdDate, BcdTime, CardId, Expiry, PurseId};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    records: u32,
    /// Records per commit while posting.
    #[arg(long, default_value_t = clearing::post::DEFAULT_CHUNK)]
    chunk: usize,
    /// The clearing database: a `postgres://…` URL (an empty schema, or a
    /// database of its own) instead of the SQLite file.
    #[arg(long)]
    clearing_db: Option<String>,
}

fn fill(db: &std::path::Path, n: u32) -> anyhow::Result<()> {
    let sm = test_security_module();
    let mut c = rusqlite::Connection::open(db)?;
    let tx = c.transaction()?;
    let t = now();
    let (date, time) = (BcdDate::from_unix(t), BcdTime::from_unix(t));
    let mut stmt = tx.prepare(
        "INSERT INTO transactions (merchant_id, txn_id, order_ref, state, verify_mode, amount, currency,
            exponent, purse, origin, card_id, card_expiry, key_version, atc, card_random,
            balance_before, balance_after, seq, date, time, expected_s3, draw_hash, draw_response,
            card_s3, card_sw, expires_at, created_at, drawn_at, debited_at, updated_at)
         VALUES ('bench', ?1, '', 'debited', 'payment_server', ?2, 978, 2, 0, 'http://bench.test', ?3,
            '301231', 1, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, x'00', '{}', ?11, 36864, ?12, ?12, ?12, ?12, ?12)",
    )?;
    for i in 0..n {
        // 1000 cards, each with its own rising ATC.
        let card = CardId::parse(&format!("62800001{:08}", i % 1000))?;
        let atc = (i / 1000 + 1) as u16;
        let amount = 100 + i % 2_000;
        let draw = PurchaseDraw {
            card_id: card,
            expiry: Expiry::parse("301231")?,
            key_version: 1,
            purse: PurseId::Money,
            balance: 1_000_000,
            atc,
            random: i.to_be_bytes(),
            amount,
            seq: i,
            date,
            time,
        };
        let auth = sm.authorize_purchase(&draw).context("draw")?;
        stmt.execute(rusqlite::params![
            format!("T-{i:07}"),
            amount,
            card.full(),
            atc,
            i.to_be_bytes().to_vec(),
            draw.balance,
            auth.balance_after,
            i,
            String::from(date),
            String::from(time),
            auth.expected_s3.to_vec(),
            t,
        ])?;
    }
    drop(stmt);
    tx.commit()?;
    Ok(())
}

fn rate(n: u32, d: std::time::Duration) -> String {
    format!(
        "{:>9.0} records/s ({:.2} s)",
        f64::from(n) / d.as_secs_f64(),
        d.as_secs_f64()
    )
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("payments.sqlite");
    let m = TestMerchant::new("bench", 0x42);
    let ptoml = test_config_toml(&TestDb::Sqlite(db.clone()), std::slice::from_ref(&m), 300);
    std::fs::write(dir.path().join("ps.toml"), &ptoml)?;
    let mut ctoml = clearing_config_toml(
        dir.path(),
        &dir.path().join("ps.toml"),
        std::slice::from_ref(&m),
        5,
        150,
    );
    if let Some(url) = &args.clearing_db {
        let sqlite = format!(
            "db_path = {:?}",
            dir.path().join("clearing.sqlite").display().to_string()
        );
        anyhow::ensure!(ctoml.contains(&sqlite), "clearing toml without {sqlite}");
        ctoml = ctoml.replace(&sqlite, &format!("db_path = {url:?}"));
    }
    std::fs::write(dir.path().join("clearing.toml"), ctoml)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let pcfg = payment_server::Config::from_toml(&ptoml, |_| None)?;
        let store = Store::open(&pcfg.database).await?;
        let t0 = Instant::now();
        fill(&db, args.records)?;
        eprintln!(
            "fixture: {} captured purchases in {:.1} s",
            args.records,
            t0.elapsed().as_secs_f64()
        );
        let service = Arc::new(PaymentService::new(&pcfg, store, system_clock()).expect("service"));
        let cfg = ClearingConfig::load(&dir.path().join("clearing.toml"))?;
        let mut c = clearing::open(&cfg, system_clock())?;
        c.chunk = args.chunk;

        let t = Instant::now();
        let ids = service
            .close_purchase_batches(&payments_signer(&cfg.inbox))
            .await?;
        let close = t.elapsed();
        anyhow::ensure!(ids.len() == 1, "one batch");
        let file = cfg.inbox.join(format!("{}.batch", ids[0]));
        let bytes = std::fs::read(&file)?;

        let t = Instant::now();
        let (batch, _) = c.receive("bench", &bytes)?;
        let receive = t.elapsed();
        let t = Instant::now();
        let stored = c.post(&batch)?;
        let post = t.elapsed();
        anyhow::ensure!(
            stored.accepted_count == u64::from(args.records),
            "all posted: {stored:?}"
        );
        let t = Instant::now();
        clearing::acknowledge(&mut c, &service).await?;
        let ack = t.elapsed();
        let t = Instant::now();
        let view = clearing::payment_view(&service).await?;
        let s = reconcile::reconcile(c.db(), c.security_module(), &cfg.signers, &view)
            .map_err(|d| anyhow::anyhow!("{d}"))?;
        let rec = t.elapsed();
        anyhow::ensure!(s.records_posted == u64::from(args.records));
        let n = args.records;
        println!(
            "batch of {n} records ({} MB signed file), chunk {}, clearing database {:?}",
            bytes.len() / 1_000_000,
            args.chunk,
            c.db()
        );
        println!("close + sign + spool (payment server) {}", rate(n, close));
        println!("receive: open + verify signature     {}", rate(n, receive));
        println!("check S3 again + post (clearing)     {}", rate(n, post));
        println!(
            "cleared end to end (receive + post)  {}",
            rate(n, receive + post)
        );
        println!("acknowledge: settled in payment DB   {}", rate(n, ack));
        println!("reconcile (all checks, S3 again)     {}", rate(n, rec));
        anyhow::Ok(())
    })
}
