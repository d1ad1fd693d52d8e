//! Views → HTML. Pure string building (escaped), so every screen is testable
//! natively; the glue sets it into the iframe and wires `data-action` clicks.
//!
//! Accessibility: one `<h1>`, a polite live region for progress, `role="alert"`
//! for problems, real `<button>`s with labels, the keypad in visual (= tab) order,
//! focus set on the element marked `data-autofocus`.

use crate::flow::{Capability, Problem, Screen, Step, View};
use crate::i18n::{t, tries_left, Lang, Msg};
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
    h.push_str(&format!(
        r#"<div class="cp-pin" role="status" aria-live="polite" data-testid="pin-count" data-count="{entered}" aria-label="{entered} {}">{dots}</div>"#,
        esc(t(l, Msg::PinEntered))
    ));
    h.push_str(&format!(
        r#"<div class="cp-keypad" role="group" tabindex="-1" data-autofocus="1" aria-labelledby="cp-pin-title" aria-describedby="cp-pin-help" data-testid="keypad" data-order="{order}" data-style="grid-template-columns:repeat({cols},{b}px);grid-auto-rows:{b}px;gap:{g}px;margin:{oy}px 0 0 {ox}px">"#,
        order = layout.digit_order().iter().map(|d| d.to_string()).collect::<String>(),
        cols = layout.columns,
        b = layout.button_px,
        g = layout.gap_px,
        oy = layout.offset_y_px,
        ox = layout.offset_x_px,
    ));
    for p in &layout.keys {
        let pos = format!("grid-row:{};grid-column:{}", p.row, p.col);
        // Focus starts on the pad itself (typed digits and Enter work there).
        let af = "";
        let b = match p.key {
            Key::Digit(d) => format!(
                r#"<button type="button" class="cp-key" data-action="digit" data-digit="{d}" aria-label="{d}" data-style="{pos}"{af}>{d}</button>"#
            ),
            Key::Delete => format!(
                r#"<button type="button" class="cp-key cp-key-del" data-action="delete" aria-label="{}" data-style="{pos}"{af}>⌫</button>"#,
                esc(t(l, Msg::Delete))
            ),
            Key::Ok => format!(
                r#"<button type="button" class="cp-key cp-key-ok" data-action="ok" aria-label="{}" data-style="{pos}"{af}{dis}>{}</button>"#,
                esc(t(l, Msg::Ok)),
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

/// The whole widget body for `v`.
pub fn render(v: &View) -> String {
    let l = v.lang;
    let mut h = format!(
        r#"<div class="cp-widget" lang="{}" data-screen="{}"><h1 class="cp-title">{}</h1>"#,
        l.tag(),
        screen_name(&v.screen),
        esc(t(l, Msg::Title))
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
                r#"<div class="cp-progress" role="status" aria-live="polite" data-testid="progress" data-step="{}"><span class="cp-spinner" aria-hidden="true"></span>{}</div>"#,
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
            let m = match c {
                Capability::NoExtension => Msg::NoExtension,
                Capability::NoBridge => Msg::NoBridge,
                Capability::NoReader => Msg::NoReader,
                Capability::NoCard | Capability::Ready => Msg::NoCard,
            };
            h.push_str(&format!(
                r#"<p class="cp-notice" role="status" aria-live="polite" data-testid="capability" data-capability="{}">{}</p>"#,
                c.as_str(),
                esc(t(l, m))
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
                r#"<section class="cp-receipt" role="status" aria-live="polite" data-testid="receipt" tabindex="-1" data-autofocus="1"><h2>✓ {}</h2><dl><div><dt>{}</dt><dd>{}</dd></div><div><dt>{}</dt><dd data-testid="receipt-amount">{}</dd></div><div><dt>{}</dt><dd data-testid="receipt-balance">{}</dd></div><div><dt>{}</dt><dd data-testid="receipt-ref">{}</dd></div></dl></section>"#,
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
            let m = match *reason {
                "timeout" => Msg::CancelledTimeout,
                "not_mine" => Msg::CancelledNotMine,
                _ => Msg::CancelledUser,
            };
            h.push_str(&format!(
                r#"<p class="cp-notice" role="status" aria-live="polite" data-testid="cancelled" data-reason="{}" tabindex="-1" data-autofocus="1">{}</p>"#,
                esc(reason),
                esc(t(l, m))
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

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
