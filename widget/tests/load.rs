//! Load mode, natively: the widget's checkout around purse's load client
//! against the real load server (payment-testkit's `TestServer` with a bank,
//! SQLite in a temp dir) and the real card. Every failure says whether the
//! shopper's account is charged.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use payment_testkit::{now, test_card, test_card_custom, TestBank, TestMerchant, TestServer};
use purse::load::client::{Charged, LoadProblem};
use purse::load::BankResult;
use widget::problem::Problem;
use widget::view::Screen;
use widget::{Action, Config, Mode, Outcome, ParentEvent};

async fn server() -> TestServer {
    TestServer::start_full(
        &[TestMerchant::new("shop", 1)],
        &[TestBank::new("bank", 0xB1)],
        0,
    )
    .await
}

fn world(srv: &TestServer, card: card::Card, amount: u32) -> World {
    let ws = srv.banks[0].session("L-1", "acct-1", amount, now() + 600);
    World::new(srv, card, Mode::Load, &ws, Config::default(), 11)
}

fn last_error(w: &World) -> (&'static str, Option<&'static str>, Option<BankResult>) {
    w.events
        .iter()
        .rev()
        .find_map(|e| match e {
            ParentEvent::Error {
                code,
                charged,
                result,
                ..
            } => Some((*code, *charged, result.clone())),
            _ => None,
        })
        .expect("an error event")
}

#[tokio::test]
async fn a_load_shows_bank_amount_and_balances_and_credits_the_card_once() {
    let srv = server().await;
    let mut w = world(&srv, test_card("6280000000004001", 1_000), 5_000);
    w.start().await;
    let Screen::LoadConfirm(c) = &w.screen else {
        panic!("{:?}", w.screen)
    };
    assert_eq!(
        (c.balance, c.balance_after, c.over_max),
        (1_000, 6_000, false)
    );
    let html = w.html();
    for want in ["bank bank", "€50.00", "€10.00", "€60.00", "Load my card"] {
        assert!(html.contains(want), "{want}: {html}");
    }
    assert!(!html.contains("not-mine"), "no 'not my purchase' on a load");
    w.press(Action::Approve).await;
    let Screen::Loaded(r) = &w.screen else {
        panic!("{:?}", w.screen)
    };
    assert_eq!(
        (r.balance_before, r.balance_after, r.amount),
        (1_000, 6_000, 5_000)
    );
    assert!(w.html().contains("data-testid=\"receipt-balance\">€60.00"));
    assert!(matches!(
        w.last_event(),
        ParentEvent::Result {
            result: Outcome::Load(BankResult::ResultB { .. }),
            verify_mode: None,
            ..
        }
    ));
    // the bank's page glue reads `result` of the event: the sealed result B
    let ev = serde_json::to_value(w.last_event()).unwrap();
    assert_eq!(ev["result"]["kind"], "result_b");
    assert_eq!(w.balance(), 6_000);
    assert_eq!(srv.credited(), 5_000);
}

#[tokio::test]
async fn over_the_cards_maximum_balance_is_said_before_and_nothing_is_charged() {
    let srv = server().await;
    let mut w = world(
        &srv,
        test_card_custom("6280000000004002", 9_000, 10_000, "301231"),
        5_000,
    );
    w.start().await;
    let Screen::LoadConfirm(c) = &w.screen else {
        panic!("{:?}", w.screen)
    };
    assert!(c.over_max);
    assert!(w.html().contains("data-testid=\"over-max\""));
    // the shopper approves anyway: the card refuses (9402), nothing is loaded
    w.press(Action::Approve).await;
    assert_eq!(
        w.screen,
        Screen::Failed {
            problem: Problem::Load(LoadProblem::OverMaxBalance, Charged::No),
            retry: false
        }
    );
    let (code, charged, result) = last_error(&w);
    assert_eq!((code, charged), ("over_max_balance", Some("no")));
    assert!(
        matches!(result, Some(BankResult::NotLoaded { .. })),
        "{result:?}"
    );
    let html = w.html();
    assert!(
        html.contains("maximum balance") && html.contains("Your bank account was not charged"),
        "{html}"
    );
    assert!(html.contains("data-charged=\"no\""));
    assert_eq!(w.balance(), 9_000);
    assert_eq!(srv.credited(), 0);
}

#[tokio::test]
async fn card_pulled_during_credit_says_maybe_then_the_card_decides() {
    let srv = server().await;
    let mut w = world(&srv, test_card("6280000000004003", 1_000), 5_000);
    w.start().await;
    w.pull_on_ins = Some(0x52); // CREDIT applied, answer lost
    w.press(Action::Approve).await;
    assert_eq!(
        w.screen,
        Screen::Failed {
            problem: Problem::Load(LoadProblem::Torn, Charged::Maybe),
            retry: true
        }
    );
    let (code, charged, result) = last_error(&w);
    assert_eq!(
        (code, charged, result),
        ("credit_unknown", Some("maybe"), None)
    );
    assert!(!w.html().contains("data-action=\"cancel\""));
    w.insert().await;
    let Screen::Loaded(r) = &w.screen else {
        panic!("{:?}", w.screen)
    };
    assert_eq!(r.balance_after, 6_000);
    assert!(matches!(
        w.last_event(),
        ParentEvent::Result {
            result: Outcome::Load(BankResult::ResultB { .. }),
            ..
        }
    ));
    assert_eq!(w.balance(), 6_000);
    assert_eq!(srv.credited(), 5_000);
}

#[tokio::test]
async fn a_cancelled_load_charges_nothing() {
    let srv = server().await;
    let mut w = world(&srv, test_card("6280000000004004", 1_000), 5_000);
    w.start().await;
    w.press(Action::Cancel).await;
    assert!(matches!(
        w.last_event(),
        ParentEvent::Cancel { reason: "user", .. }
    ));
    assert!(w.html().contains("Your bank account was not charged"));
    assert_eq!(w.balance(), 1_000);
    assert_eq!(srv.credited(), 0);
}
