//! A load's screens (feature `load`): the bank's confirm and the load receipt.

use crate::prelude::*;
use purse::load::client::{ConfirmView, Receipt};

use super::{button, items, push_esc, receipt_head, View};
use crate::i18n::{t, LoadMsg, Msg};
use crate::money::format_amount;

pub(super) fn confirm(h: &mut String, v: &View, c: &ConfirmView) {
    let l = v.lang;
    let money = |a: u64| format_amount(a, v.currency, v.exponent, l);
    h.push_str(r#"<dl class="cp-summary cp-load">"#);
    items(
        h,
        l,
        &[
            (
                LoadMsg::BalanceAfterLoad.into(),
                r#" data-testid="balance-after""#,
                &money(c.balance_after),
            ),
            (
                LoadMsg::MaxBalance.into(),
                r#" data-testid="max-balance""#,
                &money(c.max_balance as u64),
            ),
        ],
    );
    h.push_str("</dl>");
    if c.over_max {
        h.push_str(r#"<p class="cp-error" role="alert" data-testid="over-max">"#);
        push_esc(h, t(l, LoadMsg::OverMaxWarning));
        h.push_str("</p>");
    }
    h.push_str(r#"<div class="cp-actions">"#);
    button(
        h,
        "approve",
        t(l, LoadMsg::ApproveLoad),
        "cp-btn-primary",
        !c.over_max,
    );
    button(
        h,
        "cancel",
        t(l, Msg::Cancel),
        "cp-btn-secondary",
        c.over_max,
    );
    h.push_str("</div>");
}

pub(super) fn receipt(h: &mut String, v: &View, r: &Receipt) {
    let l = v.lang;
    let money = |a: u32| format_amount(a as u64, r.currency, r.exponent, l);
    receipt_head(h, t(l, LoadMsg::Loaded));
    items(
        h,
        l,
        &[
            (
                LoadMsg::From.into(),
                r#" data-testid="receipt-bank""#,
                &r.bank_name,
            ),
            (
                LoadMsg::LoadAmount.into(),
                r#" data-testid="receipt-amount""#,
                &money(r.amount),
            ),
            (
                LoadMsg::BalanceNow.into(),
                r#" data-testid="receipt-balance-before""#,
                &money(r.balance_before),
            ),
            (
                LoadMsg::BalanceAfterLoad.into(),
                r#" data-testid="receipt-balance""#,
                &money(r.balance_after),
            ),
            (Msg::Reference, r#" data-testid="receipt-ref""#, &r.txn_id),
        ],
    );
    h.push_str(r#"</dl><p class="cp-note">"#);
    push_esc(h, t(l, LoadMsg::AccountCharged));
    h.push_str("</p></section>");
}
