//! The whole purchase, natively: the widget's state machine against the virtual
//! card's purse application (in memory) and a payment server built from
//! `purse::session` + `purse::security_module` that speaks `purse::wire`.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use card::personalise::Personalisation;
use card::{Card, FixedRandom};
use common::*;
use purse::crypto::DesKey;
use purse::session::VerifyMode;
use purse::{CardId, Expiry};
use widget::api;
use widget::flow::{Problem, Screen};
use widget::keypad::SplitMix;
use widget::{Action, Capability, Config, Flow, Input, ParentEvent, Timer};

struct Real(Card);

impl Chip for Real {
    fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        self.0.process(apdu)
    }
    fn reset(&mut self) {
        self.0.reset()
    }
    fn balance(&self) -> u32 {
        self.0.state().purses[0].balance
    }
    fn pin_tries_left(&self) -> u8 {
        self.0.state().pin_tries_left
    }
}

fn card(balance: u32, no_pin_limit: u32) -> Real {
    let st = Personalisation {
        card_id: CardId::parse("6280000000000001").unwrap(),
        expiry: Expiry::parse("301231").unwrap(),
        currency: 978,
        exponent: 2,
        balance,
        max_balance: 100_000,
        points: 0,
        points_max: 10_000,
        pin: "1234".into(),
        no_pin_limit,
        key_version: 1,
        mkp: DesKey::from_hex(MKP).unwrap(),
        mkl: DesKey::from_hex(MKL).unwrap(),
    }
    .build()
    .unwrap();
    Real(Card::with_random(st, Box::new(FixedRandom([1, 2, 3, 4]))))
}

#[test]
fn purchase_under_the_no_pin_limit() {
    let mut w = World::new(card(10_000, 5_000), 1_250, VerifyMode::PaymentServer);
    w.feed(Input::Start);
    assert_eq!(
        w.events[0],
        ParentEvent::Ready {
            capability: Capability::Ready
        }
    );
    assert_eq!(w.screen, Screen::Confirm);
    w.press(Action::Approve);
    let Screen::Done(r) = &w.screen else {
        panic!("{:?}", w.screen)
    };
    assert_eq!(r.balance_after, 8_750);
    assert_eq!(w.balance(), 8_750);
    assert_eq!(w.server.debited, vec![("T-1".to_string(), 1_250)]);
    assert!(matches!(
        w.last_event(),
        ParentEvent::Result {
            result: api::MerchantResult::ResultM { .. },
            ..
        }
    ));
    assert!(w.flow.is_finished());
}

#[test]
fn purchase_with_wrong_then_right_pin() {
    let mut w = World::new(card(10_000, 1_000), 2_500, VerifyMode::PaymentServer);
    w.feed(Input::Start);
    w.press(Action::Approve);
    assert!(matches!(
        w.screen,
        Screen::Pin {
            entered: 0,
            wrong_tries_left: None,
            ..
        }
    ));
    w.type_pin("9999");
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
    w.press(Action::Digit(1));
    w.press(Action::Delete);
    w.press(Action::SubmitPin);
    assert!(matches!(w.screen, Screen::Pin { entered: 0, .. }));
    w.type_pin("1234");
    assert!(matches!(w.screen, Screen::Done(_)), "{:?}", w.screen);
    assert_eq!(w.balance(), 7_500);
    assert_eq!(w.card.pin_tries_left(), 3);
}

fn bridge_err(code: &str, message: &str) -> widget::flow::BridgeError {
    widget::flow::BridgeError {
        code: code.into(),
        message: message.into(),
    }
}

#[test]
fn verify_rate_limit_is_mapped_by_code_and_the_pin_pad_comes_back() {
    let mut w = World::new(card(10_000, 1_000), 2_500, VerifyMode::PaymentServer);
    // the code decides, not the words: this message does not say "too many"
    w.refuse_on_ins = Some((0x20, vec![bridge_err("rate_limited", "wait 20 s")]));
    w.feed(Input::Start);
    w.press(Action::Approve);
    w.type_pin("1234");
    assert_eq!(
        w.screen,
        Screen::Failed {
            problem: Problem::PinRateLimited,
            retry: true,
        }
    );
    assert!(
        matches!(
            w.last_event(),
            ParentEvent::Error {
                code: "pin_rate_limited",
                ..
            }
        ),
        "{:?}",
        w.last_event()
    );
    // no PIN try was spent: nothing reached the card
    assert_eq!(w.card.pin_tries_left(), 3);
    w.press(Action::Retry);
    assert!(matches!(w.screen, Screen::Pin { .. }), "{:?}", w.screen);
    w.type_pin("1234");
    assert!(matches!(w.screen, Screen::Done(_)), "{:?}", w.screen);
    assert_eq!(w.balance(), 7_500);
}

#[test]
fn verify_refused_for_the_last_try_is_not_retried() {
    let mut w = World::new(card(10_000, 1_000), 2_500, VerifyMode::PaymentServer);
    // forbidden_apdu on VERIFY is the last-try protection, whatever the words
    // (this message mentions "too many" and must not read as the rate limit)
    w.refuse_on_ins = Some((
        0x20,
        vec![bridge_err(
            "forbidden_apdu",
            "too many tries used: last try",
        )],
    ));
    w.feed(Input::Start);
    w.press(Action::Approve);
    w.type_pin("1234");
    assert_eq!(
        w.screen,
        Screen::Failed {
            problem: Problem::LastPinTry,
            retry: false,
        }
    );
    assert_eq!(w.balance(), 10_000);
    assert_eq!(w.card.pin_tries_left(), 3);
}

#[test]
fn insufficient_funds_is_refused_by_the_card() {
    let mut w = World::new(card(500, 5_000), 1_250, VerifyMode::PaymentServer);
    w.feed(Input::Start);
    w.press(Action::Approve);
    assert!(matches!(
        w.screen,
        Screen::Failed {
            problem: widget::flow::Problem::Funds,
            retry: false
        }
    ));
    assert!(matches!(
        w.last_event(),
        ParentEvent::Error {
            code: "insufficient_funds",
            ..
        }
    ));
    assert_eq!(w.balance(), 500);
    assert!(w.server.debited.is_empty());
    w.press(Action::Cancel);
    assert!(matches!(w.screen, Screen::Cancelled("user")));
}

#[test]
fn no_extension_then_install_link() {
    let mut w = World::new(card(10_000, 5_000), 100, VerifyMode::PaymentServer);
    w.extension = false;
    w.feed(Input::Start);
    w.feed(Input::Timer(Timer::Hello));
    assert_eq!(
        w.events,
        vec![ParentEvent::Ready {
            capability: Capability::NoExtension
        }]
    );
    assert_eq!(w.screen, Screen::Unavailable(Capability::NoExtension));
    assert!(widget::view::render(&w.flow.view()).contains("data-testid=\"install\""));
}

#[test]
fn no_card_then_inserted() {
    let mut w = World::new(card(10_000, 5_000), 100, VerifyMode::PaymentServer);
    w.inserted = false;
    w.feed(Input::Start);
    assert_eq!(
        w.events,
        vec![ParentEvent::Ready {
            capability: Capability::NoCard
        }]
    );
    w.inserted = true;
    w.feed(Input::CardInserted {
        reader: READER.into(),
    });
    assert_eq!(w.screen, Screen::Confirm);
    assert_eq!(
        w.events[1],
        ParentEvent::Capability {
            capability: Capability::Ready
        }
    );
    // Removed again while confirming: back to "insert your card".
    w.inserted = false;
    w.feed(Input::CardRemoved {
        reader: READER.into(),
    });
    assert_eq!(w.screen, Screen::Unavailable(Capability::NoCard));
}

#[test]
fn card_pulled_before_debit_charges_nothing_and_retry_works() {
    let mut w = World::new(card(10_000, 5_000), 1_000, VerifyMode::PaymentServer);
    w.feed(Input::Start);
    w.pull_on_ins = Some(0x50); // during INITIALIZE
    w.press(Action::Approve);
    assert!(matches!(
        w.screen,
        Screen::Failed {
            problem: widget::flow::Problem::CardRemoved,
            retry: true
        }
    ));
    assert_eq!(w.balance(), 10_000);
    w.inserted = true;
    w.feed(Input::CardInserted {
        reader: READER.into(),
    });
    assert_eq!(w.screen, Screen::Confirm);
    w.press(Action::Approve);
    assert!(matches!(w.screen, Screen::Done(_)));
    assert_eq!(w.balance(), 9_000);
}

#[test]
fn card_pulled_during_debit_is_reported_as_unknown() {
    let mut w = World::new(card(10_000, 5_000), 1_000, VerifyMode::PaymentServer);
    w.feed(Input::Start);
    w.pull_on_ins = Some(0x54); // DEBIT written, answer lost
    w.press(Action::Approve);
    assert!(matches!(
        w.screen,
        Screen::Failed {
            problem: widget::flow::Problem::CardRemovedCharged,
            ..
        }
    ));
    assert!(matches!(
        w.last_event(),
        ParentEvent::Error {
            code: "debit_unknown",
            ..
        }
    ));
    // The timeout no longer cancels: the transaction is in the server's hands.
    w.feed(Input::Timer(Timer::Expiry));
    assert!(matches!(w.screen, Screen::Failed { .. }));
    // Back in the reader: the card's log shows the debit.
    w.inserted = true;
    w.feed(Input::CardInserted {
        reader: READER.into(),
    });
    assert!(
        matches!(
            w.screen,
            Screen::Failed {
                problem: widget::flow::Problem::DebitDone,
                retry: false
            }
        ),
        "{:?}",
        w.screen
    );
    assert!(matches!(
        w.last_event(),
        ParentEvent::Error {
            code: "debit_unconfirmed",
            ..
        }
    ));
    assert_eq!(w.balance(), 9_000);
    w.press(Action::Cancel);
    assert!(
        matches!(w.screen, Screen::Failed { .. }),
        "no cancel after a debit"
    );
}

#[test]
fn card_pulled_before_it_processed_debit_shows_not_charged() {
    let mut w = World::new(card(10_000, 5_000), 1_000, VerifyMode::PaymentServer);
    w.feed(Input::Start);
    w.pull_on_ins = Some(0x54);
    w.pull_before_processing = true;
    w.press(Action::Approve);
    assert!(matches!(
        w.last_event(),
        ParentEvent::Error {
            code: "debit_unknown",
            ..
        }
    ));
    w.inserted = true;
    w.feed(Input::CardInserted {
        reader: READER.into(),
    });
    assert!(
        matches!(
            w.screen,
            Screen::Failed {
                problem: widget::flow::Problem::DebitNotDone,
                ..
            }
        ),
        "{:?}",
        w.screen
    );
    assert_eq!(w.balance(), 10_000);
}

#[test]
fn cancel_timeout_and_not_mine() {
    let mut w = World::new(card(10_000, 5_000), 100, VerifyMode::PaymentServer);
    w.feed(Input::Start);
    w.press(Action::Cancel);
    assert_eq!(w.screen, Screen::Cancelled("user"));
    assert!(matches!(
        w.last_event(),
        ParentEvent::Cancel { reason: "user", .. }
    ));
    // Nothing happens after the end.
    w.press(Action::Approve);
    assert_eq!(w.screen, Screen::Cancelled("user"));

    let mut w = World::new(card(10_000, 5_000), 100, VerifyMode::PaymentServer);
    w.feed(Input::Start);
    w.feed(Input::Timer(Timer::Expiry));
    assert!(matches!(
        w.last_event(),
        ParentEvent::Cancel {
            reason: "timeout",
            ..
        }
    ));

    let mut w = World::new(card(10_000, 5_000), 100, VerifyMode::PaymentServer);
    w.feed(Input::Start);
    w.press(Action::NotMine);
    assert!(matches!(
        w.last_event(),
        ParentEvent::Cancel {
            reason: "not_mine",
            ..
        }
    ));
    assert_eq!(w.server.reports, vec!["T-1".to_string()]);
    assert_eq!(w.balance(), 10_000);
}

#[test]
fn network_down_then_retry_draw() {
    let mut w = World::new(card(10_000, 5_000), 300, VerifyMode::PaymentServer);
    w.feed(Input::Start);
    w.server.down = true;
    w.press(Action::Approve);
    assert!(matches!(
        w.screen,
        Screen::Failed {
            problem: widget::flow::Problem::Network,
            retry: true
        }
    ));
    w.server.down = false;
    w.press(Action::Retry);
    assert!(matches!(w.screen, Screen::Done(_)), "{:?}", w.screen);
    assert_eq!(w.balance(), 9_700);
}

#[test]
fn merchant_mode_hands_s3_pair_to_the_merchant() {
    let mut w = World::new(card(10_000, 5_000), 300, VerifyMode::Merchant);
    w.feed(Input::Start);
    w.press(Action::Approve);
    let ParentEvent::Result {
        result:
            api::MerchantResult::S3 {
                s3,
                expected_s3_m,
                balance_after,
                ..
            },
        ..
    } = w.last_event()
    else {
        panic!("{:?}", w.last_event())
    };
    assert_eq!(
        s3, expected_s3_m,
        "the test server passes expected S3 through unsealed"
    );
    assert_eq!(*balance_after, 9_700);
    assert_eq!(
        w.server.completes, 1,
        "complete is still called in the background"
    );
}

#[test]
fn client_mode_compares_s3_itself() {
    let mut w = World::new(card(10_000, 5_000), 300, VerifyMode::Client);
    w.feed(Input::Start);
    w.press(Action::Approve);
    assert!(matches!(w.screen, Screen::Done(_)));
}

#[test]
fn session_for_another_origin_is_refused() {
    let s = Server::new();
    let b = s.bundle("T-9", 100, VerifyMode::PaymentServer);
    assert!(Flow::new(
        Config::default(),
        b,
        "http://evil.example",
        Box::new(SplitMix(1))
    )
    .is_err());
}

#[test]
fn keypad_differs_between_transactions() {
    let run = |seed| {
        let server = Server::new();
        let mut w = World::new(card(10_000, 0), 100, VerifyMode::PaymentServer);
        w.flow = Flow::new(
            Config::default(),
            server.bundle("T-1", 100, VerifyMode::PaymentServer),
            ORIGIN,
            Box::new(SplitMix(seed)),
        )
        .unwrap();
        w.feed(Input::Start);
        w.press(Action::Approve);
        w.flow.layout().cloned().unwrap()
    };
    assert_ne!(run(1), run(2));
}

#[test]
fn effects_never_print_the_pin() {
    let mut w = World::new(card(10_000, 0), 100, VerifyMode::PaymentServer);
    w.feed(Input::Start);
    w.press(Action::Approve);
    for d in [1, 2, 3, 4] {
        w.flow.handle(Input::User(Action::Digit(d)));
    }
    let fx = w.flow.handle(Input::User(Action::SubmitPin));
    let dbg = format!("{fx:?}");
    assert!(!dbg.contains("31323334"), "{dbg}");
    assert!(dbg.contains("Bridge#"));
}

#[test]
fn a_debit_command_for_another_amount_is_not_sent_to_the_card() {
    let mut w = World::new(card(10_000, 5_000), 300, VerifyMode::PaymentServer);
    w.server.skim = 1;
    w.feed(Input::Start);
    w.press(Action::Approve);
    assert!(matches!(
        w.screen,
        Screen::Failed {
            problem: widget::flow::Problem::AmountMismatch,
            retry: false
        }
    ));
    assert_eq!(w.balance(), 10_000);
}

#[test]
fn network_down_at_complete_then_retry_is_idempotent() {
    let mut w = World::new(card(10_000, 5_000), 400, VerifyMode::PaymentServer);
    w.feed(Input::Start);
    // The draw goes through, then the network is down for `complete`.
    w.server.down_after_draws = 1;
    w.press(Action::Approve);
    assert!(
        matches!(
            w.screen,
            Screen::Failed {
                problem: widget::flow::Problem::Network,
                retry: true
            }
        ),
        "{:?}",
        w.screen
    );
    assert_eq!(w.balance(), 9_600, "the card was debited");
    // Cancel and timeout are off now: the money moved.
    w.press(Action::Cancel);
    w.feed(Input::Timer(Timer::Expiry));
    assert!(matches!(w.screen, Screen::Failed { .. }));
    w.server.down = false;
    w.server.down_after_draws = u32::MAX;
    w.press(Action::Retry);
    assert!(matches!(w.screen, Screen::Done(_)), "{:?}", w.screen);
    assert_eq!(w.server.debited, vec![("T-1".to_string(), 400)]);
}

#[test]
fn screens_render_in_german() {
    let server = Server::new();
    let cfg = Config {
        lang: widget::i18n::Lang::De,
        ..Config::default()
    };
    let mut w = World::new(card(10_000, 0), 1_999, VerifyMode::PaymentServer);
    w.flow = Flow::new(
        cfg,
        server.bundle("T-1", 1_999, VerifyMode::PaymentServer),
        ORIGIN,
        Box::new(SplitMix(3)),
    )
    .unwrap();
    w.feed(Input::Start);
    let html = widget::view::render(&w.flow.view());
    assert!(html.contains("Zahlung freigeben"), "{html}");
    assert!(html.contains("19,99 €"));
    assert!(html.contains("Demo &lt;Store&gt;"), "payee is escaped");
    w.press(Action::Approve);
    let html = widget::view::render(&w.flow.view());
    assert!(html.contains("PIN eingeben"));
    assert!(html.contains(r#"aria-label="Letzte Ziffer löschen""#));
}

#[test]
fn a_late_hello_answer_still_makes_the_widget_ready() {
    let mut w = World::new(card(10_000, 5_000), 100, VerifyMode::PaymentServer);
    w.extension = false;
    w.feed(Input::Start);
    w.feed(Input::Timer(Timer::Hello));
    assert_eq!(w.screen, Screen::Unavailable(Capability::NoExtension));
    // The extension's answer to the first hello (id 1) arrives late.
    w.extension = true;
    w.feed(Input::BridgeReply {
        id: 1,
        result: Ok(serde_json::json!({"version": 1})),
    });
    assert_eq!(w.screen, Screen::Confirm);
    assert_eq!(
        w.events.last(),
        Some(&ParentEvent::Capability {
            capability: Capability::Ready
        })
    );
}

#[test]
fn expiry_warning_offers_more_time() {
    let mut w = World::new(card(10_000, 5_000), 100, VerifyMode::PaymentServer);
    let fx = w.flow.handle(Input::Start);
    assert!(fx.contains(&widget::Effect::StartTimer(Timer::Expiry, 120_000)));
    assert!(fx.contains(&widget::Effect::StartTimer(Timer::Warn, 100_000)));
    let mut w = World::new(card(10_000, 5_000), 100, VerifyMode::PaymentServer);
    w.feed(Input::Start);
    w.feed(Input::Timer(Timer::Warn));
    assert!(w.flow.view().expiry_warning);
    let html = widget::view::render(&w.flow.view());
    assert!(html.contains("data-action=\"more-time\""));
    let fx = w.flow.handle(Input::User(Action::MoreTime));
    assert!(fx.contains(&widget::Effect::StartTimer(Timer::Expiry, 120_000)));
    assert!(!w.flow.view().expiry_warning);
    // Still usable afterwards.
    w.press(Action::Approve);
    assert!(matches!(w.screen, Screen::Done(_)));
    // After the debit, no warning and no expiry.
    w.feed(Input::Timer(Timer::Warn));
    assert!(!w.flow.view().expiry_warning);
}

#[test]
fn an_expired_card_is_refused_at_once() {
    let server = Server::new();
    let cfg = Config {
        today: Some(purse::BcdDate::from_ymd(2031, 1, 1).unwrap()),
        ..Config::default()
    };
    let mut w = World::new(card(10_000, 5_000), 100, VerifyMode::PaymentServer);
    w.flow = Flow::new(
        cfg,
        server.bundle("T-1", 100, VerifyMode::PaymentServer),
        ORIGIN,
        Box::new(SplitMix(5)),
    )
    .unwrap();
    w.feed(Input::Start);
    assert!(matches!(
        w.screen,
        Screen::Failed {
            problem: widget::flow::Problem::Expired,
            retry: false
        }
    ));
    assert!(matches!(
        w.last_event(),
        ParentEvent::Error {
            code: "card_expired",
            ..
        }
    ));
    let html = widget::view::render(&w.flow.view());
    assert!(html.contains("Your card has expired."));
}
