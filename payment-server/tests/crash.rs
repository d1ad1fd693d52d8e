//! The real binary as a child process: a draw's reply means its row is on disk.
//! SIGKILL right after the reply (the card debits meanwhile), restart on the
//! same database (SQLite file, or PostgreSQL schema), and the purchase
//! completes; nothing is lost or captured twice.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use payment_testkit::*;
use purse::purchase::client::{Outgoing, Problem};
use purse::purchase::PATH_COMPLETE;
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
async fn draw_survives_sigkill_and_completes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::in_dir(dir.path());
    let m = TestMerchant::new("shop-a", 0xA1);
    let cfg = dir.path().join("ps.toml");
    std::fs::write(&cfg, test_config_toml(&db, std::slice::from_ref(&m), 0)).unwrap();

    let port = free_port();
    let server = std::cell::RefCell::new(Some(start(&cfg, port).await));
    let api = |port: u16| Api::new(format!("127.0.0.1:{port}").parse().unwrap());
    let mut shopper = Shopper::new(test_card("6280000000000041", 2_000), api(port));
    let ws = m.session("T-crash", 650, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws);
    // Power cut right after the draw's reply: the card debits meanwhile, the
    // complete finds nobody.
    let out = shopper
        .run(&mut c, &mut |r: &mut Outgoing| {
            if is_debit(r) {
                if let Some(mut s) = server.borrow_mut().take() {
                    s.0.kill().unwrap();
                    s.0.wait().unwrap();
                }
            }
            Cut::None
        })
        .await;
    assert_eq!(out.problem(), Some(Problem::ServerUnreachable), "{out:?}");
    assert_eq!(balance(&shopper.card), 1_350, "the card debited");
    let state = db.text(
        "SELECT state FROM transactions WHERE txn_id = 'T-crash'",
        &[],
    );
    let seq1 = db.int("SELECT seq FROM transactions WHERE txn_id = 'T-crash'", &[]);
    assert_eq!(
        state.as_deref(),
        Some("drawn"),
        "the reply followed the commit"
    );

    // The server comes back on the same file; the client retries complete.
    let port = free_port();
    let _server = start(&cfg, port).await;
    shopper.api = api(port);
    c.retry();
    let out = shopper
        .run(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await;
    assert!(out.is_paid(), "{out:?}");
    // Retried once more (a lost answer): the stored answer, no second capture.
    let complete = shopper
        .trace
        .iter()
        .rev()
        .find_map(|r| match r {
            Outgoing::Server { path, body } if *path == PATH_COMPLETE => Some(body.clone()),
            _ => None,
        })
        .unwrap();
    let (status, _) = shopper.api.post_raw(PATH_COMPLETE, complete).await.unwrap();
    assert_eq!(status, 200);
    let n_sum = db
        .ints(
            "SELECT COUNT(*), CAST(SUM(amount) AS BIGINT) FROM transactions WHERE state = 'debited'",
            &[],
        )
        .unwrap();
    assert_eq!(n_sum, [1, 650], "captured once");
    // The security module's sequence numbers never repeat across the crash.
    assert!(shopper
        .pay(&m.session("T-crash2", 100, VerifyMode::PaymentServer, now() + 600))
        .await
        .is_paid());
    let seq2 = db.int(
        "SELECT seq FROM transactions WHERE txn_id = 'T-crash2'",
        &[],
    );
    let reserved = db.int("SELECT seq FROM sm_counter", &[]);
    assert!(
        seq2 > seq1 && seq2 <= reserved,
        "seq {seq1} then {seq2}, reserved up to {reserved}"
    );
}
