//! Benchmark: complete purchases per second (draw + complete, each reply after
//! its SQLite commit with synchronous=FULL) with concurrent clients, and p50/p99
//! latency per request. The server runs in-process on a loopback port; each
//! client runs the real purchase client (the widget's) against its own virtual
//! card, whose log is read and carried in every draw request.
//!
//! With `--loads N` it also runs N loads (load draw + complete, the real load
//! client against the same cards, through the load server's HSM) and prints
//! loads/s and p50/p99 per request beside the purchases.
//!
//! `cargo run --release -p payment-testkit --bin bench-purchases -- --clients 32 --purchases 5000 --loads 5000`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use payment_testkit::{self as testkit, now, Shopper, TestMerchant};
use purse::purchase::client::{Outgoing, Reply, Status};
use purse::purchase::PATH_DRAW;
use purse::session::VerifyMode;

#[derive(Parser)]
struct Args {
    /// Concurrent clients (each with its own card).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Total purchases.
    #[arg(long, default_value_t = 4000)]
    purchases: usize,
    /// Verify mode of the purchases.
    #[arg(long, default_value = "payment_server")]
    mode: String,
    /// SQLite file (default: a fresh file in the temp dir).
    #[arg(long)]
    db: Option<std::path::PathBuf>,
    /// Server worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Total loads, run after the purchases on the same cards (0: none).
    #[arg(long, default_value_t = 0)]
    loads: usize,
}

fn pct(v: &mut [u64], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    Duration::from_micros(v[i])
}

/// Loads with the real load client, `--clients` at a time, each on its own card.
async fn bench_loads(
    api: &testkit::Api,
    bank: &testkit::TestBank,
    args: &Args,
) -> anyhow::Result<()> {
    use purse::load::client::Status as LoadStatus;
    let per = args.loads.div_ceil(args.clients);
    let bank = Arc::new(bank.clone());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let api = api.clone();
        let bank = bank.clone();
        tasks.push(tokio::spawn(async move {
            // Low balance, high maximum: every load fits.
            let card =
                testkit::test_card_custom(&format!("6298{:012}", c), 0, 1_000_000_000, "301231");
            let mut shopper = Shopper::new(card, api);
            let (mut draw_us, mut complete_us) = (Vec::with_capacity(per), Vec::with_capacity(per));
            for i in 0..per {
                let ws = bank.session(
                    &format!("BL-{c}-{i}"),
                    "acct",
                    1 + (i as u32 % 900),
                    now() + 600,
                );
                let mut client = shopper.load_client(&ws);
                shopper.card.reset();
                client.card_ready();
                while let Some(req) = client.poll_request() {
                    let reply = match &req {
                        Outgoing::Card(apdu) => Reply::Card(shopper.card.process(apdu)),
                        Outgoing::Server { path, body } => {
                            let t = Instant::now();
                            let r = shopper.api.post_raw(path, body.clone()).await;
                            let us = t.elapsed().as_micros() as u64;
                            if *path == purse::load::PATH_LOAD_DRAW {
                                draw_us.push(us);
                            } else {
                                complete_us.push(us);
                            }
                            match r {
                                Ok((status, text)) => Reply::Server(status, text),
                                Err(_) => Reply::ServerUnreachable,
                            }
                        }
                    };
                    client.handle(reply);
                    if matches!(client.status(), LoadStatus::Confirm(_)) {
                        client.approve();
                    }
                }
                anyhow::ensure!(
                    matches!(client.status(), LoadStatus::Done { .. }),
                    "load {c}/{i}: {:?}",
                    client.status()
                );
            }
            anyhow::Ok((draw_us, complete_us))
        }));
    }
    let (mut draws, mut completes) = (Vec::new(), Vec::new());
    for t in tasks {
        let (d, c) = t.await??;
        draws.extend(d);
        completes.extend(c);
    }
    let elapsed = started.elapsed();
    let n = completes.len();
    println!("loads:                {n} ({} clients)", args.clients);
    println!("elapsed:              {:.2} s", elapsed.as_secs_f64());
    println!(
        "complete loads/s:     {:.0}",
        n as f64 / elapsed.as_secs_f64()
    );
    println!(
        "load draw     p50 {:>8.2?}  p99 {:>8.2?}",
        pct(&mut draws, 0.5),
        pct(&mut draws, 0.99)
    );
    println!(
        "load complete p50 {:>8.2?}  p99 {:>8.2?}",
        pct(&mut completes, 0.5),
        pct(&mut completes, 0.99)
    );
    anyhow::ensure!(n == args.clients * per, "every load completed");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let keep_db = args.db.clone();
    let mode: VerifyMode =
        serde_json::from_value(serde_json::Value::String(args.mode.clone())).context("mode")?;
    let dir = std::env::temp_dir().join(format!("cardpay-bench-{}-{}", std::process::id(), now()));
    std::fs::create_dir_all(&dir)?;
    let db = args.db.clone().unwrap_or_else(|| dir.join("bench.sqlite"));
    let merchant = TestMerchant::new("bench", 0x42);
    let bank = testkit::TestBank::new("bench-bank", 0x43);
    let config = payment_server::Config::from_toml(
        &testkit::test_config_toml_full(
            &testkit::TestDb::Sqlite(db.clone()),
            std::slice::from_ref(&merchant),
            std::slice::from_ref(&bank),
            300,
        ),
        |_| None,
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (addr, service) = testkit::spawn_server(&config).await;
        let api = testkit::Api::new(addr);
        let per = args.purchases.div_ceil(args.clients);
        let merchant = Arc::new(merchant);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..args.clients {
            let api = api.clone();
            let merchant = merchant.clone();
            tasks.push(tokio::spawn(async move {
                let card = testkit::test_card_with(&format!("6299{:012}", c), 900_000, 1_000_000);
                let mut shopper = Shopper::new(card, api);
                let mut log_records = 0;
                let (mut draw_us, mut complete_us) =
                    (Vec::with_capacity(per), Vec::with_capacity(per));
                for i in 0..per {
                    let ws = merchant.session(
                        &format!("B-{c}-{i}"),
                        1 + (i as u32 % 900),
                        mode,
                        now() + 600,
                    );
                    let mut client = shopper.client(&ws);
                    shopper.card.reset();
                    client.card_ready();
                    while let Some(req) = client.poll_request() {
                        let reply = match &req {
                            Outgoing::Card(apdu) => Reply::Card(shopper.card.process(apdu)),
                            Outgoing::Server { path, body } => {
                                let t = Instant::now();
                                let r = shopper.api.post_raw(path, body.clone()).await;
                                let us = t.elapsed().as_micros() as u64;
                                if *path == PATH_DRAW {
                                    draw_us.push(us);
                                } else {
                                    complete_us.push(us);
                                }
                                match r {
                                    Ok((status, text)) => Reply::Server(status, text),
                                    Err(_) => Reply::ServerUnreachable,
                                }
                            }
                        };
                        client.handle(reply);
                        if matches!(client.status(), Status::Confirm) {
                            client.approve();
                        }
                    }
                    anyhow::ensure!(
                        matches!(client.status(), Status::Done { .. }),
                        "purchase {c}/{i}: {:?}",
                        client.status()
                    );
                    log_records = log_records.max(shopper.card.state().log.len());
                }
                anyhow::Ok((draw_us, complete_us, log_records))
            }));
        }
        let (mut draws, mut completes, mut records) = (Vec::new(), Vec::new(), 0);
        for t in tasks {
            let (d, c, r) = t.await??;
            draws.extend(d);
            completes.extend(c);
            records = records.max(r);
        }
        let elapsed = started.elapsed();
        let n = completes.len();
        let captured = service.captured_total("bench").await?;
        println!(
            "purchases:            {n} (mode {}, {} clients, SQLite WAL synchronous=FULL, {})",
            mode.as_str(),
            args.clients,
            db.display()
        );
        println!("elapsed:              {:.2} s", elapsed.as_secs_f64());
        println!(
            "complete purchases/s: {:.0}",
            n as f64 / elapsed.as_secs_f64()
        );
        println!(
            "requests/s:           {:.0}",
            2.0 * n as f64 / elapsed.as_secs_f64()
        );
        println!(
            "draw     p50 {:>8.2?}  p99 {:>8.2?}",
            pct(&mut draws, 0.5),
            pct(&mut draws, 0.99)
        );
        println!(
            "complete p50 {:>8.2?}  p99 {:>8.2?}",
            pct(&mut completes, 0.5),
            pct(&mut completes, 0.99)
        );
        println!("log records per draw: up to {records} (READ LOG before each draw)");
        println!("captured total:       {captured} (all purchases debited and verified)");
        anyhow::ensure!(n == args.clients * per, "every purchase completed");
        if args.loads > 0 {
            bench_loads(&api, &bank, &args).await?;
            let credited = service.bank_credited_total("bench-bank").await?;
            println!("credited total:       {credited} (every load's S3 verified by the HSM)");
        }
        anyhow::Ok(())
    })?;
    if keep_db.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
