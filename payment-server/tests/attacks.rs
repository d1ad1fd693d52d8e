//! Attacks: each refused with its error code, and nothing captured.

mod common;

use merchant_kit::{MerchantError, OrderRef};
use payment_testkit::{self as testkit, now, WidgetError};
use purse::apdu::{Response, StatusWord};
use purse::session::VerifyMode;
use purse::types::PurseId;
use purse::wire::{Hex, MerchantResult};

fn api(code: &str) -> impl Fn(&WidgetError) -> bool + '_ {
    move |e| e.code() == Some(code)
}

fn assert_code<T: std::fmt::Debug>(r: Result<T, WidgetError>, code: &str) {
    match r {
        Err(e) if api(code)(&e) => {}
        other => panic!("expected refusal {code}, got {other:?}"),
    }
}

#[tokio::test]
async fn amount_changed_in_the_draw_request() {
    let e = common::env().await;
    let mut card = testkit::test_card("6280000000000011", 5_000);
    let ws =
        e.a.session("T-amt", 900, VerifyMode::PaymentServer, now() + 600);
    let mut dr = testkit::card_draw_request(&mut card, &ws, &e.a.origin, None).unwrap();
    dr.amount = 1;
    assert_code(
        e.widget.draw(&testkit::draw_envelope(&ws, &dr)).await,
        "amount_mismatch",
    );
    // The session itself with a changed amount breaks the MAC.
    let mut ws2 = ws.clone();
    ws2.session.amount = 1;
    let dr2 = testkit::card_draw_request(&mut card, &ws2, &e.a.origin, None).unwrap();
    assert_code(
        e.widget.draw(&testkit::draw_envelope(&ws2, &dr2)).await,
        "bad_mac",
    );
    assert_eq!(common::state_of(&e.db, "shop-a", "T-amt"), None);
    assert_eq!(common::captured(&e.db), 0);
}

#[tokio::test]
async fn session_mac_forged() {
    let e = common::env().await;
    let mut card = testkit::test_card("6280000000000012", 5_000);
    let mut ws =
        e.a.session("T-mac", 100, VerifyMode::PaymentServer, now() + 600);
    ws.session_mac.0[0] ^= 1;
    let dr = testkit::card_draw_request(&mut card, &ws, &e.a.origin, None).unwrap();
    assert_code(
        e.widget.draw(&testkit::draw_envelope(&ws, &dr)).await,
        "bad_mac",
    );
    // A session MAC'd under a key the attacker made up.
    let fake = testkit::TestMerchant {
        key_hex: hex::encode([0x66; 32]),
        ..e.a.clone()
    };
    let ws = fake.session("T-mac2", 100, VerifyMode::PaymentServer, now() + 600);
    let dr = testkit::card_draw_request(&mut card, &ws, &e.a.origin, None).unwrap();
    assert_code(
        e.widget.draw(&testkit::draw_envelope(&ws, &dr)).await,
        "bad_mac",
    );
    // An unknown merchant.
    let ghost = testkit::TestMerchant::new("ghost", 0x11);
    let ws = ghost.session("T-ghost", 100, VerifyMode::PaymentServer, now() + 600);
    let dr = testkit::card_draw_request(&mut card, &ws, &ghost.origin, None).unwrap();
    assert_code(
        e.widget.draw(&testkit::draw_envelope(&ws, &dr)).await,
        "unknown_merchant",
    );
    assert_eq!(common::captured(&e.db), 0);
}

#[tokio::test]
async fn session_expired() {
    let e = common::env().await;
    let mut card = testkit::test_card("6280000000000013", 5_000);
    let ws =
        e.a.session("T-exp", 100, VerifyMode::PaymentServer, now() - 1);
    let dr = testkit::card_draw_request(&mut card, &ws, &e.a.origin, None).unwrap();
    assert_code(
        e.widget.draw(&testkit::draw_envelope(&ws, &dr)).await,
        "expired",
    );
    assert_eq!(common::state_of(&e.db, "shop-a", "T-exp"), None);
}

#[tokio::test]
async fn draw_replayed() {
    let e = common::env().await;
    let mut card = testkit::test_card("6280000000000014", 5_000);
    let ws =
        e.a.session("T-rep", 100, VerifyMode::PaymentServer, now() + 600);
    let dr = testkit::card_draw_request(&mut card, &ws, &e.a.origin, None).unwrap();
    let env = testkit::draw_envelope(&ws, &dr);
    let d = e.widget.draw(&env).await.unwrap();
    let cmd = testkit::open_debit(&ws, &d).unwrap();
    let resp = card.process(cmd.apdu.as_slice());
    e.widget
        .complete(&testkit::complete_envelope(&ws, &resp))
        .await
        .unwrap();
    assert_eq!(testkit::balance(&card), 4_900);
    // The very same draw envelope after completion: replay.
    assert_code(e.widget.draw(&env).await, "replay");
    // The same txn id with a fresh INITIALIZE (new ATC): replay.
    let dr = testkit::card_draw_request(&mut card, &ws, &e.a.origin, None).unwrap();
    assert_code(
        e.widget.draw(&testkit::draw_envelope(&ws, &dr)).await,
        "replay",
    );
    // Another txn id reusing a card's (id, ATC) already drawn: replay.
    let ws2 =
        e.a.session("T-rep2", 100, VerifyMode::PaymentServer, now() + 600);
    let ws3 =
        e.a.session("T-rep3", 100, VerifyMode::PaymentServer, now() + 600);
    let dr2 = testkit::card_draw_request(&mut card, &ws2, &e.a.origin, None).unwrap();
    e.widget
        .draw(&testkit::draw_envelope(&ws2, &dr2))
        .await
        .unwrap();
    let mut dr3 = dr2.clone();
    dr3.txn_id = "T-rep3".into();
    assert_code(
        e.widget.draw(&testkit::draw_envelope(&ws3, &dr3)).await,
        "replay",
    );
    assert_eq!(common::state_of(&e.db, "shop-a", "T-rep3"), None);
    // Retrying the identical draw while still drawn gives the stored answer (idempotent).
    let again = e
        .widget
        .draw(&testkit::draw_envelope(&ws2, &dr2))
        .await
        .unwrap();
    assert_eq!(again.txn_id, "T-rep2");
    assert_eq!(common::captured(&e.db), 100, "only the first purchase");
}

#[tokio::test]
async fn complete_replayed_with_different_s3() {
    let e = common::env().await;
    let mut card = testkit::test_card("6280000000000015", 5_000);
    let ws =
        e.a.session("T-c2", 300, VerifyMode::PaymentServer, now() + 600);
    let p = e
        .widget
        .purchase(&mut card, &ws, &e.a.origin, false)
        .await
        .unwrap();
    let mut other = p.card_response.clone();
    other[5] ^= 0xFF; // inside S3
    assert_code(
        e.widget
            .complete(&testkit::complete_envelope(&ws, &other))
            .await,
        "replay",
    );
    // Also a "card refused" answer after the capture: refused, state unchanged.
    let sw = StatusWord::FUNDS.to_bytes().to_vec();
    assert_code(
        e.widget
            .complete(&testkit::complete_envelope(&ws, &sw))
            .await,
        "replay",
    );
    assert_eq!(
        common::state_of(&e.db, "shop-a", "T-c2").as_deref(),
        Some("debited")
    );
    assert_eq!(common::captured(&e.db), 300);
}

#[tokio::test]
async fn s3_forged() {
    for mode in [VerifyMode::PaymentServer, VerifyMode::SecurityModule] {
        let e = common::env().await;
        let mut card = testkit::test_card("6280000000000016", 5_000);
        let ws = e.a.session("T-s3", 300, mode, now() + 600);
        let dr = testkit::card_draw_request(&mut card, &ws, &e.a.origin, None).unwrap();
        let d = e
            .widget
            .draw(&testkit::draw_envelope(&ws, &dr))
            .await
            .unwrap();
        let cmd = testkit::open_debit(&ws, &d).unwrap();
        // The client does not send DEBIT but claims a debit with a made-up S3.
        let forged = [&4_700u32.to_be_bytes()[..], &[0x42; 8], &[0x90, 0x00]].concat();
        assert_code(
            e.widget
                .complete(&testkit::complete_envelope(&ws, &forged))
                .await,
            "s3_mismatch",
        );
        assert_eq!(
            common::state_of(&e.db, "shop-a", "T-s3").as_deref(),
            Some("drawn")
        );
        assert_eq!(common::captured(&e.db), 0);
        assert_eq!(testkit::balance(&card), 5_000);
        // The forged attempt does not block the genuine debit and completion.
        let resp = card.process(cmd.apdu.as_slice());
        e.widget
            .complete(&testkit::complete_envelope(&ws, &resp))
            .await
            .unwrap();
        assert_eq!(common::captured(&e.db), 300);
        assert_eq!(testkit::balance(&card), 4_700);
    }
    // Merchant mode: a forged S3 sent to the merchant is refused by merchant-kit,
    // and by the server when the merchant reports it.
    let e = common::env().await;
    let mut card = testkit::test_card("6280000000000017", 5_000);
    let ws = e.a.session("T-s3m", 300, VerifyMode::Merchant, now() + 600);
    let dr = testkit::card_draw_request(&mut card, &ws, &e.a.origin, None).unwrap();
    let d = e
        .widget
        .draw(&testkit::draw_envelope(&ws, &dr))
        .await
        .unwrap();
    let forged = MerchantResult::S3 {
        txn_id: "T-s3m".into(),
        balance_after: 4_700,
        s3: Hex(vec![0x42; 8]),
        expected_s3_m: d.expected_s3_m.clone().unwrap(),
    };
    let order = OrderRef {
        txn_id: "T-s3m",
        amount: 300,
        currency: 978,
        purse: PurseId::Money,
        origin: &e.a.origin,
        verify_mode: VerifyMode::Merchant,
    };
    assert_eq!(
        e.a.kit().verify_result(&order, &forged),
        Err(MerchantError::S3Mismatch)
    );
    let body = serde_json::json!({"balance_after": 4700, "s3": "4242424242424242"});
    let r: Result<serde_json::Value, _> = e
        .widget
        .merchant_call(
            &e.a.kit(),
            "POST",
            "/v1/transactions/T-s3m/confirm",
            Some(&body),
        )
        .await;
    assert_code(r, "s3_mismatch");
    assert_eq!(common::captured(&e.db), 0);
}

#[tokio::test]
async fn result_m_forged_or_moved_to_another_order() {
    let e = common::env().await;
    let mut card = testkit::test_card("6280000000000018", 5_000);
    let kit = e.a.kit();
    let ws =
        e.a.session("T-cheap", 100, VerifyMode::PaymentServer, now() + 600);
    let p = e
        .widget
        .purchase(&mut card, &ws, &e.a.origin, false)
        .await
        .unwrap();
    let MerchantResult::ResultM { result_m, .. } = &p.merchant_result else {
        panic!()
    };
    // Moved to an expensive order of the same merchant.
    let expensive = OrderRef {
        txn_id: "T-dear",
        amount: 900,
        currency: 978,
        purse: PurseId::Money,
        origin: &e.a.origin,
        verify_mode: VerifyMode::PaymentServer,
    };
    let moved = MerchantResult::ResultM {
        txn_id: "T-dear".into(),
        result_m: result_m.clone(),
    };
    assert_eq!(
        kit.verify_result(&expensive, &moved),
        Err(MerchantError::BadSeal)
    );
    // Forged: one bit flipped, or made up by the client under TSK (which it has).
    let mut flipped = result_m.clone();
    flipped.0[20] ^= 1;
    let cheap = OrderRef {
        txn_id: "T-cheap",
        amount: 100,
        currency: 978,
        purse: PurseId::Money,
        origin: &e.a.origin,
        verify_mode: VerifyMode::PaymentServer,
    };
    assert_eq!(
        kit.verify_result(
            &cheap,
            &MerchantResult::ResultM {
                txn_id: "T-cheap".into(),
                result_m: flipped
            }
        ),
        Err(MerchantError::BadSeal)
    );
    let under_tsk = purse::session::seal(
        &ws.tsk(),
        [0; 12],
        &purse::session::aad("result-m", "T-cheap"),
        b"{}",
    );
    assert_eq!(
        kit.verify_result(
            &cheap,
            &MerchantResult::ResultM {
                txn_id: "T-cheap".into(),
                result_m: Hex(under_tsk)
            }
        ),
        Err(MerchantError::BadSeal)
    );
    // The genuine one verifies for its own order only.
    assert!(kit.verify_result(&cheap, &p.merchant_result).is_ok());
    assert_eq!(common::captured(&e.db), 100);
}

#[tokio::test]
async fn session_of_merchant_a_used_at_merchant_b() {
    let e = common::env().await;
    let mut card = testkit::test_card("6280000000000019", 5_000);
    let ws_a =
        e.a.session("T-ab", 100, VerifyMode::PaymentServer, now() + 600);
    // Relabelled as B's session: B's key does not verify A's MAC.
    let mut ws = ws_a.clone();
    ws.session.merchant_id = "shop-b".into();
    let dr = testkit::card_draw_request(&mut card, &ws, &e.a.origin, None).unwrap();
    assert_code(
        e.widget.draw(&testkit::draw_envelope(&ws, &dr)).await,
        "bad_mac",
    );
    // A's session run on B's page: the page origin differs from the session's.
    let dr = testkit::card_draw_request(&mut card, &ws_a, &e.b.origin, None).unwrap();
    assert_code(
        e.widget.draw(&testkit::draw_envelope(&ws_a, &dr)).await,
        "origin_mismatch",
    );
    // A's genuine result M handed to B: B cannot open it.
    let p = e
        .widget
        .purchase(&mut card, &ws_a, &e.a.origin, false)
        .await
        .unwrap();
    let order_b = OrderRef {
        txn_id: "T-ab",
        amount: 100,
        currency: 978,
        purse: PurseId::Money,
        origin: &e.b.origin,
        verify_mode: VerifyMode::PaymentServer,
    };
    assert_eq!(
        e.b.kit().verify_result(&order_b, &p.merchant_result),
        Err(MerchantError::BadSeal)
    );
    // B may not read A's transaction.
    let r: Result<serde_json::Value, _> = e
        .widget
        .merchant_call(&e.b.kit(), "GET", "/v1/transactions/T-ab", None)
        .await;
    assert_code(r, "not_found");
    // B only allows payment_server mode.
    let ws_b = e.b.session("T-bm", 100, VerifyMode::Client, now() + 600);
    let dr = testkit::card_draw_request(&mut card, &ws_b, &e.b.origin, None).unwrap();
    assert_code(
        e.widget.draw(&testkit::draw_envelope(&ws_b, &dr)).await,
        "mode_not_allowed",
    );
    assert_eq!(common::state_of(&e.db, "shop-b", "T-ab"), None);
}

#[tokio::test]
async fn debit_command_replayed_to_the_card() {
    let e = common::env().await;
    let mut card = testkit::test_card("6280000000000020", 5_000);
    let ws =
        e.a.session("T-dr", 400, VerifyMode::PaymentServer, now() + 600);
    let p = e
        .widget
        .purchase(&mut card, &ws, &e.a.origin, false)
        .await
        .unwrap();
    assert_eq!(testkit::balance(&card), 4_600);
    let cmd = testkit::open_debit(&ws, &p.draw).unwrap();
    // Straight again: no INITIALIZE pending.
    let r = Response::parse(&card.process(cmd.apdu.as_slice())).unwrap();
    assert_eq!(r.sw, StatusWord::NO_INITIALIZE);
    // After a fresh INITIALIZE (new ATC and R): the old S2 does not verify.
    let ws2 =
        e.a.session("T-dr2", 400, VerifyMode::PaymentServer, now() + 600);
    testkit::card_draw_request(&mut card, &ws2, &e.a.origin, None).unwrap();
    let r = Response::parse(&card.process(cmd.apdu.as_slice())).unwrap();
    assert_eq!(r.sw, StatusWord::MAC_WRONG);
    assert_eq!(testkit::balance(&card), 4_600, "debited once");
    assert_eq!(common::captured(&e.db), 400);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_json_errors() {
    let e = common::env().await;
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{}/v1/purchases/draw", e.widget.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let b: purse::wire::ErrorBody = r.json().await.unwrap();
    assert_eq!(b.error.code, "malformed");
    let big = vec![b'x'; 200 * 1024];
    let r = c
        .post(format!("{}/v1/purchases/complete", e.widget.base))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let b: purse::wire::ErrorBody = r.json().await.unwrap();
    assert_eq!(b.error.code, "body_too_large");
    // A txn id outside the allowed alphabet is refused before anything else.
    let ws =
        e.a.session("T/../x", 100, VerifyMode::PaymentServer, now() + 600);
    let mut card = testkit::test_card("6280000000000022", 1_000);
    let dr = testkit::card_draw_request(&mut card, &ws, &e.a.origin, None).unwrap();
    assert_code(
        e.widget.draw(&testkit::draw_envelope(&ws, &dr)).await,
        "malformed",
    );
    let r = c
        .get(format!("{}/v1/transactions/x", e.widget.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let b: purse::wire::ErrorBody = r.json().await.unwrap();
    assert_eq!(b.error.code, "unauthorized");
}

#[tokio::test]
async fn suspicious_report_is_visible_to_the_merchant() {
    let e = common::env().await;
    let mut card = testkit::test_card("6280000000000021", 5_000);
    let ws =
        e.a.session("T-sus", 100, VerifyMode::PaymentServer, now() + 600);
    let dr = testkit::card_draw_request(&mut card, &ws, &e.a.origin, None).unwrap();
    e.widget
        .draw(&testkit::draw_envelope(&ws, &dr))
        .await
        .unwrap();
    let rep = purse::wire::SuspiciousReport {
        txn_id: "T-sus".into(),
        page_origin: e.a.origin.clone(),
        reason: "not my purchase".into(),
    };
    let sealed = purse::session::seal(
        &ws.tsk(),
        [3; 12],
        &purse::session::aad("suspicious", "T-sus"),
        &serde_json::to_vec(&rep).unwrap(),
    );
    let env = purse::wire::SuspiciousEnvelope {
        session: ws.session.clone(),
        session_mac: ws.session_mac.clone(),
        etsk: ws.etsk.clone(),
        report: Hex(sealed),
    };
    let ack: purse::wire::SuspiciousAck = e
        .widget
        .post("/v1/purchases/suspicious", &env)
        .await
        .unwrap();
    assert!(ack.recorded);
    let v: payment_server::service::TxnView = e
        .widget
        .merchant_call(&e.a.kit(), "GET", "/v1/transactions/T-sus", None)
        .await
        .unwrap();
    assert_eq!(v.suspicious_reports.len(), 1);
    assert_eq!(v.suspicious_reports[0].reason, "not my purchase");
    // Also listed for the merchant (and not for another merchant).
    let l: payment_server::service::SuspiciousList = e
        .widget
        .merchant_call(&e.a.kit(), "GET", "/v1/suspicious", None)
        .await
        .unwrap();
    assert_eq!(l.reports.len(), 1);
    assert_eq!(l.reports[0].txn_id, "T-sus");
    let l: payment_server::service::SuspiciousList = e
        .widget
        .merchant_call(&e.b.kit(), "GET", "/v1/suspicious", None)
        .await
        .unwrap();
    assert!(l.reports.is_empty());
    // A report under a forged session MAC is refused and not recorded.
    let mut bad = env.clone();
    bad.session_mac.0[3] ^= 1;
    let r: Result<purse::wire::SuspiciousAck, _> =
        e.widget.post("/v1/purchases/suspicious", &bad).await;
    assert_eq!(r.unwrap_err().code(), Some("bad_mac"));
}
