//! The widget's views in headless Chromium (wasm-bindgen-test): the keypad
//! in a real DOM, layouts, money and language. The whole purchase runs
//! natively against the real payment server and card (`tests/checkout.rs`)
//! and end to end in `tests/browser`.
//!
//! Run: `scripts/test-widget-wasm.sh` (wasm-bindgen-test-runner + chromedriver).
#![cfg(target_arch = "wasm32")]

use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use widget::i18n::Lang;
use widget::keypad::{Layout, SplitMix};
use widget::view::{Screen, View};
use widget::Mode;

wasm_bindgen_test_configure!(run_in_browser);

fn pin_view(seed: u64) -> View {
    View {
        screen: Screen::Pin {
            layout: Layout::random(&mut SplitMix(seed)),
            entered: 0,
            wrong_tries_left: None,
        },
        lang: Lang::En,
        mode: Mode::Purchase,
        payee: "Shop".into(),
        amount: 2_500,
        currency: 978,
        exponent: 2,
        balance: Some(10_000),
        card: None,
        install_url: "/install.html".into(),
        expiry_warning: false,
    }
}

#[wasm_bindgen_test]
fn keypad_renders_into_the_dom_with_labels() {
    let html = widget::view::render(&pin_view(7));
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
    assert_eq!(
        widget::money::format_amount(1999, 978, 2, Lang::De),
        "19,99 €"
    );
    assert_eq!(
        widget::money::format_amount(1999, 978, 2, Lang::En),
        "€19.99"
    );
}
