//! The demo bank end to end over loopback HTTP: login, "load my card" (the
//! amount held), the load page with its session, the real load client
//! against a virtual card and the real load server (webhooks to the bank),
//! the result posted to the bank. The account is debited iff the card was
//! credited, exactly once; a proven non-credit releases the hold.

use std::sync::Arc;
use std::time::Duration;

use demo_merchant::bank::{AccountView, BankConfig, BankState, CardLoad};
use payment_testkit::*;
use purse::load::client::LoadProblem;
use purse::load::{BankResult, LoadWidgetSession};
use purse::purchase::client::Outgoing;
use purse::session::Key32;
use reqwest::redirect::Policy;

struct Setup {
    _dir: tempfile::TempDir,
    bank: String,
    api: Api,
    http: reqwest::Client,
    state: Arc<BankState>,
}

async fn setup(session_ttl: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bank_url = format!("http://{}", listener.local_addr().unwrap());
    let mut tb = TestBank::new("demo-bank", 0xDB);
    tb.origin = bank_url.clone();
    tb.webhook_url = Some(format!("{bank_url}/webhooks/cardpay"));
    let config = payment_server::Config::from_toml(
        &format!(
            "webhook_max_backoff_secs = 1\n{}",
            test_config_toml_full(&TestDb::in_dir(dir.path()), &[], &[tb.clone()], 0)
        ),
        |_| None,
    )
    .unwrap();
    let (addr, svc) = spawn_server(&config).await;
    payment_server::start_background(&svc, &config);
    let state = BankState::new(BankConfig {
        db_path: dir.path().join("bank.sqlite"),
        payment_url: format!("http://{addr}"),
        payment_origin: format!("http://{addr}"),
        public_origin: bank_url.clone(),
        bank_id: "demo-bank".into(),
        bank_name: "Cardpay Demo Bank".into(),
        bank_key: Key32::from_hex(&tb.key_hex).unwrap(),
        terminal: TEST_TERMINAL,
        session_ttl,
        checkout_sri: None,
        ca_file: None,
    })
    .unwrap();
    let app = demo_merchant::bank::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Setup {
        _dir: dir,
        bank: bank_url,
        api: Api::new(addr),
        http: reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap(),
        state,
    }
}

impl Setup {
    async fn login(&self, user: &str, pw: &str) -> Result<String, u16> {
        let r = self
            .http
            .post(format!("{}/login", self.bank))
            .form(&[("username", user), ("password", pw)])
            .send()
            .await
            .unwrap();
        if r.status() != 303 {
            return Err(r.status().as_u16());
        }
        let c = r.headers()[reqwest::header::SET_COOKIE].to_str().unwrap();
        Ok(c.split(';').next().unwrap().to_string())
    }

    /// "Load my card": the hold, then the load page and its session.
    async fn start_load(&self, cookie: &str, amount: &str) -> (String, LoadWidgetSession) {
        let r = self
            .http
            .post(format!("{}/loads", self.bank))
            .header("cookie", cookie)
            .form(&[("amount", amount)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let html = self
            .http
            .get(format!("{}{loc}", self.bank))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            html.contains("/checkout.js\""),
            "the same script tag as the store"
        );
        assert!(html.contains("/static/load-page.js"));
        let start = html.find("id=\"cardpay-session\">").unwrap() + "id=\"cardpay-session\">".len();
        let end = start + html[start..].find("</script>").unwrap();
        let ws: LoadWidgetSession = serde_json::from_str(&html[start..end]).unwrap();
        (ws.session.txn_id.clone(), ws)
    }

    async fn post_result(&self, ws: &LoadWidgetSession, r: &BankResult) -> reqwest::Response {
        self.http
            .post(&ws.session.result_url)
            .json(r)
            .send()
            .await
            .unwrap()
    }

    async fn account(&self) -> AccountView {
        self.state.account("acct-alice").await.unwrap()
    }

    async fn wait_status(&self, txn: &str, status: &str) -> CardLoad {
        for _ in 0..100 {
            let l = self.state.card_load(txn).await.unwrap();
            if l.status == status {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{txn} never {status}: {:?}",
            self.state.card_load(txn).await
        );
    }
}

#[tokio::test]
async fn login_load_post_once_release_on_proof_statement() {
    let s = setup(600).await;
    // Login: wrong password, unknown user, another site's form.
    assert_eq!(s.login("alice", "wrong").await, Err(401));
    assert_eq!(s.login("mallory", "alice-test-password").await, Err(401));
    let r = s
        .http
        .post(format!("{}/login", s.bank))
        .header("origin", "http://evil.test")
        .form(&[("username", "alice"), ("password", "alice-test-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let cookie = s.login("alice", "alice-test-password").await.unwrap();
    assert!(
        s.http
            .get(format!("{}/account", s.bank))
            .send()
            .await
            .unwrap()
            .status()
            .is_redirection(),
        "logged out: back to login"
    );

    // Load 50.00: held, then posted once on result B.
    let mut shopper = Shopper::new(test_card("6280000000007001", 1_000), s.api.clone());
    let (_txn, ws) = s.start_load(&cookie, "50.00").await;
    let a = s.account().await;
    assert_eq!((a.balance, a.held, a.available), (100_000, 5_000, 95_000));
    let out = shopper.load(&ws).await;
    let result = out.bank_result().expect("loaded").clone();
    assert!(out.is_loaded(), "{out:?}");
    let r = s.post_result(&ws, &result).await;
    assert_eq!(r.status(), 200);
    let l: CardLoad = r.json().await.unwrap();
    assert_eq!(l.status, "posted");
    assert_eq!(
        s.post_result(&ws, &result).await.status(),
        200,
        "again: nothing twice"
    );
    let a = s.account().await;
    assert_eq!((a.balance, a.held), (95_000, 0));
    assert_eq!(balance(&shopper.card), 6_000);
    // A result for another load is refused.
    let (_, ws2) = s.start_load(&cookie, "10.00").await;
    let moved = match &result {
        BankResult::ResultB { result_b, .. } => BankResult::ResultB {
            txn_id: ws2.session.txn_id.clone(),
            result_b: result_b.clone(),
        },
        _ => unreachable!(),
    };
    assert_eq!(s.post_result(&ws2, &moved).await.status(), 422);
    // Over the card's maximum: the card refuses, the bank voids and releases.
    let mut full = Shopper::new(
        test_card_custom("6280000000007002", 99_500, 100_000, "301231"),
        s.api.clone(),
    );
    let out = full.load(&ws2).await;
    assert_eq!(out.problem(), Some(LoadProblem::OverMaxBalance));
    let r: CardLoad = s
        .post_result(&ws2, out.bank_result().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r.status, "released");
    assert_eq!(balance(&full.card), 99_500);
    // CREDIT lost after the card applied it; the shopper closes the page. The
    // card comes back on that page later: the bank books it from the webhook.
    let (txn3, ws3) = s.start_load(&cookie, "20.00").await;
    let mut c = shopper.load_client(&ws3);
    shopper
        .run_load(&mut c, &mut |r: &mut Outgoing| {
            if is_credit(r) {
                Cut::CardAfter
            } else {
                Cut::None
            }
        })
        .await;
    assert_eq!(s.state.card_load(&txn3).await.unwrap().status, "held");
    shopper.card_present = true;
    assert!(shopper
        .run_load(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await
        .is_loaded());
    let l = s.wait_status(&txn3, "posted").await;
    assert_eq!(l.evidence.as_deref(), Some("webhook"));
    // CREDIT lost before the card: proven not loaded, released by the webhook.
    let (txn4, ws4) = s.start_load(&cookie, "30.00").await;
    let mut c = shopper.load_client(&ws4);
    shopper
        .run_load(&mut c, &mut |r: &mut Outgoing| {
            if is_credit(r) {
                Cut::CardBefore
            } else {
                Cut::None
            }
        })
        .await;
    shopper.card_present = true;
    assert_eq!(
        shopper
            .run_load(&mut c, &mut |_r: &mut Outgoing| Cut::None)
            .await
            .problem(),
        Some(LoadProblem::NotCredited)
    );
    s.wait_status(&txn4, "released").await;
    // The books: debited exactly what the card was credited.
    let a = s.account().await;
    assert_eq!(a.balance, 100_000 - 5_000 - 2_000);
    assert_eq!(a.held, 0);
    assert_eq!(balance(&shopper.card), 1_000 + 5_000 + 2_000);
    let st = s.state.statement("acct-alice").await.unwrap();
    let lines: Vec<i64> = st.iter().map(|e| e.amount).collect();
    assert_eq!(lines, vec![100_000, -5_000, -2_000]);
    assert_eq!(st.last().unwrap().balance_after, 93_000);
    let html = s
        .http
        .get(format!("{}/statement", s.bank))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("930.00 EUR") && html.contains("Card load, card …7001"));
}

#[tokio::test]
async fn an_expired_hold_never_drawn_is_voided_and_released() {
    let s = setup(1).await;
    let cookie = s.login("alice", "alice-test-password").await.unwrap();
    let (txn, _ws) = s.start_load(&cookie, "40.00").await;
    // More than the available balance is refused, nothing held.
    let r = s
        .http
        .post(format!("{}/loads", s.bank))
        .header("cookie", &cookie)
        .form(&[("amount", "2000.00")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(s.account().await.held, 4_000);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(s.state.reconcile().await.unwrap(), 1);
    let l = s.state.card_load(&txn).await.unwrap();
    assert_eq!(l.status, "released");
    let a = s.account().await;
    assert_eq!((a.balance, a.held), (100_000, 0));
    // The load server agrees: voided, it can never be drawn now.
    let v: purse::load::bank_api::LoadView = s
        .api
        .bank_call(
            &merchant_kit::bank::Bank::new("demo-bank", "x", Key32::new([0xDB; 32])),
            "GET",
            &format!("/v1/bank/loads/{txn}"),
        )
        .await
        .unwrap();
    assert_eq!(v.state, purse::load::bank_api::LoadState::Voided);
}
