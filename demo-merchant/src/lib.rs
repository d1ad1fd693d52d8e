//! Cardpay demo store: a small real shop of digital goods that takes Cardpay
//! payments exactly as a merchant would — catalog, cart (cookie), checkout page
//! rendering the session for the widget, and an order that is paid only on a
//! capture the store verified itself, exactly once:
//! - a result M from the widget (sealed under DK: the server captured);
//! - its own S3 compare (modes `client`/`merchant`) *confirmed by the server*,
//!   which verifies the card's S3 before it captures (retried until it answers);
//! - or the server's signed webhook (`POST /webhooks/cardpay`), deduplicated by
//!   event id — so an order is paid even if the shopper's page never reports.
//!
//! Every load of the payment page is a new attempt (a new txn id) for the same
//! order (`order_ref`); the payment server captures at most one attempt per
//! order. Before making a new attempt the page asks the server about the open
//! ones. Orders, attempts and processed webhook ids live in SQLite.
//!
//! # Layout
//! - this file: the catalog, orders, and what pays them (result, confirm,
//!   reconcile, webhooks);
//! - [`pages`]: the HTML pages, the checkout page glue, the favicon;
//! - [`cart`]: the cart and its link to the checked-out order, in cookies;
//! - [`points`]: points earned on paid orders (a points load);
//! - [`members`]: the members page: sign in with the card (an amount-0
//!   purchase), earned points, points redeemed for vouchers.
//!
//! It is served over TLS (`cardpay_tls`, see `main.rs`) and calls the payment
//! server's merchant API only over https unless started with `--insecure-http`:
//! those answers ("is this order captured?") are authenticated by TLS alone.

#![forbid(unsafe_code)]

pub mod bank;
pub mod cart;
pub mod members;
pub mod pages;
pub mod points;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use merchant_kit::{Merchant, OrderRef, SessionParams, Verified, VerifiedPayment};
use purse::merchant_api::{ConfirmRequest, TxnState, TxnView};
use purse::purchase::{MerchantResult, WidgetSession};
use purse::session::{Key32, VerifyMode};
use purse::types::{PurseId, Terminal};
use purse::webhook::{EventKind, WebhookEvent};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// One product of the catalog (prices in euro cents).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Product {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub price: u32,
    /// What the download delivers.
    pub file_name: &'static str,
    pub content: &'static str,
}

pub const CATALOG: [Product; 4] = [
    Product {
        id: "wallpaper",
        name: "Smart-card wallpaper pack",
        description: "Twelve high-resolution chip close-ups.",
        price: 199,
        file_name: "wallpapers.txt",
        content: "Cardpay demo: wallpaper pack (12 images would be here).\n",
    },
    Product {
        id: "ebook",
        name: "E-book: Stored value, explained",
        description: "A short guide to electronic purses, 40 pages.",
        price: 499,
        file_name: "stored-value.txt",
        content: "Stored value, explained.\nChapter 1: the purse on the card...\n",
    },
    Product {
        id: "font",
        name: "Pixel font \"APDU Mono\"",
        description: "A monospaced font for hex dumps.",
        price: 350,
        file_name: "apdu-mono.txt",
        content: "APDU Mono font files would be here.\n",
    },
    Product {
        id: "song",
        name: "Chiptune single \"9000 OK\"",
        description: "Three minutes of 8-bit joy.",
        price: 99,
        file_name: "9000-ok.txt",
        content: "9000 OK, the chiptune single (audio would be here).\n",
    },
];

pub fn product(id: &str) -> Option<&'static Product> {
    CATALOG.iter().find(|p| p.id == id)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("order not found")]
    NotFound,
    #[error("payment refused: {0}")]
    Payment(#[from] merchant_kit::MerchantError),
    #[error("webhook refused: {0}")]
    Webhook(#[from] purse::webhook::WebhookError),
    #[error("the payment server has not confirmed the capture yet")]
    Unconfirmed,
    #[error("{0} was already used")]
    Used(&'static str),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("a request from another site (Origin {0}) may not change this store's sessions")]
    CrossSite(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl StoreError {
    fn code(&self) -> &'static str {
        match self {
            Self::Db(_) | Self::Internal(_) => "internal",
            Self::NotFound => "not_found",
            Self::Payment(_) => "payment_refused",
            Self::Webhook(_) => "webhook_refused",
            Self::Unconfirmed => "unconfirmed",
            Self::Used(_) => "already_used",
            Self::BadRequest(_) => "malformed",
            Self::CrossSite(_) => "cross_site",
        }
    }
    fn status(&self) -> StatusCode {
        match self {
            Self::Db(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Payment(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Webhook(_) => StatusCode::UNAUTHORIZED,
            Self::Unconfirmed => StatusCode::ACCEPTED,
            Self::Used(_) => StatusCode::CONFLICT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::CrossSite(_) => StatusCode::FORBIDDEN,
        }
    }
}

impl IntoResponse for StoreError {
    fn into_response(self) -> Response {
        if matches!(self, Self::Db(_) | Self::Internal(_)) {
            tracing::error!(error = %self, "internal error");
        }
        let body = serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}});
        (self.status(), Json(body)).into_response()
    }
}

/// Configuration of the store.
#[derive(Clone)]
pub struct StoreConfig {
    pub db_path: PathBuf,
    /// Base URL of the payment server API (for the merchant API calls).
    pub payment_url: String,
    /// Origin serving `checkout.js` and the widget iframe (usually the payment server).
    pub payment_origin: String,
    /// This store's own origin as the browser sees it (bound into the session).
    pub public_origin: String,
    pub merchant_id: String,
    pub merchant_name: String,
    pub merchant_key: Key32,
    pub verify_mode: VerifyMode,
    pub terminal: Terminal,
    /// Session lifetime in seconds.
    pub session_ttl: u64,
    /// Subresource Integrity of `checkout.js` (`sha384-…`, from `www/pkg/sri.json`).
    /// `None`: the loader is included without `integrity` (logged at start).
    pub checkout_sri: Option<String>,
    /// Extra CA certificate(s) (PEM) the merchant API client trusts besides the
    /// system's roots (e.g. the local test CA of scripts/certs.sh).
    pub ca_file: Option<PathBuf>,
    /// Allow a plain-HTTP payment URL (`--insecure-http`, local development only).
    pub insecure_http: bool,
}

/// The origin (`scheme://host[:port]`) of a URL, as CSP source and as the base of
/// `checkout.js`; `None` if `url` is not an http(s) URL.
pub fn origin_of(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return None;
    }
    Some(u.origin().ascii_serialization())
}

/// Check an SRI value (`sha256-|sha384-|sha512-` + base64, space separated).
pub fn valid_sri(v: &str) -> bool {
    let mut any = false;
    for h in v.split_ascii_whitespace() {
        any = true;
        let Some((alg, b64)) = h.split_once('-') else {
            return false;
        };
        if !matches!(alg, "sha256" | "sha384" | "sha512")
            || b64.is_empty()
            || !b64
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c))
        {
            return false;
        }
    }
    any
}

/// Read the `checkout.js` entry of `www/pkg/sri.json` (written by scripts/build-widget.sh).
pub fn sri_from_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    v.get("checkout.js")
        .and_then(|x| x.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("{}: no \"checkout.js\" entry", path.display()))
}

pub struct AppState {
    cfg: StoreConfig,
    /// The Content-Security-Policy of every HTML page.
    csp: HeaderValue,
    merchant: Merchant,
    db: Mutex<Connection>,
    http: reqwest::Client,
    /// The store's loyalty program: a "bank" of the points purse ([`points`]).
    loyalty: Option<points::Loyalty>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS shop_orders (
    id          TEXT PRIMARY KEY,
    items       TEXT NOT NULL,
    amount      INTEGER NOT NULL,
    currency    INTEGER NOT NULL,
    exponent    INTEGER NOT NULL,
    verify_mode TEXT NOT NULL,
    status      TEXT NOT NULL,          -- pending | paid
    paid_txn    TEXT,
    evidence    TEXT,
    card        TEXT,
    created_at  INTEGER NOT NULL,
    paid_at     INTEGER
);
-- One row per load of the payment page: a transaction id of the order.
CREATE TABLE IF NOT EXISTS payment_attempts (
    txn_id      TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL REFERENCES shop_orders (id),
    expires_at  INTEGER NOT NULL,
    status      TEXT NOT NULL,          -- open | captured | failed
    created_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS payment_attempts_order ON payment_attempts (order_id);
-- Webhook event ids already processed (deliveries are at least once).
CREATE TABLE IF NOT EXISTS webhook_events (
    event_id    TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
"#;

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub items: Vec<(String, u32)>,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub verify_mode: VerifyMode,
    pub status: String,
    /// The attempt whose capture paid the order.
    pub paid_txn: Option<String>,
    pub evidence: Option<String>,
    pub card: Option<String>,
    pub created_at: u64,
    pub paid_at: Option<u64>,
    /// Every attempt: (txn id, open | captured | failed).
    pub attempts: Vec<(String, String)>,
}

/// The `Origin` a browser named for this request when it is not `own`: a
/// page of another site (or `null`) posting to the store or the bank. `None`
/// without an `Origin` (not a browser's page) or when it is `own`; an
/// unreadable header counts as foreign.
pub(crate) fn foreign_origin<'a>(headers: &'a HeaderMap, own: &str) -> Option<&'a str> {
    let o = headers.get(header::ORIGIN)?.to_str().unwrap_or("?");
    (o.trim_end_matches('/') != own.trim_end_matches('/')).then_some(o)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_id(prefix: &str) -> Result<String, StoreError> {
    let b: [u8; 12] =
        merchant_kit::random_bytes().map_err(|e| StoreError::Internal(e.to_string()))?;
    Ok(format!("{prefix}{}", hex::encode(b)))
}

impl AppState {
    pub fn new(cfg: StoreConfig) -> Result<Arc<Self>, StoreError> {
        Self::new_with_loyalty(cfg, None)
    }

    /// A store that also earns its customers points on paid orders (a points
    /// load signed with the loyalty key).
    pub fn new_with_loyalty(
        cfg: StoreConfig,
        loyalty: Option<points::Loyalty>,
    ) -> Result<Arc<Self>, StoreError> {
        let pay_origin = origin_of(&cfg.payment_origin).ok_or_else(|| {
            StoreError::BadRequest(format!(
                "payment origin {:?} is not an http(s) URL",
                cfg.payment_origin
            ))
        })?;
        if let Some(sri) = &cfg.checkout_sri {
            if !valid_sri(sri) {
                return Err(StoreError::BadRequest(format!(
                    "checkout.js SRI {sri:?} is not sha256-/sha384-/sha512-<base64>"
                )));
            }
        } else {
            tracing::warn!("no SRI for checkout.js (--checkout-sri / --checkout-sri-file): loading it without integrity");
        }
        // The merchant API's answers (is this attempt captured?) are trusted
        // because TLS authenticates the server: never over plain HTTP unless asked.
        for (what, url) in [
            ("payment URL", &cfg.payment_url),
            ("payment origin", &cfg.payment_origin),
        ] {
            if !url.starts_with("https://") && !cfg.insecure_http {
                return Err(StoreError::BadRequest(format!(
                    "{what} {url:?} is not https://: the store trusts the payment server's answers \
                     only over TLS; use https://, or --insecure-http for local development"
                )));
            }
        }
        let http = cardpay_tls::http_client(cfg.ca_file.as_deref())
            .map_err(|e| StoreError::BadRequest(e.to_string()))?;
        let csp = HeaderValue::from_str(&content_security_policy(&pay_origin))
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let conn = Connection::open(&cfg.db_path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        let merchant = Merchant::new(
            cfg.merchant_id.clone(),
            cfg.merchant_name.clone(),
            cfg.merchant_key.clone(),
        );
        conn.execute_batch(points::SCHEMA)?;
        conn.execute_batch(members::SCHEMA)?;
        for (table, column) in members::ADDED_COLUMNS
            .into_iter()
            .chain([("points_earned", "card_ref")])
        {
            add_column(&conn, table, column)?;
        }
        Ok(Arc::new(Self {
            cfg,
            csp,
            merchant,
            db: Mutex::new(conn),
            http,
            loyalty,
        }))
    }

    /// Run blocking DB work off the async runtime.
    async fn db<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = me
                .db
                .lock()
                .map_err(|_| StoreError::Internal("db lock poisoned".into()))?;
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    pub async fn order(self: &Arc<Self>, id: &str) -> Result<Order, StoreError> {
        let id = id.to_string();
        self.db(move |c| load_order(c, &id)).await
    }

    /// A new attempt (txn id) for an order and its session for the widget.
    async fn new_attempt(self: &Arc<Self>, o: &Order) -> Result<WidgetSession, StoreError> {
        let txn = random_id("demo-")?;
        let expires_at = now() + self.cfg.session_ttl;
        let ws = self
            .merchant
            .build_session(SessionParams {
                txn_id: txn.clone(),
                order_ref: o.id.clone(),
                amount: o.amount,
                currency: o.currency,
                exponent: o.exponent,
                purse: PurseId::Money,
                expires_at,
                verify_mode: o.verify_mode,
                result_url: format!("{}/orders/{}/result", self.cfg.public_origin, o.id),
                origin: self.cfg.public_origin.clone(),
                terminal: self.cfg.terminal,
            })
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let oid = o.id.clone();
        self.db(move |c| {
            c.execute(
                "INSERT INTO payment_attempts (txn_id, order_id, expires_at, status, created_at)
                 VALUES (?1, ?2, ?3, 'open', ?4)",
                params![txn, oid, expires_at, now()],
            )?;
            Ok(())
        })
        .await?;
        Ok(ws)
    }

    fn order_ref<'a>(&'a self, o: &'a Order, txn_id: &'a str) -> OrderRef<'a> {
        OrderRef {
            txn_id,
            order_ref: &o.id,
            amount: o.amount,
            currency: o.currency,
            exponent: o.exponent,
            purse: PurseId::Money,
            origin: &self.cfg.public_origin,
            verify_mode: o.verify_mode,
        }
    }

    /// The order of an attempt.
    async fn order_of_txn(self: &Arc<Self>, txn: &str) -> Result<Order, StoreError> {
        let txn = txn.to_string();
        let id: String = self
            .db(move |c| {
                c.query_row(
                    "SELECT order_id FROM payment_attempts WHERE txn_id = ?1",
                    params![txn],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or(StoreError::NotFound)
            })
            .await?;
        self.order(&id).await
    }

    /// Mark the order paid by a verified capture, exactly once. A second
    /// capture for an already paid order (two attempts both captured) is a
    /// refund to make; it is logged for the back office, never a second paid.
    async fn mark_paid(
        self: &Arc<Self>,
        o: &Order,
        p: &VerifiedPayment,
    ) -> Result<Order, StoreError> {
        let (id, txn, ev, card) = (
            o.id.clone(),
            p.txn_id.clone(),
            p.evidence.clone(),
            p.card.clone(),
        );
        let (order, newly) = self
            .db(move |c| {
                c.execute(
                    "UPDATE payment_attempts SET status = 'captured' WHERE txn_id = ?1",
                    params![txn],
                )?;
                let n = c.execute(
                    "UPDATE shop_orders SET status = 'paid', paid_txn = ?2, evidence = ?3, card = ?4, paid_at = ?5
                     WHERE id = ?1 AND status = 'pending'",
                    params![id, txn, ev, card, now()],
                )?;
                Ok((load_order(c, &id)?, n == 1))
            })
            .await?;
        if newly {
            tracing::info!(order = %order.id, txn = %p.txn_id, evidence = %p.evidence, "order paid");
        } else if order.paid_txn.as_deref() != Some(p.txn_id.as_str()) {
            tracing::warn!(order = %order.id, txn = %p.txn_id, "second capture for a paid order: refund due");
        }
        Ok(order)
    }

    async fn mark_failed(self: &Arc<Self>, txn: &str) -> Result<(), StoreError> {
        let txn = txn.to_string();
        self.db(move |c| {
            c.execute(
                "UPDATE payment_attempts SET status = 'failed' WHERE txn_id = ?1 AND status = 'open'",
                params![txn],
            )?;
            Ok(())
        })
        .await
    }

    /// What the widget posted to the result URL: verified with merchant-kit.
    /// Result M → paid. A matching S3 → confirmed with the server (which
    /// verifies S3 itself and captures) → paid; if the server cannot be
    /// reached the order stays pending, the confirm is retried in the
    /// background and the webhook pays it too.
    pub async fn take_result(
        self: &Arc<Self>,
        order_id: &str,
        result: MerchantResult,
    ) -> Result<Order, StoreError> {
        let o = self.order(order_id).await?;
        let txn = result.txn_id().to_string();
        if !o.attempts.iter().any(|(t, _)| *t == txn) {
            return Err(StoreError::Payment(
                merchant_kit::MerchantError::WrongOrder("txn_id"),
            ));
        }
        match self
            .merchant
            .verify_result(&self.order_ref(&o, &txn), &result)?
        {
            Verified::Captured(p) => {
                let order = self.mark_paid(&o, &p).await?;
                // The goods are released: tell the server (best effort, retried).
                self.spawn_confirm(txn, ConfirmRequest::default());
                Ok(order)
            }
            Verified::ConfirmWithServer { txn_id, confirm } => {
                match self.confirm_and_check(&o, &txn_id, &confirm).await {
                    Ok(order) => Ok(order),
                    Err(e) => {
                        tracing::warn!(txn = %txn_id, error = %e, "confirm failed; retrying in the background");
                        self.spawn_confirm(txn_id, confirm);
                        Err(StoreError::Unconfirmed)
                    }
                }
            }
        }
    }

    async fn confirm_and_check(
        self: &Arc<Self>,
        o: &Order,
        txn: &str,
        body: &ConfirmRequest,
    ) -> Result<Order, StoreError> {
        let view = self.confirm(txn, body).await?;
        let p = self
            .merchant
            .check_confirmed(&self.order_ref(o, txn), &view)?;
        self.mark_paid(o, &p).await
    }

    /// Retry a confirm with backoff until the server answers (or refuses).
    fn spawn_confirm(self: &Arc<Self>, txn: String, body: ConfirmRequest) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut wait = std::time::Duration::from_millis(250);
            for _ in 0..12 {
                let r = match me.order_of_txn(&txn).await {
                    Ok(o) => me.confirm_and_check(&o, &txn, &body).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                match r {
                    Ok(()) => return,
                    Err(StoreError::Payment(e)) => {
                        tracing::warn!(txn = %txn, error = %e, "server does not confirm the capture");
                        return;
                    }
                    Err(e) => tracing::debug!(txn = %txn, error = %e, "confirm not answered yet"),
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(30));
            }
        });
    }

    /// `POST /v1/transactions/{txn}/confirm` at the payment server, signed.
    pub async fn confirm(&self, txn: &str, body: &ConfirmRequest) -> Result<TxnView, StoreError> {
        let path = format!("/v1/transactions/{txn}/confirm");
        let bytes = serde_json::to_vec(body).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.merchant_api("POST", &path, bytes).await
    }

    /// A signed merchant API call; the server's answer or its refusal.
    async fn merchant_api<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<T, StoreError> {
        let url = format!("{}{path}", self.cfg.payment_url);
        let mut rb = if method == "GET" {
            self.http.get(url)
        } else {
            self.http.post(url).body(bytes.clone())
        };
        for (k, v) in merchant_kit::auth::sign(&self.merchant, method, path, now(), &bytes) {
            rb = rb.header(k, v);
        }
        let r = rb
            .send()
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let status = r.status();
        let text = r
            .text()
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| StoreError::Internal(e.to_string()));
        }
        if status.is_client_error() && status != StatusCode::NOT_FOUND {
            // A refusal (e.g. S3 mismatch): the capture will not happen this way.
            return Err(StoreError::Payment(merchant_kit::MerchantError::Malformed(
                format!("payment server answered {status}: {text}"),
            )));
        }
        Err(StoreError::Internal(format!(
            "payment server answered {status}: {text}"
        )))
    }

    /// Ask the server about the order's open attempts (a reloaded payment
    /// page, a lost result): a captured one pays the order.
    pub async fn reconcile(self: &Arc<Self>, o: &Order) -> Result<Order, StoreError> {
        for (txn, status) in &o.attempts {
            if status != "open" {
                continue;
            }
            let view: Result<TxnView, _> = self
                .merchant_api("GET", &format!("/v1/transactions/{txn}"), vec![])
                .await;
            match view {
                Ok(v) if v.state.is_captured() => {
                    let p = self.merchant.check_confirmed(&self.order_ref(o, txn), &v)?;
                    let order = self.mark_paid(o, &p).await?;
                    self.spawn_confirm(txn.clone(), ConfirmRequest::default());
                    return Ok(order);
                }
                Ok(v) if v.state == TxnState::Failed => self.mark_failed(txn).await?,
                // Not drawn (page opened, never paid) and expired: nothing can come of it.
                Err(StoreError::Internal(_)) | Err(StoreError::Payment(_)) => {}
                _ => {}
            }
        }
        self.order(&o.id).await
    }

    /// A webhook from the payment server: verified, deduplicated by event id,
    /// then applied to the order of its attempt.
    pub async fn take_webhook(
        self: &Arc<Self>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), StoreError> {
        use purse::webhook::{HEADER_EVENT_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
        let ev: WebhookEvent = self.merchant.verify_webhook(
            h(HEADER_EVENT_ID),
            h(HEADER_TIMESTAMP),
            h(HEADER_SIGNATURE),
            body,
            now(),
        )?;
        let (id, kind, txn) = (ev.event_id.clone(), ev.kind.as_str(), ev.txn_id.clone());
        let first = self
            .db(move |c| {
                Ok(c.execute(
                    "INSERT OR IGNORE INTO webhook_events (event_id, kind, txn_id, received_at) VALUES (?1, ?2, ?3, ?4)",
                    params![id, kind, txn, now()],
                )? == 1)
            })
            .await?;
        if !first {
            return Ok(());
        }
        tracing::info!(event = %ev.event_id, kind = ev.kind.as_str(), txn = %ev.txn_id, "webhook");
        let o = match self.order_of_txn(&ev.txn_id).await {
            Ok(o) => o,
            // Not an order's attempt: perhaps a members page's (a redemption).
            Err(StoreError::NotFound) => return self.take_member_event(&ev).await,
            Err(e) => return Err(e),
        };
        match ev.kind {
            EventKind::Captured | EventKind::Recovered | EventKind::Settled
                if ev.state.is_captured() =>
            {
                let p = payment_of_event(&self.order_ref(&o, &ev.txn_id), &ev)?;
                self.mark_paid(&o, &p).await?;
            }
            EventKind::Failed | EventKind::Recovered if ev.state == TxnState::Failed => {
                self.mark_failed(&ev.txn_id).await?
            }
            _ => {}
        }
        Ok(())
    }
}

/// A capture as a verified webhook tells it, checked against what the store
/// asked for (the webhook is signed, but names its own transaction).
fn payment_of_event(
    order: &OrderRef<'_>,
    ev: &WebhookEvent,
) -> Result<VerifiedPayment, StoreError> {
    if ev.txn_id != order.txn_id
        || ev.amount != order.amount
        || ev.currency != order.currency
        || ev.exponent != order.exponent
        || ev.purse != order.purse
        || ev.order_ref != order.order_ref
    {
        return Err(StoreError::Payment(
            merchant_kit::MerchantError::WrongOrder("amount"),
        ));
    }
    Ok(VerifiedPayment {
        txn_id: ev.txn_id.clone(),
        amount: ev.amount,
        currency: ev.currency,
        card: ev.card.clone(),
        card_ref: ev.card_ref.clone(),
        atc: ev.atc,
        seq: 0,
        evidence: "webhook".into(),
    })
}

/// Add a TEXT column a table made by an older version lacks.
fn add_column(c: &Connection, table: &str, column: &str) -> Result<(), StoreError> {
    let has: bool = c
        .prepare(&format!(
            "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
        ))?
        .exists(params![column])?;
    if !has {
        c.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} TEXT"))?;
    }
    Ok(())
}

fn load_order(c: &Connection, id: &str) -> Result<Order, StoreError> {
    let o = c
        .query_row(
            "SELECT id, items, amount, currency, exponent, verify_mode, status, paid_txn, evidence, card, created_at, paid_at
             FROM shop_orders WHERE id = ?1",
            params![id],
            |r| {
                let items: String = r.get("items")?;
                let mode: String = r.get("verify_mode")?;
                Ok((
                    Order {
                        id: r.get("id")?,
                        items: vec![],
                        amount: r.get("amount")?,
                        currency: r.get("currency")?,
                        exponent: r.get("exponent")?,
                        verify_mode: VerifyMode::default(),
                        status: r.get("status")?,
                        paid_txn: r.get("paid_txn")?,
                        evidence: r.get("evidence")?,
                        card: r.get("card")?,
                        created_at: r.get("created_at")?,
                        paid_at: r.get("paid_at")?,
                        attempts: vec![],
                    },
                    items,
                    mode,
                ))
            },
        )
        .optional()?
        .ok_or(StoreError::NotFound)?;
    let (mut order, items, mode) = o;
    order.items = serde_json::from_str(&items).map_err(|e| StoreError::Internal(e.to_string()))?;
    order.verify_mode = serde_json::from_value(serde_json::Value::String(mode))
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    let mut stmt = c.prepare_cached(
        "SELECT txn_id, status FROM payment_attempts WHERE order_id = ?1 ORDER BY created_at, txn_id",
    )?;
    order.attempts = stmt
        .query_map(params![id], |r| Ok((r.get("txn_id")?, r.get("status")?)))?
        .collect::<Result<_, _>>()?;
    Ok(order)
}

type St = State<Arc<AppState>>;

/// The CSP of the store's HTML pages: scripts only from this origin and the
/// payment origin (no inline script), frames only of the payment origin.
pub fn content_security_policy(pay_origin: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' {pay_origin}; frame-src {pay_origin}; \
         connect-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// How long the widget's receipt stays visible after a successful payment before
/// the page moves on to the order page.
pub const RECEIPT_MS: u32 = 1500;

/// Every HTML page gets the CSP; every response `nosniff`.
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

async fn result(
    State(st): St,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, StoreError> {
    let r: MerchantResult =
        serde_json::from_slice(&body).map_err(|e| StoreError::BadRequest(e.to_string()))?;
    let o = st.take_result(&id, r).await?;
    Ok(Json(serde_json::json!({
        "order": o.id,
        "status": o.status,
        "download_url": format!("/orders/{}", o.id),
    }))
    .into_response())
}

async fn order_json(State(st): St, Path(id): Path<String>) -> Result<Json<Order>, StoreError> {
    Ok(Json(st.order(&id).await?))
}

async fn webhook(State(st): St, headers: HeaderMap, body: Bytes) -> Result<Response, StoreError> {
    st.take_webhook(&headers, &body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(pages::catalog))
        .route("/cart", get(pages::cart_page))
        .route("/cart/add", post(pages::cart_add))
        .route("/cart/set", post(pages::cart_set))
        .route("/cart/clear", post(pages::cart_clear))
        .route("/checkout", post(pages::checkout))
        .route("/orders/{id}", get(pages::order_page))
        .route("/orders/{id}/json", get(order_json))
        .route("/orders/{id}/pay", get(pages::pay))
        .route("/orders/{id}/result", post(result))
        .route("/orders/{id}/download/{product}", get(pages::download))
        .route("/webhooks/cardpay", post(webhook))
        .route("/orders/{id}/points", get(points::offer))
        .route("/orders/{id}/points/result", post(points::result))
        .route("/webhooks/loyalty", post(points::webhook))
        .route("/members", get(members::members_page))
        .route("/members/signin", get(members::signin))
        .route("/members/redeem", post(members::redeem))
        .route("/members/signout", post(members::signout))
        .route("/members/{txn}/result", post(members::result))
        .route("/static/members-page.js", get(members::members_page_js))
        .route("/static/checkout-page.js", get(pages::checkout_page_js))
        .route("/favicon.svg", get(pages::favicon))
        .route("/favicon.ico", get(pages::favicon))
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(32 * 1024))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_under_ten_euros() {
        assert!(CATALOG.iter().all(|p| p.price < 1000));
    }
}
