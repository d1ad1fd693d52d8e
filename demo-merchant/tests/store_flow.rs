//! The demo store end to end over loopback HTTP: cart, checkout page with the
//! session, the widget's part against a virtual card and the real payment
//! server, the result posted to the store, paid exactly once, goods released.

use std::sync::Arc;
use std::time::Duration;

use demo_merchant::{AppState, StoreConfig};
use payment_testkit::{self as testkit, TestMerchant, Widget};
use purse::session::{Key32, VerifyMode};
use reqwest::redirect::Policy;

/// Any well-formed SRI value (the real one comes from www/pkg/sri.json).
const CHECKOUT_SRI: &str =
    "sha384-voaMG+EcWsOyhOFVC8XF2UyXzWe4jEORKsJv9b4ZsSWfjxtdai6x5h6SGUnuVyIl";

struct Setup {
    _dir: tempfile::TempDir,
    store: String,
    pay: String,
    widget: Widget,
    merchant: TestMerchant,
    payment_db: std::path::PathBuf,
    http: reqwest::Client,
    _state: Arc<AppState>,
}

async fn setup(mode: VerifyMode) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store = format!("http://{}", listener.local_addr().unwrap());
    let mut merchant = TestMerchant::new("demo-store", 0xD5);
    merchant.origin = store.clone();
    let payment_db = dir.path().join("payments.sqlite");
    let config = payment_server::Config::from_toml(
        &testkit::test_config_toml(&payment_db, &[merchant.clone()], 0),
        |_| None,
    )
    .unwrap();
    let (addr, _svc) = testkit::spawn_server(&config).await;
    let state = AppState::new(StoreConfig {
        db_path: dir.path().join("orders.sqlite"),
        payment_url: format!("http://{addr}"),
        payment_origin: format!("http://{addr}"),
        public_origin: store.clone(),
        merchant_id: "demo-store".into(),
        merchant_name: "Demo".into(),
        merchant_key: Key32::from_hex(&merchant.key_hex).unwrap(),
        verify_mode: mode,
        terminal: testkit::TEST_TERMINAL,
        session_ttl: 600,
        checkout_sri: Some(CHECKOUT_SRI.into()),
    })
    .unwrap();
    let app = demo_merchant::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Setup {
        _dir: dir,
        store,
        pay: format!("http://{addr}"),
        widget: Widget::new(addr),
        merchant,
        payment_db,
        http: reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap(),
        _state: state,
    }
}

fn cookie_of(r: &reqwest::Response) -> String {
    let c = r.headers()[reqwest::header::SET_COOKIE].to_str().unwrap();
    c.split(';').next().unwrap().to_string()
}

impl Setup {
    async fn add(&self, cookie: &str, product: &str) -> String {
        let r = self
            .http
            .post(format!("{}/cart/add", self.store))
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("product={product}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        cookie_of(&r)
    }

    /// Cart → checkout → order id and the session the page renders.
    async fn order(&self, products: &[&str]) -> (String, merchant_kit::WidgetSession) {
        let mut cookie = String::new();
        for p in products {
            cookie = self.add(&cookie, p).await;
        }
        let cart = self
            .http
            .get(format!("{}/cart", self.store))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(cart.contains("Pay with Cardpay"));
        let r = self
            .http
            .post(format!("{}/checkout", self.store))
            .header("cookie", &cookie)
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
        let html = self
            .http
            .get(format!("{}{loc}", self.store))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("<div id=\"cardpay\""));
        assert!(html.contains("/checkout.js\""));
        assert!(html.contains("<script src=\"/static/checkout-page.js\""));
        let start = html.find("id=\"cardpay-session\">").unwrap() + "id=\"cardpay-session\">".len();
        let end = start + html[start..].find("</script>").unwrap();
        let ws: merchant_kit::WidgetSession = serde_json::from_str(&html[start..end]).unwrap();
        (id, ws)
    }

    async fn post_result(
        &self,
        ws: &merchant_kit::WidgetSession,
        body: &purse::wire::MerchantResult,
    ) -> reqwest::Response {
        self.http
            .post(&ws.session.result_url)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn payment_state(&self, txn: &str) -> Option<String> {
        let c = rusqlite::Connection::open(&self.payment_db).unwrap();
        c.query_row(
            "SELECT state FROM transactions WHERE txn_id = ?1",
            [txn],
            |r| r.get(0),
        )
        .ok()
    }

    async fn wait_state(&self, txn: &str, want: &str) {
        for _ in 0..50 {
            if self.payment_state(txn).await.as_deref() == Some(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        panic!(
            "{txn} never reached {want}: {:?}",
            self.payment_state(txn).await
        );
    }
}

#[tokio::test]
async fn buy_pay_download_once() {
    let s = setup(VerifyMode::PaymentServer).await;
    let (id, ws) = s.order(&["ebook", "song", "song"]).await;
    assert_eq!(ws.session.amount, 499 + 2 * 99);
    assert_eq!(ws.session.origin, s.store);
    assert_eq!(ws.session.merchant_id, "demo-store");
    // Not paid yet: no downloads.
    let r = s
        .http
        .get(format!("{}/orders/{id}/download/ebook", s.store))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 402);
    let mut card = testkit::test_card("6280000000000031", 5_000);
    let p = s
        .widget
        .purchase(&mut card, &ws, &s.store, false)
        .await
        .unwrap();
    let r = s.post_result(&ws, &p.merchant_result).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "paid");
    let o: demo_merchant::Order = s
        .http
        .get(format!("{}/orders/{id}/json", s.store))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(o.status, "paid");
    assert_eq!(o.card.as_deref(), Some("…0031"));
    let paid_at = o.paid_at;
    // The same result again: still paid once.
    assert_eq!(s.post_result(&ws, &p.merchant_result).await.status(), 200);
    let o2: demo_merchant::Order = s
        .http
        .get(format!("{}/orders/{id}/json", s.store))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(o2.paid_at, paid_at);
    let r = s
        .http
        .get(format!("{}/orders/{id}/download/ebook", s.store))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Stored value, explained"));
    let page = s
        .http
        .get(format!("{}/orders/{id}", s.store))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("download"));
    assert_eq!(testkit::balance(&card), 5_000 - 697);
    s.wait_state(&ws.session.txn_id, "confirmed").await;

    // A second order: the first order's result M is refused there.
    let (id2, ws2) = s.order(&["font"]).await;
    let moved = purse::wire::MerchantResult::ResultM {
        txn_id: ws2.session.txn_id.clone(),
        result_m: match &p.merchant_result {
            purse::wire::MerchantResult::ResultM { result_m, .. } => result_m.clone(),
            _ => unreachable!(),
        },
    };
    let r = s.post_result(&ws2, &moved).await;
    assert_eq!(r.status(), 422);
    let o: demo_merchant::Order = s
        .http
        .get(format!("{}/orders/{id2}/json", s.store))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(o.status, "pending");
    let r = s
        .http
        .get(format!("{}/orders/{id2}/download/font", s.store))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 402);
}

#[tokio::test]
async fn merchant_mode_store_compares_s3_and_captures() {
    let s = setup(VerifyMode::Merchant).await;
    let (id, ws) = s.order(&["wallpaper"]).await;
    assert_eq!(ws.session.verify_mode, VerifyMode::Merchant);
    let mut card = testkit::test_card("6280000000000032", 1_000);
    let p = s
        .widget
        .purchase(&mut card, &ws, &s.store, false)
        .await
        .unwrap();
    // A forged S3 first: refused, order stays pending.
    let purse::wire::MerchantResult::S3 {
        txn_id,
        balance_after,
        expected_s3_m,
        ..
    } = p.merchant_result.clone()
    else {
        panic!()
    };
    let forged = purse::wire::MerchantResult::S3 {
        txn_id,
        balance_after,
        s3: purse::wire::Hex(vec![0; 8]),
        expected_s3_m,
    };
    assert_eq!(s.post_result(&ws, &forged).await.status(), 422);
    assert_eq!(
        s.payment_state(&ws.session.txn_id).await.as_deref(),
        Some("drawn")
    );
    // The genuine S3: paid, and the store's confirm makes the payment server capture.
    assert_eq!(s.post_result(&ws, &p.merchant_result).await.status(), 200);
    let o: demo_merchant::Order = s
        .http
        .get(format!("{}/orders/{id}/json", s.store))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(o.status, "paid");
    assert_eq!(o.evidence.as_deref(), Some("s3"));
    s.wait_state(&ws.session.txn_id, "confirmed").await;
    assert_eq!(testkit::balance(&card), 1_000 - 199);
    assert_eq!(s.merchant.id, "demo-store");
}

/// The checkout page under CSP: the loader from the payment origin pinned by SRI,
/// no inline script (the glue is a same-origin file), the session as JSON data,
/// and the CSP header on every HTML page.
#[tokio::test]
async fn checkout_page_has_csp_and_sri() {
    let s = setup(VerifyMode::PaymentServer).await;
    let (id, _ws) = s.order(&["ebook"]).await;
    let r = s
        .http
        .get(format!("{}/orders/{id}/pay", s.store))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pay = &s.pay;
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        csp,
        format!(
            "default-src 'self'; script-src 'self' {pay}; frame-src {pay}; connect-src 'self'; \
             style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let html = r.text().await.unwrap();
    assert!(
        html.contains(&format!(
            "<script src=\"{pay}/checkout.js\" integrity=\"{CHECKOUT_SRI}\" crossorigin=\"anonymous\" defer></script>"
        )),
        "{html}"
    );
    // Every script element is external or JSON data: nothing for 'unsafe-inline'.
    for tag in html.split("<script").skip(1) {
        let open = &tag[..tag.find('>').unwrap()];
        assert!(
            open.contains(" src=\"") || open.contains("type=\"application/json\""),
            "inline script: <script{open}>"
        );
    }

    // The glue is served same-origin as JavaScript and mounts the widget.
    let g = s
        .http
        .get(format!("{}/static/checkout-page.js", s.store))
        .send()
        .await
        .unwrap();
    assert_eq!(g.status(), 200);
    assert!(g.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(g.headers()["x-content-type-options"], "nosniff");
    let js = g.text().await.unwrap();
    assert!(js.contains("Cardpay.mount(el"));
    assert!(js.contains("receiptMs"));

    // The other HTML pages carry the same policy; JSON does not need one.
    for path in ["/", "/cart", &format!("/orders/{id}")] {
        let r = s
            .http
            .get(format!("{}{path}", s.store))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()["content-security-policy"].to_str().unwrap(),
            csp,
            "{path}"
        );
    }
    let r = s
        .http
        .get(format!("{}/healthz", s.store))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-security-policy").is_none());
}

#[test]
fn sri_values_and_file() {
    assert!(demo_merchant::valid_sri(CHECKOUT_SRI));
    assert!(demo_merchant::valid_sri("sha256-abc= sha512-x/y+z"));
    for bad in [
        "",
        "md5-abc",
        "sha384-",
        "sha384-a\"b",
        "sha384-abc onerror=x",
    ] {
        assert!(!demo_merchant::valid_sri(bad), "{bad}");
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sri.json");
    std::fs::write(&f, format!("{{\"checkout.js\": \"{CHECKOUT_SRI}\"}}")).unwrap();
    assert_eq!(demo_merchant::sri_from_file(&f).unwrap(), CHECKOUT_SRI);
    std::fs::write(&f, "{}").unwrap();
    assert!(demo_merchant::sri_from_file(&f).is_err());
    assert_eq!(
        demo_merchant::origin_of("http://127.0.0.1:8440/").as_deref(),
        Some("http://127.0.0.1:8440")
    );
    assert_eq!(
        demo_merchant::origin_of("https://pay.example/cardpay/").as_deref(),
        Some("https://pay.example")
    );
    assert_eq!(demo_merchant::origin_of("javascript:alert(1)"), None);
}
