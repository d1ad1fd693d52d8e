//! The settlement pages over real HTTP: the operator closes batches on
//! demand, clearing clears and pays out, and then the merchant signs in by
//! proving its key on a one-time challenge and sees its payout, the chart and
//! the transactions behind the payout; machines get the same as JSON/CSV with
//! the merchant API signature; the operator sees the float and the rejected
//! records. Every way around the sign-in is tried and refused.

use hmac::{Hmac, KeyInit, Mac};
use payment_server::clearing::batch::{Batch, BatchKind, Record};
use payment_server::clearing::{self, settle, ClearingConfig};
use payment_server::config::Config;
use payment_server::purchase::system_clock;
use payment_testkit::clearing::*;
use payment_testkit::*;
use purse::session::VerifyMode;
use sha2::Sha256;

fn login_mac(key_hex: &str, merchant: &str, challenge: &str) -> String {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&hex::decode(key_hex).unwrap()).unwrap();
    m.update(format!("cardpay/merchant-login/v1\n{merchant}\n{challenge}").as_bytes());
    hex::encode(m.finalize().into_bytes())
}

struct Web {
    base: String,
    http: reqwest::Client,
}

impl Web {
    async fn get(
        &self,
        path: &str,
        cookie: Option<&str>,
    ) -> (u16, String, reqwest::header::HeaderMap) {
        let mut rb = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            rb = rb.header("cookie", c);
        }
        let r = rb.send().await.unwrap();
        let (s, h) = (r.status().as_u16(), r.headers().clone());
        (s, r.text().await.unwrap(), h)
    }
    async fn post(&self, path: &str, body: serde_json::Value) -> (u16, String, Option<String>) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        let cookie = r
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
        (s, r.text().await.unwrap(), cookie)
    }
    async fn challenge(&self, merchant: &str) -> String {
        let (s, body, _) = self
            .post(
                "/merchant/challenge",
                serde_json::json!({ "merchant": merchant }),
            )
            .await;
        assert_eq!(s, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["challenge"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

#[tokio::test]
async fn merchant_signs_in_with_its_key_and_sees_its_payouts_only() {
    let merchants = [
        TestMerchant::new("shop-a", 0xA1),
        TestMerchant::new("shop-b", 0xB2),
    ];
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("payments.sqlite");
    let spool = dir.path().join("spool");
    let cdb = dir.path().join("clearing.sqlite");
    let ptoml = format!(
        "{}{}",
        test_config_toml(&TestDb::Sqlite(db.clone()), &merchants, 0),
        producer_toml(&spool, &cdb)
    );
    let pcfg = dir.path().join("ps.toml");
    std::fs::write(&pcfg, &ptoml).unwrap();
    std::fs::write(
        dir.path().join("clearing.toml"),
        clearing_config_toml(dir.path(), &pcfg, &merchants, 10, 100),
    )
    .unwrap();
    let config = Config::from_toml(&ptoml, |_| None).unwrap();
    let (addr, service) = spawn_server(&config).await;
    let api = Api::new(addr);
    let web = Web {
        base: format!("http://{addr}"),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    };

    let mut shopper = Shopper::new(test_card("6280000000000401", 20_000), api.clone());
    for (i, amount) in [(0, 2_495), (1, 1_000), (2, 505)] {
        let m = &merchants[i % 2];
        assert!(shopper
            .pay(&m.session(
                &format!("T-{i}"),
                amount,
                VerifyMode::PaymentServer,
                now() + 600
            ))
            .await
            .is_paid());
    }
    // On demand: the operator closes batches; a merchant may not.
    let r: Result<serde_json::Value, _> = api
        .merchant_call(&merchants[0].kit(), "POST", "/v1/clearing/close", None)
        .await;
    assert_eq!(
        r.unwrap_err().code(),
        Some(purse::wire::ApiCode::Unauthorized)
    );
    let closed: serde_json::Value = api
        .operator_call("POST", "/v1/clearing/close", None)
        .await
        .unwrap();
    assert_eq!(closed["batches"].as_array().unwrap().len(), 2);
    // Clear, add a rejected record for the operator's page, pay out.
    let cfg = ClearingConfig::load(&dir.path().join("clearing.toml")).unwrap();
    let mut c = clearing::open(&cfg, system_clock()).unwrap();
    let bad = {
        let (_, b) = payment_server::clearing::BatchFile::open(
            &std::fs::read(
                std::fs::read_dir(&spool)
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .path(),
            )
            .unwrap(),
            &cfg.signers,
        )
        .unwrap();
        let Record::Purchase(mut p) = b.records[0].clone() else {
            panic!()
        };
        p.txn_id = "T-forged".into();
        p.s3 = purse::wire::Hex(vec![0; 8]);
        Batch::new(
            "PB-forged".into(),
            BatchKind::Purchases,
            "payment-server",
            &p.merchant_id.clone(),
            now(),
            vec![Record::Purchase(p)],
        )
        .sign("payments-test", &payments_key())
        .to_bytes()
    };
    std::fs::write(spool.join("zz-forged.batch"), bad).unwrap();
    let results = clearing::run_pass(&mut c, &service, &cfg.inbox)
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    // The server keeps its read session on the clearing database between
    // views: one before the payout (cleared, unpaid) and the views after it
    // (below) must each show the database as it is then.
    let j: serde_json::Value = api
        .merchant_call(&merchants[0].kit(), "GET", "/v1/settlements", None)
        .await
        .unwrap();
    assert_eq!(j["payouts"].as_array().unwrap().len(), 0);
    assert_eq!(j["cleared_unpaid"], 2_495 + 505);
    let t = now();
    let payouts = settle::settle(&mut c, &cfg, &clearing::db::iso_date(t), t).unwrap();
    settle::export(&c, &cfg, t).unwrap();
    let pa = payouts
        .iter()
        .find(|p| p.merchant_id == "shop-a")
        .unwrap()
        .clone();
    let pb = payouts
        .iter()
        .find(|p| p.merchant_id == "shop-b")
        .unwrap()
        .clone();
    assert_eq!(pa.gross, 2_495 + 505);

    // Not signed in: to the sign-in page, which carries a strict CSP.
    let (s, _, h) = web.get("/merchant", None).await;
    assert_eq!(
        (s, h["location"].to_str().unwrap()),
        (303, "/merchant/login")
    );
    let (s, body, h) = web.get("/merchant/login", None).await;
    assert_eq!(s, 200);
    assert!(body.contains("/merchant/login.js"));
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));

    // Wrong key, another merchant's challenge, a forged challenge: refused.
    let m = &merchants[0];
    let ch = web.challenge("shop-a").await;
    let wrong = login_mac(&merchants[1].key_hex, "shop-a", &ch);
    let (s, _, cookie) = web
        .post(
            "/merchant/login",
            serde_json::json!({"merchant": "shop-a", "challenge": ch, "mac": wrong}),
        )
        .await;
    assert_eq!((s, cookie), (401, None));
    let chb = web.challenge("shop-b").await;
    let (s, _, _) = web
        .post("/merchant/login", serde_json::json!({"merchant": "shop-a", "challenge": chb, "mac": login_mac(&m.key_hex, "shop-a", &chb)}))
        .await;
    assert_eq!(s, 401, "a challenge is bound to its merchant");
    let forged = format!("{}.{}.{}", now(), "00".repeat(16), "11".repeat(32));
    let (s, _, _) = web
        .post("/merchant/login", serde_json::json!({"merchant": "shop-a", "challenge": forged, "mac": login_mac(&m.key_hex, "shop-a", &forged)}))
        .await;
    assert_eq!(s, 401, "only this server's challenges");
    // The right key: a session; the same challenge again is refused.
    let body = serde_json::json!({"merchant": "shop-a", "challenge": ch, "mac": login_mac(&m.key_hex, "shop-a", &ch)});
    let (s, _, cookie) = web.post("/merchant/login", body.clone()).await;
    assert_eq!(s, 200);
    let cookie = cookie.expect("session cookie");
    let (s, _, _) = web.post("/merchant/login", body).await;
    assert_eq!(s, 401, "a challenge is used once");

    // The page: today's takings, the payout, the chart; only shop-a's.
    let (s, page, _) = web.get("/merchant", Some(&cookie)).await;
    assert_eq!(s, 200);
    assert!(
        page.contains(&pa.payout_id) && page.contains(&pa.reference),
        "{page}"
    );
    assert!(!page.contains(&pb.payout_id));
    assert!(page.contains(&format!("€{}.{:02}", pa.amount / 100, pa.amount % 100)));
    assert_eq!(page.matches("<rect class=\"bar\"").count(), 30);
    assert!(
        page.contains(&format!("data-amount=\"{}\"", 2_495 + 505)),
        "today's bar"
    );
    let (s, detail, _) = web
        .get(
            &format!("/merchant/payouts/{}", pa.payout_id),
            Some(&cookie),
        )
        .await;
    assert_eq!(s, 200);
    assert!(detail.contains("T-0") && detail.contains("T-2") && !detail.contains("T-1"));
    let (s, csv, h) = web
        .get(
            &format!("/merchant/payouts/{}.csv", pa.payout_id),
            Some(&cookie),
        )
        .await;
    assert_eq!(s, 200);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert_eq!(csv.lines().count(), 3);
    // Another merchant's payout, or a cookie rewritten to another merchant: nothing.
    let (s, _, _) = web
        .get(
            &format!("/merchant/payouts/{}", pb.payout_id),
            Some(&cookie),
        )
        .await;
    assert_eq!(s, 404);
    let v = cookie.split_once('=').unwrap().1;
    let (_, rest) = v.split_once('.').unwrap();
    let evil = format!("cp_merchant={}.{rest}", hex::encode("shop-b"));
    let (s, _, _) = web.get("/merchant", Some(&evil)).await;
    assert_eq!(s, 303);
    let (s, _, _) = web.get("/merchant/settlements.json", Some(&evil)).await;
    assert_eq!(s, 401);

    // Machines: the merchant API signature, JSON and CSV.
    let j: serde_json::Value = api
        .merchant_call(&m.kit(), "GET", "/v1/settlements", None)
        .await
        .unwrap();
    assert_eq!(j["payouts"][0]["payout_id"], pa.payout_id.as_str());
    assert_eq!(j["payouts"].as_array().unwrap().len(), 1);
    let j: serde_json::Value = api
        .merchant_call(
            &m.kit(),
            "GET",
            &format!("/v1/settlements/{}", pa.payout_id),
            None,
        )
        .await
        .unwrap();
    assert_eq!(j["transactions"].as_array().unwrap().len(), 2);
    let r: Result<serde_json::Value, _> = api
        .merchant_call(
            &merchants[1].kit(),
            "GET",
            &format!("/v1/settlements/{}", pa.payout_id),
            None,
        )
        .await;
    assert_eq!(r.unwrap_err().code(), Some(purse::wire::ApiCode::NotFound));

    // The operator: float and the rejected record; nobody else.
    let rep: serde_json::Value = api
        .operator_call("GET", "/v1/clearing/report", None)
        .await
        .unwrap();
    assert_eq!(rep["issuer_float"], -(2_495 + 1_000 + 505));
    assert_eq!(rep["rejected"][0]["txn_id"], "T-forged");
    assert_eq!(rep["rejected"][0]["code"], "s3_mismatch");
    let r = web
        .http
        .get(format!("{}/operator/clearing", web.base))
        .bearer_auth("test-operator-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("T-forged") && html.contains("card S3 does not verify"));
    let r = web
        .http
        .get(format!("{}/operator/clearing", web.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (s, _, _) = web.get("/operator/clearing", Some(&cookie)).await;
    assert_eq!(s, 401);
}
