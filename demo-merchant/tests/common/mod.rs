//! The demo store with its loyalty program, on loopback HTTP in front of the
//! real payment server (and load server) on SQLite: shared by the points and
//! members tests.

#![allow(dead_code)] // each test file uses its part

use std::sync::Arc;

use demo_merchant::points::Loyalty;
use demo_merchant::{AppState, StoreConfig};
use payment_server::PaymentService;
use payment_testkit::*;
use purse::purchase::WidgetSession;
use purse::session::{Key32, VerifyMode};
use reqwest::redirect::Policy;

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub store: String,
    pub api: Api,
    pub http: reqwest::Client,
    pub merchant: TestMerchant,
    pub svc: Arc<PaymentService>,
    pub state: Arc<AppState>,
}

/// The store (merchant "demo-store", loyalty program "demo-store-loyalty" at
/// 10 points a euro with the store's card references, its load webhooks to
/// the store) and the payment server.
pub async fn setup() -> Setup {
    setup_with(false).await
}

/// [`setup`], with the merchant's webhooks to the store if `webhooks`.
pub async fn setup_with(webhooks: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store = format!("http://{}", listener.local_addr().unwrap());
    let mut merchant = TestMerchant::new("demo-store", 0xD5);
    merchant.origin = store.clone();
    if webhooks {
        merchant.webhook_url = Some(format!("{store}/webhooks/cardpay"));
    }
    let mut loyalty = TestBank::points("demo-store-loyalty", 0x1C);
    loyalty.origin = store.clone();
    loyalty.webhook_url = Some(format!("{store}/webhooks/loyalty"));
    // The store's own program: its points loads name a card as its purchases do.
    loyalty.card_refs_of = Some("demo-store".into());
    let config = payment_server::Config::from_toml(
        &format!(
            "webhook_max_backoff_secs = 1\n{}",
            test_config_toml_full(
                &TestDb::in_dir(dir.path()),
                &[merchant.clone()],
                &[loyalty.clone()],
                0
            )
        ),
        |_| None,
    )
    .unwrap();
    let (addr, svc) = spawn_server(&config).await;
    payment_server::start_background(&svc, &config);
    let state = AppState::new_with_loyalty(
        StoreConfig {
            db_path: dir.path().join("orders.sqlite"),
            payment_url: format!("http://{addr}"),
            payment_origin: format!("http://{addr}"),
            public_origin: store.clone(),
            merchant_id: "demo-store".into(),
            merchant_name: "Demo".into(),
            merchant_key: Key32::from_hex(&merchant.key_hex).unwrap(),
            verify_mode: VerifyMode::PaymentServer,
            terminal: TEST_TERMINAL,
            session_ttl: 600,
            checkout_sri: None,
            ca_file: None,
            insecure_http: true,
        },
        Some(Loyalty::new(
            "demo-store-loyalty",
            "Demo Store Points",
            Key32::from_hex(&loyalty.key_hex).unwrap(),
            10,
        )),
    )
    .unwrap();
    let app = demo_merchant::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Setup {
        dir,
        store,
        api: Api::new(addr),
        http: reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap(),
        merchant,
        svc,
        state,
    }
}

/// The widget session rendered in a page.
pub fn session_in(html: &str) -> WidgetSession {
    let start = html.find("id=\"cardpay-session\">").unwrap() + "id=\"cardpay-session\">".len();
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end]).unwrap()
}

impl Setup {
    /// Cart → checkout → the payment page's session.
    pub async fn order(&self, product: &str) -> (String, WidgetSession) {
        let r = self
            .http
            .post(format!("{}/cart/add", self.store))
            .form(&[("product", product)])
            .send()
            .await
            .unwrap();
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let r = self
            .http
            .post(format!("{}/checkout", self.store))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        let id = r.headers()["location"].to_str().unwrap()["/orders/".len()..]
            .trim_end_matches("/pay")
            .to_string();
        let html = self
            .http
            .get(format!("{}/orders/{id}/pay", self.store))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (id, session_in(&html))
    }

    pub async fn points_offer(&self, id: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/orders/{id}/points", self.store))
            .send()
            .await
            .unwrap()
    }
}
