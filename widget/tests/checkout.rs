//! The whole purchase, natively: the widget's checkout (around purse's
//! purchase client) against the real payment server on loopback with SQLite
//! in a temp dir, and the real card application. Only what a browser would
//! carry is played by the test: the extension's messages and the fetches.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use payment_testkit::{now, test_card_with, TestMerchant, TestServer};
use purse::bridge_msg::{ErrorCode, Limit};
use purse::purchase::client::Problem as Pay;
use purse::purchase::{MerchantResult, WidgetSession};
use purse::session::VerifyMode;
use widget::keypad::SplitMix;
use widget::problem::Problem;
use widget::view::Screen;
use widget::{Action, Capability, Checkout, Config, Input, Mode, Outcome, ParentEvent};

async fn server() -> TestServer {
    TestServer::start(&[TestMerchant::new("shop", 1)]).await
}

fn session(srv: &TestServer, txn: &str, amount: u32, mode: VerifyMode) -> WidgetSession {
    srv.merchants[0].session(txn, amount, mode, now() + 600)
}

/// A card with `balance` cents that wants the PIN above `no_pin_limit`.
fn card(balance: u32, no_pin_limit: u32) -> card::Card {
    test_card_with("6280000000000001", balance, no_pin_limit)
}

async fn world(
    balance: u32,
    no_pin_limit: u32,
    amount: u32,
    mode: VerifyMode,
) -> (TestServer, World) {
    let srv = server().await;
    let ws = session(&srv, "T-1", amount, mode);
    let w = World::new(
        &srv,
        card(balance, no_pin_limit),
        Mode::Purchase,
        &ws,
        Config::default(),
        1,
    );
    (srv, w)
}

fn failed(p: Pay, retry: bool) -> Screen {
    Screen::Failed {
        problem: Problem::Pay(p),
        retry,
    }
}

/// The code of the last `error` event (capability events may follow it).
fn last_error(w: &World) -> &'static str {
    w.events
        .iter()
        .rev()
        .find_map(|e| match e {
            ParentEvent::Error { code, .. } => Some(*code),
            _ => None,
        })
        .expect("an error event")
}

#[tokio::test]
async fn purchase_under_the_no_pin_limit() {
    let (srv, mut w) = world(10_000, 5_000, 1_250, VerifyMode::PaymentServer).await;
    w.start().await;
    assert_eq!(
        w.events[0],
        ParentEvent::Ready {
            capability: Capability::Ready
        }
    );
    assert_eq!(w.screen, Screen::Confirm);
    w.press(Action::Approve).await;
    let Screen::Done { receipt, recovered } = &w.screen else {
        panic!("{:?}", w.screen)
    };
    assert_eq!(receipt.balance_after, 8_750);
    assert!(!recovered);
    assert_eq!(w.balance(), 8_750);
    assert_eq!(srv.state_of("shop", "T-1").as_deref(), Some("debited"));
    assert_eq!(srv.captured(), 1_250);
    let ParentEvent::Result {
        result: Outcome::Purchase(r @ MerchantResult::ResultM { .. }),
        verify_mode,
        ..
    } = w.last_event()
    else {
        panic!("{:?}", w.last_event())
    };
    assert_eq!(*verify_mode, Some(VerifyMode::PaymentServer));
    // the merchant's server can open result M: it is the real server's
    let MerchantResult::ResultM { result_m, .. } = r else {
        unreachable!()
    };
    let m = srv.merchants[0]
        .kit()
        .open_result_m("T-1", result_m.as_slice())
        .expect("result M opens under DK");
    assert_eq!(m.amount, 1_250);
    assert!(w.co.is_finished());
}

#[tokio::test]
async fn purchase_with_wrong_then_right_pin() {
    let (_srv, mut w) = world(10_000, 1_000, 2_500, VerifyMode::PaymentServer).await;
    w.start().await;
    w.press(Action::Approve).await;
    assert!(matches!(
        w.screen,
        Screen::Pin {
            entered: 0,
            wrong_tries_left: None,
            ..
        }
    ));
    w.type_pin("9999").await;
    assert!(
        matches!(
            w.screen,
            Screen::Pin {
                wrong_tries_left: Some(2),
                ..
            }
        ),
        "{:?}",
        w.screen
    );
    // Delete works; short PINs are not sent.
    w.press(Action::Digit(1)).await;
    w.press(Action::Delete).await;
    w.press(Action::SubmitPin).await;
    assert!(matches!(w.screen, Screen::Pin { entered: 0, .. }));
    w.type_pin("1234").await;
    assert!(matches!(w.screen, Screen::Done { .. }), "{:?}", w.screen);
    assert_eq!(w.balance(), 7_500);
    assert_eq!(w.pin_tries_left(), 3);
}

#[tokio::test]
async fn verify_rate_limit_is_mapped_by_code_and_the_pin_pad_comes_back() {
    let (_srv, mut w) = world(10_000, 1_000, 2_500, VerifyMode::PaymentServer).await;
    // the code decides, not the words: this message does not say "too many"
    let mut e = bridge_err(ErrorCode::RateLimited, "wait 20 s");
    e.limit = Some(Limit::Verify);
    e.retry_after_ms = Some(20_000);
    w.refuse_on_ins = Some((0x20, vec![e]));
    w.start().await;
    w.press(Action::Approve).await;
    w.type_pin("1234").await;
    assert_eq!(
        w.screen,
        failed(
            Pay::PinRateLimited {
                retry_after_ms: 20_000
            },
            true
        )
    );
    assert_eq!(last_error(&w), "pin_rate_limited");
    // no PIN try was spent: nothing reached the card
    assert_eq!(w.pin_tries_left(), 3);
    w.press(Action::Retry).await;
    assert!(matches!(w.screen, Screen::Pin { .. }), "{:?}", w.screen);
    w.type_pin("1234").await;
    assert!(matches!(w.screen, Screen::Done { .. }), "{:?}", w.screen);
    assert_eq!(w.balance(), 7_500);
}

#[tokio::test]
async fn verify_refused_for_the_last_try_is_not_retried() {
    for (code, words) in [
        // today's bridge: its own code
        (ErrorCode::LastPinTry, "whatever it says"),
        // an older bridge: forbidden_apdu on VERIFY, whatever the words
        // (this message mentions "too many" and must not read as the rate limit)
        (ErrorCode::ForbiddenApdu, "too many tries used: last try"),
    ] {
        let (_srv, mut w) = world(10_000, 1_000, 2_500, VerifyMode::PaymentServer).await;
        w.refuse_on_ins = Some((0x20, vec![bridge_err(code, words)]));
        w.start().await;
        w.press(Action::Approve).await;
        w.type_pin("1234").await;
        assert_eq!(w.screen, failed(Pay::LastPinTry, false));
        assert_eq!(last_error(&w), "last_pin_try");
        let html = w.html();
        assert!(html.contains("bridge pin"), "{html}");
        assert!(!html.contains("data-action=\"retry\""));
        assert_eq!(w.balance(), 10_000);
        assert_eq!(w.pin_tries_left(), 3);
    }
}

#[tokio::test]
async fn a_blocked_pin_and_the_bridges_other_limits_in_plain_words() {
    let (_srv, mut w) = world(10_000, 1_000, 2_500, VerifyMode::PaymentServer).await;
    w.refuse_on_ins = Some((0x20, vec![bridge_err(ErrorCode::PinBlocked, "blocked")]));
    w.start().await;
    w.press(Action::Approve).await;
    w.type_pin("1234").await;
    assert_eq!(w.screen, failed(Pay::PinBlocked, false));
    assert_eq!(last_error(&w), "pin_blocked");
    assert!(w.html().contains("Your PIN is blocked"));

    // the per-card INITIALIZE limit: nothing reached the card, its words say which limit
    let (_srv, mut w) = world(10_000, 5_000, 300, VerifyMode::PaymentServer).await;
    let mut e = bridge_err(ErrorCode::RateLimited, "slow down");
    e.limit = Some(Limit::Initialize);
    e.retry_after_ms = Some(3_600_000);
    w.refuse_on_ins = Some((0x50, vec![e]));
    w.start().await;
    w.press(Action::Approve).await;
    assert_eq!(
        w.screen,
        failed(
            Pay::RateLimited {
                limit: Limit::Initialize,
                retry_after_ms: 3_600_000
            },
            true
        )
    );
    assert_eq!(last_error(&w), "rate_limited");
    assert!(
        w.html().contains("too many payments in the last hour"),
        "{}",
        w.html()
    );
    assert_eq!(w.balance(), 10_000);
    // Try again reads the card afresh and pays.
    w.press(Action::Retry).await;
    assert_eq!(w.screen, Screen::Confirm);
    w.press(Action::Approve).await;
    assert!(matches!(w.screen, Screen::Done { .. }), "{:?}", w.screen);
    assert_eq!(w.balance(), 9_700);
}

#[tokio::test]
async fn insufficient_funds_is_refused_by_the_card() {
    let (srv, mut w) = world(500, 5_000, 1_250, VerifyMode::PaymentServer).await;
    w.start().await;
    w.press(Action::Approve).await;
    assert_eq!(w.screen, failed(Pay::Funds, false));
    assert_eq!(last_error(&w), "insufficient_funds");
    assert_eq!(w.balance(), 500);
    assert_eq!(srv.captured(), 0);
    w.press(Action::Cancel).await;
    assert_eq!(w.screen, Screen::Cancelled("user"));
}

/// The page's `error` event says the problem in the shopper's language, the words the
/// frame shows (what a merchant page that repeats them should show); `code` is for
/// the merchant's code.
#[tokio::test]
async fn the_page_hears_a_problem_in_the_shoppers_words() {
    use widget::i18n::Lang;
    for (lang, words) in [(Lang::En, "not enough"), (Lang::De, "reicht")] {
        let srv = server().await;
        let ws = session(&srv, "T-1", 1_250, VerifyMode::PaymentServer);
        let cfg = Config {
            lang,
            ..Config::default()
        };
        let mut w = World::new(&srv, card(500, 5_000), Mode::Purchase, &ws, cfg, 3);
        w.start().await;
        w.press(Action::Approve).await;
        let Some(ParentEvent::Error { code, message, .. }) = w.events.last() else {
            panic!("{:?}", w.events.last())
        };
        assert_eq!(*code, "insufficient_funds");
        assert!(message.contains(words), "{lang:?}: {message}");
        assert!(
            w.html().contains(message.as_str()),
            "{lang:?}: {}",
            w.html()
        );
        assert_eq!(w.balance(), 500, "nothing taken");
        assert_eq!(srv.captured(), 0);
    }
}

#[tokio::test]
async fn no_extension_then_install_link() {
    let (_srv, mut w) = world(10_000, 5_000, 100, VerifyMode::PaymentServer).await;
    w.extension = false;
    w.start().await;
    assert_eq!(
        w.co.poll_timeout(),
        Some(1_500),
        "the first answer's deadline comes first"
    );
    w.advance(1_500).await;
    assert_eq!(
        w.events,
        vec![ParentEvent::Ready {
            capability: Capability::NoExtension
        }]
    );
    assert_eq!(w.screen, Screen::Unavailable(Capability::NoExtension));
    assert!(w.html().contains("data-testid=\"install\""));
}

#[tokio::test]
async fn no_card_then_inserted() {
    let (_srv, mut w) = world(10_000, 5_000, 100, VerifyMode::PaymentServer).await;
    w.inserted = false;
    w.start().await;
    assert_eq!(
        w.events,
        vec![ParentEvent::Ready {
            capability: Capability::NoCard
        }]
    );
    w.insert().await;
    assert_eq!(w.screen, Screen::Confirm);
    assert_eq!(
        w.events[1],
        ParentEvent::Capability {
            capability: Capability::Ready
        }
    );
    // Removed again while confirming: back to "insert your card", no error;
    // the dead connection is closed at the bridge at once (not left for the unload).
    let h = w.handle;
    w.remove().await;
    assert_eq!(w.disconnected, vec![h]);
    assert_eq!(w.screen, Screen::Unavailable(Capability::NoCard));
    assert!(!w
        .events
        .iter()
        .any(|e| matches!(e, ParentEvent::Error { .. })));
    w.insert().await;
    assert_eq!(w.screen, Screen::Confirm);
    w.press(Action::Approve).await;
    assert!(matches!(w.screen, Screen::Done { .. }), "{:?}", w.screen);
}

#[tokio::test]
async fn card_pulled_at_the_press_on_approve_with_its_proof_on_the_way() {
    let (_srv, mut w) = world(10_000, 5_000, 1_000, VerifyMode::PaymentServer).await;
    w.start().await;
    assert_eq!(w.screen, Screen::Confirm);
    assert_eq!(w.card.state().atc, 0, "the amount alone spends no ATC");
    // The card's proof, sent at the shopper's first gesture (here a key in the
    // frame; a press on Approve sends it too, see the next test).
    w.pull_on_ins = Some(0x50);
    w.press(Action::Gesture).await;
    // Nothing started: back to "insert your card", no error, as when the card
    // is pulled at the amount with nothing on its way (no_card_then_inserted).
    assert_eq!(w.screen, Screen::Unavailable(Capability::NoCard));
    assert!(!w
        .events
        .iter()
        .any(|e| matches!(e, ParentEvent::Error { .. })));
    assert_eq!(w.balance(), 10_000);
    w.insert().await;
    assert_eq!(w.screen, Screen::Confirm);
    // The gesture sends the proof (one ATC), the click finds it in.
    w.press(Action::Gesture).await;
    assert_eq!(w.screen, Screen::Confirm);
    assert_eq!(w.card.state().atc, 2, "the lost proof's and this one");
    w.press(Action::Approve).await;
    assert!(matches!(w.screen, Screen::Done { .. }), "{:?}", w.screen);
    assert_eq!(w.card.state().atc, 3);
    assert_eq!(w.balance(), 9_000);
}

#[tokio::test]
async fn the_press_on_approve_prepares_the_card_and_the_click_draws_at_once() {
    let (srv, mut w) = world(10_000, 5_000, 1_000, VerifyMode::PaymentServer).await;
    w.start().await;
    assert_eq!(w.card.state().atc, 0, "the amount alone spends no ATC");
    // The press: the card's proof and the purchase's INITIALIZE (two ATCs);
    // the amount stays shown, nothing goes to the server, nothing is taken.
    w.press(Action::Press).await;
    assert_eq!(w.screen, Screen::Confirm);
    assert_eq!(w.card.state().atc, 2);
    assert!(w.posts.is_empty(), "{:?}", w.posts);
    assert_eq!(w.balance(), 10_000);
    // The click, a press's length later: the draw first, paid once with the
    // press's INITIALIZE (no third ATC).
    w.now += 80;
    w.press(Action::Approve).await;
    assert!(matches!(w.screen, Screen::Done { .. }), "{:?}", w.screen);
    assert_eq!(w.posts.first().copied(), Some(purse::purchase::PATH_DRAW));
    assert_eq!(w.card.state().atc, 2);
    assert_eq!(w.balance(), 9_000);
    assert_eq!(srv.captured(), 1_000);
}

#[tokio::test]
async fn a_card_that_wants_the_pin_shows_the_keypad_at_the_click_not_at_the_press() {
    // Above the card's no-PIN limit the press's INITIALIZE is answered 6982
    // (no ATC spent). The keypad must not replace Approve under the shopper's
    // pressed button: it comes with the click, then the PIN pays once.
    let (srv, mut w) = world(10_000, 1_000, 2_500, VerifyMode::PaymentServer).await;
    w.start().await;
    w.press(Action::Press).await;
    assert_eq!(w.screen, Screen::Confirm);
    assert_eq!(w.card.state().atc, 1, "the proof only: 6982 spends none");
    w.now += 80;
    w.press(Action::Approve).await;
    assert!(
        matches!(
            w.screen,
            Screen::Pin {
                entered: 0,
                wrong_tries_left: None,
                ..
            }
        ),
        "{:?}",
        w.screen
    );
    w.type_pin("1234").await;
    assert!(matches!(w.screen, Screen::Done { .. }), "{:?}", w.screen);
    assert_eq!(w.card.state().atc, 2, "the proof, then the purchase's");
    assert_eq!(w.balance(), 7_500);
    assert_eq!(srv.captured(), 2_500);
}

#[tokio::test]
async fn card_pulled_before_debit_charges_nothing_and_retry_works() {
    let (_srv, mut w) = world(10_000, 5_000, 1_000, VerifyMode::PaymentServer).await;
    w.start().await;
    w.pull_on_ins = Some(0x50); // during INITIALIZE
    w.press(Action::Approve).await;
    assert_eq!(w.screen, failed(Pay::CardRemoved, true));
    assert_eq!(w.balance(), 10_000);
    w.insert().await;
    assert_eq!(w.screen, Screen::Confirm);
    w.press(Action::Approve).await;
    assert!(matches!(w.screen, Screen::Done { .. }));
    assert_eq!(w.balance(), 9_000);
}

#[tokio::test]
async fn card_pulled_during_debit_then_back_shows_the_servers_answer_charged() {
    let (srv, mut w) = world(10_000, 5_000, 1_000, VerifyMode::PaymentServer).await;
    w.start().await;
    w.pull_on_ins = Some(0x54); // DEBIT written, answer lost
    w.press(Action::Approve).await;
    assert!(matches!(
        w.screen,
        Screen::Failed {
            problem: Problem::Pay(Pay::Torn),
            ..
        }
    ));
    assert_eq!(last_error(&w), "debit_unknown");
    assert!(
        w.html().contains("Put it back in the reader"),
        "{}",
        w.html()
    );
    assert!(
        !w.html().contains("data-action=\"cancel\""),
        "no cancel once the card may be charged"
    );
    // The timeout no longer cancels: the transaction is in the server's hands
    // (the only deadline left: looking for the card again).
    assert_eq!(
        w.co.poll_timeout(),
        Some(w.now + widget::checkout::CARD_POLL_MS)
    );
    w.advance(200_000).await;
    assert!(matches!(w.screen, Screen::Failed { .. }));
    w.press(Action::Cancel).await;
    assert!(
        matches!(w.screen, Screen::Failed { .. }),
        "no cancel after a debit"
    );
    // Back in the reader: the card's log goes to the server, which decides.
    w.insert().await;
    let Screen::Done { receipt, recovered } = &w.screen else {
        panic!("{:?}", w.screen)
    };
    assert!(recovered);
    assert_eq!(receipt.amount, 1_000);
    assert!(w.html().contains("charged once"), "{}", w.html());
    assert!(w.posts.contains(&purse::purchase::PATH_RECOVER));
    // the merchant page gets result M, and the server has it debited
    assert!(matches!(
        w.last_event(),
        ParentEvent::Result {
            result: Outcome::Purchase(MerchantResult::ResultM { .. }),
            ..
        }
    ));
    assert_eq!(w.balance(), 9_000);
    assert_eq!(srv.state_of("shop", "T-1").as_deref(), Some("debited"));
    assert_eq!(srv.captured(), 1_000);
}

#[tokio::test]
async fn a_recovery_looks_for_the_card_even_when_no_card_event_comes() {
    // PC/SC can miss a card pulled and put back within its poll: no events at all.
    let (srv, mut w) = world(10_000, 5_000, 700, VerifyMode::PaymentServer).await;
    w.start().await;
    w.pull_on_ins = Some(0x54);
    w.press(Action::Approve).await;
    assert_eq!(last_error(&w), "debit_unknown");
    assert_eq!(w.co.poll_timeout(), Some(super_poll(&w)));
    w.advance(1_000).await; // the card is still out: looked for, not found
    assert!(matches!(w.screen, Screen::Failed { .. }));
    w.inserted = true; // back, silently
    w.advance(1_000).await;
    assert!(
        matches!(
            w.screen,
            Screen::Done {
                recovered: true,
                ..
            }
        ),
        "{:?}",
        w.screen
    );
    assert_eq!(srv.captured(), 700);
    assert_eq!(w.co.poll_timeout(), None, "nothing more to wait for");
}

fn super_poll(w: &World) -> u64 {
    w.now + widget::checkout::CARD_POLL_MS
}

#[tokio::test]
async fn card_pulled_before_it_processed_debit_shows_not_charged() {
    let (srv, mut w) = world(10_000, 5_000, 1_000, VerifyMode::PaymentServer).await;
    w.start().await;
    w.pull_on_ins = Some(0x54);
    w.pull_before_processing = true;
    w.press(Action::Approve).await;
    assert_eq!(last_error(&w), "debit_unknown");
    w.insert().await;
    assert_eq!(w.screen, failed(Pay::NotCharged, false), "{:?}", w.screen);
    assert_eq!(last_error(&w), "debit_not_done");
    assert!(w.html().contains("Your card was not charged"));
    assert_eq!(w.balance(), 10_000);
    assert_eq!(srv.state_of("shop", "T-1").as_deref(), Some("failed"));
    assert_eq!(srv.captured(), 0);
}

#[tokio::test]
async fn cancel_timeout_and_not_mine() {
    let (_srv, mut w) = world(10_000, 5_000, 100, VerifyMode::PaymentServer).await;
    w.start().await;
    w.press(Action::Cancel).await;
    assert_eq!(w.screen, Screen::Cancelled("user"));
    assert!(matches!(
        w.last_event(),
        ParentEvent::Cancel { reason: "user", .. }
    ));
    // Nothing happens after the end.
    w.press(Action::Approve).await;
    assert_eq!(w.screen, Screen::Cancelled("user"));

    let (_srv, mut w) = world(10_000, 5_000, 100, VerifyMode::PaymentServer).await;
    w.start().await;
    w.advance(120_000).await;
    assert!(matches!(
        w.last_event(),
        ParentEvent::Cancel {
            reason: "timeout",
            ..
        }
    ));

    let (srv, mut w) = world(10_000, 5_000, 100, VerifyMode::PaymentServer).await;
    w.start().await;
    w.press(Action::NotMine).await;
    assert!(matches!(
        w.last_event(),
        ParentEvent::Cancel {
            reason: "not_mine",
            ..
        }
    ));
    let reports = srv
        .db
        .ints(
            "SELECT COUNT(*) FROM suspicious_reports WHERE txn_id = 'T-1'",
            &[],
        )
        .unwrap();
    assert_eq!(reports, [1], "the payment server recorded the report");
    assert_eq!(w.balance(), 10_000);
}

#[tokio::test]
async fn network_down_then_retry_draw() {
    let (_srv, mut w) = world(10_000, 5_000, 300, VerifyMode::PaymentServer).await;
    w.start().await;
    w.server_down = true;
    w.press(Action::Approve).await;
    assert_eq!(w.screen, failed(Pay::ServerUnreachable, true));
    w.server_down = false;
    w.press(Action::Retry).await;
    assert!(matches!(w.screen, Screen::Done { .. }), "{:?}", w.screen);
    assert_eq!(w.balance(), 9_700);
}

#[tokio::test]
async fn merchant_mode_hands_s3_pair_to_the_merchant() {
    let (srv, mut w) = world(10_000, 5_000, 300, VerifyMode::Merchant).await;
    w.start().await;
    w.press(Action::Approve).await;
    let ParentEvent::Result {
        result:
            Outcome::Purchase(MerchantResult::S3 {
                s3,
                expected_s3_m,
                balance_after,
                ..
            }),
        ..
    } = w.last_event()
    else {
        panic!("{:?}", w.last_event())
    };
    // expected S3 is sealed for the merchant (the client cannot read it) and says the card's S3
    assert_ne!(s3, expected_s3_m);
    let e = srv.merchants[0]
        .kit()
        .open_expected_s3("T-1", expected_s3_m.as_slice())
        .expect("opens under DK");
    assert_eq!(e.expected_s3, *s3);
    assert_eq!(*balance_after, 9_700);
    // complete is still called in the background: the server captured on the card's S3
    assert_eq!(w.posts.last(), Some(&purse::purchase::PATH_COMPLETE));
    assert_eq!(srv.state_of("shop", "T-1").as_deref(), Some("debited"));
}

#[tokio::test]
async fn client_mode_compares_s3_itself() {
    let (srv, mut w) = world(10_000, 5_000, 300, VerifyMode::Client).await;
    w.start().await;
    w.press(Action::Approve).await;
    assert!(matches!(w.screen, Screen::Done { .. }), "{:?}", w.screen);
    assert_eq!(srv.state_of("shop", "T-1").as_deref(), Some("debited"));
}

#[tokio::test]
async fn session_for_another_origin_is_refused() {
    let srv = server().await;
    let ws = session(&srv, "T-9", 100, VerifyMode::PaymentServer);
    let text = serde_json::to_string(&ws).unwrap();
    let mount = |page_origin: &str| {
        Checkout::new(
            Config::default(),
            Mode::Purchase,
            &text,
            page_origin,
            Box::new(SplitMix(1)),
        )
        .is_ok()
    };
    assert!(!mount("http://evil.example"));
    // The session's origin, as the browser reports it or with a trailing `/`: taken.
    let origin = ws.session.origin.trim_end_matches('/').to_string();
    assert!(mount(&origin));
    assert!(mount(&format!("{origin}/")));
    // Anything longer or shorter is another origin.
    assert!(!mount(&format!("{origin}.evil.example")));
    assert!(!mount(&format!("{origin}:8443")));
    assert!(!mount(&origin[..origin.len() - 1]));
    assert!(!mount(&format!("{origin}/x")));
    // a purchase session is no load session
    #[cfg(feature = "load")]
    assert!(Checkout::new(
        Config::default(),
        Mode::Load,
        &text,
        &ws.session.origin,
        Box::new(SplitMix(1))
    )
    .is_err());
}

#[tokio::test]
async fn keypad_differs_between_transactions() {
    let srv = server().await;
    let layout = |seed| {
        let ws = session(&srv, "T-1", 100, VerifyMode::PaymentServer);
        let w = World::new(
            &srv,
            card(10_000, 0),
            Mode::Purchase,
            &ws,
            Config::default(),
            seed,
        );
        w.co.layout().cloned()
    };
    assert_ne!(layout(1), layout(2));
}

#[tokio::test]
async fn effects_never_print_the_pin() {
    let (_srv, mut w) = world(10_000, 0, 100, VerifyMode::PaymentServer).await;
    w.start().await;
    w.press(Action::Approve).await;
    for d in [1, 2, 3, 4] {
        w.co.handle(Input::User(Action::Digit(d)), 0);
    }
    let fx = w.co.handle(Input::User(Action::SubmitPin), 0);
    let dbg = format!("{fx:?}");
    assert!(!dbg.contains("31323334") && !dbg.contains("1234"), "{dbg}");
    assert!(dbg.contains("Bridge#"), "{dbg}");
    assert!(!format!("{:?}", w.co.view()).contains("1234"));
}

#[tokio::test]
async fn a_debit_command_for_another_amount_is_not_sent_to_the_card() {
    let (_srv, mut w) = world(10_000, 5_000, 300, VerifyMode::PaymentServer).await;
    w.skim = 1;
    w.start().await;
    w.press(Action::Approve).await;
    assert_eq!(w.screen, failed(Pay::AmountChanged, false));
    assert_eq!(last_error(&w), "amount_mismatch");
    assert_eq!(w.balance(), 10_000);
}

#[tokio::test]
async fn network_down_at_complete_then_retry_is_idempotent() {
    let (srv, mut w) = world(10_000, 5_000, 400, VerifyMode::PaymentServer).await;
    w.start().await;
    // The draw goes through, then the network is down for `complete`.
    w.complete_down = true;
    w.press(Action::Approve).await;
    assert_eq!(w.screen, failed(Pay::ServerUnreachable, true));
    assert_eq!(w.balance(), 9_600, "the card was debited");
    // Cancel and timeout are off now: the money moved.
    w.press(Action::Cancel).await;
    w.advance(200_000).await;
    assert!(matches!(w.screen, Screen::Failed { .. }));
    w.complete_down = false;
    w.press(Action::Retry).await;
    assert!(matches!(w.screen, Screen::Done { .. }), "{:?}", w.screen);
    assert_eq!(srv.captured(), 400);
    // the same complete again: the stored answer, never a second capture
    w.press(Action::Retry).await;
    assert_eq!(srv.captured(), 400);
}

#[tokio::test]
async fn screens_render_in_german() {
    let srv = server().await;
    let cfg = Config {
        lang: widget::i18n::Lang::De,
        ..Config::default()
    };
    // a merchant name with markup (the kit's session, MAC and all)
    let m = &srv.merchants[0];
    let ws = merchant_kit_with_name(m, "Demo <Store>");
    let mut w = World::new(&srv, card(10_000, 0), Mode::Purchase, &ws, cfg, 3);
    w.start().await;
    let html = w.html();
    assert!(html.contains("Zahlung freigeben"), "{html}");
    assert!(html.contains("19,99 €"));
    assert!(html.contains("Demo &lt;Store&gt;"), "payee is escaped");
    w.press(Action::Approve).await;
    let html = w.html();
    assert!(html.contains("PIN eingeben"));
    assert!(html.contains(r#"aria-label="Letzte Ziffer löschen""#));
}

/// A session of the test merchant whose name carries markup.
fn merchant_kit_with_name(m: &TestMerchant, name: &str) -> WidgetSession {
    let mut ws = m.session("T-1", 1_999, VerifyMode::PaymentServer, now() + 600);
    ws.session.merchant_name = name.into();
    ws
}

#[tokio::test]
async fn a_late_first_answer_still_makes_the_widget_ready() {
    let (_srv, mut w) = world(10_000, 5_000, 100, VerifyMode::PaymentServer).await;
    w.extension = false;
    w.start().await;
    w.advance(1_500).await;
    assert_eq!(w.screen, Screen::Unavailable(Capability::NoExtension));
    // The extension's answer to the first request (`readers`, id 1) arrives late.
    w.extension = true;
    let late = json(&purse::bridge_msg::Reply::result(
        purse::bridge_msg::Id::Num(1),
        purse::bridge_msg::BridgeResult::Readers(purse::bridge_msg::Readers {
            readers: vec![purse::bridge_msg::ReaderInfo {
                name: READER.into(),
                card_present: true,
            }],
        }),
    ));
    w.feed(Input::Extension(late)).await;
    assert_eq!(w.screen, Screen::Confirm);
    assert_eq!(
        w.events.last(),
        Some(&ParentEvent::Capability {
            capability: Capability::Ready
        })
    );
}

#[tokio::test]
async fn expiry_warning_offers_more_time() {
    let (_srv, mut w) = world(10_000, 5_000, 100, VerifyMode::PaymentServer).await;
    w.start().await;
    // one timer: the warning 20 s before the 120 s expiry
    assert_eq!(w.co.poll_timeout(), Some(100_000));
    w.advance(100_000).await;
    assert!(w.co.view().expiry_warning);
    assert!(w.html().contains("data-action=\"more-time\""));
    assert_eq!(w.co.poll_timeout(), Some(120_000));
    w.press(Action::MoreTime).await;
    assert!(!w.co.view().expiry_warning);
    assert_eq!(w.co.poll_timeout(), Some(200_000), "the clock restarted");
    // Still usable afterwards.
    w.press(Action::Approve).await;
    assert!(matches!(w.screen, Screen::Done { .. }));
    // After the debit, no warning and no expiry.
    assert_eq!(w.co.poll_timeout(), None);
    w.advance(500_000).await;
    assert!(!w.co.view().expiry_warning);
}

#[tokio::test]
async fn an_expired_card_is_refused_at_once() {
    let srv = server().await;
    let cfg = Config {
        today: Some(purse::BcdDate::from_ymd(2031, 1, 1).unwrap()),
        ..Config::default()
    };
    let ws = session(&srv, "T-1", 100, VerifyMode::PaymentServer);
    let mut w = World::new(&srv, card(10_000, 5_000), Mode::Purchase, &ws, cfg, 5);
    w.start().await;
    assert_eq!(w.screen, failed(Pay::CardExpired, false));
    assert_eq!(last_error(&w), "card_expired");
    assert!(w.html().contains("Your card has expired."));
    assert!(w.posts.is_empty(), "nothing went to the server");
}
