//! A purchase's screens (feature `purchase`): approve, the PIN pad, the receipt.

use crate::prelude::*;
use purse::purchase::client::{Receipt, PIN_MAX, PIN_MIN};

use super::{button, cat, items, push_esc, receipt_head, View};
use crate::i18n::{digits_entered, t, tries_left, Msg, PayMsg};
use crate::keypad::{Key, Layout};
use crate::money::{decimal, format_amount};

pub(super) fn confirm(h: &mut String, v: &View) {
    let l = v.lang;
    h.push_str(r#"<div class="cp-actions">"#);
    button(h, "approve", t(l, PayMsg::Approve), "cp-btn-primary", true);
    button(h, "cancel", t(l, Msg::Cancel), "cp-btn-secondary", false);
    h.push_str(r#"</div><p class="cp-actions cp-secondary">"#);
    button(h, "not-mine", t(l, PayMsg::NotMine), "cp-btn-link", false);
    h.push_str("</p>");
}

pub(super) fn receipt(h: &mut String, v: &View, r: &Receipt, recovered: bool) {
    let l = v.lang;
    if recovered {
        h.push_str(r#"<p class="cp-notice" data-testid="recovered">"#);
        push_esc(h, t(l, PayMsg::RecoveredPaid));
        h.push_str("</p>");
    }
    let money = |a: u32| format_amount(a as u64, r.currency, r.exponent, l);
    receipt_head(h, t(l, PayMsg::Paid));
    items(
        h,
        l,
        &[
            (PayMsg::To.into(), "", &r.merchant_name),
            (
                PayMsg::Amount.into(),
                r#" data-testid="receipt-amount""#,
                &money(r.amount),
            ),
            (
                PayMsg::BalanceAfter.into(),
                r#" data-testid="receipt-balance""#,
                &money(r.balance_after),
            ),
            (Msg::Reference, r#" data-testid="receipt-ref""#, &r.txn_id),
        ],
    );
    h.push_str("</dl></section>");
}

pub(super) fn keypad(h: &mut String, v: &View, layout: &Layout, entered: usize, wrong: Option<u8>) {
    let l = v.lang;
    h.push_str(r#"<h2 id="cp-pin-title">"#);
    push_esc(h, t(l, PayMsg::EnterPin));
    h.push_str(r#"</h2><p class="cp-help" id="cp-pin-help">"#);
    push_esc(h, t(l, PayMsg::PinHelp));
    h.push_str("</p>");
    // Filled and shown by the glue when a digit is typed on the keyboard.
    h.push_str(r#"<p class="cp-note" data-testid="typed-digits" hidden></p>"#);
    if let Some(n) = wrong {
        h.push_str(r#"<p class="cp-error" role="alert" data-testid="pin-error">"#);
        push_esc(h, t(l, PayMsg::ErrWrongPin));
        h.push(' ');
        push_esc(h, &tries_left(l, n));
        h.push_str("</p>");
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
    cat(
        h,
        &[
            r#"<div class="cp-pin" data-testid="pin-count" data-count=""#,
            &decimal(entered as u64),
            r#""><span class="cp-dots" aria-hidden="true">"#,
            &dots,
            r#"</span><span class="cp-sr">"#,
        ],
    );
    push_esc(h, &digits_entered(l, entered));
    h.push_str("</span></div>");
    let order: String = layout
        .digit_order()
        .iter()
        .map(|&d| char::from(b'0' + d))
        .collect();
    let cols = decimal(layout.columns.into());
    let b = decimal(layout.button_px.into());
    let offset_x = decimal(layout.offset_x_px.into());
    cat(
        h,
        &[
            r#"<div class="cp-keypad" role="group" tabindex="-1" data-autofocus="1" aria-labelledby="cp-pin-title" aria-describedby="cp-pin-help" data-testid="keypad" data-order=""#,
            &order,
            r#"" data-cols=""#,
            &cols,
            // The columns may shrink and the pad is never wider than its container
            // less its offset: between the container narrowing (a vertical scrollbar
            // appears, the window narrows) and the refit one frame later, the keys get
            // narrower instead of sticking out of the frame.
            r#"" data-style="grid-template-columns:repeat("#,
            &cols,
            ",minmax(0,",
            &b,
            "px));max-width:calc(100% - ",
            &offset_x,
            "px);grid-auto-rows:",
            &b,
            "px;gap:",
            &decimal(layout.gap_px.into()),
            "px;margin:",
            &decimal(layout.offset_y_px.into()),
            "px 0 0 ",
            &offset_x,
            r#"px">"#,
        ],
    );
    for p in &layout.keys {
        let pos = [
            "grid-row:",
            &decimal(p.row.into()),
            ";grid-column:",
            &decimal(p.col.into()),
        ]
        .concat();
        // A key's accessible name is exactly what it shows: no row/column or "key n of
        // 12", which would tell a listener (or any program reading the accessibility
        // tree) more about the layout than the screen does.
        match p.key {
            Key::Digit(d) => {
                let d = decimal(d.into());
                cat(
                    h,
                    &[
                        r#"<button type="button" class="cp-key" data-action="digit" data-digit=""#,
                        &d,
                        r#"" aria-label=""#,
                        &d,
                        r#"" data-style=""#,
                        &pos,
                        r#"">"#,
                        &d,
                        "</button>",
                    ],
                );
            }
            Key::Delete => {
                h.push_str(r#"<button type="button" class="cp-key cp-key-del" data-action="delete" aria-label=""#);
                push_esc(h, t(l, PayMsg::Delete));
                cat(
                    h,
                    &[
                        r#"" data-style=""#,
                        &pos,
                        r#""><span aria-hidden="true">⌫</span></button>"#,
                    ],
                );
            }
            Key::Ok => {
                cat(
                    h,
                    &[
                        r#"<button type="button" class="cp-key cp-key-ok" data-action="ok" data-style=""#,
                        &pos,
                        "\"",
                        if entered < PIN_MIN {
                            r#" aria-disabled="true""#
                        } else {
                            ""
                        },
                        ">",
                    ],
                );
                push_esc(h, t(l, PayMsg::Ok));
                h.push_str("</button>");
            }
        }
    }
    h.push_str("</div>");
}
