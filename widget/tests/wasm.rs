//! The widget's logic in headless Chromium (wasm-bindgen-test): keypad, views in a
//! real DOM, and whole purchases through the flow against a stand-in card built
//! from `purse`'s card cryptography and a payment server from its security module.
//!
//! Run: `scripts/test-widget-wasm.sh` (wasm-bindgen-test-runner + chromedriver).
#![cfg(target_arch = "wasm32")]

mod common;

use common::*;
use purse::apdu::{Command, Response, StatusWord};
use purse::command::{
    DebitResponse, InitializePurchaseResponse, PurseInfo, Request, SelectResponse,
};
use purse::crypto::{self, DesKey};
use purse::session::VerifyMode;
use purse::{CardId, Expiry, PurseId};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use widget::flow::Screen;
use widget::keypad::{Layout, SplitMix};
use widget::{Action, Capability, Input, ParentEvent, Timer};

wasm_bindgen_test_configure!(run_in_browser);

/// A minimal purse: SELECT, VERIFY, INITIALIZE FOR PURCHASE, DEBIT with real MACs.
struct MiniCard {
    id: CardId,
    balance: u32,
    no_pin_limit: u32,
    pin_ok: bool,
    tries: u8,
    atc: u16,
    pending: Option<(u32, u16, [u8; 4])>,
}

impl MiniCard {
    fn new(balance: u32, no_pin_limit: u32) -> Self {
        MiniCard {
            id: CardId::parse("6280000000000001").unwrap(),
            balance,
            no_pin_limit,
            pin_ok: false,
            tries: 3,
            atc: 0,
            pending: None,
        }
    }
    fn answer(&mut self, apdu: &[u8]) -> Result<Vec<u8>, StatusWord> {
        let c = Command::parse(apdu).map_err(|_| StatusWord::WRONG_LENGTH)?;
        match Request::parse(&c)? {
            Request::Select(_) => {
                let p = |balance| PurseInfo {
                    currency: 978,
                    exponent: 2,
                    balance,
                    max_balance: 100_000,
                };
                Ok(SelectResponse {
                    card_id: self.id,
                    expiry: Expiry::parse("301231").unwrap(),
                    key_version: 1,
                    app_version: 1,
                    purses: [
                        p(self.balance),
                        PurseInfo {
                            currency: 999,
                            exponent: 0,
                            balance: 0,
                            max_balance: 10,
                        },
                    ],
                }
                .encode())
            }
            Request::Verify(v) => {
                if v.pin.as_deref() == Some(b"1234") {
                    self.pin_ok = true;
                    self.tries = 3;
                    Ok(vec![])
                } else {
                    self.tries -= 1;
                    Err(StatusWord::pin_tries(self.tries))
                }
            }
            Request::InitializePurchase(i) => {
                if i.amount > self.no_pin_limit && !self.pin_ok {
                    return Err(StatusWord::PIN_REQUIRED);
                }
                if i.amount > self.balance {
                    return Err(StatusWord::FUNDS);
                }
                self.atc += 1;
                let r = [9, 8, 7, self.atc as u8];
                self.pending = Some((i.amount, self.atc, r));
                Ok(InitializePurchaseResponse {
                    balance: self.balance,
                    atc: self.atc,
                    key_version: 1,
                    alg: 1,
                    random: r,
                }
                .encode())
            }
            Request::DebitPurchase(d) => {
                let (amount, atc, r) = self.pending.take().ok_or(StatusWord::NO_INITIALIZE)?;
                if d.amount != amount {
                    return Err(StatusWord::MAC_WRONG);
                }
                let kp = crypto::diversify(&DesKey::from_hex(MKP).unwrap(), &self.id);
                let sk = crypto::session_key(&kp, r, atc, d.purse);
                let s2 = crypto::purchase_s2(
                    &sk,
                    amount,
                    atc,
                    &purse::Terminal([0, 0, 0, 0, 0, 1]),
                    d.seq,
                    &d.date,
                    &d.time,
                );
                if !crypto::mac_eq(&s2, &d.s2) {
                    return Err(StatusWord::MAC_WRONG);
                }
                self.balance -= amount;
                let s3 = crypto::purchase_s3(&sk, self.balance, atc, amount, d.seq);
                Ok(DebitResponse {
                    balance_after: self.balance,
                    s3,
                }
                .encode())
            }
            _ => Err(StatusWord::INS_NOT_SUPPORTED),
        }
    }
}

impl Chip for MiniCard {
    fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        match self.answer(apdu) {
            Ok(data) => Response {
                data,
                sw: StatusWord::OK,
            }
            .to_bytes(),
            Err(sw) => Response { data: vec![], sw }.to_bytes(),
        }
    }
    fn reset(&mut self) {
        self.pin_ok = false;
        self.pending = None;
    }
    fn balance(&self) -> u32 {
        self.balance
    }
    fn pin_tries_left(&self) -> u8 {
        self.tries
    }
}

#[wasm_bindgen_test]
fn purchase_with_pin_in_the_browser() {
    let mut w = World::new(
        MiniCard::new(10_000, 1_000),
        2_500,
        VerifyMode::PaymentServer,
    );
    w.feed(Input::Start);
    assert_eq!(
        w.events[0],
        ParentEvent::Ready {
            capability: Capability::Ready
        }
    );
    w.press(Action::Approve);
    w.type_pin("1111");
    assert!(matches!(
        w.screen,
        Screen::Pin {
            wrong_tries_left: Some(2),
            ..
        }
    ));
    w.type_pin("1234");
    assert!(matches!(w.screen, Screen::Done(_)), "{:?}", w.screen);
    assert_eq!(w.balance(), 7_500);
    assert_eq!(w.server.debited, vec![("T-1".to_string(), 2_500)]);
}

#[wasm_bindgen_test]
fn funds_timeout_and_no_extension_in_the_browser() {
    let mut w = World::new(MiniCard::new(100, 1_000), 250, VerifyMode::PaymentServer);
    w.feed(Input::Start);
    w.press(Action::Approve);
    assert!(matches!(
        w.last_event(),
        ParentEvent::Error {
            code: "insufficient_funds",
            ..
        }
    ));

    let mut w = World::new(MiniCard::new(100, 1_000), 50, VerifyMode::PaymentServer);
    w.feed(Input::Start);
    w.feed(Input::Timer(Timer::Expiry));
    assert!(matches!(
        w.last_event(),
        ParentEvent::Cancel {
            reason: "timeout",
            ..
        }
    ));

    let mut w = World::new(MiniCard::new(100, 1_000), 50, VerifyMode::PaymentServer);
    w.extension = false;
    w.feed(Input::Start);
    w.feed(Input::Timer(Timer::Hello));
    assert_eq!(w.screen, Screen::Unavailable(Capability::NoExtension));
}

#[wasm_bindgen_test]
fn keypad_renders_into_the_dom_with_labels() {
    let mut w = World::new(MiniCard::new(10_000, 0), 100, VerifyMode::PaymentServer);
    w.feed(Input::Start);
    w.press(Action::Approve);
    let html = widget::view::render(&w.flow.view());
    let doc = web_sys::window().unwrap().document().unwrap();
    let div = doc.create_element("div").unwrap();
    div.set_inner_html(&html);
    doc.body().unwrap().append_child(&div).unwrap();
    for d in 0..10 {
        let b = div
            .query_selector(&format!("button[aria-label=\"{d}\"]"))
            .unwrap()
            .expect("digit button");
        assert_eq!(b.text_content().unwrap(), d.to_string());
    }
    assert!(div.query_selector("[data-action=ok]").unwrap().is_some());
    assert!(div.query_selector("[role=alert]").unwrap().is_none());
    let order = div
        .query_selector("[data-testid=keypad]")
        .unwrap()
        .unwrap()
        .get_attribute("data-order")
        .unwrap();
    assert_eq!(order.len(), 10);
    let el: web_sys::HtmlElement = div.dyn_into().unwrap();
    el.remove();
}

#[wasm_bindgen_test]
fn layouts_change_and_stay_complete() {
    let mut rng = SplitMix(99);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let l = Layout::random(&mut rng);
        let mut d = l.digit_order();
        d.sort();
        assert_eq!(d, (0..10).collect::<Vec<_>>());
        seen.insert((l.digit_order(), l.button_px, l.gap_px));
    }
    assert!(seen.len() > 195);
}

#[wasm_bindgen_test]
fn money_and_language() {
    use widget::i18n::Lang;
    assert_eq!(
        widget::money::format_amount(1999, 978, 2, Lang::De),
        "19,99 €"
    );
    assert_eq!(
        widget::money::format_amount(1999, 978, 2, Lang::En),
        "€19.99"
    );
    let _ = PurseId::Money;
}
