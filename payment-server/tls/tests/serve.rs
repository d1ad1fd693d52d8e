//! A real server over TLS on a loopback port, real clients that verify it.

use std::time::Duration;

use axum::routing::get;
use cardpay_tls::test_ca::TestCa;
use cardpay_tls::{http_client, serve, TlsError, TlsFiles, Transport};

fn app() -> axum::Router {
    axum::Router::new().route("/hello", get(|| async { "hello over TLS" }))
}

/// Serve `app()` with `transport`; the address and a shutdown trigger.
async fn start(
    transport: Transport,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    start_app(app(), transport).await
}

/// Serve `app` with `transport`; the address and a shutdown trigger.
async fn start_app(
    app: axum::Router,
    transport: Transport,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, app, transport, async {
        let _ = rx.await;
    }));
    (addr, tx, task)
}

#[tokio::test]
async fn serves_tls_that_a_verifying_client_accepts_and_others_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "Cardpay TEST CA (serve)");
    let transport = Transport::choose(Some(&ca.server), false, "").unwrap();
    assert_eq!(transport.scheme(), "https");
    let (addr, stop, task) = start(transport).await;

    // A client that trusts the test CA (and verifies as always).
    let client = http_client(Some(&ca.ca_file)).unwrap();
    for host in [
        format!("127.0.0.1:{}", addr.port()),
        format!("localhost:{}", addr.port()),
    ] {
        let r = client
            .get(format!("https://{host}/hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            !r.headers().contains_key("strict-transport-security"),
            "no HSTS for a loopback host ({host}): it would pin every local port"
        );
        assert_eq!(r.text().await.unwrap(), "hello over TLS");
    }

    // A client with the system's roots only: the certificate is not trusted.
    let e = http_client(None)
        .unwrap()
        .get(format!("https://{addr}/hello"))
        .send()
        .await
        .unwrap_err();
    let chain = format!("{:?}", e);
    assert!(e.is_connect() && chain.contains("UnknownIssuer"), "{chain}");

    // Another CA's client: refused as well.
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestCa::new(other_dir.path(), "Another TEST CA");
    let e = http_client(Some(&other.ca_file))
        .unwrap()
        .get(format!("https://{addr}/hello"))
        .send()
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("UnknownIssuer"), "{e:?}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/hello"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.as_ref().map(|r| r.status() != 200).unwrap_or(true),
        "plain HTTP was answered: {plain:?}"
    );

    // Shutdown ends the server.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}

/// A real host name over TLS gets `Strict-Transport-Security`, on every
/// answer (a 404 too). The client skips verification here only because the
/// test CA may vouch for loopback names alone; what is tested is the header.
#[tokio::test]
async fn a_real_host_name_over_tls_is_told_to_stay_on_https() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new(dir.path(), "Cardpay TEST CA (hsts)");
    let named = TlsFiles {
        cert_file: dir.path().join("shop.pem"),
        key_file: dir.path().join("shop.key"),
    };
    ca.issue(&["shop.example"], &named);
    let (addr, _stop, _task) = start(Transport::choose(Some(&named), false, "").unwrap()).await;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .resolve("shop.example", addr)
        .build()
        .unwrap();
    for (path, status) in [("/hello", 200), ("/nowhere", 404)] {
        let r = client
            .get(format!("https://shop.example:{}{path}", addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
        assert_eq!(r.headers()["strict-transport-security"], cardpay_tls::HSTS);
    }
}

#[tokio::test]
async fn the_ca_vouches_only_for_loopback_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new(dir.path(), "Cardpay TEST CA (constraints)");
    // A certificate the CA signed for a name outside its constraints.
    let rogue = TlsFiles {
        cert_file: dir.path().join("rogue.pem"),
        key_file: dir.path().join("rogue.key"),
    };
    ca.issue(&["shop.example"], &rogue);
    let (addr, _stop, _task) = start(Transport::choose(Some(&rogue), false, "").unwrap()).await;
    let pem = std::fs::read(&ca.ca_file).unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("shop.example", addr)
        .build()
        .unwrap();
    let e = client
        .get(format!("https://shop.example:{}/hello", addr.port()))
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{e:?}").contains("NameConstraintViolation"),
        "{e:?}"
    );
}

#[tokio::test]
async fn insecure_http_serves_plain_http_only_when_asked() {
    let (addr, stop, task) = start(Transport::choose(None, true, "").unwrap()).await;
    let r = reqwest::get(format!("http://{addr}/hello")).await.unwrap();
    assert!(
        !r.headers().contains_key("strict-transport-security"),
        "no HSTS over plain HTTP"
    );
    assert_eq!(r.text().await.unwrap(), "hello over TLS");
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

/// An answer written in two parts, as a file is served (headers with what is read
/// first, then the rest as it is read): the second part 1 ms after the first.
fn two_writes() -> axum::Router {
    use futures_util::stream;
    axum::Router::new().route(
        "/file",
        get(|| async {
            let parts = stream::unfold(0u8, |n| async move {
                match n {
                    0 => Some((Ok::<_, std::io::Error>(vec![b'x'; 1_000]), 1)),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        Some((Ok(vec![b'y'; 1_000]), 2))
                    }
                    _ => None,
                }
            });
            axum::body::Body::from_stream(parts)
        }),
    )
}

/// Median time of 21 GETs of `url` (2,000 bytes in two writes) over one kept-alive
/// connection, after a few that let the connection leave TCP's quick-ACK start.
async fn median_get(client: &reqwest::Client, url: &str) -> Duration {
    let get = || async {
        let t = std::time::Instant::now();
        let r = client.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().len(), 2_000);
        t.elapsed()
    };
    for _ in 0..5 {
        get().await;
    }
    let mut times = Vec::new();
    for _ in 0..21 {
        times.push(get().await);
    }
    times.sort();
    times[10]
}

/// An answer leaves in several writes (headers, then the body as it is read; over
/// TLS a record each). With Nagle's algorithm on the server's socket a write waits
/// while an earlier one is unacknowledged, and the client delays its ACK, 40 ms or
/// more on Linux: every static file paid it (41–44 ms over loopback from curl or
/// Node, docs/payment-server.md). `serve` sets `TCP_NODELAY`; the answer then
/// takes little more than its 1 ms pause, so a median of 21 stays far below 40 ms
/// on a busy machine too.
#[tokio::test]
async fn answers_do_not_wait_for_the_clients_delayed_ack() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "Cardpay TEST CA (nodelay)");
    let tls = Transport::choose(Some(&ca.server), false, "").unwrap();
    let (tls, _stop, _task) = start_app(two_writes(), tls).await;
    let plain = Transport::choose(None, true, "").unwrap();
    let (plain, _stop2, _task2) = start_app(two_writes(), plain).await;
    for (url, client) in [
        (
            format!("https://127.0.0.1:{}/file", tls.port()),
            http_client(Some(&ca.ca_file)).unwrap(),
        ),
        (format!("http://{plain}/file"), reqwest::Client::new()),
    ] {
        let m = median_get(&client, &url).await;
        assert!(
            m < Duration::from_millis(25),
            "{url}: median {m:?} per request: the server's socket waits on Nagle's algorithm (TCP_NODELAY not set?)"
        );
    }
}

#[test]
fn unusable_files_are_refused_with_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestCa::new(dir.path(), "A");
    let b_dir = tempfile::tempdir().unwrap();
    let b = TestCa::new(b_dir.path(), "B");
    // A's certificate with B's key.
    let mixed = TlsFiles {
        cert_file: a.server.cert_file.clone(),
        key_file: b.server.key_file.clone(),
    };
    let e = Transport::choose(Some(&mixed), false, "").unwrap_err();
    assert!(matches!(e, TlsError::Unusable { .. }), "{e}");
    assert!(e.to_string().contains("do not fit together"), "{e}");
    // A key where the certificate should be, and a certificate as the key.
    let swapped = TlsFiles {
        cert_file: a.server.key_file.clone(),
        key_file: a.server.cert_file.clone(),
    };
    let e = Transport::choose(Some(&swapped), false, "")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no PEM certificate") && e.contains("server.key"),
        "{e}"
    );
    let swapped_key = TlsFiles {
        cert_file: a.server.cert_file.clone(),
        key_file: a.server.cert_file.clone(),
    };
    let e = Transport::choose(Some(&swapped_key), false, "")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no private key"), "{e}");
    // A CA file without a certificate, and a missing one.
    let e = http_client(Some(&a.server.key_file))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("CA file") && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = http_client(Some(&dir.path().join("missing.pem")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.pem"), "{e}");
}
