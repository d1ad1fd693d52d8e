//! TLS to PostgreSQL (docs/payment-server.md, "PostgreSQL"): a private
//! PostgreSQL that accepts TLS with a test CA's certificate. With
//! `sslmode=require&sslrootcert=…` in the URL the payment store (a whole
//! purchase) and the clearing database connect over TLS, verified; a server
//! their CA does not vouch for is refused before any SQL is sent.

use payment_server::config::Database;
use payment_server::store::Store;
use payment_testkit::*;
use purse::session::VerifyMode;

/// Connections of the `cardpay` database, `(over TLS, in the clear)`.
fn connections(plain_url: &str) -> (i64, i64) {
    let sql = "SELECT CAST(COUNT(*) FILTER (WHERE s.ssl) AS BIGINT), \
               CAST(COUNT(*) FILTER (WHERE NOT s.ssl) AS BIGINT) \
               FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid \
               WHERE a.datname = 'cardpay' AND a.pid <> pg_backend_pid()";
    db::pg_blocking(plain_url, |c| {
        c.query_one(sql, &[])
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_and_the_clearing_database_speak_verified_tls() {
    let certs = tempfile::tempdir().unwrap();
    let ca = cardpay_tls::test_ca::TestCa::new(certs.path(), "Cardpay TEST database CA");
    let stranger = tempfile::tempdir().unwrap();
    let other_ca = cardpay_tls::test_ca::TestCa::new(stranger.path(), "some other CA");
    let pg = TestPg::private(Some(certs.path()));
    let tls_url = |ca_file: &std::path::Path| {
        format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            pg.url,
            ca_file.display()
        )
    };
    assert_eq!(connections(&pg.url), (0, 0));

    // A purchase through a payment server whose store is on TLS.
    let plain = TestDb::fresh_schema(&pg.url);
    let TestDb::Postgres { schema, .. } = plain.clone() else {
        unreachable!()
    };
    let over_tls = TestDb::Postgres {
        base: tls_url(&ca.ca_file),
        schema,
    };
    let merchants = [TestMerchant::new("shop", 0xA1)];
    let config =
        payment_server::Config::from_toml(&test_config_toml(&over_tls, &merchants, 0), |_| None)
            .unwrap();
    let (addr, _service) = spawn_server(&config).await;
    let mut shopper = Shopper::new(test_card("6280000000000901", 5_000), Api::new(addr));
    assert!(shopper
        .pay(&merchants[0].session("T-tls", 1_250, VerifyMode::PaymentServer, now() + 600))
        .await
        .is_paid());
    assert_eq!(
        plain.int(
            "SELECT CAST(amount AS BIGINT) FROM transactions WHERE txn_id = ?1 AND state = 'debited'",
            &["T-tls"]
        ),
        1_250
    );
    let (tls, clear) = connections(&pg.url);
    assert!(
        tls >= 1,
        "the pool's connections are TLS: {tls} TLS, {clear} clear"
    );
    assert_eq!(clear, 0, "and none in the clear");

    // The clearing database (its pages' read-only session) too.
    let ro = tokio::task::spawn_blocking({
        let url = tls_url(&ca.ca_file);
        move || payment_server::clearing::db::open_read_only(std::path::Path::new(&url))
    })
    .await
    .unwrap()
    .unwrap();
    assert!(connections(&pg.url).0 > tls, "one more TLS connection");
    assert_eq!(connections(&pg.url).1, 0);
    drop(ro);

    // A CA that did not sign the server's certificate: refused, for both.
    let err = Store::open(&Database::from_path_or_url(&tls_url(&other_ca.ca_file)))
        .await
        .expect_err("a server its CA does not vouch for")
        .detail();
    assert!(err.contains("invalid peer certificate"), "{err}");
    let err = tokio::task::spawn_blocking({
        let url = tls_url(&other_ca.ca_file);
        move || payment_server::clearing::db::open_read_only(std::path::Path::new(&url))
    })
    .await
    .unwrap()
    .expect_err("refused")
    .to_string();
    assert!(err.contains("invalid peer certificate"), "{err}");
    assert_eq!(connections(&pg.url).1, 0, "no fallback to the clear");

    // The operator starting the binary so sees why it stops (not only
    // "internal error", which is all a client is told).
    let dir = tempfile::tempdir().unwrap();
    let TestDb::Postgres { schema, .. } = plain.clone() else {
        unreachable!()
    };
    let wrong = TestDb::Postgres {
        base: tls_url(&other_ca.ca_file),
        schema,
    };
    let cfg = dir.path().join("payment-server.toml");
    std::fs::write(&cfg, test_config_toml(&wrong, &merchants, 0)).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_payment-server"))
            .arg("--config")
            .arg(&cfg)
            .arg("--insecure-http")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("opening the store") && stderr.contains("invalid peer certificate"),
        "{stderr}"
    );
}
