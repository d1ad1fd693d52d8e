//! Crash safety of clearing, with the real binary: `payment-server clearing
//! run` is SIGKILLed after every step of posting (each commit: a batch
//! received, a chunk of records, the totals posted, a chunk acknowledged in
//! the payment database, the batch acknowledged), restarted on the same
//! files, and must end with the same ledger, the same records, the same
//! transaction states and the same webhooks as a run that was never
//! interrupted; reconciliation passes after each.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use payment_server::clearing::db::{self, Db, DbError};
use payment_server::clearing::ledger;
use payment_testkit::clearing::*;
use payment_testkit::*;
use purse::session::VerifyMode;
use rusqlite::Connection;

type Ledger = Vec<(String, String, Vec<(String, i64)>)>;

#[derive(Debug, PartialEq, Eq)]
struct Books {
    ledger: Ledger,
    records: Vec<(String, i64, String)>,
    states: Vec<(String, String, Option<String>)>,
    loads: Vec<(String, String, Option<String>)>,
    settled_webhooks: i64,
}

fn merchants() -> Vec<TestMerchant> {
    let mut m = vec![
        TestMerchant::new("shop-a", 0xA1),
        TestMerchant::new("shop-b", 0xB2),
        TestMerchant::new("shop-c", 0xC3),
    ];
    m[0].webhook_url = Some("http://127.0.0.1:9/hook".into());
    m
}

fn banks() -> Vec<TestBank> {
    vec![TestBank::new("bank-1", 0xE1)]
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_payment-server"));
    c.env("RUST_LOG", "error");
    c
}

/// Lay out a fresh copy of the pristine payment database and spool, run
/// clearing (killed at step `kill_at`, then restarted), return the books and
/// whether it was killed. With `clearing_pg` (a PostgreSQL URL) the clearing
/// database is a fresh schema there instead of a SQLite file.
fn run_case(pristine: &Path, kill_at: Option<u64>, clearing_pg: Option<&str>) -> (bool, Books) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("payments.sqlite");
    std::fs::copy(pristine.join("payments.sqlite"), &db).unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    for f in std::fs::read_dir(pristine.join("spool")).unwrap() {
        let p = f.unwrap().path();
        std::fs::copy(&p, spool.join(p.file_name().unwrap())).unwrap();
    }
    let pcfg = dir.path().join("ps.toml");
    std::fs::write(
        &pcfg,
        test_config_toml_full(&TestDb::Sqlite(db.clone()), &merchants(), &banks(), 0),
    )
    .unwrap();
    let ccfg = dir.path().join("clearing.toml");
    let mut toml = clearing_config_toml(dir.path(), &pcfg, &merchants(), 5, 150);
    let clearing_url = clearing_pg.map(|base| TestDb::fresh_schema(base).url_or_path());
    if let Some(url) = &clearing_url {
        let sqlite = format!(
            "db_path = {:?}",
            dir.path().join("clearing.sqlite").display().to_string()
        );
        assert!(toml.contains(&sqlite), "{toml}");
        toml = toml.replace(&sqlite, &format!("db_path = {url:?}"));
    }
    std::fs::write(&ccfg, toml).unwrap();
    let run = |kill: Option<u64>| {
        let mut c = bin();
        c.args(["clearing", "run", "--once", "--chunk", "2", "--config"])
            .arg(&ccfg);
        if let Some(k) = kill {
            c.env("CARDPAY_CLEARING_KILL_AT", k.to_string());
        }
        c.output().unwrap()
    };
    let first = run(kill_at);
    let killed = first.status.signal() == Some(9);
    if killed {
        let again = run(None);
        assert!(
            again.status.success(),
            "restart after kill at {kill_at:?}: {}",
            String::from_utf8_lossy(&again.stderr)
        );
    } else {
        assert!(
            first.status.success(),
            "{}",
            String::from_utf8_lossy(&first.stderr)
        );
    }
    let rec = bin()
        .args(["clearing", "reconcile", "--config"])
        .arg(&ccfg)
        .output()
        .unwrap();
    assert!(
        rec.status.success(),
        "reconcile after kill at {kill_at:?}: {}",
        String::from_utf8_lossy(&rec.stdout)
    );
    let c = match &clearing_url {
        None => Db::Sqlite(Connection::open(dir.path().join("clearing.sqlite")).unwrap()),
        Some(url) => {
            assert!(!dir.path().join("clearing.sqlite").exists());
            db::open(Path::new(url)).unwrap()
        }
    };
    let p = Connection::open(&db).unwrap();
    let records = c
        .query(
            "SELECT batch_id, idx, status FROM records ORDER BY batch_id, idx",
            vec![],
        )
        .unwrap()
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .collect::<Result<_, DbError>>()
        .unwrap();
    let states = {
        let mut s = p
            .prepare("SELECT txn_id, state, batch_id FROM transactions ORDER BY txn_id")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let loads = {
        let mut s = p
            .prepare("SELECT txn_id, state, batch_id FROM loads ORDER BY txn_id")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let settled_webhooks = p
        .query_row(
            "SELECT COUNT(*) FROM webhook_outbox WHERE kind = 'settled'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let acked: i64 = c
        .query_one("SELECT COUNT(*) FROM batches WHERE state = 'acked'", vec![])
        .and_then(|r| r.get(0))
        .unwrap();
    assert_eq!(
        acked, 4,
        "every batch acknowledged after kill at {kill_at:?}"
    );
    (
        killed,
        Books {
            ledger: ledger::fingerprint(&c).unwrap(),
            records,
            states,
            loads,
            settled_webhooks,
        },
    )
}

#[tokio::test]
async fn sigkill_at_every_step_of_posting_ends_with_the_same_books() {
    let (_srv, pristine) = pristine_day().await;
    kill_at_every_step(pristine.path(), None);
}

#[tokio::test]
async fn sigkill_at_every_step_of_posting_on_postgres_ends_with_the_same_books() {
    // The clearing database on PostgreSQL (a fresh schema per run), whatever
    // CARDPAY_TEST_DB says; the payment database a SQLite file copied per run.
    let pg = TestPg::get();
    let (_srv, pristine) = pristine_day().await;
    kill_at_every_step(pristine.path(), Some(&pg.url));
}

/// The day's payment database and spool, closed into batches.
async fn pristine_day() -> (TestServer, tempfile::TempDir) {
    // The day's captured purchases (three merchants) closed into batches, and a bank's loads.
    // Copies the SQLite file at every step: SQLite.
    let srv = TestServer::start_full_sqlite(&merchants(), &banks(), 0).await;
    let pristine = tempfile::tempdir().unwrap();
    let spool = pristine.path().join("spool");
    let mut shopper = Shopper::new(test_card("6280000000000301", 0), srv.api());
    for i in 0..5 {
        let out = shopper
            .load(&banks()[0].session(&format!("L-{i}"), "acct", 4_000, now() + 600))
            .await;
        assert!(out.is_loaded(), "{out:?}");
    }
    let ms = merchants();
    for n in 0..12 {
        let m = &ms[n % 3];
        let out = shopper
            .pay(&m.session(
                &format!("T-{n}"),
                150 + 10 * n as u32,
                VerifyMode::PaymentServer,
                now() + 600,
            ))
            .await;
        assert!(out.is_paid(), "{out:?}");
    }
    let ids = srv
        .service
        .close_batches(&payments_signer(&spool))
        .await
        .unwrap();
    assert_eq!(ids.len(), 4, "three merchants and a bank");
    snapshot(
        srv.db.sqlite_path(),
        &pristine.path().join("payments.sqlite"),
    );
    (srv, pristine)
}

/// Run clearing killed at each step in turn; the books always end the same.
fn kill_at_every_step(pristine: &Path, clearing_pg: Option<&str>) {
    let (killed, reference) = run_case(pristine, None, clearing_pg);
    assert!(!killed);
    assert_eq!(reference.settled_webhooks, 4, "shop-a's four purchases");
    assert!(
        reference.loads.iter().all(|l| l.1 == "settled"),
        "{:?}",
        reference.loads
    );
    assert!(reference.ledger.len() >= 7, "{:?}", reference.ledger);
    let mut steps = 0;
    for k in 1..200 {
        let (killed, books) = run_case(pristine, Some(k), clearing_pg);
        if !killed {
            break;
        }
        steps = k;
        assert_eq!(books, reference, "killed at step {k}");
    }
    // 4 batches: received + records in chunks of 2 + posted + acknowledged.
    assert!(steps >= 20, "only {steps} steps were killed");
    eprintln!("killed and recovered at each of {steps} steps");
}
