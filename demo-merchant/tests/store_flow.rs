//! The demo store end to end over loopback HTTP: cart, checkout page with the
//! session, the real purchase client against a virtual card and the real
//! payment server (with webhooks to the store), the result posted to the
//! store. An order is paid only on a capture the store verified, exactly once,
//! and an order never charges twice.

use std::sync::Arc;
use std::time::Duration;

use demo_merchant::{AppState, Order, StoreConfig};
use payment_testkit::*;
use purse::purchase::client::{Outgoing, Problem};
use purse::purchase::{MerchantResult, WidgetSession, PATH_COMPLETE};
use purse::session::{Key32, VerifyMode};
use reqwest::redirect::Policy;

/// Any well-formed SRI value (the real one comes from www/pkg/sri.json).
const CHECKOUT_SRI: &str =
    "sha384-voaMG+EcWsOyhOFVC8XF2UyXzWe4jEORKsJv9b4ZsSWfjxtdai6x5h6SGUnuVyIl";

struct Setup {
    _dir: tempfile::TempDir,
    store: String,
    pay: String,
    api: Api,
    payment_db: TestDb,
    http: reqwest::Client,
    _state: Arc<AppState>,
}

async fn setup(mode: VerifyMode) -> Setup {
    setup_with(mode, true).await
}

async fn setup_with(mode: VerifyMode, webhooks: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store = format!("http://{}", listener.local_addr().unwrap());
    let mut merchant = TestMerchant::new("demo-store", 0xD5);
    merchant.origin = store.clone();
    if webhooks {
        merchant.webhook_url = Some(format!("{store}/webhooks/cardpay"));
    }
    let payment_db = TestDb::in_dir(dir.path());
    let config = payment_server::Config::from_toml(
        &format!(
            "webhook_max_backoff_secs = 1\n{}",
            test_config_toml(&payment_db, &[merchant.clone()], 0)
        ),
        |_| None,
    )
    .unwrap();
    let (addr, svc) = spawn_server(&config).await;
    payment_server::start_background(&svc, &config);
    let state = AppState::new(StoreConfig {
        db_path: dir.path().join("orders.sqlite"),
        payment_url: format!("http://{addr}"),
        payment_origin: format!("http://{addr}"),
        public_origin: store.clone(),
        merchant_id: "demo-store".into(),
        merchant_name: "Demo".into(),
        merchant_key: Key32::from_hex(&merchant.key_hex).unwrap(),
        verify_mode: mode,
        terminal: TEST_TERMINAL,
        session_ttl: 600,
        checkout_sri: Some(CHECKOUT_SRI.into()),
        // Plain HTTP on loopback (tests/tls.rs covers TLS).
        ca_file: None,
        insecure_http: true,
    })
    .unwrap();
    let app = demo_merchant::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Setup {
        _dir: dir,
        store,
        pay: format!("http://{addr}"),
        api: Api::new(addr),
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

    /// Cart → checkout → order id.
    async fn order(&self, products: &[&str]) -> String {
        let mut cookie = String::new();
        for p in products {
            cookie = self.add(&cookie, p).await;
        }
        let r = self
            .http
            .post(format!("{}/checkout", self.store))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        loc.strip_prefix("/orders/")
            .unwrap()
            .strip_suffix("/pay")
            .unwrap()
            .to_string()
    }

    /// Load the payment page: a new attempt and its session, or None when the
    /// store sends the shopper to the (paid) order instead.
    async fn pay_page(&self, id: &str) -> Option<WidgetSession> {
        let r = self
            .http
            .get(format!("{}/orders/{id}/pay", self.store))
            .send()
            .await
            .unwrap();
        if r.status() == 303 {
            return None;
        }
        let html = r.text().await.unwrap();
        assert!(html.contains("<div id=\"cardpay\""));
        let start = html.find("id=\"cardpay-session\">").unwrap() + "id=\"cardpay-session\">".len();
        let end = start + html[start..].find("</script>").unwrap();
        Some(serde_json::from_str(&html[start..end]).unwrap())
    }

    async fn post_result(&self, ws: &WidgetSession, body: &MerchantResult) -> reqwest::Response {
        self.http
            .post(&ws.session.result_url)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn get_order(&self, id: &str) -> Order {
        self.http
            .get(format!("{}/orders/{id}/json", self.store))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn wait_paid(&self, id: &str) -> Order {
        for _ in 0..100 {
            let o = self.get_order(id).await;
            if o.status == "paid" {
                return o;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("order {id} never paid: {:?}", self.get_order(id).await);
    }

    fn captured(&self) -> u64 {
        self.payment_db.int(
            "SELECT CAST(COALESCE(SUM(amount),0) AS BIGINT) FROM transactions WHERE state IN ('debited','confirmed','settled')",
            &[],
        ) as u64
    }

    async fn download(&self, id: &str, product: &str) -> reqwest::StatusCode {
        self.http
            .get(format!("{}/orders/{id}/download/{product}", self.store))
            .send()
            .await
            .unwrap()
            .status()
    }
}

#[tokio::test]
async fn buy_pay_download_once() {
    // No webhooks here (they race the page's result; other tests cover them).
    let s = setup_with(VerifyMode::PaymentServer, false).await;
    let id = s.order(&["ebook", "song"]).await;
    assert_eq!(s.download(&id, "ebook").await, 402, "not before it is paid");
    let ws = s.pay_page(&id).await.unwrap();
    assert_eq!(ws.session.amount, 499 + 99);
    assert_eq!(ws.session.order_ref, id);
    let mut shopper = Shopper::new(test_card("6280000000000601", 5_000), s.api.clone());
    let out = shopper.pay(&ws).await;
    let result = out.result().unwrap().clone();
    let r = s.post_result(&ws, &result).await;
    assert_eq!(r.status(), 200);
    let o = s.get_order(&id).await;
    assert_eq!(o.status, "paid");
    assert_eq!(o.evidence.as_deref(), Some("result_m"));
    assert_eq!(s.download(&id, "ebook").await, 200);
    assert_eq!(s.download(&id, "font").await, 402, "not in the order");
    // The result again: still paid once.
    assert_eq!(s.post_result(&ws, &result).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = s.get_order(&id).await;
    assert_eq!((again.paid_at, again.paid_txn), (o.paid_at, o.paid_txn));
    assert_eq!(s.captured(), 598);
    assert_eq!(balance(&shopper.card), 5_000 - 598);
    // Once paid, the payment page sends the shopper to the order.
    assert!(s.pay_page(&id).await.is_none());
}

#[tokio::test]
async fn a_forged_or_foreign_result_pays_nothing() {
    let s = setup(VerifyMode::PaymentServer).await;
    let id = s.order(&["ebook"]).await;
    let ws = s.pay_page(&id).await.unwrap();
    // A result M of another order (paid by the same shopper) posted for this one.
    let other = s.order(&["song"]).await;
    let ws_other = s.pay_page(&other).await.unwrap();
    let mut shopper = Shopper::new(test_card("6280000000000602", 5_000), s.api.clone());
    let paid_other = shopper.pay(&ws_other).await;
    let r = s.post_result(&ws, paid_other.result().unwrap()).await;
    assert_eq!(r.status(), 422);
    let MerchantResult::ResultM { result_m, .. } = paid_other.result().unwrap().clone() else {
        unreachable!()
    };
    let moved = MerchantResult::ResultM {
        txn_id: ws.session.txn_id.clone(),
        result_m,
    };
    assert_eq!(s.post_result(&ws, &moved).await.status(), 422);
    assert_eq!(s.get_order(&id).await.status, "pending");
    assert_eq!(s.download(&id, "ebook").await, 402);
}

#[tokio::test]
async fn merchant_mode_pays_only_after_the_server_confirms_the_s3() {
    // No background complete: only the store's confirm can capture.
    let s = setup_with(VerifyMode::Merchant, false).await;
    let id = s.order(&["font"]).await;
    let ws = s.pay_page(&id).await.unwrap();
    let mut shopper = Shopper::new(test_card("6280000000000603", 5_000), s.api.clone());
    let mut c = shopper.client(&ws);
    let out = shopper
        .run(&mut c, &mut |r: &mut Outgoing| {
            if is_post(r, PATH_COMPLETE) {
                Cut::RequestLost
            } else {
                Cut::None
            }
        })
        .await;
    let result = out.result().unwrap().clone();
    assert!(matches!(result, MerchantResult::S3 { .. }));
    assert_eq!(
        s.captured(),
        0,
        "nothing captured before the store confirms"
    );
    // A forged S3: the store's own compare refuses it.
    let MerchantResult::S3 {
        txn_id,
        balance_after,
        s3,
        expected_s3_m,
    } = result.clone()
    else {
        unreachable!()
    };
    let mut bad = s3.clone();
    bad.0[0] ^= 1;
    let forged = MerchantResult::S3 {
        txn_id,
        balance_after,
        s3: bad,
        expected_s3_m,
    };
    assert_eq!(s.post_result(&ws, &forged).await.status(), 422);
    assert_eq!(s.get_order(&id).await.status, "pending");
    // The real one: the store confirms, the server verifies S3 and captures, then paid.
    assert_eq!(s.post_result(&ws, &result).await.status(), 200);
    let o = s.get_order(&id).await;
    assert_eq!(
        (o.status.as_str(), o.evidence.as_deref()),
        ("paid", Some("confirm"))
    );
    assert_eq!(s.captured(), 350);
}

#[tokio::test]
async fn reloading_the_pay_page_makes_a_new_attempt_and_never_charges_twice() {
    let s = setup(VerifyMode::PaymentServer).await;
    let id = s.order(&["ebook"]).await;
    let first = s.pay_page(&id).await.unwrap();
    let second = s.pay_page(&id).await.unwrap();
    assert_ne!(
        first.session.txn_id, second.session.txn_id,
        "a new attempt per load"
    );
    let mut shopper = Shopper::new(test_card("6280000000000604", 5_000), s.api.clone());
    assert!(shopper.pay(&second).await.is_paid());
    // The stale first page is used after all: the server refuses (order paid).
    let out = shopper.pay(&first).await;
    assert_eq!(
        out.problem(),
        Some(Problem::ServerRefused(purse::wire::ApiCode::OrderPaid))
    );
    let o = s.wait_paid(&id).await;
    assert_eq!(o.paid_txn.as_deref(), Some(second.session.txn_id.as_str()));
    assert_eq!(s.captured(), 499);
    assert_eq!(balance(&shopper.card), 4_501);
}

#[tokio::test]
async fn complete_answer_lost_then_tab_closed_the_webhook_pays_the_order() {
    let s = setup(VerifyMode::PaymentServer).await;
    let id = s.order(&["wallpaper"]).await;
    let ws = s.pay_page(&id).await.unwrap();
    let mut shopper = Shopper::new(test_card("6280000000000605", 5_000), s.api.clone());
    let mut c = shopper.client(&ws);
    let out = shopper
        .run(&mut c, &mut |r: &mut Outgoing| {
            if is_post(r, PATH_COMPLETE) {
                Cut::ReplyLost
            } else {
                Cut::None
            }
        })
        .await;
    assert_eq!(out.problem(), Some(Problem::ServerUnreachable));
    // The tab is closed: no result ever reaches the store. The webhook does.
    let o = s.wait_paid(&id).await;
    assert_eq!(o.evidence.as_deref(), Some("webhook"));
    assert_eq!(s.download(&id, "wallpaper").await, 200);
    // Reloading the payment page goes to the paid order; no second charge.
    assert!(s.pay_page(&id).await.is_none());
    assert_eq!(s.captured(), 199);
    assert_eq!(balance(&shopper.card), 4_801);
}

#[tokio::test]
async fn without_webhooks_a_reload_asks_the_server_and_finds_the_capture() {
    let s = setup_with(VerifyMode::PaymentServer, false).await;
    let id = s.order(&["song"]).await;
    let ws = s.pay_page(&id).await.unwrap();
    let mut shopper = Shopper::new(test_card("6280000000000606", 5_000), s.api.clone());
    let mut c = shopper.client(&ws);
    let _ = shopper
        .run(&mut c, &mut |r: &mut Outgoing| {
            if is_post(r, PATH_COMPLETE) {
                Cut::ReplyLost
            } else {
                Cut::None
            }
        })
        .await;
    assert_eq!(s.get_order(&id).await.status, "pending");
    assert!(
        s.pay_page(&id).await.is_none(),
        "the reload reconciles and finds it paid"
    );
    let o = s.get_order(&id).await;
    assert_eq!(
        (o.status.as_str(), o.evidence.as_deref()),
        ("paid", Some("confirm"))
    );
    assert_eq!(s.captured(), 99);
}

#[tokio::test]
async fn a_torn_purchase_recovered_by_the_card_pays_the_order_once() {
    let s = setup(VerifyMode::PaymentServer).await;
    let id = s.order(&["ebook"]).await;
    let ws = s.pay_page(&id).await.unwrap();
    let mut shopper = Shopper::new(test_card("6280000000000607", 5_000), s.api.clone());
    let mut c = shopper.client(&ws);
    let out = shopper
        .run(&mut c, &mut |r: &mut Outgoing| {
            if is_debit(r) {
                Cut::CardAfter
            } else {
                Cut::None
            }
        })
        .await;
    assert_eq!(out.problem(), Some(Problem::Torn));
    // The shopper reloads before putting the card back: the new attempt's draw
    // carries the card's log, which proves the first attempt: refused as paid.
    let second = s.pay_page(&id).await.unwrap();
    shopper.card_present = true;
    let out = shopper.pay(&second).await;
    assert_eq!(
        out.problem(),
        Some(Problem::ServerRefused(purse::wire::ApiCode::OrderPaid))
    );
    let o = s.wait_paid(&id).await;
    assert_eq!(o.paid_txn.as_deref(), Some(ws.session.txn_id.as_str()));
    assert_eq!(s.captured(), 499);
    assert_eq!(balance(&shopper.card), 4_501);
}

#[tokio::test]
async fn checkout_page_has_csp_and_sri() {
    let s = setup(VerifyMode::PaymentServer).await;
    let id = s.order(&["ebook"]).await;
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
