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

use purse::load::client::{ConfirmView, Receipt as LoadReceipt};
use purse::purchase::client::{Receipt, PIN_MAX, PIN_MIN};

use crate::bridge::Capability;
use crate::checkout::Mode;
use crate::i18n::{digits_entered, t, tries_left, Lang, Msg};
use crate::keypad::{Key, Layout};
use crate::money::format_amount;
use crate::problem::Problem;

/// Progress steps shown to the shopper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Detecting,
    Connecting,
    Reading,
    Preparing,
    CheckingPin,
    Authorizing,
    Debiting,
    Confirming,
    Reporting,
    /// After a lost answer: the card's log, then the server's decision.
    Recovering,
    LoadAuthorizing,
    Crediting,
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
    Confirm,
    /// Load: bank, amount, balance now and after, maximum balance.
    LoadConfirm(ConfirmView),
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
    Done {
        receipt: Receipt,
        recovered: bool,
    },
    /// Load receipt.
    Loaded(LoadReceipt),
    Cancelled(&'static str),
}

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn step_msg(s: Step) -> (Msg, u8) {
    match s {
        Step::Detecting => (Msg::Detecting, 0),
        Step::Connecting => (Msg::Connecting, 0),
        Step::Reading => (Msg::ReadingCard, 0),
        Step::Preparing => (Msg::Preparing, 1),
        Step::CheckingPin => (Msg::CheckingPin, 1),
        Step::Authorizing => (Msg::Authorizing, 2),
        Step::Debiting => (Msg::Debiting, 3),
        Step::Confirming => (Msg::Confirming, 4),
        Step::Reporting => (Msg::Reporting, 0),
        Step::Recovering => (Msg::Recovering, 0),
        Step::LoadAuthorizing => (Msg::LoadAuthorizing, 2),
        Step::Crediting => (Msg::Crediting, 3),
        Step::ConfirmingLoad => (Msg::ConfirmingLoad, 4),
    }
}

fn button(action: &str, label: &str, class: &str, autofocus: bool) -> String {
    format!(
        r#"<button type="button" class="cp-btn {class}" data-action="{action}"{af}>{label}</button>"#,
        af = if autofocus {
            r#" data-autofocus="1""#
        } else {
            ""
        },
        label = esc(label)
    )
}

fn summary(v: &View) -> String {
    let l = v.lang;
    let amount = format_amount(v.amount as u64, v.currency, v.exponent, l);
    let mut rows = format!(
        r#"<dl class="cp-summary"><div><dt>{}</dt><dd class="cp-payee" data-testid="payee">{}</dd></div><div><dt>{}</dt><dd class="cp-amount" data-testid="amount">{}</dd></div>"#,
        esc(t(
            l,
            if v.mode == Mode::Load {
                Msg::From
            } else {
                Msg::To
            }
        )),
        esc(&v.payee),
        esc(t(
            l,
            if v.mode == Mode::Load {
                Msg::LoadAmount
            } else {
                Msg::Amount
            }
        )),
        esc(&amount)
    );
    if let Some(b) = v.balance {
        rows.push_str(&format!(
            r#"<div><dt>{}</dt><dd class="cp-balance" data-testid="balance">{}</dd></div>"#,
            esc(t(
                l,
                if v.mode == Mode::Load {
                    Msg::BalanceNow
                } else {
                    Msg::Balance
                }
            )),
            esc(&format_amount(b as u64, v.currency, v.exponent, l))
        ));
    }
    if let Some(c) = &v.card {
        rows.push_str(&format!(
            r#"<div><dt>{}</dt><dd class="cp-card">{}</dd></div>"#,
            esc(t(l, Msg::Card)),
            esc(c)
        ));
    }
    rows.push_str("</dl>");
    rows
}

fn keypad(v: &View, layout: &Layout, entered: usize, wrong: Option<u8>) -> String {
    let l = v.lang;
    let mut h = String::new();
    h.push_str(&format!(
        r#"<h2 id="cp-pin-title">{}</h2><p class="cp-help" id="cp-pin-help">{}</p>"#,
        esc(t(l, Msg::EnterPin)),
        esc(t(l, Msg::PinHelp))
    ));
    // Filled and shown by the glue when a digit is typed on the keyboard.
    h.push_str(r#"<p class="cp-note" data-testid="typed-digits" hidden></p>"#);
    if let Some(n) = wrong {
        h.push_str(&format!(
            r#"<p class="cp-error" role="alert" data-testid="pin-error">{} {}</p>"#,
            esc(t(l, Msg::ErrWrongPin)),
            esc(&tries_left(l, n))
        ));
    }
    let dots: String = (0..PIN_MAX)
        .map(|i| {
            if i < entered {
                r#"<span class="cp-dot cp-dot-on"></span>"#
            } else if i < PIN_MIN.max(entered) {
                r#"<span class="cp-dot"></span>"#
            } else {
                ""
            }
        })
        .collect();
    // The count as text for screen readers (the live region also says it when it changes).
    h.push_str(&format!(
        r#"<div class="cp-pin" data-testid="pin-count" data-count="{entered}"><span class="cp-dots" aria-hidden="true">{dots}</span><span class="cp-sr">{}</span></div>"#,
        esc(&digits_entered(l, entered))
    ));
    h.push_str(&format!(
        r#"<div class="cp-keypad" role="group" tabindex="-1" data-autofocus="1" aria-labelledby="cp-pin-title" aria-describedby="cp-pin-help" data-testid="keypad" data-order="{order}" data-cols="{cols}" data-style="grid-template-columns:repeat({cols},{b}px);grid-auto-rows:{b}px;gap:{g}px;margin:{oy}px 0 0 {ox}px">"#,
        order = layout.digit_order().iter().map(|d| d.to_string()).collect::<String>(),
        cols = layout.columns,
        b = layout.button_px,
        g = layout.gap_px,
        oy = layout.offset_y_px,
        ox = layout.offset_x_px,
    ));
    for p in &layout.keys {
        let pos = format!("grid-row:{};grid-column:{}", p.row, p.col);
        // A key's accessible name is exactly what it shows: no row/column or "key n of
        // 12", which would tell a listener (or any program reading the accessibility
        // tree) more about the layout than the screen does.
        let b = match p.key {
            Key::Digit(d) => format!(
                r#"<button type="button" class="cp-key" data-action="digit" data-digit="{d}" aria-label="{d}" data-style="{pos}">{d}</button>"#
            ),
            Key::Delete => format!(
                r#"<button type="button" class="cp-key cp-key-del" data-action="delete" aria-label="{}" data-style="{pos}"><span aria-hidden="true">⌫</span></button>"#,
                esc(t(l, Msg::Delete))
            ),
            Key::Ok => format!(
                r#"<button type="button" class="cp-key cp-key-ok" data-action="ok" data-style="{pos}"{dis}>{}</button>"#,
                esc(t(l, Msg::Ok)),
                dis = if entered < PIN_MIN {
                    r#" aria-disabled="true""#
                } else {
                    ""
                }
            ),
        };
        h.push_str(&b);
    }
    h.push_str("</div>");
    h
}

fn row(label: &str, value: &str, testid: &str) -> String {
    format!(
        r#"<div><dt>{}</dt><dd data-testid="{testid}">{}</dd></div>"#,
        esc(label),
        esc(value)
    )
}

fn load_confirm(v: &View, c: &ConfirmView) -> String {
    let l = v.lang;
    let money = |a: u64| format_amount(a, v.currency, v.exponent, l);
    let mut h = String::from(r#"<dl class="cp-summary cp-load">"#);
    h.push_str(&row(
        t(l, Msg::BalanceAfterLoad),
        &money(c.balance_after),
        "balance-after",
    ));
    h.push_str(&row(
        t(l, Msg::MaxBalance),
        &money(c.max_balance as u64),
        "max-balance",
    ));
    h.push_str("</dl>");
    if c.over_max {
        h.push_str(&format!(
            r#"<p class="cp-error" role="alert" data-testid="over-max">{}</p>"#,
            esc(t(l, Msg::OverMaxWarning))
        ));
    }
    h.push_str(&format!(
        r#"<div class="cp-actions">{}{}</div>"#,
        button(
            "approve",
            t(l, Msg::ApproveLoad),
            "cp-btn-primary",
            !c.over_max
        ),
        button("cancel", t(l, Msg::Cancel), "cp-btn-secondary", c.over_max)
    ));
    h
}

fn load_receipt(v: &View, r: &LoadReceipt) -> String {
    let l = v.lang;
    let money = |a: u32| format_amount(a as u64, r.currency, r.exponent, l);
    format!(
        r#"<section class="cp-receipt" aria-labelledby="cp-receipt-title" data-testid="receipt" tabindex="-1" data-autofocus="1"><h2 id="cp-receipt-title"><span aria-hidden="true">✓ </span>{}</h2><dl>{}{}{}{}{}</dl><p class="cp-note">{}</p></section>"#,
        esc(t(l, Msg::Loaded)),
        row(t(l, Msg::From), &r.bank_name, "receipt-bank"),
        row(t(l, Msg::LoadAmount), &money(r.amount), "receipt-amount"),
        row(
            t(l, Msg::BalanceNow),
            &money(r.balance_before),
            "receipt-balance-before"
        ),
        row(
            t(l, Msg::BalanceAfterLoad),
            &money(r.balance_after),
            "receipt-balance"
        ),
        row(t(l, Msg::Reference), &r.txn_id, "receipt-ref"),
        esc(t(l, Msg::AccountCharged)),
    )
}

fn secondary(v: &View) -> String {
    let l = v.lang;
    let not_mine = match v.mode {
        Mode::Purchase => button("not-mine", t(l, Msg::NotMine), "cp-btn-link", false),
        Mode::Load => String::new(),
    };
    format!(
        r#"<div class="cp-actions cp-secondary">{}{not_mine}</div>"#,
        button("cancel", t(l, Msg::Cancel), "cp-btn-secondary", false),
    )
}

/// What stays in the root for the whole transaction: the heading (focus target of
/// screens without a control of their own), the screen container [`render`] fills,
/// and the polite live region [`announce`] speaks through.
pub fn skeleton(l: Lang, mode: Mode) -> String {
    let title = if mode == Mode::Load {
        Msg::LoadTitle
    } else {
        Msg::Title
    };
    format!(
        r#"<h1 class="cp-title" id="cp-title" tabindex="-1">{}</h1><div id="cp-screen"></div><p id="cp-live" class="cp-sr" role="status" aria-live="polite" aria-atomic="true" data-testid="live"></p>"#,
        esc(t(l, title))
    )
}

/// The sentence the live region says when `v` appears (empty: say nothing; problems
/// speak through their own `role="alert"`). Never a PIN digit, only the count.
pub fn announce(v: &View) -> String {
    let l = v.lang;
    match &v.screen {
        Screen::Progress(s) => t(l, step_msg(*s).0).to_string(),
        Screen::Unavailable(c) => t(l, capability_msg(*c)).to_string(),
        Screen::Confirm => t(l, Msg::ReadyToPay).to_string(),
        Screen::LoadConfirm(_) => t(l, Msg::ReadyToLoad).to_string(),
        Screen::Pin { entered, .. } => {
            if *entered == 0 {
                t(l, Msg::EnterPin).to_string()
            } else {
                digits_entered(l, *entered)
            }
        }
        Screen::Failed { .. } => String::new(),
        Screen::Done { receipt: r, .. } => format!(
            "{}. {} {}",
            t(l, Msg::Paid),
            t(l, Msg::Amount),
            format_amount(r.amount as u64, r.currency, r.exponent, l)
        ),
        Screen::Loaded(r) => format!(
            "{}. {} {}",
            t(l, Msg::Loaded),
            t(l, Msg::LoadAmount),
            format_amount(r.amount as u64, r.currency, r.exponent, l)
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

fn cancel_msg(mode: Mode, reason: &str) -> Msg {
    match (mode, reason) {
        (Mode::Load, _) => Msg::LoadCancelled,
        (_, "timeout") => Msg::CancelledTimeout,
        (_, "not_mine") => Msg::CancelledNotMine,
        _ => Msg::CancelledUser,
    }
}

/// The screen part of the widget for `v` (goes into `#cp-screen`).
pub fn render(v: &View) -> String {
    let l = v.lang;
    let mut h = format!(
        r#"<div class="cp-widget" lang="{}" data-screen="{}">"#,
        l.tag(),
        screen_name(&v.screen),
    );
    h.push_str(&summary(v));
    if v.expiry_warning {
        h.push_str(&format!(
            r#"<div class="cp-warning" role="alert" data-testid="expiry-warning"><p>{}</p>{}</div>"#,
            esc(t(l, Msg::ExpiryWarning)),
            button("more-time", t(l, Msg::MoreTime), "cp-btn-secondary", false)
        ));
    }
    match &v.screen {
        Screen::Progress(s) => {
            let (m, n) = step_msg(*s);
            h.push_str(&format!(
                r#"<div class="cp-progress" data-testid="progress" data-step="{}"><span class="cp-spinner" aria-hidden="true"></span>{}</div>"#,
                n,
                esc(t(l, m))
            ));
            if n > 0 {
                h.push_str(&format!(
                    r#"<progress class="cp-bar" max="4" value="{n}" aria-label="{} {n} / 4"></progress>"#,
                    esc(t(l, Msg::StepOf))
                ));
            }
            if matches!(
                s,
                Step::Detecting | Step::Connecting | Step::Reading | Step::Preparing
            ) {
                h.push_str(&secondary(v));
            }
        }
        Screen::Unavailable(c) => {
            h.push_str(&format!(
                r#"<p class="cp-notice" data-testid="capability" data-capability="{}">{}</p>"#,
                c.as_str(),
                esc(t(l, capability_msg(*c)))
            ));
            if matches!(c, Capability::NoExtension | Capability::NoBridge) {
                h.push_str(&format!(
                    r#"<p><a class="cp-install" href="{}" target="_blank" rel="noopener" data-testid="install">{}</a></p>"#,
                    esc(&v.install_url),
                    esc(t(l, Msg::InstallLink))
                ));
            }
            h.push_str(&format!(
                r#"<div class="cp-actions">{}</div>"#,
                button("cancel", t(l, Msg::Cancel), "cp-btn-secondary", false)
            ));
        }
        Screen::Confirm => {
            h.push_str(&format!(
                r#"<div class="cp-actions">{}{}</div><p class="cp-actions cp-secondary">{}</p>"#,
                button("approve", t(l, Msg::Approve), "cp-btn-primary", true),
                button("cancel", t(l, Msg::Cancel), "cp-btn-secondary", false),
                button("not-mine", t(l, Msg::NotMine), "cp-btn-link", false)
            ));
        }
        Screen::LoadConfirm(c) => {
            h.push_str(&load_confirm(v, c));
        }
        Screen::Pin {
            layout,
            entered,
            wrong_tries_left,
        } => {
            h.push_str(&keypad(v, layout, *entered, *wrong_tries_left));
            h.push_str(&secondary(v));
        }
        Screen::Failed { problem, retry } => {
            let charged = problem
                .charged()
                .map(|c| format!(r#" data-charged="{}""#, c.as_str()))
                .unwrap_or_default();
            h.push_str(&format!(
                r#"<p class="cp-error" role="alert" data-testid="error" data-code="{}"{charged}>{}</p>"#,
                problem.code(),
                esc(&problem.text(l))
            ));
            h.push_str(r#"<div class="cp-actions">"#);
            if *retry {
                h.push_str(&button("retry", t(l, Msg::Retry), "cp-btn-primary", true));
            }
            if !problem.past_cancel() {
                h.push_str(&button(
                    "cancel",
                    t(l, Msg::Cancel),
                    "cp-btn-secondary",
                    !*retry,
                ));
            }
            h.push_str("</div>");
        }
        Screen::Loaded(r) => h.push_str(&load_receipt(v, r)),
        Screen::Done {
            receipt: r,
            recovered,
        } => {
            if *recovered {
                h.push_str(&format!(
                    r#"<p class="cp-notice" data-testid="recovered">{}</p>"#,
                    esc(t(l, Msg::RecoveredPaid))
                ));
            }
            h.push_str(&format!(
                r#"<section class="cp-receipt" aria-labelledby="cp-receipt-title" data-testid="receipt" tabindex="-1" data-autofocus="1"><h2 id="cp-receipt-title"><span aria-hidden="true">✓ </span>{}</h2><dl><div><dt>{}</dt><dd>{}</dd></div><div><dt>{}</dt><dd data-testid="receipt-amount">{}</dd></div><div><dt>{}</dt><dd data-testid="receipt-balance">{}</dd></div><div><dt>{}</dt><dd data-testid="receipt-ref">{}</dd></div></dl></section>"#,
                esc(t(l, Msg::Paid)),
                esc(t(l, Msg::To)),
                esc(&r.merchant_name),
                esc(t(l, Msg::Amount)),
                esc(&format_amount(r.amount as u64, r.currency, r.exponent, l)),
                esc(t(l, Msg::BalanceAfter)),
                esc(&format_amount(r.balance_after as u64, r.currency, r.exponent, l)),
                esc(t(l, Msg::Reference)),
                esc(&r.txn_id),
            ));
        }
        Screen::Cancelled(reason) => {
            h.push_str(&format!(
                r#"<p class="cp-notice" data-testid="cancelled" data-reason="{}" tabindex="-1" data-autofocus="1">{}</p>"#,
                esc(reason),
                esc(t(l, cancel_msg(v.mode, reason)))
            ));
        }
    }
    h.push_str("</div>");
    h
}

pub fn screen_name(s: &Screen) -> &'static str {
    match s {
        Screen::Progress(_) => "progress",
        Screen::Unavailable(_) => "unavailable",
        Screen::Confirm => "confirm",
        Screen::Pin { .. } => "pin",
        Screen::LoadConfirm(_) => "confirm",
        Screen::Failed { .. } => "failed",
        Screen::Done { .. } | Screen::Loaded(_) => "done",
        Screen::Cancelled(_) => "cancelled",
    }
}

#[cfg(test)]
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
            t(Lang::En, Msg::ReadyToPay)
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
        want.push(t(Lang::En, Msg::Delete).into());
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
