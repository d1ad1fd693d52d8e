//! Attacks by a hostile client, page or merchant: each is refused with its
//! stable code and nothing moves. Money: after every attack the server's
//! captured total equals what the test cards were really debited.

use merchant_kit::{MerchantError, OrderRef, Verified};
use payment_testkit::*;
use purse::apdu::{Response, StatusWord};
use purse::command::{
    DebitResponse, InitializeLoadResponse, InitializePurchaseResponse, LogRecord, SelectResponse,
};
use purse::merchant_api::{SuspiciousList, TxnView};
use purse::purchase::client::{Outgoing, Problem};
use purse::purchase::{
    CompleteEnvelope, DebitCommand, DebitResponseMsg, DrawRequest, DrawResponse, MerchantResult,
    RecoverEnvelope, RecoverRequest, RecoverResponse, RecoverStatus, PATH_COMPLETE, PATH_DRAW,
    PATH_RECOVER,
};
use purse::session::VerifyMode;
use purse::types::{CardId, PurseId};
use purse::wire::{ApiCode, Hex, Sealed};

async fn server() -> TestServer {
    let a = TestMerchant::new("shop-a", 0xA1);
    let mut b = TestMerchant::new("shop-b", 0xB2);
    b.modes = vec![VerifyMode::PaymentServer];
    TestServer::start(&[a, b]).await
}

fn refused(out: &Outcome, code: ApiCode) {
    assert_eq!(out.problem(), Some(Problem::ServerRefused(code)), "{out:?}");
}

#[tokio::test]
async fn amount_changed_in_the_draw_request_or_the_session() {
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000011", 5_000), srv.api());
    let ws = m.session("T-amt", 900, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws);
    let out = shopper
        .run(&mut c, &mut |r: &mut Outgoing| {
            if is_post(r, PATH_DRAW) {
                rewrite::<DrawRequest>(r, &ws, "draw_request", |d| d.amount = 1);
            }
            Cut::None
        })
        .await;
    refused(&out, ApiCode::AmountMismatch);
    // The session itself with a changed amount breaks the MAC.
    let mut ws2 = m.session("T-amt2", 900, VerifyMode::PaymentServer, now() + 600);
    ws2.session.amount = 1;
    let out = shopper.pay(&ws2).await;
    refused(&out, ApiCode::BadMac);
    assert_eq!(srv.state_of("shop-a", "T-amt"), None);
    assert_eq!(srv.captured(), 0);
    assert_eq!(balance(&shopper.card), 5_000);
}

/// The cipher is the driver's (WebCrypto in the browser): what a driver seals
/// or opens wrongly moves nothing. A draw request sealed under another
/// message's label is refused by the server; a debit command that does not
/// open is never sent to the card. Money: nothing captured, the card untouched.
#[tokio::test]
async fn a_driver_that_seals_or_opens_wrongly_moves_nothing() {
    use purse::purchase::client::Crypto;
    use purse::session::{aad, label};
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000019", 5_000), srv.api());

    let ws = m.session("T-lbl", 700, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws);
    let out = shopper
        .run(&mut c, &mut |r: &mut Outgoing| {
            if let Outgoing::Crypto(Crypto::Seal { aad: a, .. }) = r {
                if *a == aad(label::DRAW_REQUEST, "T-lbl") {
                    *a = aad(label::DEBIT_RESPONSE, "T-lbl");
                }
            }
            Cut::None
        })
        .await;
    refused(&out, ApiCode::BadSeal);

    let ws = m.session("T-open", 700, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws);
    shopper.trace.clear();
    let mut opened = 0;
    let out = shopper
        .run(&mut c, &mut |r: &mut Outgoing| {
            if let Outgoing::Crypto(Crypto::Open { aad: a, sealed, .. }) = r {
                assert_eq!(*a, aad(label::DEBIT_COMMAND, "T-open"));
                opened += 1;
                sealed[20] ^= 1;
            }
            Cut::None
        })
        .await;
    refused(&out, ApiCode::BadSeal);
    assert_eq!(opened, 1);
    assert!(
        !shopper.trace.iter().any(is_debit),
        "no DEBIT without a debit command that opened"
    );

    assert_eq!(srv.state_of("shop-a", "T-lbl"), None);
    assert_eq!(srv.captured(), 0);
    assert_eq!(balance(&shopper.card), 5_000);

    // Mode client: a hash of something else than the card's answer does not
    // match the check value, so the client does not report the S3 itself; the
    // server checks the card's answer and captures once.
    let ws = m.session("T-hash", 700, VerifyMode::Client, now() + 600);
    let mut c = shopper.client(&ws);
    let mut hashed = 0;
    let out = shopper
        .run(&mut c, &mut |r: &mut Outgoing| {
            if let Outgoing::Crypto(Crypto::Digest { data }) = r {
                hashed += 1;
                data[0] ^= 1;
            }
            Cut::None
        })
        .await;
    assert_eq!(hashed, 1);
    let Outcome::Paid { result, .. } = &out else {
        panic!("{out:?}");
    };
    assert!(
        matches!(result, MerchantResult::ResultM { .. }),
        "{result:?}"
    );
    assert_eq!(srv.state_of("shop-a", "T-hash").as_deref(), Some("debited"));
    assert_eq!(srv.captured(), 700);
    assert_eq!(balance(&shopper.card), 4_300);
}

#[tokio::test]
async fn forged_sessions_expired_sessions_and_other_merchants_keys() {
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000012", 5_000), srv.api());
    let mut ws = m.session("T-mac", 100, VerifyMode::PaymentServer, now() + 600);
    ws.session_mac.0[0] ^= 1;
    refused(&shopper.pay(&ws).await, ApiCode::BadMac);
    // A session MAC'd under a key the attacker made up.
    let mut fake = TestMerchant::new("shop-a", 0x66);
    fake.origin = m.origin.clone();
    refused(
        &shopper
            .pay(&fake.session("T-fake", 100, VerifyMode::PaymentServer, now() + 600))
            .await,
        ApiCode::BadMac,
    );
    // Expired.
    refused(
        &shopper
            .pay(&m.session("T-old", 100, VerifyMode::PaymentServer, now() - 1))
            .await,
        ApiCode::Expired,
    );
    // Merchant A's session presented as merchant B's: B's key does not make its MAC.
    let b = &srv.merchants[1];
    let mut ws_b = m.session("T-ab", 100, VerifyMode::PaymentServer, now() + 600);
    ws_b.session.merchant_id = b.id.clone();
    refused(&shopper.pay(&ws_b).await, ApiCode::BadMac);
    // B with a mode B does not allow (and B's own key).
    refused(
        &shopper
            .pay(&b.session("T-bm", 100, VerifyMode::Merchant, now() + 600))
            .await,
        ApiCode::ModeNotAllowed,
    );
    // A page of another origin cannot use the session at all.
    let r = purse::purchase::client::Client::new(
        ws.clone(),
        "http://evil.test",
        Box::new(OsEntropy),
        None,
    );
    assert!(r.is_err());
    assert_eq!(srv.captured(), 0);
    assert_eq!(balance(&shopper.card), 5_000);
}

#[tokio::test]
async fn client_mode_forgery_without_a_debit_is_refused_and_captures_nothing() {
    // The hole this closes: the debit command used to carry the expected S3 in
    // clear, so a client could skip DEBIT and post `balance || S3 || 9000`.
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000013", 5_000), srv.api());
    let ws = m.session("T-cf", 1_000, VerifyMode::Client, now() + 600);
    let mut c = shopper.client(&ws);
    let mut draw_answer = None;
    // Run up to the DEBIT and keep it from the card.
    let out = shopper.run(&mut c, &mut cut_debit(Cut::CardBefore)).await;
    assert_eq!(out.problem(), Some(Problem::Torn));
    for o in &shopper.trace {
        if let Outgoing::Server { path, body } = o {
            if *path == PATH_DRAW {
                draw_answer = Some(body.clone());
            }
        }
    }
    assert!(draw_answer.is_some());
    // What the client holds: the sealed debit command. Replay the draw to see it.
    let (status, text) = srv
        .api()
        .post_raw(PATH_DRAW, draw_answer.unwrap())
        .await
        .unwrap();
    assert_eq!(status, 200, "{text}");
    let d: DrawResponse = serde_json::from_str(&text).unwrap();
    let tsk = ws.tsk().unwrap();
    let cmd = DebitCommand::open(&tsk, "T-cf", d.debit_command.as_slice()).unwrap();
    let check = cmd
        .check_value
        .clone()
        .expect("client mode has a check value");
    assert_eq!(check.0.len(), 32);
    // The expected S3 itself is nowhere in what the client gets.
    let plain = serde_json::to_string(&cmd).unwrap();
    assert!(!plain.contains("expected_s3"));
    // Forge an answer: the client cannot invert the check value, so it guesses.
    for guess in [[0u8; 8], [0xFF; 8], check.0[..8].try_into().unwrap()] {
        let mut forged = DebitResponse {
            balance_after: cmd.balance_after,
            s3: guess,
        }
        .encode();
        forged.extend_from_slice(&[0x90, 0x00]);
        let msg = DebitResponseMsg {
            txn_id: "T-cf".into(),
            response: Hex(forged),
        };
        let env = CompleteEnvelope {
            session: ws.session.clone(),
            session_mac: ws.session_mac.clone(),
            etsk: ws.etsk.clone(),
            debit_response: msg.seal(&tsk, [guess[0]; 12]),
        };
        let r: Result<serde_json::Value, _> = srv.api().post(PATH_COMPLETE, &env).await;
        assert_eq!(r.unwrap_err().code(), Some(ApiCode::S3Mismatch));
        // Nor through the merchant's confirm.
        let body =
            serde_json::json!({"balance_after": cmd.balance_after, "s3": hex::encode(guess)});
        let r: Result<TxnView, _> = srv
            .api()
            .merchant_call(
                &m.kit(),
                "POST",
                "/v1/transactions/T-cf/confirm",
                Some(&body),
            )
            .await;
        assert_eq!(r.unwrap_err().code(), Some(ApiCode::S3Mismatch));
    }
    assert_eq!(srv.state_of("shop-a", "T-cf").as_deref(), Some("drawn"));
    assert_eq!(srv.captured(), 0, "nothing captured");
    assert_eq!(balance(&shopper.card), 5_000, "the card was never debited");
}

#[tokio::test]
async fn forged_and_replayed_card_answers() {
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000014", 5_000), srv.api());
    let ws = m.session("T-s3", 500, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws);
    // The card's real answer, with one bit of S3 flipped on the way to the server.
    let out = shopper
        .run(&mut c, &mut |r: &mut Outgoing| {
            if is_post(r, PATH_COMPLETE) {
                rewrite::<DebitResponseMsg>(r, &ws, "debit_response", |d| d.response.0[5] ^= 1);
            }
            Cut::None
        })
        .await;
    refused(&out, ApiCode::S3Mismatch);
    assert_eq!(srv.captured(), 0);
    assert_eq!(balance(&shopper.card), 4_500, "the card was debited ...");
    // ... and its own log proves it: the next use of the card captures it.
    let out = shopper
        .pay(&m.session("T-s3b", 100, VerifyMode::PaymentServer, now() + 600))
        .await;
    assert!(out.is_paid());
    assert_eq!(srv.state_of("shop-a", "T-s3").as_deref(), Some("debited"));
    assert_eq!(srv.captured(), 600);
    assert_eq!(balance(&shopper.card), 4_400);
    // The DEBIT APDU replayed to the card: no INITIALIZE pending, then a wrong MAC.
    let debit = shopper
        .trace
        .iter()
        .rev()
        .find_map(|r| match r {
            Outgoing::Card(a) if is_debit(r) => Some(a.clone()),
            _ => None,
        })
        .unwrap();
    let r = Response::parse(&shopper.card.process(&debit)).unwrap();
    assert_eq!(r.sw, StatusWord::NO_INITIALIZE);
    assert_eq!(balance(&shopper.card), 4_400, "debited once");
}

#[tokio::test]
async fn draws_replayed_under_the_same_txn_or_the_same_card_atc() {
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000015", 5_000), srv.api());
    let ws = m.session("T-rp", 300, VerifyMode::PaymentServer, now() + 600);
    assert!(shopper.pay(&ws).await.is_paid());
    let draw_body = shopper
        .trace
        .iter()
        .find_map(|r| match r {
            Outgoing::Server { path, body } if *path == PATH_DRAW => Some(body.clone()),
            _ => None,
        })
        .unwrap();
    // The same draw after the purchase completed: a replay.
    let (status, text) = srv
        .api()
        .post_raw(PATH_DRAW, draw_body.clone())
        .await
        .unwrap();
    assert_eq!(status, 409, "{text}");
    // The card's INITIALIZE answer moved into another transaction's draw.
    let ws2 = m.session("T-rp2", 300, VerifyMode::PaymentServer, now() + 600);
    let tsk1 = ws.tsk().unwrap();
    let v: serde_json::Value = serde_json::from_str(&draw_body).unwrap();
    let sealed: Hex = serde_json::from_value(v["draw_request"].clone()).unwrap();
    let mut dr = DrawRequest::open(&tsk1, "T-rp", sealed.as_slice()).unwrap();
    dr.txn_id = "T-rp2".into();
    let env = purse::purchase::DrawEnvelope {
        session: ws2.session.clone(),
        session_mac: ws2.session_mac.clone(),
        etsk: ws2.etsk.clone(),
        draw_request: dr.seal(&ws2.tsk().unwrap(), [9; 12]),
    };
    let r: Result<DrawResponse, _> = srv.api().post(PATH_DRAW, &env).await;
    assert_eq!(
        r.unwrap_err().code(),
        Some(ApiCode::Replay),
        "(card, ATC) used once"
    );
    assert_eq!(srv.captured(), 300);
}

#[tokio::test]
async fn result_m_forged_or_moved_to_another_order() {
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000016", 5_000), srv.api());
    let out = shopper
        .pay(&m.session("T-rm", 250, VerifyMode::PaymentServer, now() + 600))
        .await;
    let Some(MerchantResult::ResultM { result_m, .. }) = out.result().cloned() else {
        panic!("{out:?}")
    };
    let kit = m.kit();
    let order = |txn: &'static str, amount| OrderRef {
        txn_id: txn,
        order_ref: "",
        amount,
        currency: 978,
        exponent: 2,
        purse: PurseId::Money,
        origin: "http://shop-a.test",
        verify_mode: VerifyMode::PaymentServer,
    };
    let genuine = MerchantResult::ResultM {
        txn_id: "T-rm".into(),
        result_m: result_m.clone(),
    };
    assert!(matches!(
        kit.verify_result(&order("T-rm", 250), &genuine),
        Ok(Verified::Captured(_))
    ));
    // The same result presented for a dearer order: amount check.
    assert_eq!(
        kit.verify_result(&order("T-rm", 2_500), &genuine),
        Err(MerchantError::WrongOrder("amount"))
    );
    // Moved to another transaction: does not open under that one's DK.
    let moved = MerchantResult::ResultM {
        txn_id: "T-other".into(),
        result_m: result_m.clone(),
    };
    assert_eq!(
        kit.verify_result(&order("T-other", 250), &moved),
        Err(MerchantError::BadSeal)
    );
    // Tampered.
    let mut t = result_m.clone();
    t.0[20] ^= 1;
    let forged = MerchantResult::ResultM {
        txn_id: "T-rm".into(),
        result_m: t,
    };
    assert_eq!(
        kit.verify_result(&order("T-rm", 250), &forged),
        Err(MerchantError::BadSeal)
    );
    // Another merchant's kit cannot open it.
    assert_eq!(
        srv.merchants[1]
            .kit()
            .verify_result(&order("T-rm", 250), &genuine),
        Err(MerchantError::BadSeal)
    );
}

/// A torn purchase on a card: drawn, DEBIT applied by the card, answer lost.
async fn torn_purchase(srv: &TestServer, card: &str, txn: &str, amount: u32) -> Shopper {
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card(card, 5_000), srv.api());
    let ws = m.session(txn, amount, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws);
    let out = shopper.run(&mut c, &mut cut_debit(Cut::CardAfter)).await;
    assert_eq!(out.problem(), Some(Problem::Torn));
    assert_eq!(srv.state_of("shop-a", txn).as_deref(), Some("drawn"));
    shopper.card_present = true;
    shopper
}

/// A recover request with `log` and, if given, the card's proof (the data of
/// its INITIALIZE FOR LOAD of 0).
fn recover_body(
    ws: &purse::purchase::WidgetSession,
    log: Vec<Hex>,
    proof: Option<Vec<u8>>,
    nonce: u8,
) -> RecoverEnvelope {
    let req = RecoverRequest {
        txn_id: ws.session.txn_id.clone(),
        log,
        initialize_load: proof.map(Hex),
    };
    RecoverEnvelope {
        session: ws.session.clone(),
        session_mac: ws.session_mac.clone(),
        etsk: ws.etsk.clone(),
        recover_request: req.seal(&ws.tsk().unwrap(), [nonce; 12]),
    }
}

#[tokio::test]
async fn forged_moved_and_replayed_log_records_are_refused() {
    let srv = server().await;
    let m = &srv.merchants[0];
    let ws = m.session("T-lr", 700, VerifyMode::PaymentServer, now() + 600);
    let mut shopper = torn_purchase(&srv, "6280000000000017", "T-lr", 700).await;
    let log = shopper.card_log();
    assert_eq!(log.len(), 1);
    let genuine = log[0];
    let enc = |r: &LogRecord| Hex(r.encode());
    // 1. A forged S3 (one bit) for the right ATC: refused whole.
    let mut forged = genuine;
    forged.s3[0] ^= 1;
    let r: Result<RecoverResponse, _> = srv
        .api()
        .post(
            PATH_RECOVER,
            &recover_body(&ws, vec![enc(&forged)], None, 1),
        )
        .await;
    assert_eq!(r.unwrap_err().code(), Some(ApiCode::BadLogRecord));
    // 2. The amount or balance changed in the record: refused.
    for change in [
        |r: &mut LogRecord| r.amount += 1,
        |r: &mut LogRecord| r.balance_after += 1,
    ] {
        let mut x = genuine;
        change(&mut x);
        let r: Result<RecoverResponse, _> = srv
            .api()
            .post(PATH_RECOVER, &recover_body(&ws, vec![enc(&x)], None, 2))
            .await;
        assert_eq!(r.unwrap_err().code(), Some(ApiCode::BadLogRecord));
    }
    assert_eq!(
        srv.state_of("shop-a", "T-lr").as_deref(),
        Some("drawn"),
        "nothing changed"
    );
    // 3. A genuine record of another card, presented for this transaction
    //    (same ATC 1 on both cards): it does not verify for this card.
    let mut other = torn_purchase(&srv, "6280000000000018", "T-lr-other", 700).await;
    let their = other.card_log()[0];
    assert_eq!(their.atc, genuine.atc);
    let r: Result<RecoverResponse, _> = srv
        .api()
        .post(PATH_RECOVER, &recover_body(&ws, vec![enc(&their)], None, 3))
        .await;
    assert_eq!(r.unwrap_err().code(), Some(ApiCode::BadLogRecord));
    assert_eq!(srv.state_of("shop-a", "T-lr").as_deref(), Some("drawn"));
    // 4. A forged record inside a draw refuses the draw and changes nothing.
    let ws_d = m.session("T-lr-d", 100, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws_d);
    let out = shopper
        .run(&mut c, &mut |r: &mut Outgoing| {
            if is_post(r, PATH_DRAW) {
                rewrite::<DrawRequest>(r, &ws_d, "draw_request", |d| d.log = vec![enc(&forged)]);
            }
            Cut::None
        })
        .await;
    refused(&out, ApiCode::BadLogRecord);
    assert_eq!(srv.state_of("shop-a", "T-lr").as_deref(), Some("drawn"));
    assert_eq!(srv.state_of("shop-a", "T-lr-d"), None);
    // 5. The genuine record decides: captured once; replaying it changes nothing.
    for n in 0..2 {
        let r: RecoverResponse = srv
            .api()
            .post(
                PATH_RECOVER,
                &recover_body(&ws, vec![enc(&genuine)], None, 10 + n),
            )
            .await
            .unwrap();
        assert_eq!(r.status, RecoverStatus::Debited);
    }
    // Replayed into another card's transaction recovery: refused, untouched.
    let r: Result<RecoverResponse, _> = srv
        .api()
        .post(
            PATH_RECOVER,
            &recover_body(
                &m.session("T-lr-other", 700, VerifyMode::PaymentServer, now() + 600),
                vec![enc(&genuine)],
                None,
                20,
            ),
        )
        .await;
    assert_eq!(r.unwrap_err().code(), Some(ApiCode::BadLogRecord));
    assert_eq!(
        srv.state_of("shop-a", "T-lr-other").as_deref(),
        Some("drawn")
    );
    assert_eq!(srv.captured(), 700, "the one real debit, once");
    assert_eq!(balance(&shopper.card), 4_300);
    assert_eq!(balance(&other.card), 4_300);
}

#[tokio::test]
async fn one_capture_per_order() {
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000019", 5_000), srv.api());
    // Attempt 1 is drawn, its DEBIT lost before the card: undecided.
    let ws1 = m.session_for_order(
        "T-o1",
        "order-9",
        800,
        VerifyMode::PaymentServer,
        now() + 600,
    );
    let mut c = shopper.client(&ws1);
    let out = shopper.run(&mut c, &mut cut_debit(Cut::CardBefore)).await;
    assert_eq!(out.problem(), Some(Problem::Torn));
    // Another card pays attempt 2 of the same order meanwhile: refused, attempt 1 is open.
    let mut other = Shopper::new(test_card("6280000000000029", 5_000), srv.api());
    let ws2 = m.session_for_order(
        "T-o2",
        "order-9",
        800,
        VerifyMode::PaymentServer,
        now() + 600,
    );
    refused(&other.pay(&ws2).await, ApiCode::OrderInFlight);
    // The first card back: its draw for attempt 3 carries its log; the log
    // decides attempt 1 (never debited) and attempt 3 goes through.
    shopper.card_present = true;
    let ws3 = m.session_for_order(
        "T-o3",
        "order-9",
        800,
        VerifyMode::PaymentServer,
        now() + 600,
    );
    assert!(shopper.pay(&ws3).await.is_paid());
    assert_eq!(srv.state_of("shop-a", "T-o1").as_deref(), Some("failed"));
    // Paid: every further attempt is refused.
    let ws4 = m.session_for_order(
        "T-o4",
        "order-9",
        800,
        VerifyMode::PaymentServer,
        now() + 600,
    );
    refused(&other.pay(&ws4).await, ApiCode::OrderPaid);
    assert_eq!(srv.captured(), 800);
    assert_eq!(balance(&shopper.card), 4_200);
    assert_eq!(balance(&other.card), 5_000);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_json_errors() {
    let srv = server().await;
    let base = srv.api().base;
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{base}/v1/purchases/draw"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let b: purse::wire::ErrorBody = r.json().await.unwrap();
    assert_eq!(b.error.code, ApiCode::Malformed);
    let r = c
        .post(format!("{base}/v1/purchases/complete"))
        .body(vec![b'x'; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let b: purse::wire::ErrorBody = r.json().await.unwrap();
    assert_eq!(b.error.code, ApiCode::BodyTooLarge);
    // Duplicate keys, and amounts that are no u32 (negative, 2^32, a
    // fraction): refused whole as malformed, before any MAC is computed.
    let ws = srv.merchants[0].session("T-dup", 100, VerifyMode::PaymentServer, now() + 600);
    let good = serde_json::json!({
        "session": ws.session, "session_mac": ws.session_mac, "etsk": ws.etsk,
        "draw_request": "00",
    })
    .to_string();
    let dup = good.replacen("\"etsk\":", "\"etsk\":\"00\",\"etsk\":", 1);
    let amount = format!("\"amount\":{}", ws.session.amount);
    let mut bodies = vec![dup];
    for n in ["-1", "4294967296", "1.5", "1e2"] {
        bodies.push(good.replacen(&amount, &format!("\"amount\":{n}"), 1));
    }
    for b in bodies {
        assert_ne!(b, good);
        let (status, text) = srv.api().post_raw(PATH_DRAW, b.clone()).await.unwrap();
        assert_eq!(status, 400, "{b}: {text}");
        let e: purse::wire::ErrorBody = serde_json::from_str(&text).unwrap();
        assert_eq!(e.error.code, ApiCode::Malformed, "{b}");
    }
    assert_eq!(srv.state_of("shop-a", "T-dup"), None);
    // A txn id outside the allowed alphabet is refused before anything else.
    let mut shopper = Shopper::new(test_card("6280000000000022", 1_000), srv.api());
    let ws = srv.merchants[0].session("T/../x", 100, VerifyMode::PaymentServer, now() + 600);
    refused(&shopper.pay(&ws).await, ApiCode::Malformed);
    // Eleven log records.
    let r: Result<RecoverResponse, _> = srv
        .api()
        .post(
            PATH_RECOVER,
            &recover_body(
                &srv.merchants[0].session("T-x", 1, VerifyMode::PaymentServer, now() + 60),
                vec![Hex(vec![0; 37]); 11],
                None,
                1,
            ),
        )
        .await;
    assert_eq!(r.unwrap_err().code(), Some(ApiCode::Malformed));
    let r = c
        .get(format!("{base}/v1/transactions/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let b: purse::wire::ErrorBody = r.json().await.unwrap();
    assert_eq!(b.error.code, ApiCode::Unauthorized);
}

/// The shopper opens a widget on `ws` and presses "not mine" at the amount; the
/// merchant's list of reports afterwards.
async fn report_not_mine(
    srv: &TestServer,
    m: &TestMerchant,
    shopper: &mut Shopper,
    ws: &purse::purchase::WidgetSession,
) -> SuspiciousList {
    let mut c = shopper.client(ws);
    assert!(c.not_mine());
    let out = shopper
        .run(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await;
    assert_eq!(out, Outcome::Cancelled("not_mine"));
    srv.api()
        .merchant_call(&m.kit(), "GET", "/v1/suspicious", None)
        .await
        .unwrap()
}

#[tokio::test]
async fn suspicious_report_is_visible_to_its_merchant_only() {
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000021", 5_000), srv.api());
    let ws = m.session("T-sus", 100, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws);
    let out = shopper
        .run(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await;
    assert!(out.is_paid(), "the run approves automatically: {out:?}");
    // The shopper reads the amount of another purchase and presses "not mine".
    let ws2 = m.session("T-sus2", 100, VerifyMode::PaymentServer, now() + 600);
    let l = report_not_mine(&srv, m, &mut shopper, &ws2).await;
    assert_eq!(l.reports.len(), 1);
    assert_eq!(l.reports[0].txn_id, "T-sus2");
    // Never drawn: no card to name.
    assert_eq!(
        (l.reports[0].card.as_str(), l.reports[0].card_ref.as_str()),
        ("", "")
    );
    // The paid purchase reported afterwards (a new widget on its session): the report
    // names the card as the transaction does, so the merchant can find its purchases.
    let l = report_not_mine(&srv, m, &mut shopper, &ws).await;
    let ids: Vec<&str> = l.reports.iter().map(|r| r.txn_id.as_str()).collect();
    assert_eq!(ids, ["T-sus", "T-sus2"], "newest first");
    let v: TxnView = srv
        .api()
        .merchant_call(&m.kit(), "GET", "/v1/transactions/T-sus", None)
        .await
        .unwrap();
    assert!(!v.card_ref.is_empty());
    assert_eq!(l.reports[0].card_ref, v.card_ref);
    assert_eq!(l.reports[0].card, v.card);
    assert!(!l.reports[0].card.contains("6280000000000021"), "masked");
    let l: SuspiciousList = srv
        .api()
        .merchant_call(&srv.merchants[1].kit(), "GET", "/v1/suspicious", None)
        .await
        .unwrap();
    assert!(l.reports.is_empty());
    assert_eq!(srv.captured(), 100);
}

#[tokio::test]
async fn suspicious_reports_come_a_page_at_a_time_and_every_report_once() {
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000022", 5_000), srv.api());
    for i in 0..5 {
        let ws = m.session(
            &format!("T-p{i}"),
            100,
            VerifyMode::PaymentServer,
            now() + 600,
        );
        report_not_mine(&srv, m, &mut shopper, &ws).await;
        if i == 2 {
            // Another merchant's report lies between this one's rows: never in its pages.
            let other = &srv.merchants[1];
            let ws = other.session("T-other", 100, VerifyMode::PaymentServer, now() + 600);
            report_not_mine(&srv, other, &mut shopper, &ws).await;
        }
    }
    let api = srv.api();
    let list = |q: String| {
        let api = api.clone();
        let kit = m.kit();
        async move {
            api.merchant_call::<SuspiciousList>(&kit, "GET", &format!("/v1/suspicious{q}"), None)
                .await
        }
    };
    // Pages of two, newest first, until `next` is absent: each report once.
    let mut seen = Vec::new();
    let mut q = "?limit=2".to_string();
    let mut pages = 0;
    loop {
        let page = list(q.clone()).await.unwrap();
        assert!(page.reports.len() <= 2);
        seen.extend(page.reports.iter().map(|r| r.txn_id.clone()));
        pages += 1;
        match page.next {
            Some(n) => q = format!("?limit=2&before={n}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["T-p4", "T-p3", "T-p2", "T-p1", "T-p0"]);
    // No page asked: all of them at once (up to 1000), no next.
    let all = list(String::new()).await.unwrap();
    assert_eq!(all.reports.len(), 5);
    assert_eq!(all.next, None);
    // A full last page says nothing more: `next` only when older rows exist.
    let five = list("?limit=5".into()).await.unwrap();
    assert_eq!((five.reports.len(), five.next), (5, None));
    // Bad paging is refused with our error, and nothing else is read.
    for q in [
        "?limit=0",
        "?limit=1001",
        "?limit=x",
        "?before=x",
        "?before=1e3",
    ] {
        let e = list(q.into()).await.unwrap_err();
        assert_eq!(e.code(), Some(ApiCode::Malformed), "{q}");
    }
}

#[tokio::test]
async fn a_money_purchase_cannot_be_paid_from_the_points_purse() {
    // The hostile client runs the INITIALIZEs (and would run DEBIT) on the
    // points purse (P2 = 01) and tells the server it is the money purse. The
    // session keys are bound to the purse of the INITIALIZE, so the proving
    // S1 (points) does not verify as the money purse's; with only the
    // purchase's INITIALIZE moved, the proof's balance is not the purchase's.
    // Refused at the draw either way: nothing debited, stored or captured.
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000031", 5_000), srv.api());
    let points_before = shopper.card.state().purses[1].balance;
    assert!(points_before >= 250);
    // (P1 of the INITIALIZEs moved: 02 load and 01 purchase, or 01 only; the
    // code the server answers.)
    let cases: [(&[u8], ApiCode); 2] = [
        (&[0x01, 0x02], ApiCode::S1Mismatch),
        (&[0x01], ApiCode::Malformed),
    ];
    for (i, (p1s, code)) in cases.into_iter().enumerate() {
        let txn = format!("T-pts{i}");
        let ws = m.session(&txn, 250, VerifyMode::PaymentServer, now() + 600);
        let mut c = shopper.client(&ws);
        let mut swapped = 0;
        let out = shopper
            .run(&mut c, &mut |r: &mut Outgoing| {
                if let Outgoing::Card(a) = r {
                    let init =
                        a.get(1) == Some(&0x50) && a.get(2).is_some_and(|p1| p1s.contains(p1));
                    if (init || a.get(1) == Some(&0x54)) && a.get(3) == Some(&0x00) {
                        a[3] = 0x01;
                        swapped += 1;
                    }
                }
                Cut::None
            })
            .await;
        assert_eq!(
            swapped,
            p1s.len(),
            "the INITIALIZEs went to the points purse"
        );
        refused(&out, code);
        assert_eq!(srv.state_of("shop-a", &txn), None, "nothing stored");
    }
    assert_eq!(shopper.card.state().purses[1].balance, points_before);
    assert_eq!(balance(&shopper.card), 5_000);
    assert_eq!(srv.captured(), 0);
}

#[tokio::test]
async fn a_complete_racing_the_merchants_confirm_gets_its_results() {
    // Mode `client`: the merchant confirms with the card's S3 while the
    // widget's `complete` with the same card answer is on its way. One
    // capture; and the `complete` is told `debited`, not refused as a replay
    // (a late `complete` after the confirm gets its results; so must one
    // that loses the race to it).
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut replays = 0;
    for i in 0..24u32 {
        let txn = format!("T-race{i}");
        let mut shopper = Shopper::new(
            test_card(&format!("62800000000006{i:02}"), 5_000),
            srv.api(),
        );
        let ws = m.session(&txn, 100, VerifyMode::Client, now() + 600);
        let mut c = shopper.client(&ws);
        let mut complete_body = None;
        let _ = shopper
            .run(&mut c, &mut |r: &mut Outgoing| {
                if let Outgoing::Server { path, body } = r {
                    if *path == PATH_COMPLETE {
                        complete_body = Some(body.clone());
                        return Cut::RequestLost;
                    }
                }
                Cut::None
            })
            .await;
        let body = complete_body.expect("complete sent");
        let env: CompleteEnvelope = serde_json::from_str(&body).unwrap();
        let msg = DebitResponseMsg::open(&ws.tsk().unwrap(), &txn, env.debit_response.as_slice())
            .unwrap();
        let d = DebitResponse::decode(&msg.response.0[..12]).unwrap();
        let confirm =
            serde_json::json!({"balance_after": d.balance_after, "s3": hex::encode(d.s3)});
        let path = format!("/v1/transactions/{txn}/confirm");
        let kit = m.kit();
        let api = srv.api();
        // The complete starts a little later each round, so that some
        // round has the confirm's capture land between its read and its write.
        let (done, confirmed) = tokio::join!(
            async {
                tokio::time::sleep(std::time::Duration::from_micros(300 * u64::from(i))).await;
                api.post_raw(PATH_COMPLETE, body.clone()).await
            },
            api.merchant_call::<TxnView>(&kit, "POST", &path, Some(&confirm)),
        );
        assert!(confirmed.is_ok(), "{confirmed:?}");
        let (status, text) = done.unwrap();
        if status == 409 {
            replays += 1;
        } else {
            assert_eq!(status, 200, "{text}");
        }
        assert_eq!(srv.state_of("shop-a", &txn).as_deref(), Some("confirmed"));
    }
    assert_eq!(srv.captured(), 24 * 100, "one capture each");
    assert_eq!(
        replays, 0,
        "completes refused as a replay after losing the race"
    );
}

#[tokio::test]
async fn a_replayed_suspicious_report_is_kept_once() {
    // Anyone on the network (or the page) replays a shopper's "not mine"
    // report: one report and one webhook, not one per copy (a flood of
    // copies would push genuine reports out of the merchant's list).
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000051", 5_000), srv.api());
    let ws = m.session("T-sus-r", 100, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws);
    assert!(c.not_mine());
    let mut sent = None;
    let out = shopper
        .run(&mut c, &mut |r: &mut Outgoing| {
            if let Outgoing::Server { path, body } = r {
                if *path == purse::purchase::PATH_SUSPICIOUS {
                    sent = Some(body.clone());
                }
            }
            Cut::None
        })
        .await;
    assert_eq!(out, Outcome::Cancelled("not_mine"));
    let body = sent.expect("report sent");
    for _ in 0..3 {
        let (status, text) = srv
            .api()
            .post_raw(purse::purchase::PATH_SUSPICIOUS, body.clone())
            .await
            .unwrap();
        assert_eq!(status, 200, "{text}");
    }
    let l: SuspiciousList = srv
        .api()
        .merchant_call(&m.kit(), "GET", "/v1/suspicious", None)
        .await
        .unwrap();
    assert_eq!(l.reports.len(), 1, "{l:?}");
}

/// What anyone who knows a card's number can send: a draw request whose card
/// answers name that card (SELECT's card id), at a purchase ATC of their
/// choosing, with the proof's ATC one less and an empty log (which, if
/// believed, would say the card's earlier purchases never debited).
fn name_card(d: &mut DrawRequest, card: &str, atc: u16) {
    let mut sel = SelectResponse::decode(d.select.as_slice()).unwrap();
    sel.card_id = CardId::parse(card).unwrap();
    d.select = Hex(sel.encode());
    let mut init = InitializePurchaseResponse::decode(d.initialize.as_slice()).unwrap();
    init.atc = atc;
    d.initialize = Hex(init.encode());
    let mut proof = InitializeLoadResponse::decode(d.initialize_load.as_slice()).unwrap();
    proof.atc = atc - 1;
    d.initialize_load = Hex(proof.encode());
    d.log = vec![];
}

#[tokio::test]
async fn a_draw_naming_another_card_cannot_decide_or_block_that_cards_purchases() {
    // INITIALIZE FOR PURCHASE carries no MAC: the card proves itself with the
    // S1 of an INITIALIZE FOR LOAD of amount 0 right before it. Without that
    // check, such draws decided the victim's torn purchase `failed` from a
    // made-up silence and took its next (card, ATC) slots, so its real draws
    // were refused as replays.
    let srv = server().await;
    let m = &srv.merchants[0];
    let victim_id = "6280000000000041";
    // The victim's purchase is torn: the card debited 700, the answer was lost.
    let mut victim = torn_purchase(&srv, victim_id, "T-victim", 700).await;
    let next = victim.card.state().atc + 2;
    // The attacker pays with its own card at a merchant, its draws rewritten
    // to name the victim's card: a high ATC (silence for the torn purchase)
    // and the victim's next purchase ATCs.
    let mut attacker = Shopper::new(test_card("6280000000000042", 5_000), srv.api());
    for (i, atc) in [60_000u16, next, next + 1, next + 2]
        .into_iter()
        .enumerate()
    {
        let txn = format!("T-forged{i}");
        let ws = m.session(&txn, 100, VerifyMode::PaymentServer, now() + 600);
        let mut c = attacker.client(&ws);
        let out = attacker
            .run(&mut c, &mut |r: &mut Outgoing| {
                if is_post(r, PATH_DRAW) {
                    rewrite::<DrawRequest>(r, &ws, "draw_request", |d| {
                        name_card(d, victim_id, atc)
                    });
                }
                Cut::None
            })
            .await;
        refused(&out, ApiCode::S1Mismatch);
        assert_eq!(
            srv.state_of("shop-a", &txn),
            None,
            "nothing stored for {txn}"
        );
    }
    assert_eq!(
        srv.state_of("shop-a", "T-victim").as_deref(),
        Some("drawn"),
        "not decided from a made-up silence"
    );
    // The victim's next purchase: its draw is not a replay (ATC `next`), and
    // its log's record proves the torn purchase.
    let out = victim
        .pay(&m.session("T-victim2", 100, VerifyMode::PaymentServer, now() + 600))
        .await;
    assert!(out.is_paid(), "{out:?}");
    assert_eq!(victim.card.state().atc, next);
    assert_eq!(
        srv.state_of("shop-a", "T-victim").as_deref(),
        Some("debited")
    );
    // Money: captured = what the victim's card was really debited; the
    // attacker's card lost nothing.
    assert_eq!(srv.captured(), 800);
    assert_eq!(balance(&victim.card), 4_200);
    assert_eq!(balance(&attacker.card), 5_000);
}

#[tokio::test]
async fn a_draw_whose_proof_is_not_right_before_its_initialize_is_refused() {
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000045", 5_000), srv.api());
    // The card's genuine proof, kept (an older one, or one of another purse),
    // put into a later draw: not the purchase's ATC less 1, or not its balance.
    let old = card_proof(&mut shopper.card, PurseId::Money, TEST_TERMINAL);
    let points = card_proof(&mut shopper.card, PurseId::Points, TEST_TERMINAL);
    for (i, proof) in [old, points].into_iter().enumerate() {
        let txn = format!("T-stale{i}");
        let ws = m.session(&txn, 100, VerifyMode::PaymentServer, now() + 600);
        let mut c = shopper.client(&ws);
        let out = shopper
            .run(&mut c, &mut |r: &mut Outgoing| {
                if is_post(r, PATH_DRAW) {
                    let p = proof.clone();
                    rewrite::<DrawRequest>(r, &ws, "draw_request", |d| d.initialize_load = Hex(p));
                }
                Cut::None
            })
            .await;
        assert!(
            matches!(
                out.problem(),
                Some(Problem::ServerRefused(
                    ApiCode::Malformed | ApiCode::S1Mismatch
                ))
            ),
            "{out:?}"
        );
        assert_eq!(srv.state_of("shop-a", &txn), None);
    }
    // The card's own fresh proof goes through.
    let out = shopper
        .pay(&m.session("T-fresh", 100, VerifyMode::PaymentServer, now() + 600))
        .await;
    assert!(out.is_paid(), "{out:?}");
    assert_eq!(srv.captured(), 100);
    assert_eq!(balance(&shopper.card), 4_900);
}

#[tokio::test]
async fn a_recover_decides_from_silence_only_on_the_cards_proof() {
    let srv = server().await;
    let m = &srv.merchants[0];
    let card_id = "6280000000000046";
    // Torn before the card: the DEBIT never reached it.
    let mut shopper = Shopper::new(test_card(card_id, 5_000), srv.api());
    let ws = m.session("T-silent", 600, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws);
    let out = shopper.run(&mut c, &mut cut_debit(Cut::CardBefore)).await;
    assert_eq!(out.problem(), Some(Problem::Torn));
    let recover = |proof: Option<Vec<u8>>, nonce: u8| recover_body(&ws, vec![], proof, nonce);
    // 1. An empty log ("the whole history") without the card's proof: anyone
    //    could send it, so it decides nothing.
    let r: RecoverResponse = srv
        .api()
        .post(PATH_RECOVER, &recover(None, 1))
        .await
        .unwrap();
    assert_eq!(r.status, RecoverStatus::Unknown);
    assert_eq!(srv.state_of("shop-a", "T-silent").as_deref(), Some("drawn"));
    // 2. Another card's genuine proof, and this card's with one bit of S1
    //    flipped: refused, nothing changes.
    let mut other = test_card("6280000000000047", 5_000);
    let theirs = card_proof(&mut other, PurseId::Money, TEST_TERMINAL);
    let mut flipped = card_proof(&mut shopper.card, PurseId::Money, TEST_TERMINAL);
    *flipped.last_mut().unwrap() ^= 1;
    for (i, proof) in [theirs, flipped].into_iter().enumerate() {
        let r: Result<RecoverResponse, _> = srv
            .api()
            .post(PATH_RECOVER, &recover(Some(proof), 2 + i as u8))
            .await;
        assert_eq!(r.unwrap_err().code(), Some(ApiCode::S1Mismatch));
        assert_eq!(srv.state_of("shop-a", "T-silent").as_deref(), Some("drawn"));
    }
    // 3. The card's own proof: its ATC is past the purchase's, and the log
    //    (its whole history) has no record of it → failed.
    let proof = card_proof(&mut shopper.card, PurseId::Money, TEST_TERMINAL);
    let r: RecoverResponse = srv
        .api()
        .post(PATH_RECOVER, &recover(Some(proof), 9))
        .await
        .unwrap();
    assert_eq!(r.status, RecoverStatus::Failed);
    assert_eq!(
        srv.state_of("shop-a", "T-silent").as_deref(),
        Some("failed")
    );
    assert_eq!(srv.captured(), 0);
    assert_eq!(balance(&shopper.card), 5_000);
}
