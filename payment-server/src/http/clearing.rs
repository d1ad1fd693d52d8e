//! Settlement reports over HTTP.
//!
//! - The merchant's page (`/merchant`): today's takings, what is cleared and
//!   awaiting payout, a chart of daily takings (inline SVG), the payouts and
//!   the transactions behind each, with CSV/JSON links. Sign-in proves the
//!   merchant key without sending it: the page asks for a challenge, the
//!   browser computes `HMAC-SHA256(K_mp, "cardpay/merchant-login/v1\n" ||
//!   merchant id || "\n" || challenge)` with WebCrypto, and the server checks
//!   it in constant time. The key never leaves the merchant's browser (no
//!   server, proxy or log ever sees it), a challenge is bound to the merchant,
//!   lives 2 minutes and is accepted once, and no second credential
//!   (a password) has to be issued and kept. The session is an HttpOnly,
//!   SameSite=Strict cookie MACed under a per-process secret (8 hours).
//! - Machines: `GET /v1/settlements` and `/v1/settlements/{payout}` with the
//!   merchant API signature (`?format=csv` for CSV).
//! - The operator (bearer token): `GET /operator/clearing` (HTML),
//!   `GET /v1/clearing/report` (JSON), `POST /v1/clearing/close` (close batches now).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::auth::ApiCaller;
use super::AppState;
use crate::clearing::produce::BatchSigner;
use crate::clearing::report::{self, MerchantReport};
use crate::clearing::{db, settle::Payout};
use crate::error::PaymentError;
use crate::purchase::Caller;

/// How long a login challenge is good for.
const CHALLENGE_SECS: u64 = 120;
/// How long a merchant's page session lasts.
const SESSION_SECS: u64 = 8 * 3600;
const COOKIE: &str = "cp_merchant";
pub const LOGIN_LABEL: &str = "cardpay/merchant-login/v1\n";

/// The clearing side of the HTTP layer.
pub struct ClearingWeb {
    pub clearing_db: Option<PathBuf>,
    pub signer: Option<BatchSigner>,
    secret: [u8; 32],
    used: Mutex<HashMap<String, u64>>,
    /// The clearing database's read-only session, kept between report views:
    /// opening one on PostgreSQL is a connection with a thread of its own.
    reader: Arc<Mutex<Option<db::Db>>>,
}

impl core::fmt::Debug for ClearingWeb {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClearingWeb")
            .field("clearing_db", &self.clearing_db)
            .finish_non_exhaustive()
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

impl ClearingWeb {
    pub fn new(clearing_db: Option<PathBuf>, signer: Option<BatchSigner>) -> Self {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("OS random source");
        Self {
            clearing_db,
            signer,
            secret,
            used: Mutex::new(HashMap::new()),
            reader: Arc::new(Mutex::new(None)),
        }
    }

    /// `read` over the clearing database, `None` when there is none (not
    /// configured, or the clearing process has not created it yet). Its calls
    /// block (SQLite, or a PostgreSQL connection's thread), so they run on a
    /// blocking thread, not on the workers that serve payments. A failed read
    /// drops the session: the next view opens a new one (a restarted database).
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&db::Db) -> Result<T, db::DbError> + Send + 'static,
    ) -> Result<Option<T>, PaymentError> {
        let Some(path) = self.clearing_db.clone().filter(|p| db::reachable(p)) else {
            return Ok(None);
        };
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let mut slot = reader.lock().unwrap_or_else(|e| e.into_inner());
            let c = match slot.take() {
                Some(c) => c,
                None => db::open_read_only(&path)?,
            };
            let out = read(&c)?;
            *slot = Some(c);
            Ok(Some(out))
        })
        .await
        .map_err(internal)?
        .map_err(|e: db::DbError| internal(e))
    }

    fn challenge(&self, merchant: &str, now: u64) -> String {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("OS random source");
        let n = hex::encode(nonce);
        let t = now.to_string();
        let mac = hmac(
            &self.secret,
            &[
                b"challenge\n",
                merchant.as_bytes(),
                b"\n",
                t.as_bytes(),
                b"\n",
                n.as_bytes(),
            ],
        );
        format!("{t}.{n}.{}", hex::encode(mac))
    }

    /// A challenge this server made for `merchant`, unexpired and not used
    /// before (it is used now).
    fn take_challenge(&self, merchant: &str, challenge: &str, now: u64) -> bool {
        let parts: Vec<&str> = challenge.split('.').collect();
        let [t, n, mac] = parts.as_slice() else {
            return false;
        };
        let Ok(ts) = t.parse::<u64>() else {
            return false;
        };
        let want = hmac(
            &self.secret,
            &[
                b"challenge\n",
                merchant.as_bytes(),
                b"\n",
                t.as_bytes(),
                b"\n",
                n.as_bytes(),
            ],
        );
        let ok = hex::decode(mac).is_ok_and(|m| purse::crypto::mac_eq(&m, &want));
        if !ok || ts + CHALLENGE_SECS < now || ts > now + 5 {
            return false;
        }
        let mut used = self.used.lock().expect("used challenges");
        used.retain(|_, exp| *exp >= now);
        used.insert(challenge.to_string(), ts + CHALLENGE_SECS)
            .is_none()
    }

    fn session_cookie(&self, merchant: &str, now: u64) -> String {
        let exp = (now + SESSION_SECS).to_string();
        let id = hex::encode(merchant.as_bytes());
        let mac = hmac(
            &self.secret,
            &[b"session\n", id.as_bytes(), b"\n", exp.as_bytes()],
        );
        format!("{COOKIE}={id}.{exp}.{}; Path=/merchant; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}", hex::encode(mac))
    }

    fn session(&self, headers: &HeaderMap, now: u64) -> Option<String> {
        let cookies = headers.get_all(header::COOKIE);
        for v in cookies.iter().filter_map(|v| v.to_str().ok()) {
            for c in v.split(';') {
                let Some(val) = c.trim().strip_prefix(&format!("{COOKIE}=")) else {
                    continue;
                };
                let parts: Vec<&str> = val.split('.').collect();
                let [id, exp, mac] = parts.as_slice() else {
                    continue;
                };
                let want = hmac(
                    &self.secret,
                    &[b"session\n", id.as_bytes(), b"\n", exp.as_bytes()],
                );
                let ok = hex::decode(mac).is_ok_and(|m| purse::crypto::mac_eq(&m, &want));
                let live = exp.parse::<u64>().is_ok_and(|e| e >= now);
                if ok && live {
                    return hex::decode(id).ok().and_then(|b| String::from_utf8(b).ok());
                }
            }
        }
        None
    }
}

fn web(st: &AppState) -> Result<&ClearingWeb, PaymentError> {
    st.clearing.as_deref().ok_or(PaymentError::NotFound)
}

const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn html(body: String) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

fn csv(name: &str, body: String) -> Response {
    let disp = format!(
        "attachment; filename=\"{}.csv\"",
        name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
    );
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disp).unwrap_or(HeaderValue::from_static("attachment")),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

fn internal(e: impl std::fmt::Display) -> PaymentError {
    PaymentError::Internal(e.to_string())
}

/// The merchant's report from both databases.
async fn merchant_report(st: &AppState, merchant: &str) -> Result<MerchantReport, PaymentError> {
    let w = web(st)?;
    let now = st.service.now();
    let today_day = now / 86_400;
    let takings = st
        .service
        .store()
        .daily_takings(merchant, (today_day - 29) * 86_400)
        .await?;
    let daily = report::last_30_days(&takings, today_day);
    let (today_captured, today_count) = daily.last().map(|d| (d.amount, d.count)).unwrap_or((0, 0));
    let who = merchant.to_string();
    let (payouts, unpaid, unpaid_fees) = w
        .read(move |c| report::payouts(c, &who))
        .await?
        .unwrap_or((Vec::new(), 0, 0));
    Ok(MerchantReport {
        merchant_id: merchant.to_string(),
        name: st
            .service
            .merchant(merchant)
            .map(|m| m.name.clone())
            .unwrap_or_default(),
        today: db::iso_date(now),
        today_captured,
        today_count,
        cleared_unpaid: unpaid,
        cleared_unpaid_fees: unpaid_fees,
        payouts,
        daily,
    })
}

async fn payout_of(
    st: &AppState,
    merchant: &str,
    id: &str,
) -> Result<(Payout, Vec<report::PayoutLine>), PaymentError> {
    let (who, id) = (merchant.to_string(), id.to_string());
    web(st)?
        .read(move |c| report::payout_lines(c, &who, &id))
        .await?
        .flatten()
        .ok_or(PaymentError::NotFound)
}

fn signed_in(st: &AppState, headers: &HeaderMap) -> Result<Option<String>, PaymentError> {
    Ok(web(st)?.session(headers, st.service.now()))
}

pub(super) async fn page(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PaymentError> {
    let Some(m) = signed_in(&st, &headers)? else {
        return Ok(Redirect::to("/merchant/login").into_response());
    };
    Ok(html(report::merchant_html(
        &merchant_report(&st, &m).await?,
    )))
}

pub(super) async fn settlements_csv(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PaymentError> {
    let m = signed_in(&st, &headers)?.ok_or(PaymentError::Unauthorized)?;
    Ok(csv(
        &format!("settlements-{m}"),
        report::payouts_csv(&merchant_report(&st, &m).await?.payouts),
    ))
}

pub(super) async fn settlements_json(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PaymentError> {
    let m = signed_in(&st, &headers)?.ok_or(PaymentError::Unauthorized)?;
    Ok(Json(merchant_report(&st, &m).await?).into_response())
}

pub(super) async fn payout_page(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, PaymentError> {
    let Some(m) = signed_in(&st, &headers)? else {
        return Ok(Redirect::to("/merchant/login").into_response());
    };
    match id.strip_suffix(".csv") {
        Some(id) => {
            let (p, lines) = payout_of(&st, &m, id).await?;
            Ok(csv(id, report::lines_csv(&p, &lines)))
        }
        None => {
            let (p, lines) = payout_of(&st, &m, &id).await?;
            Ok(html(report::payout_html(&p, &lines)))
        }
    }
}

pub(super) async fn login_page(State(st): State<AppState>) -> Result<Response, PaymentError> {
    web(&st)?;
    Ok(html(report::page(
        "Merchant sign-in",
        "<h1>Merchant settlements</h1><form class=\"login\" id=\"login\"><p>Sign in with your merchant id and merchant key. \
         The key stays in this browser: it only signs a one-time challenge.</p>\
         <label for=\"merchant\">Merchant id</label><input id=\"merchant\" name=\"merchant\" autocomplete=\"username\" required>\
         <label for=\"key\">Merchant key (64 hex digits)</label><input id=\"key\" name=\"key\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button><p id=\"login-error\" role=\"alert\"></p></form>\
         <script src=\"/merchant/login.js\"></script>",
    )))
}

pub(super) async fn login_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        LOGIN_JS,
    )
        .into_response()
}

pub(super) async fn style_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        report::STYLE_CSS,
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct ChallengeReq {
    merchant: String,
}

pub(super) async fn challenge(
    State(st): State<AppState>,
    Json(r): Json<ChallengeReq>,
) -> Result<Response, PaymentError> {
    let w = web(&st)?;
    if r.merchant.is_empty() || r.merchant.len() > 128 {
        return Err(PaymentError::Malformed("merchant id".into()));
    }
    // A challenge for any id: the answer does not tell which merchants exist.
    Ok(
        Json(serde_json::json!({ "challenge": w.challenge(&r.merchant, st.service.now()) }))
            .into_response(),
    )
}

#[derive(Deserialize)]
pub(super) struct LoginReq {
    merchant: String,
    challenge: String,
    mac: String,
}

pub(super) async fn login(
    State(st): State<AppState>,
    Json(r): Json<LoginReq>,
) -> Result<Response, PaymentError> {
    let w = web(&st)?;
    let now = st.service.now();
    let m = st
        .service
        .merchant(&r.merchant)
        .map_err(|_| PaymentError::Unauthorized)?;
    let want = hmac(
        m.key.bytes(),
        &[
            LOGIN_LABEL.as_bytes(),
            r.merchant.as_bytes(),
            b"\n",
            r.challenge.as_bytes(),
        ],
    );
    let mac_ok = hex::decode(&r.mac).is_ok_and(|g| purse::crypto::mac_eq(&g, &want));
    // Checked after the MAC, so a wrong key does not burn a good challenge.
    if !mac_ok || !w.take_challenge(&r.merchant, &r.challenge, now) {
        tracing::warn!(merchant = %r.merchant, "merchant page sign-in refused");
        return Err(PaymentError::Unauthorized);
    }
    let cookie = w.session_cookie(&r.merchant, now);
    Ok((
        StatusCode::OK,
        [(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).map_err(internal)?,
        )],
        Json(serde_json::json!({ "ok": true })),
    )
        .into_response())
}

pub(super) async fn logout() -> Response {
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/merchant; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/merchant/login"),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct Format {
    format: Option<String>,
}

fn merchant_of(a: &ApiCaller) -> Result<String, PaymentError> {
    match &a.caller {
        Caller::Merchant(m) => Ok(m.clone()),
        Caller::Operator => Err(PaymentError::Unauthorized),
    }
}

pub(super) async fn api_settlements(
    State(st): State<AppState>,
    Query(f): Query<Format>,
    a: ApiCaller,
) -> Result<Response, PaymentError> {
    let m = merchant_of(&a)?;
    let r = merchant_report(&st, &m).await?;
    Ok(match f.format.as_deref() {
        Some("csv") => csv(&format!("settlements-{m}"), report::payouts_csv(&r.payouts)),
        _ => Json(r).into_response(),
    })
}

pub(super) async fn api_payout(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(f): Query<Format>,
    a: ApiCaller,
) -> Result<Response, PaymentError> {
    let m = merchant_of(&a)?;
    let (p, lines) = payout_of(&st, &m, &id).await?;
    Ok(match f.format.as_deref() {
        Some("csv") => csv(&id, report::lines_csv(&p, &lines)),
        _ => Json(serde_json::json!({ "payout": p, "transactions": lines })).into_response(),
    })
}

fn operator(a: &ApiCaller) -> Result<(), PaymentError> {
    match a.caller {
        Caller::Operator => Ok(()),
        Caller::Merchant(_) => Err(PaymentError::Unauthorized),
    }
}

async fn operator_report(st: &AppState) -> Result<report::OperatorReport, PaymentError> {
    web(st)?
        .read(report::operator)
        .await?
        .ok_or(PaymentError::NotFound)
}

pub(super) async fn operator_page(
    State(st): State<AppState>,
    a: ApiCaller,
) -> Result<Response, PaymentError> {
    operator(&a)?;
    Ok(html(report::operator_html(&operator_report(&st).await?)))
}

pub(super) async fn operator_json(
    State(st): State<AppState>,
    a: ApiCaller,
) -> Result<Response, PaymentError> {
    operator(&a)?;
    Ok(Json(operator_report(&st).await?).into_response())
}

pub(super) async fn close_now(
    State(st): State<AppState>,
    a: ApiCaller,
) -> Result<Response, PaymentError> {
    operator(&a)?;
    let signer = web(&st)?.signer.as_ref().ok_or(PaymentError::NotFound)?;
    let ids = st.service.close_batches(signer).await?;
    Ok(Json(serde_json::json!({ "batches": ids })).into_response())
}

/// The sign-in script (WebCrypto only; served from this origin under `script-src 'self'`).
const LOGIN_JS: &str = r#"'use strict';
const form = document.getElementById('login');
const err = document.getElementById('login-error');
const hexToBytes = (h) => new Uint8Array(h.match(/../g).map((x) => parseInt(x, 16)));
const toHex = (b) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, '0')).join('');
form.addEventListener('submit', async (e) => {
  e.preventDefault();
  err.textContent = '';
  const merchant = form.merchant.value.trim();
  const keyHex = form.key.value.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(keyHex)) { err.textContent = 'The merchant key is 64 hex digits.'; return; }
  try {
    const c = await fetch('/merchant/challenge', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ merchant }) });
    if (!c.ok) throw new Error('challenge ' + c.status);
    const { challenge } = await c.json();
    const key = await crypto.subtle.importKey('raw', hexToBytes(keyHex), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    const msg = new TextEncoder().encode('cardpay/merchant-login/v1\n' + merchant + '\n' + challenge);
    const mac = toHex(await crypto.subtle.sign('HMAC', key, msg));
    form.key.value = '';
    const r = await fetch('/merchant/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ merchant, challenge, mac }) });
    if (!r.ok) { err.textContent = 'Sign-in refused: check the merchant id and key.'; return; }
    location.href = '/merchant';
  } catch (x) {
    err.textContent = 'Sign-in failed: ' + x.message;
  }
});
"#;
