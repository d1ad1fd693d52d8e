#![allow(dead_code)]

use std::sync::Arc;

use payment_server::service::PaymentService;
use payment_server::Config;
use payment_testkit::{self as testkit, TestMerchant, Widget};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub widget: Widget,
    pub service: Arc<PaymentService>,
    pub a: TestMerchant,
    pub b: TestMerchant,
    pub db: std::path::PathBuf,
}

/// A payment server on an ephemeral loopback port with a fresh SQLite file.
pub async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("payments.sqlite");
    let a = TestMerchant::new("shop-a", 0xA1);
    let mut b = TestMerchant::new("shop-b", 0xB2);
    b.modes = vec![purse::session::VerifyMode::PaymentServer];
    let toml = testkit::test_config_toml(&db, &[a.clone(), b.clone()], 0);
    let config = Config::from_toml(&toml, |_| None).unwrap();
    let (addr, service) = testkit::spawn_server(&config).await;
    Env {
        dir,
        widget: Widget::new(addr),
        service,
        a,
        b,
        db,
    }
}

pub fn state_of(db: &std::path::Path, merchant: &str, txn: &str) -> Option<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(
        "SELECT state FROM transactions WHERE merchant_id = ?1 AND txn_id = ?2",
        (merchant, txn),
        |r| r.get(0),
    )
    .ok()
}

pub fn captured(db: &std::path::Path) -> u64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(
        "SELECT COALESCE(SUM(amount),0) FROM transactions WHERE state IN ('debited','confirmed','settled')",
        [],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as u64
}
