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

use crate::flow::{Capability, Problem, Screen, Step, View};
use crate::i18n::{digits_entered, t, tries_left, Lang, Msg};
use crate::keypad::Key;
use crate::money::format_amount;

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

pub fn problem_msg(p: Problem) -> Msg {
    match p {
        Problem::CardRemoved => Msg::ErrCardRemoved,
        Problem::CardRemovedCharged => Msg::ErrCardRemovedCharged,
        Problem::DebitDone => Msg::ErrDebitDone,
        Problem::DebitNotDone => Msg::ErrDebitNotDone,
        Problem::CardError => Msg::CardError,
        Problem::PinBlocked => Msg::ErrPinBlocked,
        Problem::LastPinTry => Msg::ErrLastTry,
        Problem::PinRateLimited => Msg::ErrPinRate,
        Problem::Funds => Msg::ErrFunds,
        Problem::Expired => Msg::ErrExpired,
        Problem::Network => Msg::ErrNetwork,
        Problem::Server => Msg::ErrServer,
        Problem::CardRefused => Msg::ErrCardRefused,
        Problem::AmountMismatch => Msg::ErrAmountMismatch,
        Problem::BadSession => Msg::ErrBadSession,
        Problem::WrongCurrency => Msg::ErrWrongCurrency,
    }
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
        esc(t(l, Msg::To)),
        esc(&v.merchant_name),
        esc(t(l, Msg::Amount)),
        esc(&amount)
    );
    if let Some(b) = v.balance {
        rows.push_str(&format!(
            r#"<div><dt>{}</dt><dd class="cp-balance" data-testid="balance">{}</dd></div>"#,
            esc(t(l, Msg::Balance)),
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

fn keypad(v: &View, layout: &crate::keypad::Layout, entered: usize, wrong: Option<u8>) -> String {
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
    let dots: String = (0..crate::flow::PIN_MAX)
        .map(|i| {
            if i < entered {
                r#"<span class="cp-dot cp-dot-on"></span>"#
            } else if i < crate::flow::PIN_MIN.max(entered) {
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
                dis = if entered < crate::flow::PIN_MIN {
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

fn secondary(l: Lang) -> String {
    format!(
        r#"<div class="cp-actions cp-secondary">{}{}</div>"#,
        button("cancel", t(l, Msg::Cancel), "cp-btn-secondary", false),
        button("not-mine", t(l, Msg::NotMine), "cp-btn-link", false)
    )
}

/// What stays in the root for the whole transaction: the heading (focus target of
/// screens without a control of their own), the screen container [`render`] fills,
/// and the polite live region [`announce`] speaks through.
pub fn skeleton(l: Lang) -> String {
    format!(
        r#"<h1 class="cp-title" id="cp-title" tabindex="-1">{}</h1><div id="cp-screen"></div><p id="cp-live" class="cp-sr" role="status" aria-live="polite" aria-atomic="true" data-testid="live"></p>"#,
        esc(t(l, Msg::Title))
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
        Screen::Pin { entered, .. } => {
            if *entered == 0 {
                t(l, Msg::EnterPin).to_string()
            } else {
                digits_entered(l, *entered)
            }
        }
        Screen::Failed { .. } => String::new(),
        Screen::Done(r) => format!(
            "{}. {} {}",
            t(l, Msg::Paid),
            t(l, Msg::Amount),
            format_amount(r.amount as u64, r.currency, r.exponent, l)
        ),
        Screen::Cancelled(reason) => t(l, cancel_msg(reason)).to_string(),
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

fn cancel_msg(reason: &str) -> Msg {
    match reason {
        "timeout" => Msg::CancelledTimeout,
        "not_mine" => Msg::CancelledNotMine,
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
                h.push_str(&secondary(l));
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
        Screen::Pin {
            layout,
            entered,
            wrong_tries_left,
        } => {
            h.push_str(&keypad(v, layout, *entered, *wrong_tries_left));
            h.push_str(&secondary(l));
        }
        Screen::Failed { problem, retry } => {
            h.push_str(&format!(
                r#"<p class="cp-error" role="alert" data-testid="error" data-code="{}">{}</p>"#,
                problem.code(),
                esc(t(l, problem_msg(*problem)))
            ));
            h.push_str(r#"<div class="cp-actions">"#);
            if *retry {
                h.push_str(&button("retry", t(l, Msg::Retry), "cp-btn-primary", true));
            }
            if !matches!(
                problem,
                Problem::CardRemovedCharged | Problem::DebitDone | Problem::DebitNotDone
            ) {
                h.push_str(&button(
                    "cancel",
                    t(l, Msg::Cancel),
                    "cp-btn-secondary",
                    !*retry,
                ));
            }
            h.push_str("</div>");
        }
        Screen::Done(r) => {
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
                esc(t(l, cancel_msg(reason)))
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
        Screen::Failed { .. } => "failed",
        Screen::Done(_) => "done",
        Screen::Cancelled(_) => "cancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::keypad::{Layout, SplitMix};

    fn view(screen: Screen) -> View {
        View {
            screen,
            lang: Lang::En,
            merchant_name: "Shop".into(),
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
        let sk = skeleton(Lang::De);
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
