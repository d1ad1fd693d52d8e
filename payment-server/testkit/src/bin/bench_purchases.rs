//! Benchmark: complete purchases per second (draw + complete, each reply
//! after its commit) with concurrent clients, p50/p99 latency per request,
//! and CPU per purchase. The servers run in-process on loopback ports; each
//! client runs the real purchase client (the widget's) against its own
//! virtual card, whose log is read and carried in every draw request.
//!
//! One configuration, or several side by side:
//! - `--db PATH|postgres://…` the store (default: a fresh SQLite file; a
//!   PostgreSQL URL gets a fresh schema), `--instances N` servers on it (each
//!   its own service, pool and listener; the clients spread requests over
//!   them), `--sm pkcs11` the security module in a SoftHSM2 token;
//! - `--floor http`: a bare axum server answering the same requests (same
//!   bodies, same client, same concurrency, JSON parsed, answers of the same
//!   size) — the most this HTTP stack can do; `--floor sqlite`: durable
//!   writes/s through the store's group-commit writer (WAL, synchronous=FULL);
//! - `--compare`: SQLite, PostgreSQL ×1 and ×2 (`--pg URL` or `CARDPAY_PG_URL`),
//!   PKCS#11, and both floors, in one table.
//!
//! With `--loads N` it also runs N loads after the purchases (one configuration).
//!
//! `cargo run --release -p payment-testkit --bin bench-purchases -- --compare --pg postgres://…`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use payment_testkit::{self as testkit, now, Shopper, TestDb, TestMerchant};
use purse::purchase::client::{Outgoing, Reply, Status};
use purse::purchase::{PATH_COMPLETE, PATH_DRAW};
use purse::session::VerifyMode;

#[derive(Parser, Clone)]
struct Args {
    /// Concurrent clients (each with its own card).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Total purchases per configuration.
    #[arg(long, default_value_t = 4000)]
    purchases: usize,
    /// Verify mode of the purchases.
    #[arg(long, default_value = "payment_server")]
    mode: String,
    /// The store: a SQLite file or a postgres:// URL (default: a fresh SQLite file).
    #[arg(long)]
    db: Option<String>,
    /// Server instances on the database (PostgreSQL), in this process.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// The security module: `software` or `pkcs11` (a SoftHSM2 test token).
    #[arg(long, default_value = "software")]
    sm: String,
    /// Floors to measure too: `http`, `sqlite` (repeat for both).
    #[arg(long)]
    floor: Vec<String>,
    /// SQLite, PostgreSQL ×1 and ×2, PKCS#11 and both floors, side by side.
    #[arg(long)]
    compare: bool,
    /// PostgreSQL for `--compare` (default: $CARDPAY_PG_URL).
    #[arg(long)]
    pg: Option<String>,
    /// Runtime worker threads (of each runtime when split).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// `split`: the servers (purchase server, floors) on one tokio runtime,
    /// the clients on another, so each side's CPU is read from its own
    /// threads; `shared`: both on one runtime (no per-side figures).
    #[arg(long, default_value = "split")]
    runtimes: String,
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

/// CPU seconds: this process (user + system) and the whole machine (busy
/// time of every CPU: the PostgreSQL backends too), from /proc.
#[derive(Clone, Copy)]
struct Cpu {
    process: f64,
    machine: f64,
}

fn cpu_now() -> Cpu {
    let tick = 100.0; // USER_HZ on Linux
    let process = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / tick)
        })
        .unwrap_or(0.0);
    let machine = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<f64> = s
                .lines()
                .next()?
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal
            Some((f.iter().sum::<f64>() - f.get(3)? - f.get(4)?) / tick)
        })
        .unwrap_or(0.0);
    Cpu { process, machine }
}

/// Thread names: the servers' runtime, the clients' runtime (split), one
/// runtime for both (shared). Linux keeps 15 bytes of a thread's name.
const SERVER_THREADS: &str = "bench-server";
const CLIENT_THREADS: &str = "bench-client";
const SHARED_THREADS: &str = "bench-shared";

/// CPU nanoseconds of each live thread of this process, by thread id, with
/// its name.
type ThreadCpu = std::collections::HashMap<u32, (String, u64)>;

/// Every thread's CPU time now: `clock_gettime` on the thread's CPU clock
/// (what glibc's `pthread_getcpuclockid` returns for it: nanoseconds), or
/// utime + stime from its `/proc` stat (10 ms ticks) if that fails.
fn threads_cpu() -> ThreadCpu {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    let mut out = ThreadCpu::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        let name = std::fs::read_to_string(e.path().join("comm"))
            .map(|n| n.trim_end().to_string())
            .unwrap_or_default();
        // MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED): (~tid << 3) | 2 | 4.
        let clock = ((!(tid as i32)) << 3) | 6;
        let mut ts = Timespec { sec: 0, nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec (64-bit Linux layout).
        let ns = if unsafe { clock_gettime(clock, &mut ts) } == 0 {
            ts.sec as u64 * 1_000_000_000 + ts.nsec as u64
        } else {
            let Some(ticks) = std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| {
                    let f: Vec<u64> = s
                        .rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    // After the name: state (not a number), then fields 4..;
                    // utime and stime are fields 14 and 15.
                    Some(f.get(10)? + f.get(11)?)
                })
            else {
                continue; // the thread is gone
            };
            ticks * 10_000_000
        };
        out.insert(tid, (name, ns));
    }
    out
}

/// CPU microseconds per side between two snapshots (threads that started
/// meanwhile count from zero).
#[derive(Clone, Copy, Default)]
struct Sides {
    /// The servers' runtime (HTTP, handlers, the security module, JSON).
    server_rt: f64,
    /// The store's writer and reader threads.
    writer: f64,
    reader: f64,
    /// The clients' runtime.
    client: f64,
}

fn sides(before: &ThreadCpu, after: &ThreadCpu) -> Sides {
    let mut s = Sides::default();
    for (tid, (name, ns)) in after {
        let was = before.get(tid).map_or(0, |(_, b)| *b);
        let us = ns.saturating_sub(was) as f64 / 1e3;
        match name.as_str() {
            n if n.starts_with(SERVER_THREADS) => s.server_rt += us,
            n if n.starts_with(CLIENT_THREADS) => s.client += us,
            "cardpay-store" => s.writer += us,
            n if n.starts_with("cardpay-store-r") => s.reader += us,
            _ => {}
        }
    }
    s
}

/// One configuration's result.
struct Figures {
    name: String,
    /// Purchases (or request pairs, or writes) per second.
    rate: f64,
    unit: &'static str,
    requests: f64,
    draw: (Duration, Duration),
    complete: (Duration, Duration),
    cpu_process_ms: f64,
    cpu_machine_ms: f64,
    /// Each side's CPU over the run (split runtimes only).
    sides: Option<Sides>,
    /// Server requests and client operations the run made.
    server_requests: f64,
    client_ops: f64,
}

impl Figures {
    /// µs of the servers' CPU per request (their runtime, writer, reader).
    fn server_us(&self) -> Option<f64> {
        let s = self.sides?;
        Some((s.server_rt + s.writer + s.reader) / self.server_requests)
    }
    fn print_sides_header() {
        println!(
            "{:<34} {:>14} {:>9} {:>9} {:>9} {:>14}",
            "server/client CPU, µs", "server/request", "runtime", "writer", "reader", "client/op"
        );
    }
    fn print_sides(&self) {
        let Some(s) = self.sides else { return };
        let r = self.server_requests;
        println!(
            "{:<34} {:>14.1} {:>9.1} {:>9.1} {:>9.1} {:>14.1}",
            self.name,
            self.server_us().unwrap_or(0.0),
            s.server_rt / r,
            s.writer / r,
            s.reader / r,
            s.client / self.client_ops
        );
    }
    fn print_header() {
        println!(
            "{:<34} {:>10} {:>10} {:>21} {:>21} {:>15}",
            "configuration",
            "rate",
            "requests/s",
            "draw p50/p99",
            "complete p50/p99",
            "CPU ms/op p|m"
        );
    }
    fn print(&self) {
        println!(
            "{:<34} {:>7.0} {:<2} {:>10} {:>10.2?}/{:<10.2?} {:>10.2?}/{:<10.2?} {:>6.2}|{:<6.2}",
            self.name,
            self.rate,
            self.unit,
            if self.requests > 0.0 {
                format!("{:.0}", self.requests)
            } else {
                "-".into()
            },
            self.draw.0,
            self.draw.1,
            self.complete.0,
            self.complete.1,
            self.cpu_process_ms,
            self.cpu_machine_ms
        );
    }
}

/// Where the servers run: their runtime (the clients' own when shared),
/// and whether each side's CPU can be read apart.
#[derive(Clone)]
struct Rt {
    srv: tokio::runtime::Handle,
    split: bool,
}

impl Rt {
    fn snapshot(&self) -> Option<ThreadCpu> {
        self.split.then(threads_cpu)
    }
    fn sides(&self, before: &Option<ThreadCpu>) -> Option<Sides> {
        Some(sides(before.as_ref()?, &threads_cpu()))
    }
}

/// What one configuration runs on.
#[derive(Clone)]
struct Setup {
    name: String,
    /// A SQLite path, or a PostgreSQL URL (a fresh schema per run).
    db: Option<String>,
    instances: usize,
    pkcs11: bool,
}

/// Start the servers of a setup on the servers' runtime; their addresses
/// and the first service.
async fn servers(
    rt: &Rt,
    setup: &Setup,
    merchant: &TestMerchant,
    bank: &testkit::TestBank,
    dir: &std::path::Path,
) -> anyhow::Result<(
    Vec<std::net::SocketAddr>,
    Arc<payment_server::PaymentService>,
)> {
    let db = match &setup.db {
        Some(u) if u.starts_with("postgres") => TestDb::fresh_schema(u),
        Some(p) => TestDb::Sqlite(p.into()),
        None => TestDb::Sqlite(dir.join(format!("bench-{}.sqlite", now()))),
    };
    let mut toml = testkit::test_config_toml_full(
        &db,
        std::slice::from_ref(merchant),
        std::slice::from_ref(bank),
        300,
    );
    let (sw, hsm) = (
        testkit::security_module_toml(false),
        testkit::security_module_toml(true),
    );
    toml = if setup.pkcs11 {
        toml.replace(&sw, &hsm)
    } else {
        toml.replace(&hsm, &sw)
    };
    let config = payment_server::Config::from_toml(&toml, |_| None)?;
    let instances = setup.instances.max(1);
    // Spawned from a task of the servers' runtime: the listener, the
    // connections' tasks and the server's own tasks all run there.
    let (addrs, first) = rt
        .srv
        .spawn(async move {
            let mut addrs = Vec::new();
            let mut first = None;
            for _ in 0..instances {
                let (addr, service) = testkit::spawn_server(&config).await;
                addrs.push(addr);
                first.get_or_insert(service);
            }
            (addrs, first.expect("one server"))
        })
        .await?;
    Ok((addrs, first))
}

/// Purchases with the real purchase client, `clients` at a time, each on its own card.
async fn bench_purchases(
    rt: &Rt,
    setup: &Setup,
    args: &Args,
    mode: VerifyMode,
    run: usize,
) -> anyhow::Result<Figures> {
    let dir = std::env::temp_dir().join(format!("cardpay-bench-{}-{}", std::process::id(), run));
    std::fs::create_dir_all(&dir)?;
    let merchant = TestMerchant::new("bench", 0x42);
    let bank = testkit::TestBank::new("bench-bank", 0x43);
    let (addrs, service) = servers(rt, setup, &merchant, &bank, &dir).await?;
    let api = if addrs.len() > 1 {
        testkit::Api::spread(&addrs)
    } else {
        testkit::Api::new(addrs[0])
    };
    let per = args.purchases.div_ceil(args.clients);
    let merchant = Arc::new(merchant);
    let threads0 = rt.snapshot();
    let cpu0 = cpu_now();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let api = api.clone();
        let merchant = merchant.clone();
        tasks.push(tokio::spawn(async move {
            let card = testkit::test_card_with(&format!("6299{run:04}{c:08}"), 900_000, 1_000_000);
            let mut shopper = Shopper::new(card, api);
            let (mut draw_us, mut complete_us) = (Vec::with_capacity(per), Vec::with_capacity(per));
            for i in 0..per {
                let ws = merchant.session(
                    &format!("B-{run}-{c}-{i}"),
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
                        Outgoing::Crypto(job) => Reply::Crypto(job.perform()),
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
                        client.approve(0);
                    }
                }
                anyhow::ensure!(
                    matches!(client.status(), Status::Done { .. }),
                    "purchase {c}/{i}: {:?}",
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
    let elapsed = started.elapsed().as_secs_f64();
    let cpu1 = cpu_now();
    let sides = rt.sides(&threads0);
    let n = completes.len();
    anyhow::ensure!(n == args.clients * per, "every purchase completed");
    let captured = service.captured_total("bench").await?;
    let want: u64 = (0..args.clients)
        .map(|_| (0..per).map(|i| 1 + (i as u64 % 900)).sum::<u64>())
        .sum();
    anyhow::ensure!(captured == want, "captured {captured}, want {want}");
    if args.loads > 0 && !args.compare {
        bench_loads(&api, &bank, args).await?;
        let credited = service.bank_credited_total("bench-bank").await?;
        println!("credited total:       {credited} (every load's S3 verified by the HSM)");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Figures {
        name: setup.name.clone(),
        rate: n as f64 / elapsed,
        unit: "p",
        requests: 2.0 * n as f64 / elapsed,
        draw: (pct(&mut draws, 0.5), pct(&mut draws, 0.99)),
        complete: (pct(&mut completes, 0.5), pct(&mut completes, 0.99)),
        cpu_process_ms: (cpu1.process - cpu0.process) * 1e3 / n as f64,
        cpu_machine_ms: (cpu1.machine - cpu0.machine) * 1e3 / n as f64,
        sides,
        server_requests: 2.0 * n as f64,
        client_ops: n as f64,
    })
}

/// One real purchase's request and answer bodies (draw, complete), for the
/// HTTP floor's same request shape.
async fn sample_bodies(
    rt: &Rt,
    args: &Args,
    mode: VerifyMode,
) -> anyhow::Result<[(String, String); 2]> {
    let setup = Setup {
        name: "sample".into(),
        db: None,
        instances: 1,
        pkcs11: false,
    };
    let dir = std::env::temp_dir().join(format!("cardpay-bench-sample-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let merchant = TestMerchant::new("bench", 0x42);
    let bank = testkit::TestBank::new("bench-bank", 0x43);
    let (addrs, _) = servers(rt, &setup, &merchant, &bank, &dir).await?;
    let mut shopper = Shopper::new(
        testkit::test_card_with("6298000000000001", 900_000, 1_000_000),
        testkit::Api::new(addrs[0]),
    );
    // A card with a few log records, like the benchmark's cards after warm-up.
    let mut out = Vec::new();
    for i in 0..(args.purchases / args.clients).min(10) + 1 {
        let ws = merchant.session(&format!("S-{i}"), 100, mode, now() + 600);
        let mut client = shopper.client(&ws);
        shopper.card.reset();
        client.card_ready();
        out.clear();
        while let Some(req) = client.poll_request() {
            let reply = match &req {
                Outgoing::Card(apdu) => Reply::Card(shopper.card.process(apdu)),
                Outgoing::Crypto(job) => Reply::Crypto(job.perform()),
                Outgoing::Server { path, body } => {
                    let (status, text) = shopper
                        .api
                        .post_raw(path, body.clone())
                        .await
                        .map_err(anyhow::Error::msg)?;
                    out.push((body.clone(), text.clone()));
                    Reply::Server(status, text)
                }
            };
            client.handle(reply);
            if matches!(client.status(), Status::Confirm) {
                client.approve(0);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(out.len() == 2, "a purchase is two requests");
    Ok([out[0].clone(), out[1].clone()])
}

/// The HTTP floor: a bare axum server with the same routes, body limit and
/// request bodies; it parses the JSON and answers a body of the real size.
async fn floor_http(rt: &Rt, args: &Args, mode: VerifyMode) -> anyhow::Result<Figures> {
    use axum::routing::post;
    let [(draw_req, draw_resp), (complete_req, complete_resp)] =
        sample_bodies(rt, args, mode).await?;
    let answer = |resp: String| {
        move |body: axum::body::Bytes| {
            let resp = resp.clone();
            async move {
                let v: serde_json::Value = match serde_json::from_slice(&body) {
                    Ok(v) => v,
                    Err(_) => return (axum::http::StatusCode::BAD_REQUEST, String::new()),
                };
                std::hint::black_box(v);
                (axum::http::StatusCode::OK, resp)
            }
        }
    };
    let app = axum::Router::new()
        .route(PATH_DRAW, post(answer(draw_resp)))
        .route(PATH_COMPLETE, post(answer(complete_resp)))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024));
    let addr = rt
        .srv
        .spawn(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = l.local_addr()?;
            let http = cardpay_tls::Transport::InsecureHttp;
            tokio::spawn(cardpay_tls::serve(l, app, http, std::future::pending()));
            anyhow::Ok(addr)
        })
        .await??;
    let api = testkit::Api::new(addr);
    let per = args.purchases.div_ceil(args.clients);
    let threads0 = rt.snapshot();
    let cpu0 = cpu_now();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (api, dq, cq) = (api.clone(), draw_req.clone(), complete_req.clone());
        tasks.push(tokio::spawn(async move {
            let (mut d, mut c) = (Vec::with_capacity(per), Vec::with_capacity(per));
            for _ in 0..per {
                for (path, body, lat) in [(PATH_DRAW, &dq, &mut d), (PATH_COMPLETE, &cq, &mut c)] {
                    let t = Instant::now();
                    let (status, _) = api
                        .post_raw(path, body.clone())
                        .await
                        .map_err(anyhow::Error::msg)?;
                    anyhow::ensure!(status == 200, "floor answered {status}");
                    lat.push(t.elapsed().as_micros() as u64);
                }
            }
            anyhow::Ok((d, c))
        }));
    }
    let (mut draws, mut completes) = (Vec::new(), Vec::new());
    for t in tasks {
        let (d, c) = t.await??;
        draws.extend(d);
        completes.extend(c);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu1 = cpu_now();
    let sides = rt.sides(&threads0);
    let n = completes.len();
    Ok(Figures {
        name: "floor http (bare axum, same requests)".into(),
        rate: n as f64 / elapsed,
        unit: "p",
        requests: 2.0 * n as f64 / elapsed,
        draw: (pct(&mut draws, 0.5), pct(&mut draws, 0.99)),
        complete: (pct(&mut completes, 0.5), pct(&mut completes, 0.99)),
        cpu_process_ms: (cpu1.process - cpu0.process) * 1e3 / n as f64,
        cpu_machine_ms: (cpu1.machine - cpu0.machine) * 1e3 / n as f64,
        sides,
        server_requests: 2.0 * n as f64,
        client_ops: n as f64,
    })
}

/// The SQLite floor: durable writes/s through the store's group-commit
/// writer, `clients` writers at a time, each write one ~1 KB row (a drawn
/// transaction's size) committed before its writer goes on.
async fn floor_sqlite(rt: &Rt, args: &Args) -> anyhow::Result<Figures> {
    use payment_server::store::{sqlite::open_connection, writer::Writer};
    let dir = tempfile::tempdir()?;
    let conn = open_connection(&dir.path().join("floor.sqlite"))?;
    conn.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, body BLOB NOT NULL)",
    )?;
    let writer = Writer::start(conn)?;
    let writes = 2 * args.purchases; // a purchase writes twice (draw, complete)
    let per = writes.div_ceil(args.clients);
    let threads0 = rt.snapshot();
    let cpu0 = cpu_now();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let t = Instant::now();
                writer
                    .run(move |db| {
                        db.prepare_cached("INSERT INTO t (k, body) VALUES (?1, ?2)")?
                            .execute((format!("{c}-{i}"), vec![0x5a_u8; 1024]))?;
                        Ok(())
                    })
                    .await?;
                lat.push(t.elapsed().as_micros() as u64);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu1 = cpu_now();
    let sides = rt.sides(&threads0);
    let n = lat.len();
    let p = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    Ok(Figures {
        name: "floor sqlite (group commit, FULL)".into(),
        rate: n as f64 / elapsed,
        unit: "w",
        requests: 0.0,
        draw: p,
        complete: p,
        cpu_process_ms: (cpu1.process - cpu0.process) * 1e3 / n as f64,
        cpu_machine_ms: (cpu1.machine - cpu0.machine) * 1e3 / n as f64,
        sides,
        server_requests: n as f64,
        client_ops: n as f64,
    })
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
                        Outgoing::Crypto(job) => Reply::Crypto(job.perform()),
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
                        client.approve(0);
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
    let mode: VerifyMode =
        serde_json::from_value(serde_json::Value::String(args.mode.clone())).context("mode")?;
    let pkcs11 = match args.sm.as_str() {
        "software" => false,
        "pkcs11" => true,
        other => anyhow::bail!("--sm {other}: software or pkcs11"),
    };
    let mut setups = Vec::new();
    let mut floors = args.floor.clone();
    if args.compare {
        let pg = args
            .pg
            .clone()
            .or_else(|| std::env::var("CARDPAY_PG_URL").ok())
            .context("--compare needs --pg postgres://… or CARDPAY_PG_URL (scripts/pg.sh)")?;
        let s = |name: &str, db: Option<String>, instances, pkcs11| Setup {
            name: name.into(),
            db,
            instances,
            pkcs11,
        };
        setups.push(s("sqlite", None, 1, false));
        setups.push(s("postgres, 1 instance", Some(pg.clone()), 1, false));
        setups.push(s("postgres, 2 instances", Some(pg), 2, false));
        setups.push(s("sqlite, pkcs11 (SoftHSM2)", None, 1, true));
        floors = vec!["http".into(), "sqlite".into()];
    } else {
        let backend = match &args.db {
            Some(u) if u.starts_with("postgres") => "postgres",
            _ => "sqlite",
        };
        setups.push(Setup {
            name: format!(
                "{backend}, {} instance{}{}",
                args.instances,
                if args.instances > 1 { "s" } else { "" },
                if pkcs11 { ", pkcs11" } else { "" }
            ),
            db: args.db.clone(),
            instances: args.instances,
            pkcs11,
        });
    }
    for f in &floors {
        anyhow::ensure!(f == "http" || f == "sqlite", "--floor {f}: http or sqlite");
    }
    let split = match args.runtimes.as_str() {
        "split" => true,
        "shared" => false,
        other => anyhow::bail!("--runtimes {other}: split or shared"),
    };
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .thread_name(name)
            .enable_all()
            .build()
    };
    let (client_rt, server_rt) = if split {
        (runtime(CLIENT_THREADS)?, Some(runtime(SERVER_THREADS)?))
    } else {
        (runtime(SHARED_THREADS)?, None)
    };
    let rt = Rt {
        srv: server_rt
            .as_ref()
            .map_or_else(|| client_rt.handle().clone(), |r| r.handle().clone()),
        split,
    };
    println!(
        "{} purchases per configuration, mode {}, {} clients, {} runtime threads{}; \
         rate: p = purchases/s (draw + complete), w = durable writes/s; \
         CPU ms per op: p = this process, m = whole machine (PostgreSQL too)",
        args.purchases,
        mode.as_str(),
        args.clients,
        args.threads,
        if split {
            " for the servers and as many for the clients"
        } else {
            ", servers and clients on them"
        }
    );
    client_rt.block_on(async {
        let mut results = Vec::new();
        for (i, s) in setups.iter().enumerate() {
            let f = bench_purchases(&rt, s, &args, mode, i).await?;
            if results.is_empty() {
                Figures::print_header();
            }
            f.print();
            results.push(f);
        }
        for f in &floors {
            let r = match f.as_str() {
                "http" => floor_http(&rt, &args, mode).await?,
                _ => floor_sqlite(&rt, &args).await?,
            };
            r.print();
            results.push(r);
        }
        let find = |p: &str| results.iter().find(|r| r.name.starts_with(p));
        if let (Some(s), Some(h)) = (find("sqlite"), find("floor http")) {
            println!(
                "ratio to the HTTP floor ({}): {:.2}× (requests/s {:.0} of {:.0})",
                s.name,
                s.requests / h.requests,
                s.requests,
                h.requests
            );
        }
        if let (Some(s), Some(w)) = (find("sqlite"), find("floor sqlite")) {
            println!(
                "store writes ({}): {:.0} writes/s of the {:.0} the writer can commit ({:.2}×)",
                s.name,
                2.0 * s.rate,
                w.rate,
                2.0 * s.rate / w.rate
            );
        }
        if split {
            // Each side's own CPU, from its threads: the servers' runtime
            // and the store's threads per server request (a purchase is
            // two; a floor sqlite write is one), the clients' per
            // purchase (request pair, write).
            Figures::print_sides_header();
            for r in &results {
                r.print_sides();
            }
            if let (Some(s), Some(h)) = (find("sqlite"), find("floor http")) {
                if let (Some(su), Some(hu)) = (s.server_us(), h.server_us()) {
                    println!(
                        "server cost ratio ({}): {:.2} (floor http server {:.1} µs/request \
                         ÷ purchase server {:.1} µs/request)",
                        s.name,
                        hu / su,
                        hu,
                        su
                    );
                }
            }
            if let (Some(s), Some(h), Some(w)) =
                (find("sqlite"), find("floor http"), find("floor sqlite"))
            {
                if let (Some(ss), Some(hs), Some(hu), Some(wu)) =
                    (s.sides, h.sides, h.server_us(), w.server_us())
                {
                    // Every core busy in both runs, so requests/s go as 1 ÷ (server +
                    // client CPU per request). The least a purchase server can do per
                    // request is the HTTP floor's work plus one durable write (a
                    // purchase writes twice: the draw before S2, the capture): with this
                    // run's purchase client, that is the best ratio any server reaches.
                    let client = ss.client / s.server_requests;
                    let floor_client = hs.client / h.server_requests;
                    println!(
                        "floors' bound on the ratio: {:.2}× (a server doing only the floors' \
                         work, {:.1} + {:.1} µs/request, with this purchase client's {:.1} µs/request; \
                         the floor's client {:.1})",
                        (hu + floor_client) / (hu + wu + client),
                        hu,
                        wu,
                        client,
                        floor_client
                    );
                }
            }
        }
        anyhow::Ok(())
    })?;
    Ok(())
}
