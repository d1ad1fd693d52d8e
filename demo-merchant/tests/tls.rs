//! The demo store binary over TLS with the payment server over TLS: the store
//! refuses to start without a certificate (or `--insecure-http`) and refuses a
//! plain-HTTP payment URL; over https the cart keeps quantities in `Secure`
//! cookies, survives checkout and is emptied only once the order is paid; the
//! payment server's webhook reaches the store through its `ca_file`, and the
//! store's merchant-API calls reach the server through `--ca-file`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cardpay_tls::test_ca::TestCa;
use demo_merchant::Order;
use payment_testkit::*;
use purse::purchase::WidgetSession;
use purse::session::VerifyMode;

const BIN: &str = env!("CARGO_BIN_EXE_demo-merchant");
/// Any well-formed SRI value.
const SRI: &str = "sha384-voaMG+EcWsOyhOFVC8XF2UyXzWe4jEORKsJv9b4ZsSWfjxtdai6x5h6SGUnuVyIl";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Store(Child);

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn store(db: &Path, key_hex: &str, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DEMO_DB", db)
        .env("DEMO_MERCHANT_KEY", key_hex)
        .env("DEMO_CHECKOUT_SRI", SRI)
        .args(args)
        .stdout(Stdio::null());
    c
}

/// Run to the end (within 20 s): success and stderr.
fn run_to_end(mut c: Command) -> (bool, String) {
    let mut child = c.stderr(Stdio::piped()).spawn().unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (st.success(), err);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the store kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn refuses_to_start_without_tls_or_with_a_plain_http_payment_url() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orders.sqlite");
    let key = "d5".repeat(32);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (ok, err) = run_to_end(store(&db, &key, &["--listen", &listen]));
    assert!(!ok, "started without TLS");
    assert!(err.contains("refusing to start without TLS"), "{err}");
    assert!(
        err.contains("--tls-cert") && err.contains("--insecure-http"),
        "{err}"
    );
    assert!(!db.exists(), "the database was created");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    // Over TLS, the payment server must be https too: its answers are trusted
    // because TLS authenticates it.
    let ca = TestCa::new(dir.path(), "Cardpay TEST CA (store refuses)");
    let (cert, tls_key) = (
        ca.server.cert_file.to_str().unwrap(),
        ca.server.key_file.to_str().unwrap(),
    );
    let (ok, err) = run_to_end(store(
        &db,
        &key,
        &[
            "--listen",
            &listen,
            "--tls-cert",
            cert,
            "--tls-key",
            tls_key,
            "--payment-url",
            "http://127.0.0.1:8440",
        ],
    ));
    assert!(!ok, "started with a plain-HTTP payment URL");
    assert!(
        err.contains("http://127.0.0.1:8440") && err.contains("not https://"),
        "{err}"
    );
    // A key without its certificate is a usage error too.
    let (ok, err) = run_to_end(store(
        &db,
        &key,
        &["--listen", &listen, "--tls-key", tls_key],
    ));
    assert!(!ok && err.contains("--tls-cert"), "{err}");
    assert!(!db.exists(), "the database was created");
}

/// Every `Set-Cookie` of a response.
fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// The browser's side: apply `Set-Cookie`s to a cookie jar (`name=value; …`).
fn apply(jar: &mut Vec<(String, String)>, r: &reqwest::Response) {
    for c in set_cookies(r) {
        let (nv, attrs) = c.split_once(';').unwrap_or((&c, ""));
        let (n, v) = nv.split_once('=').unwrap();
        jar.retain(|(k, _)| k != n);
        if !(v.is_empty() || attrs.contains("Max-Age=0")) {
            jar.push((n.to_string(), v.to_string()));
        }
    }
}

fn header(jar: &[(String, String)]) -> String {
    jar.iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn over_tls_the_cart_survives_checkout_and_both_directions_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "Cardpay TEST CA (store)");
    let store_port = free_port();
    let shop = format!("https://127.0.0.1:{store_port}");
    let mut m = TestMerchant::new("demo-store", 0xD7);
    m.origin = shop.clone();
    m.webhook_url = Some(format!("{shop}/webhooks/cardpay"));
    m.modes = vec![VerifyMode::PaymentServer];

    // The payment server over TLS, delivering webhooks through its ca_file.
    let payment_db = TestDb::in_dir(dir.path());
    let config = payment_server::Config::from_toml(
        &format!(
            "ca_file = {:?}\nwebhook_max_backoff_secs = 1\n{}[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            ca.ca_file,
            test_config_toml(&payment_db, std::slice::from_ref(&m), 0),
            ca.server.cert_file,
            ca.server.key_file,
        ),
        |_| None,
    )
    .unwrap();
    let (svc, app) = payment_server::build(&config, payment_server::purchase::system_clock())
        .await
        .unwrap();
    payment_server::start_background(&svc, &config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pay = format!("https://{}", listener.local_addr().unwrap());
    let transport = payment_server::transport(&config, false).unwrap();
    tokio::spawn(cardpay_tls::serve(
        listener,
        app,
        transport,
        std::future::pending(),
    ));

    // The store binary over TLS, trusting the test CA for its merchant-API calls.
    let _store = Store(
        store(
            &dir.path().join("orders.sqlite"),
            &m.key_hex,
            &[
                "--listen",
                &format!("127.0.0.1:{store_port}"),
                "--tls-cert",
                ca.server.cert_file.to_str().unwrap(),
                "--tls-key",
                ca.server.key_file.to_str().unwrap(),
                "--ca-file",
                ca.ca_file.to_str().unwrap(),
                "--payment-url",
                &pay,
            ],
        )
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut up = false;
    for _ in 0..200 {
        if http.get(format!("{shop}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the store did not come up over TLS");

    // Quantities, in Secure cookies.
    let mut jar = vec![];
    let form = |body: &str| {
        http.post(format!("{shop}{}", body.split('?').next().unwrap()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.split_once('?').unwrap().1.to_string())
    };
    let r = form("/cart/add?product=ebook&qty=5")
        .header("cookie", header(&jar))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        set_cookies(&r)[0].starts_with("cart=ebook.5;") && set_cookies(&r)[0].contains("Secure")
    );
    apply(&mut jar, &r);
    let r = form("/cart/set?product=ebook&qty=3")
        .header("cookie", header(&jar))
        .send()
        .await
        .unwrap();
    apply(&mut jar, &r);
    let r = form("/cart/add?product=song")
        .header("cookie", header(&jar))
        .send()
        .await
        .unwrap();
    apply(&mut jar, &r);
    assert_eq!(header(&jar), "cart=ebook.3-song.1");
    for bad in [
        "/cart/set?product=ebook&qty=21",
        "/cart/set?product=ebook&qty=-1",
        "/cart/add?product=nope",
    ] {
        let r = form(bad)
            .header("cookie", header(&jar))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert!(set_cookies(&r).is_empty(), "{bad} changed the cart");
    }
    let cart = http
        .get(format!("{shop}/cart"))
        .header("cookie", header(&jar))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(cart.contains("id=\"total\">15.96 EUR<"), "{cart}");

    // Checkout makes the order and keeps the cart; checking out the same cart
    // again is the same order.
    let r = http
        .post(format!("{shop}/checkout"))
        .header("cookie", header(&jar))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let id = loc
        .strip_prefix("/orders/")
        .unwrap()
        .strip_suffix("/pay")
        .unwrap()
        .to_string();
    assert!(
        set_cookies(&r).iter().all(|c| !c.starts_with("cart=")),
        "checkout touched the cart"
    );
    apply(&mut jar, &r);
    assert_eq!(header(&jar), format!("cart=ebook.3-song.1; order={id}"));
    let r = http
        .post(format!("{shop}/checkout"))
        .header("cookie", header(&jar))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"].to_str().unwrap(), loc);

    // The payment page, a purchase over TLS whose result never reaches the
    // store (the tab is closed): the server's webhook pays the order.
    let page = http
        .get(format!("{shop}{loc}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = page.find("id=\"cardpay-session\">").unwrap() + "id=\"cardpay-session\">".len();
    let end = start + page[start..].find("</script>").unwrap();
    let ws: WidgetSession = serde_json::from_str(&page[start..end]).unwrap();
    assert_eq!(ws.session.amount, 3 * 499 + 99);
    assert!(page.contains(&format!("<script src=\"{pay}/checkout.js\"")));
    let api = Api::with_client(
        cardpay_tls::http_client(Some(&ca.ca_file)).unwrap(),
        pay.clone(),
    );
    let mut shopper = Shopper::new(test_card("6280000000000711", 5_000), api);
    assert!(shopper.pay(&ws).await.is_paid());
    let order = |id: String| {
        let http = http.clone();
        let shop = shop.clone();
        async move {
            http.get(format!("{shop}/orders/{id}/json"))
                .send()
                .await
                .unwrap()
                .json::<Order>()
                .await
                .unwrap()
        }
    };
    let mut o = order(id.clone()).await;
    for _ in 0..100 {
        if o.status == "paid" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        o = order(id.clone()).await;
    }
    assert_eq!(
        (o.status.as_str(), o.evidence.as_deref()),
        ("paid", Some("webhook"))
    );

    // Paid: the cart is emptied (and only now).
    let r = http
        .get(format!("{shop}/cart"))
        .header("cookie", header(&jar))
        .send()
        .await
        .unwrap();
    apply(&mut jar, &r);
    assert!(r.text().await.unwrap().contains("Your cart is empty"));
    assert!(jar.is_empty(), "{jar:?}");

    // The store's own call to the server over TLS: a second order paid by its
    // result M, then the store confirms it (signed merchant API over https).
    let r = form("/cart/add?product=font").send().await.unwrap();
    apply(&mut jar, &r);
    let r = http
        .post(format!("{shop}/checkout"))
        .header("cookie", header(&jar))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let page = http
        .get(format!("{shop}{loc}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = page.find("id=\"cardpay-session\">").unwrap() + "id=\"cardpay-session\">".len();
    let end = start + page[start..].find("</script>").unwrap();
    let ws: WidgetSession = serde_json::from_str(&page[start..end]).unwrap();
    let out = shopper.pay(&ws).await;
    let r = http
        .post(&ws.session.result_url)
        .json(out.result().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let state = || {
        payment_db
            .text(
                "SELECT state FROM transactions WHERE txn_id = ?1",
                &[&ws.session.txn_id],
            )
            .unwrap()
    };
    let mut s = state();
    for _ in 0..100 {
        if s == "confirmed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        s = state();
    }
    assert_eq!(
        s, "confirmed",
        "the store's confirm did not reach the server over TLS"
    );
    assert_eq!(balance(&shopper.card), 5_000 - (3 * 499 + 99) - 350);
}
