//! The members page (seed figure 16: authentication and loyalty). The shopper
//! signs in **with the card** — an amount-0 purchase of the money purse: the
//! card proves itself (S1, S2, S3), nothing is debited, and it is neither an
//! order nor a payment record — then sees the points the store's orders
//! earned on that card ([`crate::points`]) and redeems points for a voucher
//! through a **points-purse purchase** (purse 1, currency 999, exponent 0).
//!
//! Both are verified with merchant-kit exactly like a payment, never on the
//! page's word: the widget brings back result M, sealed by the payment server
//! under the attempt's DK after it verified the card's S3 and captured
//! (member attempts are always in mode `payment_server`).
//! - A sign-in attempt is used once: it starts an opaque member session (a
//!   random token in an HttpOnly, SameSite=Lax cookie, Secure over https; only
//!   its SHA-256 is stored). A replayed sign-in result is refused.
//! - A redemption issues one voucher per captured transaction, to the card
//!   that paid (a replay gets `already_issued`, never a second voucher). A
//!   redemption whose result never reached the store is booked from the
//!   payment server's signed webhook, or found on the members page (the open
//!   attempts are asked of the payment server).
//!
//! The payment server never tells a merchant the full card id: it gives the
//! card masked (`…1234`, shown to the shopper) and the card's reference for
//! this merchant (`card_ref`: 32 hex digits, stable for one card, different
//! for two cards with the same last four, not the card number). The member,
//! the session, the vouchers and the earned points (`points_earned.card_ref`,
//! the store's loyalty program gets the store's references) are keyed on
//! `card_ref`; a result without one (an older payment server) signs no one in.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use merchant_kit::{OrderRef, SessionParams, Verified, VerifiedPayment};
use purse::merchant_api::{TxnState, TxnView};
use purse::purchase::MerchantResult;
use purse::session::VerifyMode;
use purse::types::PurseId;
use purse::webhook::{EventKind, WebhookEvent};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cart::{cookie, set_cookie};
use crate::pages::{esc, euros, page, widget_html, with_cookies};
use crate::points::PointsLoad;
use crate::{now, random_id, AppState, StoreError};

pub(crate) const SCHEMA: &str = r#"
-- One row per sign-in or redemption page: a purchase made with the card.
CREATE TABLE IF NOT EXISTS member_attempts (
    txn_id      TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,          -- signin | redeem
    member      TEXT,                   -- redeem: the signed-in member (card_ref)
    points      INTEGER NOT NULL,       -- redeem: points to take; sign-in: 0
    status      TEXT NOT NULL,          -- open | done | failed
    card        TEXT,                   -- the card that did it (masked)
    created_at  INTEGER NOT NULL,
    card_ref    TEXT                    -- the card that did it (its reference)
);
CREATE INDEX IF NOT EXISTS member_attempts_member ON member_attempts (member, status);
CREATE TABLE IF NOT EXISTS member_sessions (
    token_hash  BLOB PRIMARY KEY,
    card        TEXT NOT NULL,          -- masked, to show
    expires_at  INTEGER NOT NULL,
    card_ref    TEXT                    -- the member
);
-- One voucher per captured points purchase.
CREATE TABLE IF NOT EXISTS vouchers (
    code        TEXT PRIMARY KEY,
    txn_id      TEXT NOT NULL UNIQUE REFERENCES member_attempts (txn_id),
    card        TEXT NOT NULL,
    points      INTEGER NOT NULL,
    value       INTEGER NOT NULL,       -- euro cents
    created_at  INTEGER NOT NULL,
    card_ref    TEXT                    -- the member it belongs to
);
"#;

/// Columns added since the tables first shipped (a store database made before
/// card references gets them; its older rows have none and match no member).
pub(crate) const ADDED_COLUMNS: [(&str, &str); 3] = [
    ("member_attempts", "card_ref"),
    ("member_sessions", "card_ref"),
    ("vouchers", "card_ref"),
];

/// Points one redemption takes, and the voucher it gives (euro cents).
pub const REDEEM_POINTS: u32 = 100;
pub const VOUCHER_CENTS: u32 = 500;
/// How long a member session lasts (seconds).
pub const MEMBER_TTL: u64 = 8 * 3600;
/// Open redemptions younger than this are asked of the payment server.
const RECONCILE_WINDOW: u64 = 86_400;
const COOKIE: &str = "member";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voucher {
    pub code: String,
    pub txn_id: String,
    /// The card whose points paid it (masked).
    pub card: String,
    pub points: u32,
    pub value: u32,
    pub created_at: u64,
}

/// A signed-in member: the card's reference (the key) and the masked card
/// (what the page shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub card_ref: String,
    pub card: String,
}

/// What the members page shows a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub card: String,
    pub card_ref: String,
    pub earned: Vec<PointsLoad>,
    pub earned_total: u32,
    pub vouchers: Vec<Voucher>,
}

/// What a member result did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberOutcome {
    /// Signed in: the session token for the cookie.
    SignedIn { card: String, token: String },
    /// The voucher of a redemption, and whether this result issued it.
    Voucher { voucher: Voucher, new: bool },
}

/// One sign-in or redemption attempt as stored.
struct Attempt {
    txn_id: String,
    kind: String,
    points: u32,
    /// The merchant's order reference of the attempt (unique per attempt).
    order_ref: String,
}

impl Attempt {
    fn redeem(&self) -> bool {
        self.kind == "redeem"
    }
}

fn voucher_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Voucher> {
    Ok(Voucher {
        code: r.get("code")?,
        txn_id: r.get("txn_id")?,
        card: r.get("card")?,
        points: r.get("points")?,
        value: r.get("value")?,
        created_at: r.get("created_at")?,
    })
}

fn load_attempt(c: &Connection, txn: &str) -> Result<Attempt, StoreError> {
    c.query_row(
        "SELECT txn_id, kind, points FROM member_attempts WHERE txn_id = ?1",
        params![txn],
        |r| {
            let (txn_id, kind): (String, String) = (r.get(0)?, r.get(1)?);
            Ok(Attempt {
                order_ref: format!("{kind}-{txn_id}"),
                txn_id,
                kind,
                points: r.get(2)?,
            })
        },
    )
    .optional()?
    .ok_or(StoreError::NotFound)
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

impl AppState {
    /// A new sign-in (`member` None) or redemption attempt and its session.
    async fn member_attempt(
        self: &Arc<Self>,
        member: Option<String>,
    ) -> Result<purse::purchase::WidgetSession, StoreError> {
        let txn = random_id("mbr-")?;
        let (kind, points) = match member {
            None => ("signin", 0),
            Some(_) => ("redeem", REDEEM_POINTS),
        };
        let (purse, currency, exponent) = member_purse(kind);
        let ws = self
            .merchant
            .build_session(SessionParams {
                txn_id: txn.clone(),
                order_ref: format!("{kind}-{txn}"),
                amount: points,
                currency,
                exponent,
                purse,
                expires_at: now() + self.cfg.session_ttl,
                verify_mode: VerifyMode::PaymentServer,
                result_url: format!("{}/members/{txn}/result", self.cfg.public_origin),
                origin: self.cfg.public_origin.clone(),
                terminal: self.cfg.terminal,
            })
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        self.db(move |c| {
            c.execute(
                "INSERT INTO member_attempts (txn_id, kind, member, points, status, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'open', ?5)",
                params![txn, kind, member, points, now()],
            )?;
            Ok(())
        })
        .await?;
        Ok(ws)
    }

    fn member_ref<'a>(&'a self, a: &'a Attempt) -> OrderRef<'a> {
        let (purse, currency, exponent) = member_purse(&a.kind);
        OrderRef {
            txn_id: &a.txn_id,
            order_ref: &a.order_ref,
            amount: a.points,
            currency,
            exponent,
            purse,
            origin: &self.cfg.public_origin,
            verify_mode: VerifyMode::PaymentServer,
        }
    }

    /// What the widget posted after a sign-in or redemption, verified with
    /// merchant-kit against the attempt named by the result URL.
    pub async fn take_member_result(
        self: &Arc<Self>,
        txn: &str,
        result: &MerchantResult,
    ) -> Result<MemberOutcome, StoreError> {
        let t = txn.to_string();
        let a = self.db(move |c| load_attempt(c, &t)).await?;
        let p = match self.merchant.verify_result(&self.member_ref(&a), result)? {
            Verified::Captured(p) => p,
            // Member attempts are in mode `payment_server`: verify_result
            // refuses an S3 result (WrongMode) before it gets here.
            Verified::ConfirmWithServer { .. } => {
                return Err(StoreError::Payment(merchant_kit::MerchantError::WrongMode(
                    VerifyMode::PaymentServer,
                )))
            }
        };
        self.book_member(&a, &p).await
    }

    /// Book a verified capture of a member attempt: a sign-in once, a
    /// voucher once per transaction.
    async fn book_member(
        self: &Arc<Self>,
        a: &Attempt,
        p: &VerifiedPayment,
    ) -> Result<MemberOutcome, StoreError> {
        let (txn, card, card_ref, points, redeem) = (
            a.txn_id.clone(),
            p.card.clone(),
            p.card_ref.clone(),
            a.points,
            a.redeem(),
        );
        if !valid_card_ref(&card_ref) {
            // Never one member for every card: an older payment server.
            return Err(StoreError::Internal(
                "the payment server gave no card reference".into(),
            ));
        }
        let token = hex::encode(
            merchant_kit::random_bytes::<32>().map_err(|e| StoreError::Internal(e.to_string()))?,
        );
        let code = random_id("")?[..16].to_ascii_uppercase();
        let hash = token_hash(&token);
        let out = self
            .db(move |c| {
                let fresh = c.execute(
                    "UPDATE member_attempts SET status = 'done', card = ?2, card_ref = ?3
                     WHERE txn_id = ?1 AND status = 'open'",
                    params![txn, card, card_ref],
                )? == 1;
                if !redeem {
                    if !fresh {
                        return Err(StoreError::Used("this sign-in"));
                    }
                    c.execute(
                        "INSERT INTO member_sessions (token_hash, card, card_ref, expires_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![hash, card, card_ref, now() + MEMBER_TTL],
                    )?;
                    return Ok(MemberOutcome::SignedIn { card, token });
                }
                let value = points / REDEEM_POINTS * VOUCHER_CENTS;
                let new = c.execute(
                    "INSERT OR IGNORE INTO vouchers (code, txn_id, card, card_ref, points, value, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![format!("CP-{code}"), txn, card, card_ref, points, value, now()],
                )? == 1;
                let voucher = c.query_row(
                    "SELECT * FROM vouchers WHERE txn_id = ?1",
                    params![txn],
                    voucher_row,
                )?;
                Ok(MemberOutcome::Voucher { voucher, new })
            })
            .await?;
        match &out {
            MemberOutcome::SignedIn { card, .. } => {
                tracing::info!(txn = %p.txn_id, card = %card, "member signed in with the card")
            }
            MemberOutcome::Voucher { voucher, new: true } => {
                tracing::info!(txn = %p.txn_id, card = %voucher.card, points = voucher.points, "voucher issued")
            }
            MemberOutcome::Voucher { .. } => {}
        }
        Ok(out)
    }

    /// The member of the request's session cookie.
    pub async fn member(
        self: &Arc<Self>,
        headers: &HeaderMap,
    ) -> Result<Option<Member>, StoreError> {
        let Some(token) = cookie(headers, COOKIE) else {
            return Ok(None);
        };
        let hash = token_hash(token);
        self.db(move |c| {
            Ok(c.query_row(
                "SELECT card_ref, card FROM member_sessions
                 WHERE token_hash = ?1 AND expires_at > ?2 AND card_ref IS NOT NULL",
                params![hash, now()],
                |r| {
                    Ok(Member {
                        card_ref: r.get(0)?,
                        card: r.get(1)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    /// A member's earned points and vouchers.
    pub async fn member_view(self: &Arc<Self>, m: &Member) -> Result<MemberView, StoreError> {
        let Member { card_ref, card } = m.clone();
        self.db(move |c| {
            let earned: Vec<PointsLoad> = c
                .prepare_cached(
                    "SELECT order_id, txn_id, points, status, card FROM points_earned
                     WHERE card_ref = ?1 AND status = 'earned' ORDER BY decided_at, order_id",
                )?
                .query_map(params![card_ref], crate::points::row)?
                .collect::<Result<_, _>>()?;
            let vouchers = c
                .prepare_cached(
                    "SELECT * FROM vouchers WHERE card_ref = ?1 ORDER BY created_at, code",
                )?
                .query_map(params![card_ref], voucher_row)?
                .collect::<Result<_, _>>()?;
            Ok(MemberView {
                earned_total: earned.iter().map(|p| p.points).sum(),
                earned,
                vouchers,
                card,
                card_ref,
            })
        })
        .await
    }

    /// A verified webhook of a member attempt: a captured redemption gets
    /// its voucher even if its result never reaches the store (a sign-in
    /// has no browser to sign in here: nothing to do).
    pub(crate) async fn take_member_event(
        self: &Arc<Self>,
        ev: &WebhookEvent,
    ) -> Result<(), StoreError> {
        let t = ev.txn_id.clone();
        let a = match self.db(move |c| load_attempt(c, &t)).await {
            Ok(a) => a,
            Err(StoreError::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        let captured = matches!(
            ev.kind,
            EventKind::Captured | EventKind::Recovered | EventKind::Settled
        ) && ev.state.is_captured();
        if a.redeem() && captured {
            let p = crate::payment_of_event(&self.member_ref(&a), ev)?;
            self.book_member(&a, &p).await?;
        }
        Ok(())
    }

    /// A member's recent open redemptions, asked of the payment server: a
    /// captured one whose result never reached the store gets its voucher.
    async fn reconcile_redemptions(self: &Arc<Self>, m: &Member) -> Result<(), StoreError> {
        let card_ref = m.card_ref.clone();
        let open: Vec<String> = self
            .db(move |c| {
                Ok(c.prepare_cached(
                    "SELECT txn_id FROM member_attempts
                     WHERE member = ?1 AND kind = 'redeem' AND status = 'open' AND created_at > ?2",
                )?
                .query_map(
                    params![card_ref, now().saturating_sub(RECONCILE_WINDOW)],
                    |r| r.get(0),
                )?
                .collect::<Result<_, _>>()?)
            })
            .await?;
        for txn in open {
            let t = txn.clone();
            let a = self.db(move |c| load_attempt(c, &t)).await?;
            let view: Result<TxnView, _> = self
                .merchant_api("GET", &format!("/v1/transactions/{txn}"), vec![])
                .await;
            match view {
                Ok(v) if v.state.is_captured() => {
                    match self.merchant.check_confirmed(&self.member_ref(&a), &v) {
                        Ok(p) => {
                            self.book_member(&a, &p).await?;
                        }
                        Err(e) => tracing::warn!(txn = %txn, error = %e, "redemption does not match"),
                    }
                }
                Ok(v) if v.state == TxnState::Failed => {
                    self.db(move |c| {
                        c.execute(
                            "UPDATE member_attempts SET status = 'failed' WHERE txn_id = ?1 AND status = 'open'",
                            params![txn],
                        )?;
                        Ok(())
                    })
                    .await?
                }
                // Never drawn (the page was left) or still open: ask next time.
                _ => {}
            }
        }
        Ok(())
    }
}

/// A card reference as the payment server gives it: 32 lowercase hex digits.
fn valid_card_ref(r: &str) -> bool {
    r.len() == 32 && r.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// The purse, currency and exponent of a member attempt.
fn member_purse(kind: &str) -> (PurseId, u16, u8) {
    if kind == "redeem" {
        (PurseId::Points, 999, 0)
    } else {
        (PurseId::Money, 978, 2)
    }
}

type St = State<Arc<AppState>>;

/// `GET /members`: sign in, or the member's points, vouchers and redemption.
pub(crate) async fn members_page(
    State(st): St,
    headers: HeaderMap,
) -> Result<Response, StoreError> {
    let Some(m) = st.member(&headers).await? else {
        return Ok(page(
            "Members",
            "<p>Members collect points on every order and redeem them for vouchers.</p>\
             <p><a href=\"/members/signin\">Sign in with your card</a>: the card proves itself to the \
             payment server with a purchase of 0.00 EUR. <b>No payment is made</b> and no PIN is asked.</p>",
        )
        .into_response());
    };
    st.reconcile_redemptions(&m).await?;
    let v = st.member_view(&m).await?;
    let mut b = format!(
        "<p id=\"member\" role=\"status\">Signed in with card <b>{card}</b> (authentication OK). \
         No payment was made: signing in debits nothing.</p>\
         <form method=\"post\" action=\"/members/signout\"><button>Sign out</button></form>\
         <h2>Points earned</h2>",
        card = esc(&v.card)
    );
    if v.earned.is_empty() {
        b.push_str("<p>No points earned yet: paid orders earn points on the card.</p>");
    } else {
        b.push_str("<table><thead><tr><th scope=\"col\">Order</th><th scope=\"col\">Points</th></tr></thead><tbody>");
        for p in &v.earned {
            b.push_str(&format!(
                "<tr><td><a href=\"/orders/{o}\">{o}</a></td><td>{}</td></tr>",
                p.points,
                o = esc(&p.order_id)
            ));
        }
        b.push_str(&format!(
            "</tbody><tfoot><tr><td><b>Total</b></td><td><b id=\"earned-total\">{}</b></td></tr></tfoot></table>",
            v.earned_total
        ));
    }
    b.push_str(&format!(
        "<h2>Redeem points</h2><form method=\"post\" action=\"/members/redeem\">\
         <button>Redeem {REDEEM_POINTS} points for a {} voucher</button></form>\
         <p class=\"hint\">The points are taken from your card's points purse; your money is not touched.</p>\
         <h2>Your vouchers</h2>",
        euros(VOUCHER_CENTS)
    ));
    if v.vouchers.is_empty() {
        b.push_str("<p>No vouchers yet.</p>");
    } else {
        b.push_str("<ul id=\"vouchers\">");
        for x in &v.vouchers {
            b.push_str(&format!(
                "<li><code class=\"voucher\">{}</code>: {} ({} points)</li>",
                esc(&x.code),
                euros(x.value),
                x.points
            ));
        }
        b.push_str("</ul>");
    }
    Ok(page("Members", &b).into_response())
}

fn member_widget(
    st: &AppState,
    ws: &purse::purchase::WidgetSession,
    kind: &str,
    text: &str,
) -> Result<Response, StoreError> {
    let body = format!(
        "<p>{text}</p>{widget}<p><a href=\"/members\">Back to the members page</a></p>",
        widget = widget_html(
            st,
            ws,
            &format!(" data-kind=\"{kind}\""),
            "/static/members-page.js"
        )?
    );
    Ok(page("Members", &body).into_response())
}

/// `GET /members/signin`: a new sign-in (amount 0) in the widget.
pub(crate) async fn signin(State(st): St) -> Result<Response, StoreError> {
    let ws = st.member_attempt(None).await?;
    member_widget(
        &st,
        &ws,
        "signin",
        "Insert your Cardpay card to sign in. The card window shows 0.00 EUR: nothing is paid.",
    )
}

/// The members POSTs (a sign-in's result, redeem, sign out) must come from the
/// store's own pages. A browser names the page's origin in `Origin` on every POST,
/// so another site cannot post its own card's sign-in result into the shopper's
/// browser (signing them in as the attacker's card) or sign them out. A request
/// without `Origin` is not from a browser's page and passes; `null` does not.
fn same_site(st: &AppState, headers: &HeaderMap) -> Result<(), StoreError> {
    match crate::foreign_origin(headers, &st.cfg.public_origin) {
        Some(o) => Err(StoreError::CrossSite(o.chars().take(100).collect())),
        None => Ok(()),
    }
}

/// `POST /members/redeem`: a points purchase for a voucher, signed-in members only.
pub(crate) async fn redeem(State(st): St, headers: HeaderMap) -> Result<Response, StoreError> {
    same_site(&st, &headers)?;
    let Some(m) = st.member(&headers).await? else {
        return Ok(Redirect::to("/members").into_response());
    };
    let ws = st.member_attempt(Some(m.card_ref.clone())).await?;
    member_widget(
        &st,
        &ws,
        "redeem",
        &format!(
            "Redeem {REDEEM_POINTS} points of card {} for a {} voucher: insert the card.",
            esc(&m.card),
            euros(VOUCHER_CENTS)
        ),
    )
}

/// `POST /members/{txn}/result`: the widget's result of a sign-in or redemption.
pub(crate) async fn result(
    State(st): St,
    Path(txn): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, StoreError> {
    same_site(&st, &headers)?;
    let r: MerchantResult =
        serde_json::from_slice(&body).map_err(|e| StoreError::BadRequest(e.to_string()))?;
    Ok(match st.take_member_result(&txn, &r).await? {
        MemberOutcome::SignedIn { card, token } => with_cookies(
            vec![set_cookie(COOKIE, &token, st.secure())],
            Json(serde_json::json!({
                "status": "signed_in",
                "card": card,
                "message": format!("Signed in with card {card} (authentication OK). No payment was made."),
            })),
        ),
        MemberOutcome::Voucher { voucher, new } => Json(serde_json::json!({
            "status": if new { "issued" } else { "already_issued" },
            "card": voucher.card,
            "message": format!("{} points redeemed: your voucher is on the members page.", voucher.points),
        }))
        .into_response(),
    })
}

/// `POST /members/signout`.
pub(crate) async fn signout(State(st): St, headers: HeaderMap) -> Result<Response, StoreError> {
    same_site(&st, &headers)?;
    if let Some(token) = cookie(&headers, COOKIE) {
        let hash = token_hash(token);
        st.db(move |c| {
            c.execute(
                "DELETE FROM member_sessions WHERE token_hash = ?1",
                params![hash],
            )?;
            Ok(())
        })
        .await?;
    }
    Ok(with_cookies(
        vec![set_cookie(COOKIE, "", st.secure())],
        Redirect::to("/members"),
    ))
}

/// Page glue of the sign-in and redemption pages (`/static/members-page.js`):
/// mount the widget, forward its result to the store (which verifies it),
/// then show the members page. A sign-in never takes anything from the card;
/// a failed redemption says where to see whether points were taken.
const MEMBERS_GLUE: &str = r#"'use strict';
(function () {
  function start() {
    var el = document.getElementById('cardpay'), st = document.getElementById('cardpay-status');
    var redeem = el.dataset.kind === 'redeem';
    var safe = redeem ? 'no points were taken.' : 'nothing was taken from your card.';
    function say(text) { st.textContent = text; }
    if (!window.Cardpay) { say('The card window could not be loaded; ' + safe); return; }
    var w = Cardpay.mount(el, { session: JSON.parse(document.getElementById('cardpay-session').textContent) });
    w.on('result', function (d) {
      var shown = Date.now(), wait = Number(el.dataset.receiptMs) || 0;
      say('Checking with the store…');
      fetch(el.dataset.resultUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(d.result) })
        .then(function (r) {
          return r.json().then(function (j) {
            if (!r.ok) { say((redeem ? 'The redemption' : 'The sign-in') + ' was not accepted (' + j.error.code + ').'); return; }
            say(j.message);
            setTimeout(function () { location.href = '/members'; }, Math.max(0, wait - (Date.now() - shown)));
          });
        })
        .catch(function () { say('Could not reach the store; the members page shows what was done.'); });
    });
    w.on('cancel', function () { say((redeem ? 'Redemption' : 'Sign-in') + ' cancelled; ' + safe); });
    w.on('error', function (e) {
      say(redeem
        ? 'The redemption did not go through (' + e.code + '). If points were taken, the voucher appears on the members page.'
        : 'The sign-in did not go through (' + e.code + '); ' + safe);
    });
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
"#;

pub(crate) async fn members_page_js() -> Response {
    crate::pages::script(MEMBERS_GLUE)
}
