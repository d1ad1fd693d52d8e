//! Cardpay demo bank: accounts with a password login, a "load my card" page
//! that mounts the widget in load mode through the same `checkout.js` script
//! tag as the store, and a statement. It books exactly as a bank's backend
//! must (docs/loading.md):
//! - the amount is **held** on the account when the load session is made
//!   (available balance goes down, nothing is booked yet);
//! - it is **posted** (debited) only on a proven credit: result B from the
//!   widget (sealed under DK, which the client never has), the load server's
//!   signed webhook, or its answer to `void`/`GET`;
//! - it is **released** only on a proven non-credit (result B
//!   `not_credited`, a `voided` load); otherwise the hold stays.
//!
//! Accounts, sessions, holds, statement entries and processed webhook ids
//! live in SQLite. Passwords are Argon2id hashes. The seeded demo accounts
//! and their TEST passwords are listed in docs/loading.md.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Form, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use merchant_kit::bank::{Bank, Booking, HoldRef, LoadParams};
use purse::load::bank_api::LoadView;
use purse::load::BankResult;
use purse::session::Key32;
use purse::types::{PurseId, Terminal};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pages::{esc, euros};
use crate::{content_security_policy, now, origin_of, valid_sri};

/// The demo accounts seeded on first start: (username, TEST password, name,
/// opening balance in cents). TEST passwords, shown in docs/loading.md.
pub const DEMO_ACCOUNTS: [(&str, &str, &str, i64); 2] = [
    ("alice", "alice-test-password", "Alice Example", 100_000),
    ("bob", "bob-test-password", "Bob Example", 25_000),
];

/// The largest single load the demo bank allows (cents).
pub const MAX_LOAD: u32 = 50_000;

/// A login lasts this long (seconds).
const LOGIN_TTL: u64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("not found")]
    NotFound,
    #[error("please log in")]
    LoggedOut,
    #[error("wrong username or password")]
    BadLogin,
    #[error("{0}")]
    BadRequest(String),
    #[error("result refused: {0}")]
    Refused(String),
    #[error("request from another site refused")]
    CrossSite,
    #[error("the load server did not answer: {0}")]
    Upstream(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl BankError {
    fn code(&self) -> &'static str {
        match self {
            Self::Db(_) | Self::Internal(_) => "internal",
            Self::NotFound => "not_found",
            Self::LoggedOut => "logged_out",
            Self::BadLogin => "bad_login",
            Self::BadRequest(_) => "malformed",
            Self::Refused(_) => "result_refused",
            Self::CrossSite => "cross_site",
            Self::Upstream(_) => "upstream",
        }
    }
    fn status(&self) -> StatusCode {
        match self {
            Self::Db(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::LoggedOut | Self::BadLogin => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::CrossSite => StatusCode::FORBIDDEN,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for BankError {
    fn into_response(self) -> Response {
        if matches!(self, Self::Db(_) | Self::Internal(_)) {
            tracing::error!(error = %self, "internal error");
        }
        if matches!(self, Self::LoggedOut) {
            return Redirect::to("/").into_response();
        }
        let body = serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}});
        (self.status(), Json(body)).into_response()
    }
}

/// Configuration of the demo bank.
#[derive(Clone)]
pub struct BankConfig {
    pub db_path: PathBuf,
    /// Base URL of the load server API (signed bank calls).
    pub payment_url: String,
    /// Origin serving `checkout.js` and the widget iframe.
    pub payment_origin: String,
    /// This bank's own origin as the browser sees it (bound into the session).
    pub public_origin: String,
    pub bank_id: String,
    pub bank_name: String,
    /// `K_bl` shared with the load server.
    pub bank_key: Key32,
    /// The load server's HSM terminal id.
    pub terminal: Terminal,
    /// Load session lifetime, seconds.
    pub session_ttl: u64,
    /// Subresource Integrity of `checkout.js`.
    pub checkout_sri: Option<String>,
    /// Extra CA certificate(s) trusted for calls to the load server.
    pub ca_file: Option<PathBuf>,
}

pub struct BankState {
    cfg: BankConfig,
    csp: HeaderValue,
    kit: Bank,
    db: Mutex<Connection>,
    http: reqwest::Client,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS accounts (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,        -- Argon2id, PHC string
    balance       INTEGER NOT NULL,     -- booked balance, cents
    created_at    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS logins (
    token_hash BLOB PRIMARY KEY,        -- SHA-256 of the cookie's token
    account_id TEXT NOT NULL REFERENCES accounts (id),
    expires_at INTEGER NOT NULL
);
-- One row per load session: held → posted | released, once.
CREATE TABLE IF NOT EXISTS card_loads (
    txn_id      TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    amount      INTEGER NOT NULL,
    status      TEXT NOT NULL,          -- held | posted | released
    card        TEXT,
    evidence    TEXT,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    decided_at  INTEGER
);
CREATE INDEX IF NOT EXISTS card_loads_account ON card_loads (account_id, status);
-- The statement: every booking with the balance after it.
CREATE TABLE IF NOT EXISTS entries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    at            INTEGER NOT NULL,
    text          TEXT NOT NULL,
    amount        INTEGER NOT NULL,     -- signed, cents
    balance_after INTEGER NOT NULL,
    txn_id        TEXT
);
-- The session rendered on a load page (made once, when the amount is held).
CREATE TABLE IF NOT EXISTS load_pages (
    txn_id  TEXT PRIMARY KEY REFERENCES card_loads (txn_id),
    session TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bank_webhook_events (
    event_id    TEXT PRIMARY KEY,
    txn_id      TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
"#;

/// An account as the pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub id: String,
    pub username: String,
    pub name: String,
    /// Booked balance, cents.
    pub balance: i64,
    /// Held for loads not decided yet.
    pub held: i64,
    /// `balance − held`.
    pub available: i64,
}

/// One load as the bank keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardLoad {
    pub txn_id: String,
    pub account_id: String,
    pub amount: u32,
    pub status: String,
    pub card: Option<String>,
    pub evidence: Option<String>,
    pub expires_at: u64,
}

/// One statement line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub at: u64,
    pub text: String,
    pub amount: i64,
    pub balance_after: i64,
    pub txn_id: Option<String>,
}

fn random_token<const N: usize>() -> Result<[u8; N], BankError> {
    merchant_kit::random_bytes().map_err(|e| BankError::Internal(e.to_string()))
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes).
pub fn hash_password(pw: &str) -> Result<String, BankError> {
    let salt = SaltString::encode_b64(&random_token::<16>()?)
        .map_err(|e| BankError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| BankError::Internal(e.to_string()))
}

fn password_ok(pw: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// `"50.00"`, `"50"`, `"50,5"` → cents.
pub fn parse_euros(s: &str) -> Option<u32> {
    let s = s.trim().replace(',', ".");
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s.as_str(), ""),
    };
    if whole.is_empty() || whole.len() > 7 || frac.len() > 2 {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let w: u32 = whole.parse().ok()?;
    let f: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<2}").parse().ok()?
    };
    w.checked_mul(100)?.checked_add(f)
}

fn page(title: &str, nav: bool, body: &str) -> Html<String> {
    let nav = if nav {
        "<a href=\"/account\">Account</a> · <a href=\"/statement\">Statement</a> · \
         <form method=\"post\" action=\"/logout\" style=\"display:inline\"><button>Log out</button></form>"
    } else {
        ""
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · Cardpay demo bank</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}}\
         td,th{{padding:.2rem .6rem;text-align:left}}button{{padding:.4rem .9rem}}\
         #cardpay{{min-height:4rem;border:1px dashed #999;padding:.5rem}}</style></head>\
         <body><header><b>Cardpay demo bank</b> {nav}</header><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    ))
}

fn load_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CardLoad> {
    Ok(CardLoad {
        txn_id: r.get("txn_id")?,
        account_id: r.get("account_id")?,
        amount: r.get("amount")?,
        status: r.get("status")?,
        card: r.get("card")?,
        evidence: r.get("evidence")?,
        expires_at: r.get("expires_at")?,
    })
}

fn get_load(c: &Connection, txn: &str) -> Result<CardLoad, BankError> {
    c.query_row(
        "SELECT txn_id, account_id, amount, status, card, evidence, expires_at FROM card_loads WHERE txn_id = ?1",
        params![txn],
        load_row,
    )
    .optional()?
    .ok_or(BankError::NotFound)
}

fn account_view(c: &Connection, id: &str) -> Result<AccountView, BankError> {
    let (username, name, balance): (String, String, i64) = c
        .query_row(
            "SELECT username, name, balance FROM accounts WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
        .ok_or(BankError::NotFound)?;
    let held: i64 = c.query_row(
        "SELECT COALESCE(SUM(amount), 0) FROM card_loads WHERE account_id = ?1 AND status = 'held'",
        params![id],
        |r| r.get(0),
    )?;
    Ok(AccountView {
        id: id.into(),
        username,
        name,
        balance,
        held,
        available: balance - held,
    })
}

impl BankState {
    /// Open (creating, and seeding the demo accounts on first start) the
    /// bank's database.
    pub fn new(cfg: BankConfig) -> Result<Arc<Self>, BankError> {
        let pay_origin = origin_of(&cfg.payment_origin).ok_or_else(|| {
            BankError::BadRequest(format!(
                "payment origin {:?} is not an http(s) URL",
                cfg.payment_origin
            ))
        })?;
        if let Some(sri) = &cfg.checkout_sri {
            if !valid_sri(sri) {
                return Err(BankError::BadRequest(format!(
                    "checkout.js SRI {sri:?} is not valid"
                )));
            }
        }
        let csp = HeaderValue::from_str(&content_security_policy(&pay_origin))
            .map_err(|e| BankError::Internal(e.to_string()))?;
        let conn = Connection::open(&cfg.db_path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?;
        if n == 0 {
            for (user, pw, name, balance) in DEMO_ACCOUNTS {
                let id = format!("acct-{user}");
                conn.execute(
                    "INSERT INTO accounts (id, username, name, password_hash, balance, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![id, user, name, hash_password(pw)?, balance, now()],
                )?;
                conn.execute(
                    "INSERT INTO entries (account_id, at, text, amount, balance_after) VALUES (?1, ?2, 'Opening balance', ?3, ?3)",
                    params![id, now(), balance],
                )?;
            }
            tracing::info!("seeded the demo accounts (TEST passwords: docs/loading.md)");
        }
        let http = cardpay_tls::http_client(cfg.ca_file.as_deref())
            .map_err(|e| BankError::BadRequest(e.to_string()))?;
        let kit = Bank::new(
            cfg.bank_id.clone(),
            cfg.bank_name.clone(),
            cfg.bank_key.clone(),
        );
        Ok(Arc::new(Self {
            cfg,
            csp,
            kit,
            db: Mutex::new(conn),
            http,
        }))
    }

    async fn db<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Connection) -> Result<R, BankError> + Send + 'static,
    ) -> Result<R, BankError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = me
                .db
                .lock()
                .map_err(|_| BankError::Internal("db lock poisoned".into()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| BankError::Internal(e.to_string()))?
    }

    /// Check a password; a fresh login token (its hash is stored).
    pub async fn login(
        self: &Arc<Self>,
        username: &str,
        password: &str,
    ) -> Result<String, BankError> {
        let (user, pw) = (username.to_string(), password.to_string());
        let token = hex::encode(random_token::<32>()?);
        let hash = Sha256::digest(token.as_bytes()).to_vec();
        self.db(move |c| {
            let row: Option<(String, String)> = c
                .query_row(
                    "SELECT id, password_hash FROM accounts WHERE username = ?1",
                    params![user],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            // Hash even for an unknown user, so timing does not tell which.
            let (id, ok) = match row {
                Some((id, stored)) => (Some(id), password_ok(&pw, &stored)),
                None => {
                    let _ = password_ok(&pw, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
                    (None, false)
                }
            };
            let (Some(id), true) = (id, ok) else {
                return Err(BankError::BadLogin);
            };
            c.execute(
                "INSERT INTO logins (token_hash, account_id, expires_at) VALUES (?1, ?2, ?3)",
                params![hash, id, now() + LOGIN_TTL],
            )?;
            Ok(())
        })
        .await?;
        Ok(token)
    }

    /// The account of a login cookie.
    async fn who(self: &Arc<Self>, headers: &HeaderMap) -> Result<String, BankError> {
        let token = headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|c| {
                c.split(';')
                    .map(str::trim)
                    .find_map(|c| c.strip_prefix("bank_session="))
            })
            .ok_or(BankError::LoggedOut)?
            .to_string();
        let hash = Sha256::digest(token.as_bytes()).to_vec();
        self.db(move |c| {
            c.query_row(
                "SELECT account_id FROM logins WHERE token_hash = ?1 AND expires_at > ?2",
                params![hash, now()],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(BankError::LoggedOut)
        })
        .await
    }

    pub async fn account(self: &Arc<Self>, id: &str) -> Result<AccountView, BankError> {
        let id = id.to_string();
        self.db(move |c| account_view(c, &id)).await
    }

    pub async fn card_load(self: &Arc<Self>, txn: &str) -> Result<CardLoad, BankError> {
        let txn = txn.to_string();
        self.db(move |c| get_load(c, &txn)).await
    }

    pub async fn statement(self: &Arc<Self>, id: &str) -> Result<Vec<Entry>, BankError> {
        let id = id.to_string();
        self.db(move |c| {
            let mut stmt = c.prepare(
                "SELECT at, text, amount, balance_after, txn_id FROM entries WHERE account_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![id], |r| {
                Ok(Entry {
                    at: r.get(0)?,
                    text: r.get(1)?,
                    amount: r.get(2)?,
                    balance_after: r.get(3)?,
                    txn_id: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Hold `amount` on the account (if available) and make the load session.
    pub async fn start_load(
        self: &Arc<Self>,
        account_id: &str,
        amount: u32,
    ) -> Result<purse::load::LoadWidgetSession, BankError> {
        if amount == 0 || amount > MAX_LOAD {
            return Err(BankError::BadRequest(format!(
                "a load is 0.01 to {}",
                euros(MAX_LOAD)
            )));
        }
        let txn = format!("bank-{}", hex::encode(random_token::<12>()?));
        let expires_at = now() + self.cfg.session_ttl;
        let ws = self
            .kit
            .build_session(LoadParams {
                txn_id: txn.clone(),
                account_ref: account_id.into(),
                amount,
                currency: 978,
                exponent: 2,
                purse: PurseId::Money,
                expires_at,
                result_url: format!("{}/loads/{txn}/result", self.cfg.public_origin),
                origin: self.cfg.public_origin.clone(),
                terminal: self.cfg.terminal,
            })
            .map_err(|e| BankError::Internal(e.to_string()))?;
        let id = account_id.to_string();
        self.db(move |c| {
            let tx = c.transaction()?;
            let v = account_view(&tx, &id)?;
            if v.available < amount as i64 {
                return Err(BankError::BadRequest(format!(
                    "only {} available",
                    euros(v.available.max(0) as u32)
                )));
            }
            tx.execute(
                "INSERT INTO card_loads (txn_id, account_id, amount, status, expires_at, created_at)
                 VALUES (?1, ?2, ?3, 'held', ?4, ?5)",
                params![txn, id, amount, expires_at, now()],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        tracing::info!(txn = %ws.session.txn_id, amount, "load held");
        Ok(ws)
    }

    fn hold_ref<'a>(&'a self, l: &'a CardLoad) -> HoldRef<'a> {
        HoldRef {
            txn_id: &l.txn_id,
            account_ref: &l.account_id,
            amount: l.amount,
            currency: 978,
            exponent: 2,
            purse: PurseId::Money,
            origin: &self.cfg.public_origin,
        }
    }

    /// Book a decision once: post (debit) or release a held load.
    pub async fn book(self: &Arc<Self>, txn: &str, b: &Booking) -> Result<CardLoad, BankError> {
        let txn = txn.to_string();
        let b = b.clone();
        let l = self
            .db(move |c| {
                let tx = c.transaction()?;
                let l = get_load(&tx, &txn)?;
                if l.status == "held" {
                    match &b {
                        Booking::Post(v) => {
                            tx.execute(
                                "UPDATE card_loads SET status = 'posted', card = ?2, evidence = ?3, decided_at = ?4 WHERE txn_id = ?1 AND status = 'held'",
                                params![txn, v.card, v.evidence, now()],
                            )?;
                            tx.execute(
                                "UPDATE accounts SET balance = balance - ?2 WHERE id = ?1",
                                params![l.account_id, l.amount],
                            )?;
                            let bal: i64 = tx.query_row(
                                "SELECT balance FROM accounts WHERE id = ?1",
                                params![l.account_id],
                                |r| r.get(0),
                            )?;
                            tx.execute(
                                "INSERT INTO entries (account_id, at, text, amount, balance_after, txn_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                params![l.account_id, now(), format!("Card load, card {}", v.card), -(l.amount as i64), bal, txn],
                            )?;
                        }
                        Booking::Release(v) => {
                            tx.execute(
                                "UPDATE card_loads SET status = 'released', evidence = ?2, decided_at = ?3 WHERE txn_id = ?1 AND status = 'held'",
                                params![txn, v.evidence, now()],
                            )?;
                        }
                        Booking::AskServer { .. } | Booking::Keep => {}
                    }
                }
                let l = get_load(&tx, &txn)?;
                tx.commit()?;
                Ok(l)
            })
            .await?;
        tracing::info!(txn = %l.txn_id, status = %l.status, "load booked");
        Ok(l)
    }

    /// What the widget posted to the result URL.
    pub async fn take_result(
        self: &Arc<Self>,
        txn: &str,
        r: &BankResult,
    ) -> Result<CardLoad, BankError> {
        let l = self.card_load(txn).await?;
        let booking = self
            .kit
            .verify_result(&self.hold_ref(&l), r)
            .map_err(|e| BankError::Refused(e.to_string()))?;
        let booking = match booking {
            Booking::AskServer { txn_id } => self.ask_server(&l, &txn_id).await?,
            b => b,
        };
        self.book(txn, &booking).await
    }

    /// Void at the load server (a load never drawn) and read its answer.
    async fn ask_server(self: &Arc<Self>, l: &CardLoad, txn: &str) -> Result<Booking, BankError> {
        let path = Bank::void_path(txn);
        let url = format!("{}{path}", self.cfg.payment_url);
        let mut rb = self.http.post(url);
        for (k, v) in self.kit.sign("POST", &path, now(), b"") {
            rb = rb.header(k, v);
        }
        let r = rb
            .send()
            .await
            .map_err(|e| BankError::Upstream(e.to_string()))?;
        let status = r.status();
        let text = r
            .text()
            .await
            .map_err(|e| BankError::Upstream(e.to_string()))?;
        if !status.is_success() {
            return Err(BankError::Upstream(format!("HTTP {status}: {text}")));
        }
        let v: LoadView =
            serde_json::from_str(&text).map_err(|e| BankError::Upstream(e.to_string()))?;
        self.kit
            .check_view(&self.hold_ref(l), &v)
            .map_err(|e| BankError::Refused(e.to_string()))
    }

    /// A signed webhook from the load server: verified, deduplicated, booked.
    pub async fn take_webhook(
        self: &Arc<Self>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), BankError> {
        use purse::webhook::{HEADER_EVENT_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
        let ev = self
            .kit
            .verify_webhook(
                h(HEADER_EVENT_ID),
                h(HEADER_TIMESTAMP),
                h(HEADER_SIGNATURE),
                body,
                now(),
            )
            .map_err(|e| BankError::Refused(e.to_string()))?;
        let l = match self.card_load(&ev.txn_id).await {
            Ok(l) => l,
            // Not one of ours (another bank deployment's test, say): acknowledged, ignored.
            Err(BankError::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        let booking = self
            .kit
            .book_event(&self.hold_ref(&l), &ev)
            .map_err(|e| BankError::Refused(e.to_string()))?;
        self.book(&ev.txn_id, &booking).await?;
        let (id, txn) = (ev.event_id.clone(), ev.txn_id.clone());
        self.db(move |c| {
            c.execute(
                "INSERT INTO bank_webhook_events (event_id, txn_id, received_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![id, txn, now()],
            )?;
            Ok(())
        })
        .await
    }

    /// Holds past their session's expiry: ask the load server, book its answer.
    /// Returns how many were decided.
    pub async fn reconcile(self: &Arc<Self>) -> Result<usize, BankError> {
        let due: Vec<CardLoad> = self
            .db(|c| {
                let mut stmt = c.prepare(
                    "SELECT txn_id, account_id, amount, status, card, evidence, expires_at FROM card_loads
                     WHERE status = 'held' AND expires_at < ?1",
                )?;
                let rows = stmt.query_map(params![now()], load_row)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        let mut decided = 0;
        for l in due {
            match self.ask_server(&l, &l.txn_id).await {
                Ok(b) => {
                    if matches!(b, Booking::Post(_) | Booking::Release(_)) {
                        decided += 1;
                    }
                    self.book(&l.txn_id, &b).await?;
                }
                Err(e) => {
                    tracing::warn!(txn = %l.txn_id, error = %e, "load server not reached; hold kept")
                }
            }
        }
        Ok(decided)
    }
}

type St = State<Arc<BankState>>;

/// State-changing form posts must come from this bank's own pages.
fn same_origin(st: &BankState, headers: &HeaderMap) -> Result<(), BankError> {
    match crate::foreign_origin(headers, &st.cfg.public_origin) {
        Some(_) => Err(BankError::CrossSite),
        None => Ok(()),
    }
}

async fn home(State(st): St, headers: HeaderMap) -> Response {
    if st.who(&headers).await.is_ok() {
        return Redirect::to("/account").into_response();
    }
    page(
        "Log in",
        false,
        "<form method=\"post\" action=\"/login\"><p><label>Username <input name=\"username\" autocomplete=\"username\"></label></p>\
         <p><label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label></p>\
         <button>Log in</button></form><p>Demo accounts: see docs/loading.md (TEST passwords).</p>",
    )
    .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

async fn login(
    State(st): St,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, BankError> {
    same_origin(&st, &headers)?;
    match st.login(&f.username, &f.password).await {
        Ok(token) => Ok((
            [(
                header::SET_COOKIE,
                format!("bank_session={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={LOGIN_TTL}"),
            )],
            Redirect::to("/account"),
        )
            .into_response()),
        Err(BankError::BadLogin) => Ok((
            StatusCode::UNAUTHORIZED,
            page("Log in", false, "<p role=\"alert\">Wrong username or password.</p><p><a href=\"/\">Try again</a></p>"),
        )
            .into_response()),
        Err(e) => Err(e),
    }
}

async fn logout(State(st): St, headers: HeaderMap) -> Result<Response, BankError> {
    same_origin(&st, &headers)?;
    Ok((
        [(
            header::SET_COOKIE,
            "bank_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0".to_string(),
        )],
        Redirect::to("/"),
    )
        .into_response())
}

async fn account_page(State(st): St, headers: HeaderMap) -> Result<Html<String>, BankError> {
    let id = st.who(&headers).await?;
    let a = st.account(&id).await?;
    let body = format!(
        "<p>{name} · balance <b id=\"balance\">{bal}</b> · available <b id=\"available\">{avail}</b>{held}</p>\
         <h2>Load my card</h2><form method=\"post\" action=\"/loads\">\
         <label>Amount (EUR) <input name=\"amount\" inputmode=\"decimal\" value=\"50.00\"></label> \
         <button>Load my card</button></form><p>Up to {max} per load. The amount is held on your account and \
         booked only when your card has been loaded.</p>",
        name = esc(&a.name),
        bal = euros_signed(a.balance),
        avail = euros_signed(a.available),
        held = if a.held > 0 {
            format!(" · on hold {}", euros_signed(a.held))
        } else {
            String::new()
        },
        max = euros(MAX_LOAD),
    );
    Ok(page("Your account", true, &body))
}

fn euros_signed(c: i64) -> String {
    if c < 0 {
        format!("-{}", euros((-c) as u32))
    } else {
        euros(c as u32)
    }
}

#[derive(Deserialize)]
struct LoadForm {
    amount: String,
}

async fn new_load(
    State(st): St,
    headers: HeaderMap,
    Form(f): Form<LoadForm>,
) -> Result<Response, BankError> {
    same_origin(&st, &headers)?;
    let id = st.who(&headers).await?;
    let amount =
        parse_euros(&f.amount).ok_or_else(|| BankError::BadRequest("amount like 50.00".into()))?;
    let ws = st.start_load(&id, amount).await?;
    // The session is rendered once, on the load page (no second hold on reload).
    let json = serde_json::to_string(&ws).map_err(|e| BankError::Internal(e.to_string()))?;
    let txn = ws.session.txn_id.clone();
    let stash = txn.clone();
    st.db(move |c| {
        c.execute(
            "INSERT INTO load_pages (txn_id, session) VALUES (?1, ?2)",
            params![stash, json],
        )?;
        Ok(())
    })
    .await?;
    Ok(Redirect::to(&format!("/loads/{txn}")).into_response())
}

/// The "load my card" page: the session for the widget, the mount point, the
/// loader from the payment origin (the same script tag as the store's).
async fn load_page(
    State(st): St,
    headers: HeaderMap,
    Path(txn): Path<String>,
) -> Result<Response, BankError> {
    let id = st.who(&headers).await?;
    let l = st.card_load(&txn).await?;
    if l.account_id != id {
        return Err(BankError::NotFound);
    }
    if l.status != "held" {
        return Ok(Redirect::to("/statement").into_response());
    }
    let t = txn.clone();
    let json: String = st
        .db(move |c| {
            c.query_row(
                "SELECT session FROM load_pages WHERE txn_id = ?1",
                params![t],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(BankError::NotFound)
        })
        .await?;
    let body = format!(
        "<p>Load <b>{amount}</b> onto your Cardpay card. Insert your card and follow the window below.</p>\
         <div id=\"cardpay\" data-result-url=\"{result}\"></div>\
         <p id=\"cardpay-status\" role=\"status\"></p><p><a href=\"/account\">Back to your account</a></p>\
         <script type=\"application/json\" id=\"cardpay-session\">{json}</script>\
         <script src=\"{origin}/checkout.js\"{integrity} defer></script>\
         <script src=\"/static/load-page.js\" defer></script>",
        amount = euros(l.amount),
        result = esc(&format!("/loads/{txn}/result")),
        json = json.replace('<', "\\u003c"),
        origin = esc(st.cfg.payment_origin.trim_end_matches('/')),
        integrity = match &st.cfg.checkout_sri {
            Some(sri) => format!(" integrity=\"{}\" crossorigin=\"anonymous\"", esc(sri)),
            None => String::new(),
        },
    );
    Ok(page("Load my card", true, &body).into_response())
}

async fn result(
    State(st): St,
    Path(txn): Path<String>,
    body: Bytes,
) -> Result<Json<CardLoad>, BankError> {
    let r: BankResult =
        serde_json::from_slice(&body).map_err(|e| BankError::BadRequest(e.to_string()))?;
    Ok(Json(st.take_result(&txn, &r).await?))
}

async fn load_json(
    State(st): St,
    headers: HeaderMap,
    Path(txn): Path<String>,
) -> Result<Json<CardLoad>, BankError> {
    let id = st.who(&headers).await?;
    let l = st.card_load(&txn).await?;
    if l.account_id != id {
        return Err(BankError::NotFound);
    }
    Ok(Json(l))
}

async fn statement_page(State(st): St, headers: HeaderMap) -> Result<Html<String>, BankError> {
    let id = st.who(&headers).await?;
    let a = st.account(&id).await?;
    let mut b = format!(
        "<p>{} · balance <b>{}</b> · available <b>{}</b></p><table><tr><th>Date</th><th>Text</th><th>Amount</th><th>Balance</th></tr>",
        esc(&a.name),
        euros_signed(a.balance),
        euros_signed(a.available)
    );
    for e in st.statement(&id).await? {
        b.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.at,
            esc(&e.text),
            euros_signed(e.amount),
            euros_signed(e.balance_after)
        ));
    }
    b.push_str("</table>");
    let id2 = id.clone();
    let held: Vec<CardLoad> = st
        .db(move |c| {
            let mut stmt = c.prepare(
                "SELECT txn_id, account_id, amount, status, card, evidence, expires_at FROM card_loads
                 WHERE account_id = ?1 AND status = 'held' ORDER BY created_at",
            )?;
            let rows = stmt.query_map(params![id2], load_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    if !held.is_empty() {
        b.push_str("<h2>On hold</h2><ul>");
        for l in held {
            b.push_str(&format!(
                "<li>{} — card load not confirmed yet (<code>{}</code>)</li>",
                euros(l.amount),
                esc(&l.txn_id)
            ));
        }
        b.push_str("</ul>");
    }
    Ok(page("Statement", true, &b))
}

async fn webhook(State(st): St, headers: HeaderMap, body: Bytes) -> Result<Response, BankError> {
    st.take_webhook(&headers, &body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Page glue of the load page, served same-origin (no inline script): mount
/// the widget in load mode with the rendered session, and forward whatever
/// it reports — result B, or its word that nothing was loaded — to the bank.
const LOAD_GLUE: &str = r#"'use strict';
(function () {
  function post(url, result, st) {
    return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(result) })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, j: j }; }); })
      .then(function (x) {
        if (!x.ok) { st.textContent = 'The bank could not take the result: ' + x.j.error.code; return; }
        st.textContent = x.j.status === 'posted' ? 'Loaded. Your account is charged ' + (x.j.amount / 100).toFixed(2) + ' EUR.'
          : x.j.status === 'released' ? 'Not loaded. Your account is not charged; the hold is released.'
          : 'The card may have been loaded: put it back in the reader. The amount stays on hold until the card tells.';
      })
      .catch(function () { st.textContent = 'Could not reach the bank; your statement shows the status.'; });
  }
  function start() {
    var el = document.getElementById('cardpay'), st = document.getElementById('cardpay-status');
    if (!window.Cardpay) { st.textContent = 'The card window could not be loaded.'; return; }
    var session = JSON.parse(document.getElementById('cardpay-session').textContent);
    Cardpay.mount(el, {
      session: session,
      mode: 'load',
      onResult: function (d) { st.textContent = 'Confirming with the bank…'; post(el.dataset.resultUrl, d.result, st); },
      onError: function (e) {
        if (e.result) { post(el.dataset.resultUrl, e.result, st); return; }
        st.textContent = e.charged === 'maybe'
          ? 'The card may have been loaded: put it back in the reader. Your account is not charged until the card tells.'
          : 'Not loaded (' + e.code + '). Your account is not charged.';
      }
    });
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
"#;

async fn load_page_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        LOAD_GLUE,
    )
        .into_response()
}

async fn security_headers(State(st): St, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let html = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/html"));
    if html {
        h.insert(header::CONTENT_SECURITY_POLICY, st.csp.clone());
    }
    res
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

pub fn router(state: Arc<BankState>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/account", get(account_page))
        .route("/statement", get(statement_page))
        .route("/loads", post(new_load))
        .route("/loads/{txn}", get(load_page))
        .route("/loads/{txn}/json", get(load_json))
        .route("/loads/{txn}/result", post(result))
        .route("/webhooks/cardpay", post(webhook))
        .route("/static/load-page.js", get(load_page_js))
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(32 * 1024))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .with_state(state)
}

/// Run [`BankState::reconcile`] every `every` until the process ends.
pub fn spawn_reconciler(
    state: Arc<BankState>,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = state.reconcile().await {
                tracing::error!(error = %e, "reconcile failed");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_to_cents() {
        assert_eq!(parse_euros("50.00"), Some(5_000));
        assert_eq!(parse_euros("50"), Some(5_000));
        assert_eq!(parse_euros("0,5"), Some(50));
        assert_eq!(parse_euros("12.3"), Some(1_230));
        for bad in ["", "-1", "1.234", "abc", "1e3", ".5", "99999999"] {
            assert_eq!(parse_euros(bad), None, "{bad}");
        }
    }

    #[test]
    fn passwords_verify_only_themselves() {
        let h = hash_password("alice-test-password").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(password_ok("alice-test-password", &h));
        assert!(!password_ok("alice-test-passwore", &h));
        assert!(!password_ok("alice-test-password", "not a hash"));
    }
}
