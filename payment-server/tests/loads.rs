//! Loads in every outcome, on real HTTP and SQLite with the real card state
//! machine, each ending with the bank account and the card agreeing: the
//! account is debited if and only if the card was credited, exactly once.
//! Faults are injected at the client's boundaries: the card pulled before
//! CREDIT reaches it or after it applied it, a request or reply lost.

use payment_testkit::*;
use purse::load::client::LoadClient;
use purse::load::client::{Charged, LoadProblem};
use purse::load::{LoadDrawRequest, PATH_LOAD_COMPLETE, PATH_LOAD_DRAW, PATH_LOAD_RECOVER};
use purse::purchase::client::Outgoing;
use purse::session::VerifyMode;
use purse::types::{Expiry, PurseId};

const ACCOUNT: &str = "acct-1";

async fn server() -> TestServer {
    TestServer::start_full(
        &[TestMerchant::new("shop", 1)],
        &[TestBank::new("bank", 0xB1)],
        0,
    )
    .await
}

fn bank(srv: &TestServer) -> &TestBank {
    &srv.banks[0]
}

/// The account and the card agree: debited iff credited, exactly once.
fn agree(acct: &Account, srv: &TestServer, card_before: u32, card_after: u32) {
    let posted = acct.posted(ACCOUNT);
    assert_eq!(
        card_after as i64 - card_before as i64,
        posted as i64,
        "card change equals what the account paid"
    );
    assert_eq!(
        acct.balances[ACCOUNT],
        100_000 - posted as i64,
        "posted once"
    );
    assert_eq!(
        srv.credited(),
        posted,
        "server's credited total equals the bank's posts"
    );
}

#[tokio::test]
async fn a_load_credits_the_card_and_the_bank_posts_it_once() {
    let srv = server().await;
    let mut acct = Account::default();
    acct.open(ACCOUNT, 100_000);
    let mut shopper = Shopper::new(test_card("6280000000003001", 1_000), srv.api());
    let ws = acct.hold(bank(&srv), "L-1", ACCOUNT, 5_000, PurseId::Money);
    let out = shopper.load(&ws).await;
    let LoadOutcome::Loaded { receipt, result } = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        (receipt.balance_before, receipt.balance_after),
        (1_000, 6_000)
    );
    assert_eq!(balance(&shopper.card), 6_000);
    assert_eq!(srv.load_state("bank", "L-1").as_deref(), Some("credited"));
    assert!(matches!(
        acct.take_result(bank(&srv), &srv.api(), &result).await,
        Ok(merchant_kit::bank::Booking::Post(_))
    ));
    // The page posting the result twice books nothing twice.
    acct.take_result(bank(&srv), &srv.api(), &result)
        .await
        .unwrap();
    assert_eq!(acct.state("L-1"), Some(HoldState::Posted));
    agree(&acct, &srv, 1_000, balance(&shopper.card));
    // The bank's own view agrees.
    let v: purse::load::bank_api::LoadView = srv
        .api()
        .bank_call(&bank(&srv).kit(), "GET", "/v1/bank/loads/L-1")
        .await
        .unwrap();
    assert_eq!(v.state, purse::load::bank_api::LoadState::Credited);
    assert_eq!(v.amount, 5_000);
}

#[tokio::test]
async fn over_max_balance_is_refused_by_the_card_and_the_hold_released() {
    let srv = server().await;
    let mut acct = Account::default();
    acct.open(ACCOUNT, 100_000);
    let mut shopper = Shopper::new(
        test_card_custom("6280000000003002", 9_000, 10_000, "301231"),
        srv.api(),
    );
    let ws = acct.hold(bank(&srv), "L-max", ACCOUNT, 5_000, PurseId::Money);
    let mut c = shopper.load_client(&ws);
    let out = shopper
        .run_load(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await;
    assert_eq!(out.problem(), Some(LoadProblem::OverMaxBalance), "{out:?}");
    assert_eq!(out.charged(), Some(Charged::No));
    // The card's 9402 came at INITIALIZE: nothing was drawn.
    assert!(shopper.trace.iter().any(is_initialize_load));
    assert!(!shopper.trace.iter().any(|r| is_post(r, PATH_LOAD_DRAW)));
    assert_eq!(srv.load_rows(), 0);
    // The page tells the bank; the bank voids at the load server and releases.
    let r = out.bank_result().expect("the widget's word").clone();
    assert!(matches!(
        acct.take_result(bank(&srv), &srv.api(), &r).await,
        Ok(merchant_kit::bank::Booking::Release(_))
    ));
    assert_eq!(srv.load_state("bank", "L-max").as_deref(), Some("voided"));
    // A voided load can never be drawn afterwards.
    let mut again = Shopper::new(test_card("6280000000003003", 0), srv.api());
    let out = again.load(&ws).await;
    assert_eq!(
        out.problem(),
        Some(LoadProblem::ServerRefused(purse::wire::ApiCode::WrongState))
    );
    assert_eq!(balance(&again.card), 0);
    agree(&acct, &srv, 9_000, balance(&shopper.card));
}

#[tokio::test]
async fn an_expired_card_is_refused_and_a_card_refusing_credit_9403_is_proven_not_loaded() {
    let srv = server().await;
    let mut acct = Account::default();
    acct.open(ACCOUNT, 100_000);
    // An honest client refuses the expired card before anything is drawn.
    let mut shopper = Shopper::new(
        test_card_custom("6280000000003004", 1_000, 1_000_000, "200131"),
        srv.api(),
    );
    let ws = acct.hold(bank(&srv), "L-exp", ACCOUNT, 2_000, PurseId::Money);
    let out = shopper.load(&ws).await;
    assert_eq!(out.problem(), Some(LoadProblem::CardExpired));
    let r = out.bank_result().unwrap().clone();
    acct.take_result(bank(&srv), &srv.api(), &r).await.unwrap();
    assert_eq!(acct.state("L-exp"), Some(HoldState::Released));
    // A client that lies about the expiry gets past the HSM; the card itself
    // refuses CREDIT with 9403. The negative result is proven by a zero-value
    // INITIALIZE FOR LOAD: not loaded, the hold is released.
    let ws = acct.hold(bank(&srv), "L-exp2", ACCOUNT, 2_000, PurseId::Money);
    // (A client without a clock: it cannot tell the card expired.)
    let mut c = LoadClient::new(ws.clone(), &ws.session.origin, Box::new(OsEntropy), None).unwrap();
    let mut card_answer = None;
    let out = {
        let ws2 = ws.clone();
        shopper
            .run_load(&mut c, &mut |r: &mut Outgoing| {
                if is_post(r, PATH_LOAD_DRAW) {
                    rewrite_load::<LoadDrawRequest>(r, &ws2, "load_request", |d| {
                        d.select.0[8..11]
                            .copy_from_slice(&Expiry::parse("301231").unwrap().bytes());
                    });
                }
                if is_post(r, PATH_LOAD_RECOVER) {
                    card_answer = Some(());
                }
                Cut::None
            })
            .await
    };
    assert!(card_answer.is_some(), "negative-result handling ran");
    assert_eq!(out.problem(), Some(LoadProblem::NotCredited), "{out:?}");
    assert_eq!(out.charged(), Some(Charged::No));
    assert_eq!(srv.load_state("bank", "L-exp2").as_deref(), Some("failed"));
    let r = out.bank_result().expect("sealed result B").clone();
    assert!(matches!(r, purse::load::BankResult::ResultB { .. }));
    assert!(matches!(
        acct.take_result(bank(&srv), &srv.api(), &r).await,
        Ok(merchant_kit::bank::Booking::Release(_))
    ));
    agree(&acct, &srv, 1_000, balance(&shopper.card));
}

#[tokio::test]
async fn credit_answer_lost_after_the_card_applied_it_is_recovered_as_credited() {
    let srv = server().await;
    let mut acct = Account::default();
    acct.open(ACCOUNT, 100_000);
    let mut shopper = Shopper::new(test_card("6280000000003005", 1_000), srv.api());
    let ws = acct.hold(bank(&srv), "L-after", ACCOUNT, 3_000, PurseId::Money);
    let mut c = shopper.load_client(&ws);
    let out = shopper
        .run_load(&mut c, &mut |r: &mut Outgoing| {
            if is_credit(r) {
                Cut::CardAfter
            } else {
                Cut::None
            }
        })
        .await;
    assert_eq!(out.problem(), Some(LoadProblem::Torn));
    assert_eq!(
        out.charged(),
        Some(Charged::Maybe),
        "the shopper hears it may be loaded"
    );
    assert!(
        out.bank_result().is_none(),
        "nothing to post or release yet"
    );
    assert!(!c.cancel(), "no cancel once CREDIT went out");
    assert_eq!(balance(&shopper.card), 4_000, "the card did apply it");
    // The bank asks meanwhile: still drawn, it keeps holding.
    assert_eq!(
        acct.ask_server(bank(&srv), &srv.api(), "L-after", true)
            .await,
        Ok(merchant_kit::bank::Booking::Keep)
    );
    assert_eq!(acct.state("L-after"), Some(HoldState::Held));
    // The card is put back: log + zero-value INITIALIZE → credited.
    shopper.card_present = true;
    let out = shopper
        .run_load(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await;
    let LoadOutcome::Loaded { receipt, result } = out else {
        panic!("{out:?}")
    };
    assert_eq!(receipt.balance_after, 4_000);
    assert_eq!(
        shopper
            .trace
            .iter()
            .filter(|r| is_post(r, PATH_LOAD_RECOVER))
            .count(),
        1
    );
    acct.take_result(bank(&srv), &srv.api(), &result)
        .await
        .unwrap();
    assert_eq!(acct.state("L-after"), Some(HoldState::Posted));
    agree(&acct, &srv, 1_000, balance(&shopper.card));
}

#[tokio::test]
async fn credit_lost_before_the_card_applied_it_is_recovered_as_not_credited() {
    let srv = server().await;
    let mut acct = Account::default();
    acct.open(ACCOUNT, 100_000);
    // A young card (empty log) and one with history.
    for (card, history) in [("6280000000003006", 0u32), ("6280000000003007", 2)] {
        let mut shopper = Shopper::new(test_card(card, 1_000), srv.api());
        for i in 0..history {
            let ws = acct.hold(
                bank(&srv),
                &format!("H-{card}-{i}"),
                ACCOUNT,
                100,
                PurseId::Money,
            );
            let out = shopper.load(&ws).await;
            let r = out.bank_result().unwrap().clone();
            acct.take_result(bank(&srv), &srv.api(), &r).await.unwrap();
        }
        let txn = format!("L-before-{card}");
        let ws = acct.hold(bank(&srv), &txn, ACCOUNT, 2_500, PurseId::Money);
        let mut c = shopper.load_client(&ws);
        let out = shopper
            .run_load(&mut c, &mut |r: &mut Outgoing| {
                if is_credit(r) {
                    Cut::CardBefore
                } else {
                    Cut::None
                }
            })
            .await;
        assert_eq!(out.problem(), Some(LoadProblem::Torn));
        shopper.card_present = true;
        let out = shopper
            .run_load(&mut c, &mut |_r: &mut Outgoing| Cut::None)
            .await;
        assert_eq!(
            out.problem(),
            Some(LoadProblem::NotCredited),
            "history {history}: {out:?}"
        );
        assert_eq!(out.charged(), Some(Charged::No));
        let r = out.bank_result().unwrap().clone();
        acct.take_result(bank(&srv), &srv.api(), &r).await.unwrap();
        assert_eq!(acct.state(&txn), Some(HoldState::Released));
        assert_eq!(srv.load_state("bank", &txn).as_deref(), Some("failed"));
        assert_eq!(balance(&shopper.card), 1_000 + 100 * history);
    }
    let card_total = 200; // both cards' changes: 0 + 2 × 100
    assert_eq!(acct.posted(ACCOUNT), card_total);
    assert_eq!(srv.credited(), card_total);
}

#[tokio::test]
async fn an_abandoned_load_is_decided_by_the_cards_next_uses() {
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut acct = Account::default();
    acct.open(ACCOUNT, 100_000);
    let b = bank(&srv);
    let mut shopper = Shopper::new(test_card("6280000000003008", 1_000), srv.api());
    // Load 1: the card applies CREDIT and is pulled; the shopper never comes back to that page.
    let ws1 = acct.hold(b, "L-ab-1", ACCOUNT, 700, PurseId::Money);
    let mut c1 = shopper.load_client(&ws1);
    shopper
        .run_load(&mut c1, &mut |r: &mut Outgoing| {
            if is_credit(r) {
                Cut::CardAfter
            } else {
                Cut::None
            }
        })
        .await;
    // Load 2: CREDIT never reaches the card; abandoned too.
    shopper.card_present = true;
    let ws2 = acct.hold(b, "L-ab-2", ACCOUNT, 400, PurseId::Money);
    let mut c2 = shopper.load_client(&ws2);
    shopper
        .run_load(&mut c2, &mut |r: &mut Outgoing| {
            if is_credit(r) {
                Cut::CardBefore
            } else {
                Cut::None
            }
        })
        .await;
    shopper.card_present = true;
    assert_eq!(balance(&shopper.card), 1_700);
    // The card is used at a shop: its log settles load 1 (the record's S3),
    // and the S1 by which the card proves itself before the purchase settles
    // load 2 (its balance, 1,700, shows no credit of 400; nothing in between).
    let out = shopper
        .pay(&m.session("P-1", 200, VerifyMode::PaymentServer, now() + 600))
        .await;
    assert!(out.is_paid(), "{out:?}");
    assert_eq!(
        srv.load_state("bank", "L-ab-1").as_deref(),
        Some("credited")
    );
    assert_eq!(srv.load_state("bank", "L-ab-2").as_deref(), Some("failed"));
    // The next load goes through, and decides nothing again.
    let ws3 = acct.hold(b, "L-ab-3", ACCOUNT, 100, PurseId::Money);
    let out = shopper.load(&ws3).await;
    assert!(out.is_loaded(), "{out:?}");
    assert_eq!(srv.load_state("bank", "L-ab-2").as_deref(), Some("failed"));
    // The bank learns both from the load server.
    for txn in ["L-ab-1", "L-ab-2"] {
        acct.ask_server(b, &srv.api(), txn, false).await.unwrap();
    }
    let r = out.bank_result().unwrap().clone();
    acct.take_result(b, &srv.api(), &r).await.unwrap();
    assert_eq!(acct.state("L-ab-1"), Some(HoldState::Posted));
    assert_eq!(acct.state("L-ab-2"), Some(HoldState::Released));
    assert_eq!(balance(&shopper.card), 1_000 + 700 - 200 + 100);
    assert_eq!(acct.posted(ACCOUNT), 800);
    assert_eq!(srv.credited(), 800);
}

#[tokio::test]
async fn lost_requests_and_replies_are_retried_without_a_second_credit() {
    let srv = server().await;
    let mut acct = Account::default();
    acct.open(ACCOUNT, 100_000);
    for (i, (path, cut)) in [
        (PATH_LOAD_DRAW, Cut::RequestLost),
        (PATH_LOAD_DRAW, Cut::ReplyLost),
        (PATH_LOAD_COMPLETE, Cut::RequestLost),
        (PATH_LOAD_COMPLETE, Cut::ReplyLost),
    ]
    .into_iter()
    .enumerate()
    {
        let mut shopper = Shopper::new(
            test_card(&format!("62800000000031{i:02}"), 1_000),
            srv.api(),
        );
        let txn = format!("L-net-{i}");
        let ws = acct.hold(bank(&srv), &txn, ACCOUNT, 250, PurseId::Money);
        let mut c = shopper.load_client(&ws);
        let mut once = true;
        let out = shopper
            .run_load(&mut c, &mut |r: &mut Outgoing| {
                if once && is_post(r, path) {
                    once = false;
                    cut
                } else {
                    Cut::None
                }
            })
            .await;
        assert_eq!(
            out.problem(),
            Some(LoadProblem::ServerUnreachable),
            "{path} {cut:?}"
        );
        let expect = if path == PATH_LOAD_COMPLETE {
            Charged::Yes
        } else {
            Charged::No
        };
        assert_eq!(out.charged(), Some(expect));
        // The shopper presses retry: the same request, the same answer.
        c.retry();
        let out = shopper
            .run_load(&mut c, &mut |_r: &mut Outgoing| Cut::None)
            .await;
        let r = out
            .bank_result()
            .unwrap_or_else(|| panic!("{out:?}"))
            .clone();
        assert!(out.is_loaded(), "{path} {cut:?}: {out:?}");
        acct.take_result(bank(&srv), &srv.api(), &r).await.unwrap();
        assert_eq!(balance(&shopper.card), 1_250, "{path} {cut:?}");
    }
    assert_eq!(acct.posted(ACCOUNT), 4 * 250);
    assert_eq!(srv.credited(), 4 * 250);
}

#[tokio::test]
async fn a_recover_reply_lost_is_asked_again_with_the_same_decision() {
    let srv = server().await;
    let mut acct = Account::default();
    acct.open(ACCOUNT, 100_000);
    let mut shopper = Shopper::new(test_card("6280000000003009", 1_000), srv.api());
    let ws = acct.hold(bank(&srv), "L-rl", ACCOUNT, 900, PurseId::Money);
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
    shopper.card_present = true;
    let mut once = true;
    let out = shopper
        .run_load(&mut c, &mut |r: &mut Outgoing| {
            if once && is_post(r, PATH_LOAD_RECOVER) {
                once = false;
                Cut::ReplyLost
            } else {
                Cut::None
            }
        })
        .await;
    assert_eq!(out.problem(), Some(LoadProblem::ServerUnreachable));
    assert_eq!(out.charged(), Some(Charged::Maybe));
    c.retry();
    let out = shopper
        .run_load(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await;
    assert!(out.is_loaded(), "{out:?}");
    let r = out.bank_result().unwrap().clone();
    acct.take_result(bank(&srv), &srv.api(), &r).await.unwrap();
    agree(&acct, &srv, 1_000, balance(&shopper.card));
}
