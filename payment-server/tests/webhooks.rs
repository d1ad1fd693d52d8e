//! Signed webhooks: every state change reaches the merchant from the server,
//! not only through the shopper's page; delivered at least once, retried with
//! backoff while the receiver is down (across a server restart), verified by
//! merchant-kit and deduplicated by event id.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use merchant_kit::Merchant;
use payment_testkit::*;
use purse::merchant_api::TxnState;
use purse::purchase::client::{Outgoing, Problem};
use purse::session::VerifyMode;
use purse::webhook::{
    EventKind, WebhookEvent, HEADER_EVENT_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};

/// A merchant's webhook endpoint: verifies with merchant-kit, dedups by event id.
#[derive(Clone)]
struct Receiver {
    kit: Merchant,
    /// Answer 503 (down) while true.
    down: Arc<Mutex<bool>>,
    /// Process, then answer 500 once per event (the acknowledgement is lost).
    lose_ack: Arc<Mutex<bool>>,
    /// Events processed, by id (deduplicated).
    events: Arc<Mutex<BTreeMap<String, WebhookEvent>>>,
    /// Deliveries seen, refused ones included.
    deliveries: Arc<Mutex<u32>>,
    refused: Arc<Mutex<u32>>,
}

async fn hook(State(r): State<Receiver>, h: HeaderMap, body: Bytes) -> StatusCode {
    *r.deliveries.lock().unwrap() += 1;
    if *r.down.lock().unwrap() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ev = match r.kit.verify_webhook(
        get(HEADER_EVENT_ID),
        get(HEADER_TIMESTAMP),
        get(HEADER_SIGNATURE),
        &body,
        now(),
    ) {
        Ok(ev) => ev,
        Err(_) => {
            *r.refused.lock().unwrap() += 1;
            return StatusCode::UNAUTHORIZED;
        }
    };
    let first = r
        .events
        .lock()
        .unwrap()
        .insert(ev.event_id.clone(), ev)
        .is_none();
    if first && *r.lose_ack.lock().unwrap() {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::NO_CONTENT
}

async fn receiver(kit: Merchant, port: Option<u16>) -> (Receiver, String) {
    let r = Receiver {
        kit,
        down: Arc::default(),
        lose_ack: Arc::default(),
        events: Arc::default(),
        deliveries: Arc::default(),
        refused: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{}", port.unwrap_or(0)))
        .await
        .unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

fn kinds(r: &Receiver) -> Vec<(String, EventKind, TxnState)> {
    r.events
        .lock()
        .unwrap()
        .values()
        .map(|e| (e.txn_id.clone(), e.kind, e.state))
        .collect()
}

async fn wait_for(r: &Receiver, n: usize) {
    for _ in 0..100 {
        if r.events.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "only {} events: {:?}",
        r.events.lock().unwrap().len(),
        kinds(r)
    );
}

#[tokio::test]
async fn every_change_reaches_the_merchant_signed_and_once() {
    let mut m = TestMerchant::new("shop", 3);
    let (rcv, url) = receiver(m.kit(), None).await;
    m.webhook_url = Some(url);
    let srv = TestServer::start(&[m.clone()]).await;
    let config =
        payment_server::Config::from_toml(&test_config_toml(&srv.db, &[m.clone()], 0), |_| None)
            .unwrap();
    payment_server::start_background(&srv.service, &config);
    let mut shopper = Shopper::new(test_card("6280000000000501", 1_000), srv.api());
    // Captured.
    assert!(shopper
        .pay(&m.session("W-1", 300, VerifyMode::PaymentServer, now() + 600))
        .await
        .is_paid());
    // A torn purchase the card's log decides "not charged".
    let ws = m.session("W-2", 200, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws);
    let out = shopper.run(&mut c, &mut cut_debit(Cut::CardBefore)).await;
    assert_eq!(out.problem(), Some(Problem::Torn));
    shopper.card_present = true;
    assert_eq!(
        shopper
            .run(&mut c, &mut |_r: &mut Outgoing| Cut::None)
            .await
            .problem(),
        Some(Problem::NotCharged)
    );
    // Recovered as debited.
    let ws = m.session("W-3", 100, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws);
    let _ = shopper.run(&mut c, &mut cut_debit(Cut::CardAfter)).await;
    shopper.card_present = true;
    assert!(shopper
        .run(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await
        .is_paid());
    // Suspicious.
    let mut c = shopper.client(&m.session("W-4", 100, VerifyMode::PaymentServer, now() + 600));
    assert!(c.not_mine());
    let _ = shopper
        .run(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await;
    wait_for(&rcv, 4).await;
    let mut got = kinds(&rcv);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("W-1".to_string(), EventKind::Captured, TxnState::Debited),
            ("W-2".to_string(), EventKind::Recovered, TxnState::Failed),
            ("W-3".to_string(), EventKind::Recovered, TxnState::Debited),
            ("W-4".to_string(), EventKind::Suspicious, TxnState::Created),
        ]
    );
    assert_eq!(*rcv.refused.lock().unwrap(), 0, "every delivery verified");
    // The amounts the merchant learns add up to what the card lost.
    let captured: u32 = rcv
        .events
        .lock()
        .unwrap()
        .values()
        .filter(|e| e.state.is_captured())
        .map(|e| e.amount)
        .sum();
    assert_eq!(captured, 1_000 - balance(&shopper.card));
    // A delivery under another merchant's key is refused by the receiver.
    let evil = reqwest::Client::new()
        .post(m.webhook_url.clone().unwrap())
        .header(HEADER_EVENT_ID, "evt_x")
        .header(HEADER_TIMESTAMP, now().to_string())
        .header(
            HEADER_SIGNATURE,
            purse::webhook::sign(&purse::session::Key32::new([9; 32]), now(), "evt_x", b"{}"),
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 401);
}

#[tokio::test]
async fn a_lost_acknowledgement_is_redelivered_and_deduplicated() {
    let mut m = TestMerchant::new("shop", 4);
    let (rcv, url) = receiver(m.kit(), None).await;
    *rcv.lose_ack.lock().unwrap() = true;
    m.webhook_url = Some(url);
    let srv = TestServer::start(&[m.clone()]).await;
    let mut shopper = Shopper::new(test_card("6280000000000502", 1_000), srv.api());
    assert!(shopper
        .pay(&m.session("W-5", 300, VerifyMode::PaymentServer, now() + 600))
        .await
        .is_paid());
    let client = reqwest::Client::new();
    let cfg = payment_server::webhooks::Delivery {
        max_backoff_secs: 1,
        ..Default::default()
    };
    assert_eq!(
        payment_server::webhooks::deliver_due(&srv.service, &client, &cfg)
            .await
            .unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        payment_server::webhooks::deliver_due(&srv.service, &client, &cfg)
            .await
            .unwrap(),
        1
    );
    assert_eq!(*rcv.deliveries.lock().unwrap(), 2, "delivered twice");
    assert_eq!(rcv.events.lock().unwrap().len(), 1, "processed once");
    // Acknowledged: nothing more is sent.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        payment_server::webhooks::deliver_due(&srv.service, &client, &cfg)
            .await
            .unwrap(),
        0
    );
    assert_eq!(*rcv.deliveries.lock().unwrap(), 2);
}

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

async fn start(config: &std::path::Path, port: u16) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_payment-server"))
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        // These tests speak plain HTTP (tests/tls.rs covers TLS).
        .arg("--insecure-http")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = Server(child);
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await {
            if r.status() == 200 {
                return s;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not come up");
}

#[tokio::test]
async fn receiver_down_then_back_across_a_server_restart() {
    // The receiver is down (nobody listens on its port) while the purchase
    // is captured; the server is killed; both come back; the event arrives.
    let mut m = TestMerchant::new("shop", 5);
    let hook_port = free_port();
    m.webhook_url = Some(format!("http://127.0.0.1:{hook_port}/hook"));
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::in_dir(dir.path());
    let cfg = dir.path().join("ps.toml");
    std::fs::write(
        &cfg,
        format!(
            "webhook_max_backoff_secs = 1\n{}",
            test_config_toml(&db, &[m.clone()], 0)
        ),
    )
    .unwrap();
    let port = free_port();
    let server = start(&cfg, port).await;
    let mut shopper = Shopper::new(
        test_card("6280000000000503", 1_000),
        Api::new(format!("127.0.0.1:{port}").parse().unwrap()),
    );
    assert!(shopper
        .pay(&m.session("W-6", 450, VerifyMode::Merchant, now() + 600))
        .await
        .is_paid());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let waiting = |db: &TestDb| -> (i64, i64) {
        let v = db
            .ints(
                "SELECT COUNT(*), COALESCE(MAX(attempts), 0) FROM webhook_outbox WHERE delivered_at IS NULL",
                &[],
            )
            .unwrap();
        (v[0], v[1])
    };
    let (n, attempts) = waiting(&db);
    assert_eq!(n, 1, "one event waits");
    assert!(attempts >= 1, "and was tried");
    drop(server);
    let (rcv, _) = receiver(m.kit(), Some(hook_port)).await;
    let port = free_port();
    let _server = start(&cfg, port).await;
    wait_for(&rcv, 1).await;
    let e = rcv.events.lock().unwrap().values().next().unwrap().clone();
    assert_eq!(
        (e.txn_id.as_str(), e.kind, e.amount),
        ("W-6", EventKind::Captured, 450)
    );
    // The server marks it delivered once the 2xx is back (just after the receiver saw it).
    for _ in 0..100 {
        if waiting(&db).0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(waiting(&db).0, 0);
}
