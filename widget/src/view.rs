//! Views → HTML. Pure string building (escaped), so every screen is testable
//! natively; the glue sets it into the iframe and wires `data-action` clicks.
//!
//! Accessibility:
//! - [`skeleton`] is written once: the `<h1>` (the focus target of screens without a
//!   control of their own: progress, "insert your card" …) and a polite live region
//!   that is never replaced; [`render`] fills only the screen part, and the glue puts
//!   [`announce`]'s text into the live region, so every status change is read out
//!   once (a region created together with its text is not announced).
//! - Problems are `role="alert"` elements (an alert is announced when inserted).
//! - Real `<button>`s with labels, focus moved to the element marked
//!   `data-autofocus`; the keypad in visual (= tab) order, its keys named by the
//!   digit they show and nothing else (see docs/widget.md "Keypad").

use crate::prelude::*;
#[cfg(feature = "load")]
mod load;
#[cfg(feature = "purchase")]
mod pay;

#[cfg(feature = "load")]
use purse::load::client::{ConfirmView, Receipt as LoadReceipt};
#[cfg(feature = "purchase")]
use purse::purchase::client::Receipt;

use crate::bridge::Capability;
use crate::checkout::Mode;
#[cfg(feature = "load")]
use crate::i18n::LoadMsg;
#[cfg(feature = "purchase")]
use crate::i18n::{digits_entered, PayMsg};
use crate::i18n::{t, Lang, Msg};
#[cfg(feature = "purchase")]
use crate::keypad::Layout;
use crate::money::{decimal, format_amount};
use crate::problem::Problem;

/// Progress steps shown to the shopper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Detecting,
    Connecting,
    Reading,
    Preparing,
    #[cfg(feature = "purchase")]
    CheckingPin,
    #[cfg(feature = "purchase")]
    Authorizing,
    #[cfg(feature = "purchase")]
    Debiting,
    #[cfg(feature = "purchase")]
    Confirming,
    #[cfg(feature = "purchase")]
    Reporting,
    /// After a lost answer: the card's log, then the server's decision.
    Recovering,
    #[cfg(feature = "load")]
    LoadAuthorizing,
    #[cfg(feature = "load")]
    Crediting,
    #[cfg(feature = "load")]
    ConfirmingLoad,
}

/// Which screen and what is on it: everything the renderer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub screen: Screen,
    pub lang: Lang,
    pub mode: Mode,
    /// The merchant (purchase) or the bank (load).
    pub payee: String,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    /// The card's balance in the session's purse, once read.
    pub balance: Option<u32>,
    /// Masked card number, once read.
    pub card: Option<String>,
    pub install_url: String,
    /// The request expires soon: show the warning with "More time".
    pub expiry_warning: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Screen {
    Progress(Step),
    Unavailable(Capability),
    /// Purchase: approve the amount.
    #[cfg(feature = "purchase")]
    Confirm,
    /// Load: bank, amount, balance now and after, maximum balance.
    #[cfg(feature = "load")]
    LoadConfirm(ConfirmView),
    #[cfg(feature = "purchase")]
    Pin {
        layout: Layout,
        entered: usize,
        /// Tries left after a wrong PIN.
        wrong_tries_left: Option<u8>,
    },
    Failed {
        problem: Problem,
        retry: bool,
    },
    /// Purchase receipt; `recovered`: decided after the card was pulled during DEBIT.
    #[cfg(feature = "purchase")]
    Done {
        receipt: Receipt,
        recovered: bool,
    },
    /// Load receipt.
    #[cfg(feature = "load")]
    Loaded(LoadReceipt),
    Cancelled(&'static str),
}

impl Screen {
    /// A step of the work in progress (detecting the card, paying): [`crate::web`] draws
    /// it only once the work lasts.
    pub fn is_progress(&self) -> bool {
        matches!(self, Screen::Progress(_))
    }

    /// The PIN pad (a purchase's): typed digits and arrow keys mean something else there.
    pub fn is_pin(&self) -> bool {
        #[cfg(feature = "purchase")]
        if let Screen::Pin { .. } = self {
            return true;
        }
        false
    }
}

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    push_esc(&mut o, s);
    o
}

fn step_msg(s: Step) -> (Msg, u8) {
    match s {
        Step::Detecting => (Msg::Detecting, 0),
        Step::Connecting => (Msg::Connecting, 0),
        Step::Reading => (Msg::ReadingCard, 0),
        Step::Preparing => (Msg::Preparing, 1),
        #[cfg(feature = "purchase")]
        Step::CheckingPin => (PayMsg::CheckingPin.into(), 1),
        #[cfg(feature = "purchase")]
        Step::Authorizing => (PayMsg::Authorizing.into(), 2),
        #[cfg(feature = "purchase")]
        Step::Debiting => (PayMsg::Debiting.into(), 3),
        #[cfg(feature = "purchase")]
        Step::Confirming => (PayMsg::Confirming.into(), 4),
        #[cfg(feature = "purchase")]
        Step::Reporting => (PayMsg::Reporting.into(), 0),
        Step::Recovering => (Msg::Recovering, 0),
        #[cfg(feature = "load")]
        Step::LoadAuthorizing => (LoadMsg::LoadAuthorizing.into(), 2),
        #[cfg(feature = "load")]
        Step::Crediting => (LoadMsg::Crediting.into(), 3),
        #[cfg(feature = "load")]
        Step::ConfirmingLoad => (LoadMsg::ConfirmingLoad.into(), 4),
    }
}

/// Append each of `parts` to `h`. The views build their HTML by appending, not with
/// `format!`: each `format!` brought its own share of `core::fmt` into the download.
fn cat(h: &mut String, parts: &[&str]) {
    for p in parts {
        h.push_str(p);
    }
}

/// Append `s` to `h`, escaped as [`esc`] does.
fn push_esc(h: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => h.push_str("&amp;"),
            '<' => h.push_str("&lt;"),
            '>' => h.push_str("&gt;"),
            '"' => h.push_str("&quot;"),
            '\'' => h.push_str("&#39;"),
            c => h.push(c),
        }
    }
}

fn button(h: &mut String, action: &str, label: &str, class: &str, autofocus: bool) {
    cat(
        h,
        &[
            r#"<button type="button" class="cp-btn "#,
            class,
            r#"" data-action=""#,
            action,
            "\"",
            if autofocus {
                r#" data-autofocus="1""#
            } else {
                ""
            },
            ">",
        ],
    );
    push_esc(h, label);
    h.push_str("</button>");
}

/// `<div><dt>label</dt><dd ATTRS>value</dd></div>`; `attrs` starts with a space.
fn item(h: &mut String, label: &str, attrs: &str, value: &str) {
    h.push_str("<div><dt>");
    push_esc(h, label);
    cat(h, &["</dt><dd", attrs, ">"]);
    push_esc(h, value);
    h.push_str("</dd></div>");
}

/// One [`item`] per `(label, attributes, value)`, the labels in `l`.
fn items(h: &mut String, l: Lang, rows: &[(Msg, &str, &str)]) {
    for &(label, attrs, value) in rows {
        item(h, t(l, label), attrs, value);
    }
}

/// What each mode calls the same things: the title, the payee, the amount and the
/// card's balance.
fn mode_words(mode: Mode) -> [Msg; 4] {
    match mode {
        #[cfg(feature = "purchase")]
        Mode::Purchase => {
            [PayMsg::Title, PayMsg::To, PayMsg::Amount, PayMsg::Balance].map(Msg::from)
        }
        #[cfg(feature = "load")]
        Mode::Load => [
            LoadMsg::LoadTitle,
            LoadMsg::From,
            LoadMsg::LoadAmount,
            LoadMsg::BalanceNow,
        ]
        .map(Msg::from),
    }
}

fn summary(h: &mut String, v: &View) {
    let l = v.lang;
    let [_, payee, amount, balance] = mode_words(v.mode);
    let money = |a: u32| format_amount(a as u64, v.currency, v.exponent, l);
    h.push_str(r#"<dl class="cp-summary">"#);
    item(
        h,
        t(l, payee),
        r#" class="cp-payee" data-testid="payee""#,
        &v.payee,
    );
    item(
        h,
        t(l, amount),
        r#" class="cp-amount" data-testid="amount""#,
        &money(v.amount),
    );
    if let Some(b) = v.balance {
        item(
            h,
            t(l, balance),
            r#" class="cp-balance" data-testid="balance""#,
            &money(b),
        );
    }
    if let Some(c) = &v.card {
        item(h, t(l, Msg::Card), r#" class="cp-card""#, c);
    }
    h.push_str("</dl>");
}

/// A receipt's opening, up to its list: the heading says `title`.
fn receipt_head(h: &mut String, title: &str) {
    h.push_str(r#"<section class="cp-receipt" aria-labelledby="cp-receipt-title" data-testid="receipt" tabindex="-1" data-autofocus="1"><h2 id="cp-receipt-title"><span aria-hidden="true">✓ </span>"#);
    push_esc(h, title);
    h.push_str("</h2><dl>");
}

fn secondary(h: &mut String, v: &View) {
    let l = v.lang;
    h.push_str(r#"<div class="cp-actions cp-secondary">"#);
    button(h, "cancel", t(l, Msg::Cancel), "cp-btn-secondary", false);
    #[cfg(feature = "purchase")]
    if v.mode == Mode::Purchase {
        button(h, "not-mine", t(l, PayMsg::NotMine), "cp-btn-link", false);
    }
    h.push_str("</div>");
}

/// What stays in the root for the whole transaction: the heading (focus target of
/// screens without a control of their own), the screen container [`render`] fills,
/// and the polite live region [`announce`] speaks through.
pub fn skeleton(l: Lang, mode: Mode) -> String {
    let [title, ..] = mode_words(mode);
    let mut h = String::from(r#"<h1 class="cp-title" id="cp-title" tabindex="-1">"#);
    push_esc(&mut h, t(l, title));
    h.push_str(r#"</h1><div id="cp-screen"></div><p id="cp-live" class="cp-sr" role="status" aria-live="polite" aria-atomic="true" data-testid="live"></p>"#);
    h
}

/// The sentence the live region says when `v` appears (empty: say nothing; problems
/// speak through their own `role="alert"`). Never a PIN digit, only the count.
pub fn announce(v: &View) -> String {
    let l = v.lang;
    // "Payment complete. Amount €25.00"
    let done = |title: Msg, amount: Msg, a: u32, currency: u16, exponent: u8| {
        [
            t(l, title),
            ". ",
            t(l, amount),
            " ",
            &format_amount(a as u64, currency, exponent, l),
        ]
        .concat()
    };
    match &v.screen {
        Screen::Progress(s) => t(l, step_msg(*s).0).to_string(),
        Screen::Unavailable(c) => t(l, capability_msg(*c)).to_string(),
        #[cfg(feature = "purchase")]
        Screen::Confirm => t(l, PayMsg::ReadyToPay).to_string(),
        #[cfg(feature = "load")]
        Screen::LoadConfirm(_) => t(l, LoadMsg::ReadyToLoad).to_string(),
        #[cfg(feature = "purchase")]
        Screen::Pin { entered, .. } => {
            if *entered == 0 {
                t(l, PayMsg::EnterPin).to_string()
            } else {
                digits_entered(l, *entered)
            }
        }
        Screen::Failed { .. } => String::new(),
        #[cfg(feature = "purchase")]
        Screen::Done { receipt: r, .. } => done(
            PayMsg::Paid.into(),
            PayMsg::Amount.into(),
            r.amount,
            r.currency,
            r.exponent,
        ),
        #[cfg(feature = "load")]
        Screen::Loaded(r) => done(
            LoadMsg::Loaded.into(),
            LoadMsg::LoadAmount.into(),
            r.amount,
            r.currency,
            r.exponent,
        ),
        Screen::Cancelled(reason) => t(l, cancel_msg(v.mode, reason)).to_string(),
    }
}

fn capability_msg(c: Capability) -> Msg {
    match c {
        Capability::NoExtension => Msg::NoExtension,
        Capability::NoBridge => Msg::NoBridge,
        Capability::NoReader => Msg::NoReader,
        Capability::NoCard | Capability::Ready => Msg::NoCard,
    }
}

#[cfg_attr(not(feature = "purchase"), allow(unused_variables))]
fn cancel_msg(mode: Mode, reason: &str) -> Msg {
    match mode {
        #[cfg(feature = "load")]
        Mode::Load => LoadMsg::LoadCancelled.into(),
        #[cfg(feature = "purchase")]
        Mode::Purchase => match reason {
            "timeout" => PayMsg::CancelledTimeout,
            "not_mine" => PayMsg::CancelledNotMine,
            _ => PayMsg::CancelledUser,
        }
        .into(),
    }
}

/// The screen part of the widget for `v` (goes into `#cp-screen`).
pub fn render(v: &View) -> String {
    let l = v.lang;
    let mut h = String::with_capacity(2048);
    let h = &mut h;
    cat(
        h,
        &[
            r#"<div class="cp-widget" lang=""#,
            l.tag(),
            r#"" data-screen=""#,
            screen_name(&v.screen),
            r#"">"#,
        ],
    );
    summary(h, v);
    #[cfg(feature = "purchase")]
    if v.expiry_warning {
        h.push_str(r#"<div class="cp-warning" role="alert" data-testid="expiry-warning"><p>"#);
        push_esc(h, t(l, PayMsg::ExpiryWarning));
        h.push_str("</p>");
        button(
            h,
            "more-time",
            t(l, PayMsg::MoreTime),
            "cp-btn-secondary",
            false,
        );
        h.push_str("</div>");
    }
    match &v.screen {
        Screen::Progress(s) => {
            let (m, n) = step_msg(*s);
            let step = decimal(n.into());
            cat(
                h,
                &[
                    r#"<div class="cp-progress" data-testid="progress" data-step=""#,
                    &step,
                    r#""><span class="cp-spinner" aria-hidden="true"></span>"#,
                ],
            );
            push_esc(h, t(l, m));
            h.push_str("</div>");
            if n > 0 {
                cat(
                    h,
                    &[
                        r#"<progress class="cp-bar" max="4" value=""#,
                        &step,
                        r#"" aria-label=""#,
                    ],
                );
                push_esc(h, t(l, Msg::StepOf));
                cat(h, &[" ", &step, r#" / 4"></progress>"#]);
            }
            if matches!(
                s,
                Step::Detecting | Step::Connecting | Step::Reading | Step::Preparing
            ) {
                secondary(h, v);
            }
        }
        Screen::Unavailable(c) => {
            cat(
                h,
                &[
                    r#"<p class="cp-notice" data-testid="capability" data-capability=""#,
                    c.as_str(),
                    r#"">"#,
                ],
            );
            push_esc(h, t(l, capability_msg(*c)));
            h.push_str("</p>");
            if matches!(c, Capability::NoExtension | Capability::NoBridge) {
                h.push_str(r#"<p><a class="cp-install" href=""#);
                push_esc(h, &v.install_url);
                h.push_str(r#"" target="_blank" rel="noopener" data-testid="install">"#);
                push_esc(h, t(l, Msg::InstallLink));
                h.push_str("</a></p>");
            }
            h.push_str(r#"<div class="cp-actions">"#);
            button(h, "cancel", t(l, Msg::Cancel), "cp-btn-secondary", false);
            h.push_str("</div>");
        }
        #[cfg(feature = "purchase")]
        Screen::Confirm => pay::confirm(h, v),
        #[cfg(feature = "load")]
        Screen::LoadConfirm(c) => load::confirm(h, v, c),
        #[cfg(feature = "purchase")]
        Screen::Pin {
            layout,
            entered,
            wrong_tries_left,
        } => {
            pay::keypad(h, v, layout, *entered, *wrong_tries_left);
            secondary(h, v);
        }
        Screen::Failed { problem, retry } => {
            cat(
                h,
                &[
                    r#"<p class="cp-error" role="alert" data-testid="error" data-code=""#,
                    problem.code(),
                    "\"",
                ],
            );
            if let Some(c) = problem.charged() {
                cat(h, &[r#" data-charged=""#, c.as_str(), "\""]);
            }
            h.push('>');
            push_esc(h, &problem.text(l));
            h.push_str(r#"</p><div class="cp-actions">"#);
            if *retry {
                button(h, "retry", t(l, Msg::Retry), "cp-btn-primary", true);
            }
            if !problem.past_cancel() {
                button(h, "cancel", t(l, Msg::Cancel), "cp-btn-secondary", !*retry);
            }
            h.push_str("</div>");
        }
        #[cfg(feature = "load")]
        Screen::Loaded(r) => load::receipt(h, v, r),
        #[cfg(feature = "purchase")]
        Screen::Done { receipt, recovered } => pay::receipt(h, v, receipt, *recovered),
        Screen::Cancelled(reason) => {
            h.push_str(r#"<p class="cp-notice" data-testid="cancelled" data-reason=""#);
            push_esc(h, reason);
            h.push_str(r#"" tabindex="-1" data-autofocus="1">"#);
            push_esc(h, t(l, cancel_msg(v.mode, reason)));
            h.push_str("</p>");
        }
    }
    h.push_str("</div>");
    core::mem::take(h)
}

pub fn screen_name(s: &Screen) -> &'static str {
    match s {
        Screen::Progress(_) => "progress",
        Screen::Unavailable(_) => "unavailable",
        #[cfg(feature = "purchase")]
        Screen::Confirm => "confirm",
        #[cfg(feature = "purchase")]
        Screen::Pin { .. } => "pin",
        #[cfg(feature = "load")]
        Screen::LoadConfirm(_) => "confirm",
        Screen::Failed { .. } => "failed",
        #[cfg(feature = "purchase")]
        Screen::Done { .. } => "done",
        #[cfg(feature = "load")]
        Screen::Loaded(_) => "done",
        Screen::Cancelled(_) => "cancelled",
    }
}

#[cfg(all(test, feature = "purchase", feature = "en", feature = "de"))]
mod tests {
    use super::*;

    use crate::keypad::SplitMix;

    fn view(screen: Screen) -> View {
        View {
            screen,
            lang: Lang::En,
            mode: Mode::Purchase,
            payee: "Shop".into(),
            amount: 2500,
            currency: 978,
            exponent: 2,
            balance: Some(10_000),
            card: None,
            install_url: "/install.html".into(),
            expiry_warning: false,
        }
    }

    fn pin(entered: usize) -> Screen {
        Screen::Pin {
            layout: Layout::random(&mut SplitMix(3)),
            entered,
            wrong_tries_left: None,
        }
    }

    #[test]
    fn the_live_region_says_the_count_never_a_digit() {
        assert_eq!(announce(&view(pin(0))), "Enter your PIN");
        assert_eq!(announce(&view(pin(1))), "1 digit entered");
        assert_eq!(announce(&view(pin(3))), "3 digits entered");
        let html = render(&view(pin(1)));
        assert!(html.contains(">1 digit entered<"), "{html}");
        assert!(!html.contains("1 digits"));
        assert_eq!(
            announce(&view(Screen::Progress(Step::Authorizing))),
            "Asking the payment server to authorize…"
        );
        assert_eq!(
            announce(&view(Screen::Confirm)),
            t(Lang::En, PayMsg::ReadyToPay)
        );
    }

    #[test]
    fn keys_are_named_by_what_they_show_and_nothing_else() {
        let html = render(&view(pin(0)));
        for d in 0..10 {
            assert!(
                html.contains(&format!(r#"aria-label="{d}" data-style"#)),
                "{d}"
            );
        }
        let mut names: Vec<String> = html
            .split(r#"aria-label=""#)
            .skip(1)
            .map(|r| r[..r.find('"').unwrap()].to_string())
            .collect();
        names.sort();
        let mut want: Vec<String> = (0..10).map(|d| d.to_string()).collect();
        want.push(t(Lang::En, PayMsg::Delete).into());
        want.sort();
        assert_eq!(names, want, "only the keys are named, by what they show");
        assert!(html.contains(r#"data-cols=""#));
        assert!(html.contains(r#"data-testid="typed-digits" hidden"#));
    }

    #[test]
    fn screens_leave_live_announcing_to_the_stable_region() {
        let sk = skeleton(Lang::De, Mode::Purchase);
        assert!(sk.contains(r#"id="cp-live""#) && sk.contains(r#"aria-live="polite""#));
        assert!(sk.contains(r#"<h1 class="cp-title" id="cp-title" tabindex="-1">"#));
        for s in [
            Screen::Confirm,
            pin(2),
            Screen::Progress(Step::Debiting),
            Screen::Cancelled("user"),
        ] {
            let html = render(&view(s));
            assert!(!html.contains("aria-live"), "{html}");
            assert!(!html.contains("role=\"status\""), "{html}");
        }
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
