//! The real binary as a child process: a draw's reply means its row is on disk.
//! SIGKILL right after the reply, restart on the same SQLite file, and the
//! purchase completes; nothing is lost or captured twice.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use payment_testkit::{self as testkit, now, TestMerchant, Widget};
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
    let db = dir.path().join("payments.sqlite");
    let m = TestMerchant::new("shop-a", 0xA1);
    let cfg = dir.path().join("ps.toml");
    std::fs::write(
        &cfg,
        testkit::test_config_toml(&db, std::slice::from_ref(&m), 0),
    )
    .unwrap();

    let port = free_port();
    let mut server = start(&cfg, port).await;
    let widget = Widget::new(format!("127.0.0.1:{port}").parse().unwrap());
    let mut card = testkit::test_card("6280000000000041", 2_000);
    let ws = m.session("T-crash", 650, VerifyMode::PaymentServer, now() + 600);
    let dr = testkit::card_draw_request(&mut card, &ws, &m.origin, None).unwrap();
    let draw = widget
        .draw(&testkit::draw_envelope(&ws, &dr))
        .await
        .unwrap();
    // Power cut right after the reply.
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let c = rusqlite::Connection::open(&db).unwrap();
    let state: String = c
        .query_row(
            "SELECT state FROM transactions WHERE txn_id = 'T-crash'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "drawn", "the reply followed the commit");
    drop(c);

    // The card debits meanwhile; the server comes back on the same file.
    let cmd = testkit::open_debit(&ws, &draw).unwrap();
    let resp = card.process(cmd.apdu.as_slice());
    let port = free_port();
    let _server = start(&cfg, port).await;
    let widget = Widget::new(format!("127.0.0.1:{port}").parse().unwrap());
    let done = widget
        .complete(&testkit::complete_envelope(&ws, &resp))
        .await
        .unwrap();
    assert_eq!(done.status, purse::wire::PurchaseStatus::Debited);
    let again = widget
        .complete(&testkit::complete_envelope(&ws, &resp))
        .await
        .unwrap();
    assert_eq!(again, done);
    assert_eq!(testkit::balance(&card), 1_350);
    let c = rusqlite::Connection::open(&db).unwrap();
    let (n, sum): (i64, i64) = c
        .query_row(
            "SELECT COUNT(*), SUM(amount) FROM transactions WHERE state = 'debited'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((n, sum), (1, 650));
    // The security module's sequence number survived too: the next draw gets seq 2.
    let seq: i64 = c
        .query_row("SELECT seq FROM sm_counter", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seq, 1);
    let ws2 = m.session("T-crash2", 100, VerifyMode::PaymentServer, now() + 600);
    let dr2 = testkit::card_draw_request(&mut card, &ws2, &m.origin, None).unwrap();
    widget
        .draw(&testkit::draw_envelope(&ws2, &dr2))
        .await
        .unwrap();
    let seq2: i64 = c
        .query_row(
            "SELECT seq FROM transactions WHERE txn_id = 'T-crash2'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(seq2, 2);
}
