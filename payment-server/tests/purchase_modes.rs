//! A full purchase in each verify mode over real HTTP and a real SQLite file,
//! the widget's part played against the virtual card.

mod common;

use merchant_kit::OrderRef;
use payment_server::service::{TxnState, TxnView};
use payment_testkit::{self as testkit, now};
use purse::session::VerifyMode;
use purse::types::PurseId;
use purse::wire::PurchaseStatus;

async fn one_purchase(mode: VerifyMode, background_complete: bool) -> (TxnView, u32) {
    let e = common::env().await;
    let mut card = testkit::test_card("6280000000000001", 5_000);
    let txn = format!("T-{}", mode.as_str());
    let ws = e.a.session(&txn, 750, mode, now() + 600);
    let p = e
        .widget
        .purchase(&mut card, &ws, &e.a.origin, background_complete)
        .await
        .unwrap();
    assert_eq!(testkit::balance(&card), 4_250, "card debited exactly once");
    if let Some(c) = &p.result_c {
        assert_eq!(c.status, PurchaseStatus::Debited);
        assert_eq!(c.balance_after, Some(4_250));
    }
    // The merchant verifies what the widget brought.
    let kit = e.a.kit();
    let order = OrderRef {
        txn_id: &txn,
        amount: 750,
        currency: 978,
        purse: PurseId::Money,
        origin: &e.a.origin,
        verify_mode: mode,
    };
    let paid = kit.verify_result(&order, &p.merchant_result).unwrap();
    assert_eq!(paid.amount, 750);
    assert_eq!(paid.card, "…0001");
    // The merchant confirms (in merchant mode with the S3 it compared).
    let body = match (&p.merchant_result, &p.complete) {
        (
            purse::wire::MerchantResult::S3 {
                balance_after, s3, ..
            },
            None,
        ) => {
            serde_json::json!({"balance_after": balance_after, "s3": s3})
        }
        _ => serde_json::json!({}),
    };
    let v: TxnView = e
        .widget
        .merchant_call(
            &kit,
            "POST",
            &format!("/v1/transactions/{txn}/confirm"),
            Some(&body),
        )
        .await
        .unwrap();
    assert_eq!(v.state, TxnState::Confirmed);
    let v: TxnView = e
        .widget
        .merchant_call(&kit, "GET", &format!("/v1/transactions/{txn}"), None)
        .await
        .unwrap();
    assert_eq!(
        common::state_of(&e.db, "shop-a", &txn).as_deref(),
        Some("confirmed")
    );
    assert_eq!(common::captured(&e.db), 750);
    (v, testkit::balance(&card))
}

#[tokio::test]
async fn purchase_in_payment_server_mode() {
    let (v, bal) = one_purchase(VerifyMode::PaymentServer, false).await;
    assert_eq!(v.verify_mode, VerifyMode::PaymentServer);
    assert_eq!(bal, 4_250);
    let events: Vec<_> = v.log.iter().map(|l| l.event.as_str()).collect();
    assert_eq!(events, ["draw", "complete", "confirm"]);
    assert!(v.debited_at.is_some() && v.confirmed_at.is_some());
    assert_eq!(v.card, "…0001");
}

#[tokio::test]
async fn purchase_in_security_module_mode() {
    let (v, _) = one_purchase(VerifyMode::SecurityModule, false).await;
    assert_eq!(v.verify_mode, VerifyMode::SecurityModule);
    assert_eq!(v.log[1].detail, "S3 verified");
}

#[tokio::test]
async fn purchase_in_client_mode() {
    // The widget compares S3 itself and captures in the background.
    let (v, _) = one_purchase(VerifyMode::Client, true).await;
    assert_eq!(v.verify_mode, VerifyMode::Client);
    let events: Vec<_> = v.log.iter().map(|l| l.event.as_str()).collect();
    assert_eq!(events, ["draw", "complete", "confirm"]);
}

#[tokio::test]
async fn purchase_in_merchant_mode() {
    // One round trip: the merchant compares S3 and reports it to capture.
    let (v, _) = one_purchase(VerifyMode::Merchant, false).await;
    assert_eq!(v.verify_mode, VerifyMode::Merchant);
    let events: Vec<_> = v.log.iter().map(|l| l.event.as_str()).collect();
    assert_eq!(events, ["draw", "confirm"]);
}

#[tokio::test]
async fn late_background_complete_after_merchant_confirm() {
    // Merchant mode: the merchant confirms with S3 first; the widget's background
    // complete arrives later and gets results, without a second capture.
    let e = common::env().await;
    let mut card = testkit::test_card("6280000000000004", 1_000);
    let ws =
        e.a.session("T-late", 120, VerifyMode::Merchant, now() + 600);
    let p = e
        .widget
        .purchase(&mut card, &ws, &e.a.origin, false)
        .await
        .unwrap();
    let purse::wire::MerchantResult::S3 {
        balance_after, s3, ..
    } = &p.merchant_result
    else {
        panic!("merchant mode gives S3")
    };
    let body = serde_json::json!({"balance_after": balance_after, "s3": s3});
    let _: TxnView = e
        .widget
        .merchant_call(
            &e.a.kit(),
            "POST",
            "/v1/transactions/T-late/confirm",
            Some(&body),
        )
        .await
        .unwrap();
    let late = e
        .widget
        .complete(&testkit::complete_envelope(&ws, &p.card_response))
        .await
        .unwrap();
    assert_eq!(late.status, PurchaseStatus::Debited);
    assert_eq!(
        common::state_of(&e.db, "shop-a", "T-late").as_deref(),
        Some("confirmed")
    );
    assert_eq!(common::captured(&e.db), 120);
    // A different answer now is a replay.
    let mut other = p.card_response.clone();
    other[6] ^= 1;
    let r = e
        .widget
        .complete(&testkit::complete_envelope(&ws, &other))
        .await;
    assert_eq!(r.unwrap_err().code(), Some("replay"));
}

#[tokio::test]
async fn complete_is_idempotent_and_health_and_openapi_answer() {
    let e = common::env().await;
    let mut card = testkit::test_card("6280000000000002", 1_000);
    let ws =
        e.a.session("T-idem", 100, VerifyMode::PaymentServer, now() + 600);
    let p = e
        .widget
        .purchase(&mut card, &ws, &e.a.origin, false)
        .await
        .unwrap();
    // The same debit response again (re-sealed with a new nonce): the same stored answer.
    let again = e
        .widget
        .complete(&testkit::complete_envelope(&ws, &p.card_response))
        .await
        .unwrap();
    assert_eq!(Some(&again), p.complete.as_ref());
    assert_eq!(common::captured(&e.db), 100);
    let h: serde_json::Value = reqwest::get(format!("{}/healthz", e.widget.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    let o: serde_json::Value = reqwest::get(format!("{}/openapi.json", e.widget.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(o["paths"]["/v1/purchases/draw"].is_object());
    let missing = reqwest::get(format!("{}/nope", e.widget.base))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn card_refusal_is_recorded_as_failed_and_nothing_captured() {
    let e = common::env().await;
    let mut card = testkit::test_card("6280000000000003", 1_000);
    let ws =
        e.a.session("T-fail", 100, VerifyMode::PaymentServer, now() + 600);
    let dr = testkit::card_draw_request(&mut card, &ws, &e.a.origin, None).unwrap();
    let _draw = e
        .widget
        .draw(&testkit::draw_envelope(&ws, &dr))
        .await
        .unwrap();
    // The card lost power: the pending INITIALIZE is gone, DEBIT answers 6985.
    card.reset();
    let sw = purse::apdu::StatusWord::NO_INITIALIZE.to_bytes().to_vec();
    let c = e
        .widget
        .complete(&testkit::complete_envelope(&ws, &sw))
        .await
        .unwrap();
    assert_eq!(c.status, PurchaseStatus::Failed);
    let rc = testkit::open_result_c(&ws, &c).unwrap();
    assert_eq!(rc.card_sw.as_deref(), Some("6985"));
    assert_eq!(
        common::state_of(&e.db, "shop-a", "T-fail").as_deref(),
        Some("failed")
    );
    assert_eq!(common::captured(&e.db), 0);
    assert_eq!(testkit::balance(&card), 1_000);
    // result M says failed: the merchant-kit refuses to release goods.
    let order = OrderRef {
        txn_id: "T-fail",
        amount: 100,
        currency: 978,
        purse: PurseId::Money,
        origin: &e.a.origin,
        verify_mode: VerifyMode::PaymentServer,
    };
    let r = purse::wire::MerchantResult::ResultM {
        txn_id: "T-fail".into(),
        result_m: c.result_m,
    };
    assert_eq!(
        e.a.kit().verify_result(&order, &r),
        Err(merchant_kit::MerchantError::NotDebited)
    );
}

#[tokio::test]
async fn serves_www_dir_and_cors_for_the_payment_origin() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("checkout.js"), "/* loader */").unwrap();
    let a = testkit::TestMerchant::new("shop-a", 0xA1);
    let toml = testkit::test_config_toml(&dir.path().join("p.sqlite"), &[a], 0);
    let mut config = payment_server::Config::from_toml(&toml, |_| None).unwrap();
    config.www_dir = Some(www);
    config.cors_origins = vec!["http://pay.test".into()];
    let (addr, _svc) = testkit::spawn_server(&config).await;
    let c = reqwest::Client::new();
    let js = c
        .get(format!("http://{addr}/checkout.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert_eq!(js.text().await.unwrap(), "/* loader */");
    let pre = c
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{addr}/v1/purchases/draw"),
        )
        .header("origin", "http://pay.test")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "http://pay.test"
    );
    let other = c
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{addr}/v1/purchases/draw"),
        )
        .header("origin", "http://evil.test")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}
