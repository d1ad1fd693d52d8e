//! Three payment-server processes (the real binary) on one PostgreSQL, behind
//! the tests' client, which spreads every request over them in turn (so a
//! purchase's draw, complete and recover land on different instances) and
//! sends some completes to all three at once. Cards buy concurrently with
//! the faults of `recovery.rs` (torn DEBITs, lost replies), and one instance
//! is SIGKILLed mid-way; the others carry on.
//!
//! Then: exactly one capture per transaction (one capture event each in the
//! outbox, written with the capture), for every card the captures equal the
//! card's debits, the security module's sequence numbers never collide
//! across instances, and the sweepers of the survivors leave nothing `drawn`
//! past its expiry.
//!
//! Needs PostgreSQL: `CARDPAY_PG_URL`, or a private one started with
//! scripts/pg.sh for the test.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use payment_testkit::*;
use purse::purchase::client::{Outgoing, Status};
use purse::purchase::{PATH_COMPLETE, PATH_DRAW, PATH_RECOVER};
use purse::session::VerifyMode;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start an instance; wait until its /healthz answers.
async fn start(config: &std::path::Path, port: u16) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_payment-server"))
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--insecure-http") // loopback only: tests/tls.rs covers TLS
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let s = Server(child);
    // Up to 30 s: three processes log in to one SoftHSM2 token at once
    // (CARDPAY_TEST_SM=pkcs11) and meet on the migration lock.
    for _ in 0..600 {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await {
            if r.status() == 200 {
                return s;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("instance on {port} did not come up");
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// A webhook receiver that acknowledges everything and keeps the events.
async fn receiver() -> (String, Arc<Mutex<Vec<purse::webhook::WebhookEvent>>>) {
    let got: Arc<Mutex<Vec<purse::webhook::WebhookEvent>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                if let Ok(ev) = serde_json::from_slice(&body) {
                    g.lock().unwrap().push(ev);
                }
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, got)
}

type Target = fn(&Outgoing) -> bool;

fn faults() -> Vec<(&'static str, Vec<(Target, Cut)>)> {
    let draw: Target = |r| is_post(r, PATH_DRAW);
    let complete: Target = |r| is_post(r, PATH_COMPLETE);
    let recover: Target = |r| is_post(r, PATH_RECOVER);
    vec![
        ("none", vec![]),
        (
            "debit applied, answer lost",
            vec![(is_debit, Cut::CardAfter)],
        ),
        ("draw reply lost", vec![(draw, Cut::ReplyLost)]),
        ("complete reply lost", vec![(complete, Cut::ReplyLost)]),
        (
            "debit applied, answer lost, recover reply lost",
            vec![(is_debit, Cut::CardAfter), (recover, Cut::ReplyLost)],
        ),
    ]
}

const CARDS: usize = 4;
const PER_CARD: usize = 12;
const START: u32 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_one_killed_capture_each_purchase_once() {
    let pg = TestPg::get();
    let db = TestDb::fresh_schema(&pg.url);
    let dir = tempfile::tempdir().unwrap();
    let (hook, events) = receiver().await;
    let mut m = TestMerchant::new("shop", 0x3C);
    m.webhook_url = Some(hook);
    let cfg = dir.path().join("ps.toml");
    std::fs::write(
        &cfg,
        format!(
            "sweep_interval_secs = 1\ndatabase_pool_size = 4\n{}",
            test_config_toml(&db, std::slice::from_ref(&m), 0)
        ),
    )
    .unwrap();
    // Three instances started at once: their migrations meet on the advisory lock.
    let ports = [free_port(), free_port(), free_port()];
    let (a, b, c) = tokio::join!(
        start(&cfg, ports[0]),
        start(&cfg, ports[1]),
        start(&cfg, ports[2])
    );
    let victim = Arc::new(Mutex::new(Some(a)));
    let _alive = (b, c);
    let addrs: Vec<SocketAddr> = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}").parse().unwrap())
        .collect();
    let api = Api::spread(&addrs);
    let done = Arc::new(AtomicUsize::new(0));
    let raced = Arc::new(AtomicUsize::new(0));

    // SIGKILL the first instance once a third of the purchases are done,
    // while the cards are still buying.
    let killer = {
        let (victim, done) = (victim.clone(), done.clone());
        tokio::spawn(async move {
            while done.load(Ordering::SeqCst) < CARDS * PER_CARD / 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut s = victim.lock().unwrap().take().unwrap();
            s.0.kill().unwrap();
            s.0.wait().unwrap();
        })
    };

    // The cards buy concurrently (futures of this task; the racing
    // completes are tasks of their own).
    let card = |k: usize| {
        let (api, m, done, raced) = (api.clone(), m.clone(), done.clone(), raced.clone());
        async move {
            let mut rng = Rng(0x1A57_0000 + k as u64);
            let mut s = Shopper::new(test_card(&format!("62800000000007{k:02}"), START), api);
            let faults = faults();
            for n in 0..PER_CARD {
                s.card_present = true;
                let mode = [
                    VerifyMode::PaymentServer,
                    VerifyMode::SecurityModule,
                    VerifyMode::Client,
                    VerifyMode::Merchant,
                ][rng.below(4) as usize];
                let amount = 1 + rng.below(900) as u32;
                let ws = m.session(&format!("I-{k}-{n}"), amount, mode, now() + 600);
                let mut c = s.client(&ws);
                let steps = &faults[rng.below(faults.len() as u64) as usize].1;
                // Some completes go to every instance at the same moment.
                let race = rng.below(3) == 0;
                let mut next = 0;
                let mut racers = Vec::new();
                let bases = s.api.bases();
                let http = s.api.http.clone();
                let mut plan = |r: &mut Outgoing| {
                    if race && is_post(r, PATH_COMPLETE) {
                        if let Outgoing::Server { body, .. } = r {
                            for base in &bases {
                                let (http, url, body) =
                                    (http.clone(), format!("{base}{PATH_COMPLETE}"), body.clone());
                                racers.push(tokio::spawn(async move {
                                    let _ = http
                                        .post(url)
                                        .body(body)
                                        .header("content-type", "application/json")
                                        .send()
                                        .await;
                                }));
                            }
                        }
                    }
                    match steps.get(next) {
                        Some((target, cut)) if target(r) => {
                            next += 1;
                            *cut
                        }
                        _ => Cut::None,
                    }
                };
                let _ = s.run(&mut c, &mut plan).await;
                // The shopper puts the card back and retries what a lost
                // reply left (the next instance answers).
                s.card_present = true;
                if matches!(c.status(), Status::Failed { retry: true, .. }) {
                    c.retry();
                }
                let _ = s.run(&mut c, &mut plan).await;
                if !racers.is_empty() {
                    raced.fetch_add(1, Ordering::SeqCst);
                }
                for r in racers {
                    r.await.unwrap();
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            // One more purchase carries the card's log: it settles whatever a
            // torn DEBIT left undecided.
            s.card_present = true;
            let out = s
                .pay(&m.session(
                    &format!("I-{k}-last"),
                    1,
                    VerifyMode::PaymentServer,
                    now() + 600,
                ))
                .await;
            assert!(out.is_paid(), "card {k}: {out:?}");
            (s.card.state().card_id.full(), START - balance(&s.card))
        }
    };
    let results = tokio::join!(card(0), card(1), card(2), card(3));
    let debited: BTreeMap<String, u32> = [results.0, results.1, results.2, results.3].into();
    killer.await.unwrap();
    assert!(
        victim.lock().unwrap().is_none(),
        "an instance was killed mid-way"
    );
    assert!(raced.load(Ordering::SeqCst) > 0, "some completes raced");
    assert!(
        api.failovers() > 0,
        "requests met the killed instance and went to another"
    );

    // Conservation: for every card, captures = the card's debits.
    for (card, spent) in &debited {
        let captured = db.int(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM transactions
             WHERE card_id = ?1 AND state IN ('debited', 'confirmed', 'settled')",
            &[card],
        );
        assert_eq!(captured, i64::from(*spent), "card …{}", &card[12..]);
    }
    // Exactly one capture per transaction: each capture writes one
    // captured/recovered event with state `debited` in its own transaction.
    let per_txn = db
        .ints(
            "SELECT COUNT(*), COALESCE(MAX(n), 0), CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM (
            SELECT txn_id, COUNT(*) AS n FROM webhook_outbox
            WHERE kind IN ('captured', 'recovered') AND body LIKE '%\"state\":\"debited\"%'
            GROUP BY txn_id) AS e",
            &[],
        )
        .unwrap();
    let captured_txns = db.int(
        "SELECT COUNT(*) FROM transactions WHERE state IN ('debited', 'confirmed', 'settled')",
        &[],
    );
    assert!(
        captured_txns as usize > CARDS * PER_CARD / 2,
        "{captured_txns} captured"
    );
    assert_eq!(
        per_txn,
        [captured_txns, 1, captured_txns],
        "one capture event per captured transaction, never two"
    );
    // Sequence numbers reserved in blocks per instance never collide.
    assert_eq!(
        db.int(
            "SELECT COUNT(*) - COUNT(DISTINCT seq) FROM transactions",
            &[]
        ),
        0
    );
    assert!(
        db.int("SELECT COUNT(DISTINCT seq / 1000) FROM transactions", &[]) >= 2,
        "several instances reserved blocks"
    );
    // The survivors' sweepers (every second) move nothing twice: each sweep
    // history entry is one transaction's.
    assert_eq!(
        db.int(
            "SELECT COUNT(*) FROM (SELECT txn_id FROM txn_log WHERE event = 'sweep'
             GROUP BY merchant_id, txn_id HAVING COUNT(*) > 1) AS d",
            &[]
        ),
        0
    );
    // The merchant heard of every capture; never of two captures of one
    // transaction under different event ids.
    let mut heard: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for _ in 0..100 {
        heard.clear();
        for e in events.lock().unwrap().iter() {
            if matches!(
                e.kind,
                purse::webhook::EventKind::Captured | purse::webhook::EventKind::Recovered
            ) && e.state == purse::merchant_api::TxnState::Debited
            {
                heard
                    .entry(e.txn_id.clone())
                    .or_default()
                    .insert(e.event_id.clone());
            }
        }
        if heard.len() as i64 >= captured_txns - undelivered_leased(&db) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(heard.values().all(|ids| ids.len() == 1), "{heard:?}");
    assert!(
        heard.len() as i64 >= captured_txns - undelivered_leased(&db),
        "{} of {captured_txns} captures heard",
        heard.len()
    );
}

/// Capture events the killed instance had leased and not delivered: their
/// lease (60 s) must run out before a survivor sends them.
fn undelivered_leased(db: &TestDb) -> i64 {
    db.int(
        "SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL AND lease_until IS NOT NULL
         AND kind IN ('captured', 'recovered')",
        &[],
    )
}
