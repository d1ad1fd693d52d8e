//! Attacks on loads by a hostile client (or another bank): each is refused
//! with its stable code and nothing is credited or debited — the card, the
//! load server and the bank account agree afterwards.

use merchant_kit::bank::{BankError, Booking};
use payment_testkit::*;
use purse::apdu::Response;
use purse::load::client::{Charged, LoadProblem};
use purse::load::{
    CreditResponseMsg, LoadCompleteEnvelope, LoadDrawRequest, LoadEnvelope, LoadRecoverEnvelope,
    LoadRecoverRequest, LoadRecoverResponse, LoadRecoverStatus, LoadWidgetSession,
    PATH_LOAD_COMPLETE, PATH_LOAD_DRAW, PATH_LOAD_RECOVER,
};
use purse::purchase::client::Outgoing;
use purse::types::PurseId;
use purse::wire::{ApiCode, Hex, Sealed};

const ACCOUNT: &str = "acct-1";

async fn server() -> TestServer {
    let mut b = TestBank::new("bank-b", 0xB2);
    b.origin = "http://bank-b.test".into();
    TestServer::start_full(
        &[TestMerchant::new("shop", 1)],
        &[TestBank::new("bank-a", 0xA1), b],
        0,
    )
    .await
}

fn refused(out: &LoadOutcome, code: ApiCode) {
    assert_eq!(
        out.problem(),
        Some(LoadProblem::ServerRefused(code)),
        "{out:?}"
    );
    assert_eq!(out.charged(), Some(Charged::No), "{out:?}");
}

fn nonce() -> [u8; 12] {
    let mut n = [0u8; 12];
    getrandom::fill(&mut n).unwrap();
    n
}

/// What a hostile client posts to `/v1/loads/recover`.
async fn recover(
    srv: &TestServer,
    ws: &LoadWidgetSession,
    card_answer: Option<Vec<u8>>,
    zero: Option<Vec<u8>>,
) -> Result<LoadRecoverResponse, ApiError> {
    let req = LoadRecoverRequest {
        txn_id: ws.session.txn_id.clone(),
        card_answer: card_answer.map(Hex),
        zero_initialize: zero.map(Hex),
        log: vec![],
    };
    let env = LoadRecoverEnvelope {
        session: ws.session.clone(),
        session_mac: ws.session_mac.clone(),
        etsk: ws.etsk.clone(),
        recover_request: req.seal(&ws.tsk().unwrap(), nonce()),
    };
    srv.api().post(PATH_LOAD_RECOVER, &env).await
}

#[tokio::test]
async fn a_forged_s1_is_refused_and_nothing_is_drawn() {
    let srv = server().await;
    let b = &srv.banks[0];
    let mut acct = Account::default();
    acct.open(ACCOUNT, 100_000);
    let mut shopper = Shopper::new(test_card("6280000000004001", 1_000), srv.api());
    let ws = acct.hold(b, "L-s1", ACCOUNT, 5_000, PurseId::Money);
    let mut c = shopper.load_client(&ws);
    let ws2 = ws.clone();
    let out = shopper
        .run_load(&mut c, &mut |r: &mut Outgoing| {
            if is_post(r, PATH_LOAD_DRAW) {
                rewrite_load::<LoadDrawRequest>(r, &ws2, "load_request", |d| {
                    d.initialize.0[12] ^= 1
                });
            }
            Cut::None
        })
        .await;
    refused(&out, ApiCode::S1Mismatch);
    assert_eq!(srv.load_rows(), 0, "nothing drawn");
    // A balance claimed higher than the card's (to pass a max-balance check, say).
    let ws = acct.hold(b, "L-s1b", ACCOUNT, 5_000, PurseId::Money);
    let mut c = shopper.load_client(&ws);
    let ws2 = ws.clone();
    let out = shopper
        .run_load(&mut c, &mut |r: &mut Outgoing| {
            if is_post(r, PATH_LOAD_DRAW) {
                rewrite_load::<LoadDrawRequest>(r, &ws2, "load_request", |d| {
                    d.initialize.0[3] ^= 1
                });
            }
            Cut::None
        })
        .await;
    refused(&out, ApiCode::S1Mismatch);
    for txn in ["L-s1", "L-s1b"] {
        let r = purse::load::BankResult::NotLoaded {
            txn_id: txn.into(),
            reason: "server".into(),
        };
        acct.take_result(b, &srv.api(), &r).await.unwrap();
        assert_eq!(acct.state(txn), Some(HoldState::Released));
    }
    assert_eq!(balance(&shopper.card), 1_000);
    assert_eq!(srv.credited(), 0);
    assert_eq!(acct.posted(ACCOUNT), 0);
}

#[tokio::test]
async fn a_forged_s3_without_a_credit_is_refused_and_the_card_proves_no_load() {
    let srv = server().await;
    let b = &srv.banks[0];
    let mut acct = Account::default();
    acct.open(ACCOUNT, 100_000);
    let mut shopper = Shopper::new(test_card("6280000000004002", 1_000), srv.api());
    let ws = acct.hold(b, "L-s3", ACCOUNT, 5_000, PurseId::Money);
    let mut c = shopper.load_client(&ws);
    // The hostile client keeps CREDIT from the card...
    shopper
        .run_load(&mut c, &mut |r: &mut Outgoing| {
            if is_credit(r) {
                Cut::CardBefore
            } else {
                Cut::None
            }
        })
        .await;
    // ...and claims the card answered "loaded" with an S3 of its own making.
    let mut fake = vec![0x00];
    fake.extend_from_slice(&6_000u32.to_be_bytes());
    fake.extend_from_slice(&[0x5A; 8]);
    fake.extend_from_slice(&[0x90, 0x00]);
    let env = LoadCompleteEnvelope {
        session: ws.session.clone(),
        session_mac: ws.session_mac.clone(),
        etsk: ws.etsk.clone(),
        credit_response: CreditResponseMsg {
            txn_id: "L-s3".into(),
            response: Hex(fake),
        }
        .seal(&ws.tsk().unwrap(), nonce()),
    };
    let r: Result<serde_json::Value, _> = srv.api().post(PATH_LOAD_COMPLETE, &env).await;
    assert_eq!(r.unwrap_err().code(), Some(ApiCode::S3Mismatch));
    assert_eq!(srv.load_state("bank-a", "L-s3").as_deref(), Some("drawn"));
    // A refusal answer in `complete` is not a negative result either.
    let env2 = LoadCompleteEnvelope {
        credit_response: CreditResponseMsg {
            txn_id: "L-s3".into(),
            response: Hex(vec![0x94, 0x03]),
        }
        .seal(&ws.tsk().unwrap(), nonce()),
        ..env
    };
    let r: Result<serde_json::Value, _> = srv.api().post(PATH_LOAD_COMPLETE, &env2).await;
    assert_eq!(r.unwrap_err().code(), Some(ApiCode::Malformed));
    assert_eq!(srv.load_state("bank-a", "L-s3").as_deref(), Some("drawn"));
    // The card comes back: its own proof says not loaded; the bank releases.
    shopper.card_present = true;
    let out = shopper
        .run_load(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await;
    assert_eq!(out.problem(), Some(LoadProblem::NotCredited));
    acct.take_result(b, &srv.api(), out.bank_result().unwrap())
        .await
        .unwrap();
    assert_eq!(acct.state("L-s3"), Some(HoldState::Released));
    assert_eq!(balance(&shopper.card), 1_000);
    assert_eq!(srv.credited(), 0);
}

#[tokio::test]
async fn a_replayed_credit_or_load_request_credits_nothing_twice() {
    let srv = server().await;
    let b = &srv.banks[0];
    let mut acct = Account::default();
    acct.open(ACCOUNT, 100_000);
    let mut shopper = Shopper::new(test_card("6280000000004003", 1_000), srv.api());
    let ws1 = acct.hold(b, "L-r1", ACCOUNT, 2_000, PurseId::Money);
    let out = shopper.load(&ws1).await;
    acct.take_result(b, &srv.api(), out.bank_result().unwrap())
        .await
        .unwrap();
    let old_credit = shopper
        .trace
        .iter()
        .find_map(|r| match r {
            Outgoing::Card(a) if is_credit(r) => Some(a.clone()),
            _ => None,
        })
        .unwrap();
    let old_draw_body = shopper
        .trace
        .iter()
        .find_map(|r| match r {
            Outgoing::Server { path, body } if *path == PATH_LOAD_DRAW => Some(body.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(balance(&shopper.card), 3_000);
    // The old CREDIT straight to the card: no INITIALIZE pending.
    reset_and_select(&mut shopper.card);
    let r = Response::parse(&shopper.card.process(&old_credit)).unwrap();
    assert_eq!(r.sw, purse::StatusWord::NO_INITIALIZE);
    // The old CREDIT in place of a new load's: another session key, 6988; the
    // negative result is proven, nothing loaded, the hold released.
    let ws2 = acct.hold(b, "L-r2", ACCOUNT, 2_000, PurseId::Money);
    let mut c = shopper.load_client(&ws2);
    let out = shopper
        .run_load(&mut c, &mut |r: &mut Outgoing| {
            if is_credit(r) {
                *r = Outgoing::Card(old_credit.clone());
            }
            Cut::None
        })
        .await;
    assert_eq!(out.problem(), Some(LoadProblem::NotCredited), "{out:?}");
    acct.take_result(b, &srv.api(), out.bank_result().unwrap())
        .await
        .unwrap();
    assert_eq!(acct.state("L-r2"), Some(HoldState::Released));
    // The old load request again: the stored answer, no second load.
    let (status, _) = srv
        .api()
        .post_raw(PATH_LOAD_DRAW, old_draw_body.clone())
        .await
        .unwrap();
    assert_eq!(
        status, 409,
        "L-r1 is decided: its draw is not answered again"
    );
    // Its INITIALIZE under a fresh session of the same bank: one load per (card, ATC).
    let env: LoadEnvelope = serde_json::from_str(&old_draw_body).unwrap();
    let mut req =
        LoadDrawRequest::open(&ws1.tsk().unwrap(), "L-r1", env.load_request.as_slice()).unwrap();
    let ws3 = acct.hold(b, "L-r3", ACCOUNT, 2_000, PurseId::Money);
    req.txn_id = "L-r3".into();
    let env3 = LoadEnvelope {
        session: ws3.session.clone(),
        session_mac: ws3.session_mac.clone(),
        etsk: ws3.etsk.clone(),
        load_request: req.seal(&ws3.tsk().unwrap(), nonce()),
    };
    let r: Result<serde_json::Value, _> = srv.api().post(PATH_LOAD_DRAW, &env3).await;
    assert_eq!(r.unwrap_err().code(), Some(ApiCode::Replay));
    assert_eq!(srv.load_state("bank-a", "L-r3"), None);
    assert_eq!(balance(&shopper.card), 3_000, "credited exactly once");
    assert_eq!(acct.posted(ACCOUNT), 2_000);
    assert_eq!(srv.credited(), 2_000);
}

#[tokio::test]
async fn a_load_session_of_bank_a_is_refused_at_bank_b() {
    let srv = server().await;
    let (a, b) = (&srv.banks[0], &srv.banks[1]);
    let mut acct = Account::default();
    acct.open(ACCOUNT, 100_000);
    let mut shopper = Shopper::new(test_card("6280000000004004", 1_000), srv.api());
    // A's session presented as B's: B's key does not make its MAC.
    let mut ws = a.session("L-ab", ACCOUNT, 1_000, now() + 600);
    ws.session.bank_id = b.id.clone();
    refused(&shopper.load(&ws).await, ApiCode::BadMac);
    // MACed by A for a page of B's origin: not an origin of A.
    let mut evil = a.clone();
    evil.origin = b.origin.clone();
    refused(
        &shopper
            .load(&evil.session("L-ab2", ACCOUNT, 1_000, now() + 600))
            .await,
        ApiCode::OriginMismatch,
    );
    // A bank that is not configured at all.
    let ghost = TestBank::new("ghost", 0x66);
    refused(
        &shopper
            .load(&ghost.session("L-gh", ACCOUNT, 1_000, now() + 600))
            .await,
        ApiCode::UnknownBank,
    );
    // A money bank may not load points.
    refused(
        &shopper
            .load(&a.session_for("L-pts", ACCOUNT, 50, PurseId::Points, now() + 600))
            .await,
        ApiCode::PurseNotAllowed,
    );
    assert_eq!(srv.load_rows(), 0);
    // A real load at A: B can neither open its result nor void it.
    let ws = acct.hold(a, "L-a", ACCOUNT, 1_000, PurseId::Money);
    let mut c = shopper.load_client(&ws);
    shopper
        .run_load(&mut c, &mut |r: &mut Outgoing| {
            if is_credit(r) {
                Cut::CardBefore
            } else {
                Cut::None
            }
        })
        .await;
    let v: purse::load::bank_api::LoadView = srv
        .api()
        .bank_call(&b.kit(), "POST", "/v1/bank/loads/L-a/void")
        .await
        .unwrap();
    assert_eq!(
        (v.bank_id.as_str(), v.state),
        ("bank-b", purse::load::bank_api::LoadState::Voided)
    );
    assert_eq!(
        srv.load_state("bank-a", "L-a").as_deref(),
        Some("drawn"),
        "A's load untouched"
    );
    let r: Result<serde_json::Value, _> = srv
        .api()
        .bank_call(&b.kit(), "GET", "/v1/bank/loads/L-a")
        .await;
    assert!(r.is_ok(), "B sees only its own (voided) row");
    shopper.card_present = true;
    let out = shopper
        .run_load(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await;
    let result = out.bank_result().unwrap().clone();
    let hold = merchant_kit::bank::HoldRef {
        txn_id: "L-a",
        account_ref: ACCOUNT,
        amount: 1_000,
        currency: 978,
        exponent: 2,
        purse: PurseId::Money,
        origin: &b.origin,
    };
    assert_eq!(
        b.kit().verify_result(&hold, &result),
        Err(BankError::BadSeal)
    );
    assert!(matches!(
        acct.take_result(a, &srv.api(), &result).await,
        Ok(Booking::Release(_))
    ));
    assert_eq!(balance(&shopper.card), 1_000);
    assert_eq!(srv.credited(), 0);
}

#[tokio::test]
async fn an_amount_changed_anywhere_is_refused() {
    let srv = server().await;
    let a = &srv.banks[0];
    let mut acct = Account::default();
    acct.open(ACCOUNT, 100_000);
    let mut shopper = Shopper::new(test_card("6280000000004005", 1_000), srv.api());
    // In the sealed request.
    let ws = acct.hold(a, "L-amt1", ACCOUNT, 1_000, PurseId::Money);
    let mut c = shopper.load_client(&ws);
    let ws2 = ws.clone();
    let out = shopper
        .run_load(&mut c, &mut |r: &mut Outgoing| {
            if is_post(r, PATH_LOAD_DRAW) {
                rewrite_load::<LoadDrawRequest>(r, &ws2, "load_request", |d| d.amount = 100_000);
            }
            Cut::None
        })
        .await;
    refused(&out, ApiCode::AmountMismatch);
    // In the card's INITIALIZE (the card would credit 1000.00 for a 10.00 session).
    let ws = acct.hold(a, "L-amt2", ACCOUNT, 1_000, PurseId::Money);
    let mut c = shopper.load_client(&ws);
    let out = shopper
        .run_load(&mut c, &mut |r: &mut Outgoing| {
            if is_initialize_load(r) {
                if let Outgoing::Card(apdu) = r {
                    apdu[5..9].copy_from_slice(&100_000u32.to_be_bytes());
                }
            }
            Cut::None
        })
        .await;
    refused(&out, ApiCode::S1Mismatch);
    // In the session.
    let mut ws = acct.hold(a, "L-amt3", ACCOUNT, 1_000, PurseId::Money);
    ws.session.amount = 100_000;
    refused(&shopper.load(&ws).await, ApiCode::BadMac);
    assert_eq!(srv.load_rows(), 0);
    assert_eq!(balance(&shopper.card), 1_000);
    assert_eq!(srv.credited(), 0);
}

/// The cipher is the driver's (WebCrypto in the browser): a credit command
/// whose opening fails is never sent to the card. Nothing is credited, and the
/// shopper is told the account is not charged.
#[tokio::test]
async fn a_credit_command_that_does_not_open_is_never_sent_to_the_card() {
    use purse::load::client::Crypto;
    use purse::session::{aad, label};
    let srv = server().await;
    let a = &srv.banks[0];
    let mut acct = Account::default();
    acct.open(ACCOUNT, 100_000);
    let mut shopper = Shopper::new(test_card("6280000000004009", 1_000), srv.api());
    let ws = acct.hold(a, "L-open", ACCOUNT, 1_000, PurseId::Money);
    let mut c = shopper.load_client(&ws);
    let mut opened = 0;
    let mut credits = 0;
    let out = shopper
        .run_load(&mut c, &mut |r: &mut Outgoing| {
            if let Outgoing::Crypto(Crypto::Open { aad: x, sealed, .. }) = r {
                assert_eq!(*x, aad(label::CREDIT_COMMAND, "L-open"));
                opened += 1;
                sealed[20] ^= 1;
            }
            credits += usize::from(is_credit(r));
            Cut::None
        })
        .await;
    refused(&out, ApiCode::BadSeal);
    assert_eq!((opened, credits), (1, 0));
    assert_eq!(balance(&shopper.card), 1_000);
    assert_eq!(srv.credited(), 0);
}

#[tokio::test]
async fn a_zero_value_initialize_cannot_fake_a_negative_result() {
    let srv = server().await;
    let a = &srv.banks[0];
    let mut acct = Account::default();
    acct.open(ACCOUNT, 100_000);
    let mut shopper = Shopper::new(test_card("6280000000004006", 1_000), srv.api());
    // A zero-value INITIALIZE kept from before the load.
    let old_zero = card_proof(&mut shopper.card, PurseId::Money, TEST_TERMINAL);
    // The load: the card applies CREDIT; the hostile client hides the answer
    // and the log, and claims the card refused (9402).
    let ws = acct.hold(a, "L-z", ACCOUNT, 4_000, PurseId::Money);
    let mut c = shopper.load_client(&ws);
    shopper
        .run_load(&mut c, &mut |r: &mut Outgoing| {
            if is_credit(r) {
                Cut::CardAfter
            } else {
                Cut::None
            }
        })
        .await;
    assert_eq!(balance(&shopper.card), 5_000, "the card was loaded");
    let refusal = Some(vec![0x94, 0x02]);
    // The old one predates the load: it decides nothing.
    let r = recover(&srv, &ws, refusal.clone(), Some(old_zero))
        .await
        .unwrap();
    assert_eq!(r.status, LoadRecoverStatus::Unknown);
    assert!(r.result_b.is_none());
    // A fresh one with a forged S1, or a balance changed to the one before the load.
    let fresh = card_proof(&mut shopper.card, PurseId::Money, TEST_TERMINAL);
    let mut forged = fresh.clone();
    forged[12] ^= 1;
    let e = recover(&srv, &ws, refusal.clone(), Some(forged))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ApiCode::S1Mismatch));
    let mut lying = fresh.clone();
    lying[0..4].copy_from_slice(&1_000u32.to_be_bytes());
    let e = recover(&srv, &ws, refusal.clone(), Some(lying))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ApiCode::S1Mismatch));
    // Another card's zero-value INITIALIZE.
    let mut other = test_card("6280000000004007", 1_000);
    let e = recover(
        &srv,
        &ws,
        refusal.clone(),
        Some(card_proof(&mut other, PurseId::Money, TEST_TERMINAL)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Some(ApiCode::S1Mismatch));
    assert_eq!(
        srv.load_state("bank-a", "L-z").as_deref(),
        Some("drawn"),
        "nothing decided by any of these"
    );
    // The genuine one: the card's own S1 shows the credit — the negative
    // result was not true. Credited; the bank posts.
    let r = recover(&srv, &ws, refusal, Some(fresh)).await.unwrap();
    assert_eq!(r.status, LoadRecoverStatus::Credited);
    let result = purse::load::BankResult::ResultB {
        txn_id: "L-z".into(),
        result_b: r.result_b.unwrap(),
    };
    assert!(matches!(
        acct.take_result(a, &srv.api(), &result).await,
        Ok(Booking::Post(_))
    ));
    assert_eq!(acct.posted(ACCOUNT), 4_000);
    assert_eq!(srv.credited(), 4_000);
    assert_eq!(balance(&shopper.card), 5_000);
}

#[tokio::test]
async fn a_points_load_cannot_land_on_the_money_purse() {
    // A loyalty program loads points. The hostile client runs INITIALIZE FOR
    // LOAD and CREDIT on the money purse (P2 = 00) instead: the session key is
    // bound to the purse, so the card's S1 (money) does not verify for the
    // points load the HSM checks. Nothing is drawn or credited.
    let srv = TestServer::start_full(
        &[TestMerchant::new("shop", 1)],
        &[TestBank::points("loyalty", 0x7A)],
        0,
    )
    .await;
    let b = &srv.banks[0];
    let mut acct = Account::default();
    acct.open(ACCOUNT, 100_000);
    let mut shopper = Shopper::new(test_card("6280000000004099", 1_000), srv.api());
    let points_before = shopper.card.state().purses[1].balance;
    let ws = acct.hold(b, "L-p2m", ACCOUNT, 300, PurseId::Points);
    let mut c = shopper.load_client(&ws);
    let mut swapped = 0;
    let out = shopper
        .run_load(&mut c, &mut |r: &mut Outgoing| {
            if let Outgoing::Card(a) = r {
                // INITIALIZE FOR LOAD (80 50 02 P2) and CREDIT (80 52 00 P2) on money.
                if matches!(a.get(1), Some(0x50) | Some(0x52)) && a.get(3) == Some(&0x01) {
                    a[3] = 0x00;
                    swapped += 1;
                }
            }
            Cut::None
        })
        .await;
    assert!(swapped >= 1, "the client moved the load to the money purse");
    refused(&out, ApiCode::S1Mismatch);
    assert_eq!(srv.load_rows(), 0, "nothing drawn");
    assert_eq!(balance(&shopper.card), 1_000, "money untouched");
    assert_eq!(shopper.card.state().purses[1].balance, points_before);
    assert_eq!(srv.credited(), 0);
}
