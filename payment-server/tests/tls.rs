//! TLS: the real binary refuses to start without a certificate unless
//! `--insecure-http` says so, serves HTTPS that a client trusting the test CA
//! verifies (and others refuse), and delivers webhooks to an HTTPS merchant
//! whose CA the config's `ca_file` names.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use cardpay_tls::test_ca::TestCa;
use merchant_kit::Merchant;
use payment_testkit::*;
use purse::session::VerifyMode;
use purse::webhook::{HEADER_EVENT_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};

const BIN: &str = env!("CARGO_BIN_EXE_payment-server");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run the binary to its end (it must end within 20 s): exit success and stderr.
fn run_to_end(config: &Path, extra: &[&str]) -> (bool, String) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.success(), err);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn refuses_to_start_without_tls_or_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("payments.sqlite");
    let m = TestMerchant::new("shop", 0x71);
    let port = free_port();
    let plain = dir.path().join("plain.toml");
    std::fs::write(
        &plain,
        test_config_toml(&TestDb::Sqlite(db.clone()), std::slice::from_ref(&m), 0)
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
    )
    .unwrap();

    let (ok, err) = run_to_end(&plain, &[]);
    assert!(!ok, "started without TLS");
    assert!(err.contains("refusing to start without TLS"), "{err}");
    assert!(
        err.contains("[tls] cert_file") && err.contains("key_file"),
        "{err}"
    );
    assert!(err.contains("--insecure-http"), "{err}");
    // Refused before anything was opened or bound.
    assert!(!db.exists(), "the database was created");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    // A certificate and --insecure-http at once: ambiguous, refused.
    let ca = TestCa::new(dir.path(), "Cardpay TEST CA (refuse)");
    let both = dir.path().join("both.toml");
    std::fs::write(
        &both,
        format!(
            "{}[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            std::fs::read_to_string(&plain).unwrap(),
            ca.server.cert_file,
            ca.server.key_file
        ),
    )
    .unwrap();
    let (ok, err) = run_to_end(&both, &["--insecure-http"]);
    assert!(!ok && err.contains("--insecure-http"), "{err}");

    // Over TLS, a plain-HTTP webhook URL is refused, naming the merchant.
    let mut hooked = m.clone();
    hooked.webhook_url = Some("http://127.0.0.1:9/hook".into());
    let plain_hook = dir.path().join("hook.toml");
    std::fs::write(
        &plain_hook,
        format!(
            "{}[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            test_config_toml(&TestDb::Sqlite(db.clone()), &[hooked], 0),
            ca.server.cert_file,
            ca.server.key_file
        ),
    )
    .unwrap();
    let (ok, err) = run_to_end(&plain_hook, &[]);
    assert!(!ok, "started with a plain-HTTP webhook URL");
    assert!(
        err.contains("merchant shop") && err.contains("webhook_url"),
        "{err}"
    );
    assert!(!db.exists(), "the database was created");
}

#[tokio::test]
async fn serves_https_that_only_a_client_trusting_the_ca_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "Cardpay TEST CA (payment server)");
    let m = TestMerchant::new("shop", 0x72);
    let port = free_port();
    let cfg = dir.path().join("ps.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            test_config_toml(&TestDb::in_dir(dir.path()), std::slice::from_ref(&m), 0)
                .replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
            ca.server.cert_file,
            ca.server.key_file
        ),
    )
    .unwrap();
    let _server = Server(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let trusting = cardpay_tls::http_client(Some(&ca.ca_file)).unwrap();
    let url = format!("https://127.0.0.1:{port}/healthz");
    let mut up = false;
    for _ in 0..200 {
        if let Ok(r) = trusting.get(&url).send().await {
            assert_eq!(r.status(), 200);
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the server did not come up over TLS");
    let r = trusting
        .get(format!("https://localhost:{port}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The system's roots alone do not trust it: the client refuses, nothing is sent.
    let e = cardpay_tls::http_client(None)
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("UnknownIssuer"), "{e:?}");
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.as_ref().map(|r| r.status() != 200).unwrap_or(true),
        "{plain:?}"
    );
}

/// An HTTPS webhook endpoint: counts deliveries whose signature merchant-kit accepts.
#[derive(Clone)]
struct Hook {
    kit: Merchant,
    verified: Arc<Mutex<u32>>,
}

async fn hook(State(h): State<Hook>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    match h.kit.verify_webhook(
        get(HEADER_EVENT_ID),
        get(HEADER_TIMESTAMP),
        get(HEADER_SIGNATURE),
        &body,
        now(),
    ) {
        Ok(_) => {
            *h.verified.lock().unwrap() += 1;
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::UNAUTHORIZED,
    }
}

#[tokio::test]
async fn webhooks_reach_an_https_merchant_through_ca_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "Cardpay TEST CA (webhooks)");
    let mut m = TestMerchant::new("shop", 0x73);
    let h = Hook {
        kit: m.kit(),
        verified: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    m.webhook_url = Some(format!("https://{}/hook", listener.local_addr().unwrap()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(h.clone());
    let tls = cardpay_tls::Transport::choose(Some(&ca.server), false, "").unwrap();
    tokio::spawn(cardpay_tls::serve(
        listener,
        app,
        tls,
        std::future::pending(),
    ));

    let srv = TestServer::start(std::slice::from_ref(&m)).await;
    let mut shopper = Shopper::new(test_card("6280000000000771", 1_000), srv.api());
    assert!(shopper
        .pay(&m.session("TLS-1", 300, VerifyMode::PaymentServer, now() + 600))
        .await
        .is_paid());
    let cfg = payment_server::webhooks::Delivery {
        max_backoff_secs: 1,
        ..Default::default()
    };
    let toml = test_config_toml(&srv.db, std::slice::from_ref(&m), 0);
    // Without ca_file: the merchant's certificate is not trusted, nothing is delivered.
    let without = payment_server::Config::from_toml(&toml, |_| None).unwrap();
    let n = payment_server::webhooks::deliver_due(&srv.service, &without.webhook_client, &cfg)
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(*h.verified.lock().unwrap(), 0);
    // With the test CA as ca_file: delivered (after the 1 s backoff), signature verified.
    let with =
        payment_server::Config::from_toml(&format!("ca_file = {:?}\n{toml}", ca.ca_file), |_| None)
            .unwrap();
    assert_eq!(with.ca_file.as_deref(), Some(ca.ca_file.as_path()));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let n = payment_server::webhooks::deliver_due(&srv.service, &with.webhook_client, &cfg)
        .await
        .unwrap();
    assert!(n >= 1, "delivered {n}");
    assert_eq!(*h.verified.lock().unwrap() as usize, n);

    // A ca_file that holds no certificate is a config error naming it.
    let e = payment_server::Config::from_toml(
        &format!("ca_file = {:?}\n{toml}", ca.server.key_file),
        |_| None,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("server.key") && e.contains("no PEM certificate"),
        "{e}"
    );
}
