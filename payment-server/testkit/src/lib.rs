//! Test kit: the real purchase client ([`purse::purchase::client::Client`],
//! the same code the widget runs) driven against the real virtual card
//! (`card::Card`, in memory) and the real payment server (axum on a loopback
//! port, SQLite in a temp dir), with faults injected at the boundaries:
//! a command lost before or after the card applied it, a request or a reply
//! lost on the network. Also fixtures with the team's clearly marked TEST keys.
//!
//! ```no_run
//! # async fn f() {
//! use payment_testkit::*;
//! let env = TestServer::start(&[TestMerchant::new("shop", 1)]).await;
//! let mut shopper = Shopper::new(test_card("6280000000000001", 10_000), env.api());
//! let ws = env.merchants[0].session("T-1", 250, purse::session::VerifyMode::PaymentServer, now() + 600);
//! let out = shopper.pay(&ws).await;
//! assert!(out.is_paid());
//! # }
//! ```

pub mod clearing;
pub mod db;
pub mod load;

pub use db::{security_module_toml, Backend, TestDb, TestPg};

pub use load::{
    is_credit, is_initialize_load, reseal_load, rewrite_load, test_config_toml_full, Account,
    HoldState, LoadOutcome, TestBank,
};

use std::net::SocketAddr;
use std::sync::Arc;

use card::personalise::Personalisation;
use card::Card;
use merchant_kit::Merchant;
use purse::command::{InitializeLoad, LogRecord, ReadLog, Request, Select};
use purse::crypto::DesKey;
use purse::purchase::client::{Client, Entropy, Outgoing, Problem, Receipt, Reply, Status};
use purse::purchase::{MerchantResult, WidgetSession};
use purse::session::VerifyMode;
use purse::types::{BcdDate, CardId, Expiry, PurseId, Terminal};
use purse::wire::{ApiCode, ErrorBody, Hex, Sealed};
use serde::de::DeserializeOwned;
use serde::Serialize;

use payment_server::config::Config;
use payment_server::purchase::{system_clock, PaymentService};

/// TEST KEY (docs/TEAM.md): purchase master key MKP, key version 1.
pub const TEST_MKP: &str = "404142434445464748494A4B4C4D4E4F";
/// TEST KEY: load master key MKL, key version 1.
pub const TEST_MKL: &str = "505152535455565758595A5B5C5D5E5F";
/// Security module terminal id of the test setup.
pub const TEST_TERMINAL: Terminal = Terminal([0, 0, 0, 0, 0, 1]);
pub const TEST_PIN: &str = "1234";

/// A personalised test card (EUR, exponent 2, expiry 2030-12-31, PIN 1234,
/// no PIN below 20.00).
pub fn test_card(card_digits: &str, balance: u32) -> Card {
    test_card_with(card_digits, balance, 2_000)
}

/// [`test_card`] with its no-PIN limit.
pub fn test_card_with(card_digits: &str, balance: u32, no_pin_limit: u32) -> Card {
    let state = Personalisation {
        card_id: CardId::parse(card_digits).expect("16 digits"),
        expiry: Expiry::parse("301231").expect("valid"),
        currency: 978,
        exponent: 2,
        balance,
        max_balance: 1_000_000,
        points: 500,
        points_max: 100_000,
        pin: TEST_PIN.into(),
        no_pin_limit,
        key_version: 1,
        mkp: DesKey::from_hex(TEST_MKP).expect("hex"),
        mkl: DesKey::from_hex(TEST_MKL).expect("hex"),
    }
    .build()
    .expect("valid personalisation");
    Card::new(state)
}

/// A test card with its own maximum balance and expiry (`YYMMDD`).
pub fn test_card_custom(card_digits: &str, balance: u32, max_balance: u32, expiry: &str) -> Card {
    let state = Personalisation {
        card_id: CardId::parse(card_digits).expect("16 digits"),
        expiry: Expiry::parse(expiry).expect("valid"),
        currency: 978,
        exponent: 2,
        balance,
        max_balance,
        points: 500,
        points_max: 100_000,
        pin: TEST_PIN.into(),
        no_pin_limit: 2_000,
        key_version: 1,
        mkp: DesKey::from_hex(TEST_MKP).expect("hex"),
        mkl: DesKey::from_hex(TEST_MKL).expect("hex"),
    }
    .build()
    .expect("valid personalisation");
    Card::new(state)
}

/// Points balance of a card.
pub fn points(card: &Card) -> u32 {
    card.state().purses[1].balance
}

/// Money balance of a card.
pub fn balance(card: &Card) -> u32 {
    card.state().purses[0].balance
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The OS random source for the client's nonces.
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("OS random source");
    }
}

/// A merchant for the config and its merchant-kit side.
#[derive(Clone)]
pub struct TestMerchant {
    pub id: String,
    pub key_hex: String,
    pub origin: String,
    pub modes: Vec<VerifyMode>,
    pub webhook_url: Option<String>,
}

impl TestMerchant {
    /// A merchant allowed every verify mode, page origin `http://<id>.test`.
    pub fn new(id: &str, key_byte: u8) -> Self {
        Self {
            id: id.into(),
            key_hex: hex::encode([key_byte; 32]),
            origin: format!("http://{id}.test"),
            modes: vec![
                VerifyMode::PaymentServer,
                VerifyMode::SecurityModule,
                VerifyMode::Client,
                VerifyMode::Merchant,
            ],
            webhook_url: None,
        }
    }

    pub fn kit(&self) -> Merchant {
        Merchant::new(
            self.id.clone(),
            format!("{} shop", self.id),
            purse::session::Key32::from_hex(&self.key_hex).expect("hex"),
        )
    }

    /// A session for `amount` cents under `mode` (order = txn id).
    pub fn session(
        &self,
        txn_id: &str,
        amount: u32,
        mode: VerifyMode,
        expires_at: u64,
    ) -> WidgetSession {
        self.session_for_order(txn_id, "", amount, mode, expires_at)
    }

    /// A session paying `order_ref` (several attempts may pay one order).
    pub fn session_for_order(
        &self,
        txn_id: &str,
        order_ref: &str,
        amount: u32,
        mode: VerifyMode,
        expires_at: u64,
    ) -> WidgetSession {
        self.kit()
            .build_session(merchant_kit::SessionParams {
                txn_id: txn_id.into(),
                order_ref: order_ref.into(),
                amount,
                currency: 978,
                exponent: 2,
                purse: PurseId::Money,
                expires_at,
                verify_mode: mode,
                result_url: format!("{}/result", self.origin),
                origin: self.origin.clone(),
                terminal: TEST_TERMINAL,
            })
            .expect("session")
    }
}

/// A config TOML for tests (TEST keys only) on `db`, with the security
/// module `CARDPAY_TEST_SM` names (software keys, or the SoftHSM2 token).
pub fn test_config_toml(db: &TestDb, merchants: &[TestMerchant], grace: u64) -> String {
    let mut t = format!(
        "listen = \"127.0.0.1:0\"\n{}recovery_grace_secs = {grace}\noperator_token = \"test-operator-token\"\n{}",
        db.toml(),
        security_module_toml(db::pkcs11_from_env()),
    );
    for m in merchants {
        let modes: Vec<String> = m
            .modes
            .iter()
            .map(|v| format!("\"{}\"", v.as_str()))
            .collect();
        t.push_str(&format!(
            "[[merchants]]\nid = \"{}\"\nname = \"{} shop\"\nkey = \"{}\"\norigins = [\"{}\"]\nverify_modes = [{}]\n",
            m.id,
            m.id,
            m.key_hex,
            m.origin,
            modes.join(", ")
        ));
        if let Some(u) = &m.webhook_url {
            t.push_str(&format!("webhook_url = \"{u}\"\n"));
        }
    }
    t
}

/// Start a payment server on an ephemeral loopback port on the current
/// runtime (no background tasks: tests call `sweep` and webhook delivery
/// themselves, or [`payment_server::start_background`]).
pub async fn spawn_server(config: &Config) -> (SocketAddr, Arc<PaymentService>) {
    let (service, app) = payment_server::build(config, system_clock())
        .await
        .expect("server builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let http = cardpay_tls::Transport::InsecureHttp;
        cardpay_tls::serve(listener, app, http, std::future::pending())
            .await
            .expect("serve");
    });
    (addr, service)
}

/// A payment server on a fresh database (a SQLite file in a temp dir, or a
/// PostgreSQL schema: [`TestDb`]).
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub db: TestDb,
    pub addr: SocketAddr,
    pub service: Arc<PaymentService>,
    pub merchants: Vec<TestMerchant>,
    pub banks: Vec<TestBank>,
}

impl TestServer {
    pub async fn start(merchants: &[TestMerchant]) -> Self {
        Self::start_with_grace(merchants, 0).await
    }

    pub async fn start_with_grace(merchants: &[TestMerchant], grace: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = TestDb::in_dir(dir.path());
        let toml = test_config_toml(&db, merchants, grace);
        let config = Config::from_toml(&toml, |_| None).expect("test config");
        let (addr, service) = spawn_server(&config).await;
        Self {
            dir,
            db,
            addr,
            service,
            merchants: merchants.to_vec(),
            banks: Vec::new(),
        }
    }

    pub fn api(&self) -> Api {
        Api::new(self.addr)
    }

    /// Sum of captured amounts over all merchants, straight from the database.
    pub fn captured(&self) -> u64 {
        self.db.int(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM transactions WHERE state IN ('debited','confirmed','settled')",
            &[],
        ) as u64
    }

    /// A transaction's state, straight from the database.
    pub fn state_of(&self, merchant: &str, txn: &str) -> Option<String> {
        self.db.text(
            "SELECT state FROM transactions WHERE merchant_id = ?1 AND txn_id = ?2",
            &[merchant, txn],
        )
    }
}

/// An answer the API refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    Refused { status: u16, code: ApiCode },
    Http(String),
}

impl ApiError {
    pub fn code(&self) -> Option<ApiCode> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            Self::Http(_) => None,
        }
    }
}

/// HTTP to the payment server: the client's POSTs, and signed merchant and
/// operator calls.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    /// Several instances behind one client ([`Api::spread`]).
    spread: Option<Arc<Spread>>,
}

/// The instances a spread [`Api`] sends to, in turn.
struct Spread {
    bases: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
    /// Requests sent again to the next instance (the one tried did not answer).
    failovers: std::sync::atomic::AtomicUsize,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
            spread: None,
        }
    }

    /// A client of the server at `base` through `http` (e.g. over TLS).
    pub fn with_client(http: reqwest::Client, base: String) -> Self {
        Self {
            http,
            base,
            spread: None,
        }
    }

    /// A client in front of several server instances, as a load balancer
    /// is: each POST goes to the next instance in turn; one that does not
    /// answer (down, or killed while handling it) is skipped and the request
    /// sent again to the next (the API is idempotent by design). Signed
    /// merchant and operator calls go to the first.
    pub fn spread(addrs: &[SocketAddr]) -> Self {
        let bases: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
        Self {
            http: reqwest::Client::new(),
            base: bases[0].clone(),
            spread: Some(Arc::new(Spread {
                bases,
                next: Default::default(),
                failovers: Default::default(),
            })),
        }
    }

    /// Every instance's base URL (one for an unspread client).
    pub fn bases(&self) -> Vec<String> {
        match &self.spread {
            Some(s) => s.bases.clone(),
            None => vec![self.base.clone()],
        }
    }

    /// How many requests a spread client sent again to another instance.
    pub fn failovers(&self) -> usize {
        self.spread.as_ref().map_or(0, |s| {
            s.failovers.load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// POST a raw body; the HTTP status and body, as the client sees them.
    pub async fn post_raw(&self, path: &str, body: String) -> Result<(u16, String), String> {
        let Some(s) = &self.spread else {
            return self.post_to(&self.base, path, body).await;
        };
        let first = s.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut last = String::new();
        for i in 0..s.bases.len() {
            let base = &s.bases[(first + i) % s.bases.len()];
            match self.post_to(base, path, body.clone()).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    s.failovers
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    last = e
                }
            }
        }
        Err(last)
    }

    /// POST a raw body to one instance.
    pub async fn post_to(
        &self,
        base: &str,
        path: &str,
        body: String,
    ) -> Result<(u16, String), String> {
        let r = self
            .http
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        Ok((status, r.text().await.map_err(|e| e.to_string())?))
    }

    /// POST a message, parse the answer.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let (status, text) = self
            .post_raw(path, serde_json::to_string(body).expect("json"))
            .await
            .map_err(ApiError::Http)?;
        finish(status, &text)
    }

    /// A signed merchant API call (GET with empty body, or POST with JSON).
    pub async fn merchant_call<T: DeserializeOwned>(
        &self,
        m: &Merchant,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ApiError> {
        let bytes = body
            .map(|b| serde_json::to_vec(b).expect("json"))
            .unwrap_or_default();
        let url = format!("{}{path}", self.base);
        let mut rb = if method == "GET" {
            self.http.get(url)
        } else {
            self.http.post(url).body(bytes.clone())
        };
        for (k, v) in merchant_kit::auth::sign(m, method, path, now(), &bytes) {
            rb = rb.header(k, v);
        }
        self.send(rb).await
    }

    /// An operator call with the test operator token.
    pub async fn operator_call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.base);
        let mut rb = if method == "GET" {
            self.http.get(url)
        } else {
            self.http
                .post(url)
                .json(body.unwrap_or(&serde_json::Value::Null))
        };
        rb = rb.header("authorization", "Bearer test-operator-token");
        self.send(rb).await
    }

    async fn send<T: DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> Result<T, ApiError> {
        let r = rb.send().await.map_err(|e| ApiError::Http(e.to_string()))?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|e| ApiError::Http(e.to_string()))?;
        finish(status, &text)
    }
}

pub(crate) fn finish<T: DeserializeOwned>(status: u16, text: &str) -> Result<T, ApiError> {
    if status == 200 {
        serde_json::from_str(text).map_err(|e| ApiError::Http(format!("bad JSON: {e}")))
    } else {
        let code = serde_json::from_str::<ErrorBody>(text)
            .map(|b| b.error.code)
            .unwrap_or(ApiCode::Other);
        Err(ApiError::Refused { status, code })
    }
}

/// Where a request is cut (fault injection at the client's boundaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Delivered, answer delivered.
    None,
    /// The card is pulled before the command reaches it.
    CardBefore,
    /// The card applies the command, then is pulled before it answers.
    CardAfter,
    /// The card answers, then is pulled.
    PulledAfterAnswer,
    /// The request never reaches the server.
    RequestLost,
    /// The server handles the request; its answer is lost.
    ReplyLost,
}

/// What the shopper saw at the end of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Paid {
        receipt: Receipt,
        result: MerchantResult,
    },
    Failed {
        problem: Problem,
        retry: bool,
    },
    Cancelled(&'static str),
    /// The client waits for the shopper (Confirm, PIN) or the card.
    Waiting(String),
}

impl Outcome {
    pub fn is_paid(&self) -> bool {
        matches!(self, Self::Paid { .. })
    }
    pub fn problem(&self) -> Option<Problem> {
        match self {
            Self::Failed { problem, .. } => Some(*problem),
            _ => None,
        }
    }
    pub fn result(&self) -> Option<&MerchantResult> {
        match self {
            Self::Paid { result, .. } => Some(result),
            _ => None,
        }
    }
}

/// The card side of a shopper's machine: the in-memory virtual card, or a
/// real reader (pcscd + vpcd + `card run`, see tests/real_stack.rs). The cut
/// is applied where the card is: in memory here, by pulling or tearing the
/// real card there.
pub trait Reader {
    /// Carry one APDU across the card boundary with a cut; `None` when the
    /// card was gone before it answered.
    fn exchange(&mut self, apdu: &[u8], cut: Cut) -> Option<Vec<u8>>;
    /// A fresh session with the card (a reset, a reconnect once it is back).
    fn reset(&mut self);
}

impl Reader for Card {
    fn exchange(&mut self, apdu: &[u8], cut: Cut) -> Option<Vec<u8>> {
        match cut {
            Cut::CardBefore => None,
            Cut::CardAfter => {
                let _ = self.process(apdu);
                None
            }
            _ => Some(self.process(apdu)),
        }
    }
    fn reset(&mut self) {
        Card::reset(self)
    }
}

/// The shopper's machine: a card in the reader and the purchase client.
pub struct Shopper<R: Reader = Card> {
    pub card: R,
    pub api: Api,
    /// The PIN typed when the card asks (None: the shopper gives up).
    pub pin: Option<String>,
    /// Whether the card is in the reader.
    pub card_present: bool,
    /// Every request the client made, in order (for assertions).
    pub trace: Vec<Outgoing>,
    /// Whether the shopper presses Approve before the click, as with a mouse
    /// (true, the default); false: a click with no press before it (Enter on
    /// a focused Approve, a click dispatched in the frame).
    pub presses: bool,
}

impl<R: Reader> Shopper<R> {
    pub fn new(card: R, api: Api) -> Self {
        Self {
            card,
            api,
            pin: Some(TEST_PIN.into()),
            card_present: true,
            trace: Vec::new(),
            presses: true,
        }
    }

    /// A client for a session, embedded by the session's own origin.
    pub fn client(&self, ws: &WidgetSession) -> Client {
        let origin = ws.session.origin.clone();
        let today = BcdDate::from_unix(now());
        Client::new(ws.clone(), &origin, Box::new(OsEntropy), Some(today)).expect("bundle")
    }

    /// Pay with every step delivered.
    pub async fn pay(&mut self, ws: &WidgetSession) -> Outcome {
        let mut c = self.client(ws);
        self.run(&mut c, &mut |_| Cut::None).await
    }

    /// Drive the client until it waits for something the shopper or the card
    /// must do that the plan cannot: approve (a press, then the click once the
    /// card's answers to it are in; or the click alone, see `presses`) and PIN
    /// are given automatically
    /// (the PIN from `self.pin`), a torn DEBIT is recovered when the card is
    /// present. `plan` sees every request first: it decides a cut, and may
    /// rewrite the request (a hostile client).
    pub async fn run(
        &mut self,
        c: &mut Client,
        plan: &mut dyn FnMut(&mut Outgoing) -> Cut,
    ) -> Outcome {
        let mut pin_given = false;
        let mut reconnected = false;
        let mut pressed = false;
        for _ in 0..200 {
            if let Some(mut req) = c.poll_request() {
                let background = !c.is_awaiting();
                let cut = plan(&mut req);
                self.trace.push(req.clone());
                let reply = self.carry(&req, cut).await;
                if !background {
                    c.handle(reply);
                }
                continue;
            }
            match c.status() {
                // The shopper presses Approve (the card's proof and the
                // INITIALIZE FOR PURCHASE go out at the press), and the click
                // lands once their answers are in (the test's clock: 0).
                Status::Confirm if !pressed && self.presses => {
                    pressed = true;
                    c.press(0);
                }
                Status::Confirm => c.approve(0),
                Status::NeedPin { wrong_tries_left } => match (&self.pin, wrong_tries_left) {
                    (Some(pin), None) if !pin_given => {
                        pin_given = true;
                        let digits: Vec<u8> = pin.bytes().map(|b| b - b'0').collect();
                        c.submit_pin(&digits);
                    }
                    _ => return Outcome::Waiting("pin".into()),
                },
                _ if c.wants_card() && self.card_present && !c.is_finished() && !reconnected => {
                    // A fresh selection, as after a reconnect (once per run:
                    // an undecided recovery waits for the next try).
                    reconnected = !matches!(c.status(), Status::WaitingForCard);
                    if matches!(c.status(), Status::Failed { .. }) {
                        c.retry();
                    }
                    self.card.reset();
                    c.card_ready();
                    if c.wants_card() {
                        return self.outcome(c);
                    }
                }
                _ => return self.outcome(c),
            }
        }
        panic!("client did not settle in 200 steps: {:?}", c.status());
    }

    fn outcome(&self, c: &Client) -> Outcome {
        match c.status() {
            Status::Done { receipt, result } => Outcome::Paid {
                receipt: receipt.clone(),
                result: result.clone(),
            },
            Status::Failed { problem, retry } => Outcome::Failed { problem, retry },
            Status::Cancelled(r) => Outcome::Cancelled(r),
            other => Outcome::Waiting(format!("{other:?}")),
        }
    }

    /// Carry one request across its boundary with a cut.
    pub async fn carry(&mut self, req: &Outgoing, cut: Cut) -> Reply {
        match req {
            Outgoing::Card(apdu) => {
                if !self.card_present {
                    return Reply::CardLost;
                }
                let answer = self.card.exchange(apdu, cut);
                if answer.is_none() || cut == Cut::PulledAfterAnswer {
                    self.card_present = false;
                }
                answer.map_or(Reply::CardLost, Reply::Card)
            }
            // The cipher is the driver's (WebCrypto in the browser).
            Outgoing::Crypto(job) => Reply::Crypto(job.perform()),
            Outgoing::Server { path, body } => match cut {
                Cut::RequestLost => Reply::ServerUnreachable,
                Cut::ReplyLost => {
                    let _ = self.api.post_raw(path, body.clone()).await;
                    Reply::ServerUnreachable
                }
                _ => match self.api.post_raw(path, body.clone()).await {
                    Ok((status, text)) => Reply::Server(status, text),
                    Err(_) => Reply::ServerUnreachable,
                },
            },
        }
    }
}

impl Shopper<Card> {
    /// The card's newest log records, read as a terminal would.
    pub fn card_log(&mut self) -> Vec<LogRecord> {
        read_card_log(&mut self.card)
    }
}

/// Reset the card and SELECT the Cardpay application, as a terminal starts.
pub fn reset_and_select(card: &mut Card) {
    card.reset();
    let _ = card.process(
        &Request::Select(Select {
            aid: purse::AID.to_vec(),
        })
        .to_bytes(),
    );
}

/// SELECT and READ LOG 1..10 on a card (after a reset).
pub fn read_card_log(card: &mut Card) -> Vec<LogRecord> {
    reset_and_select(card);
    let mut out = Vec::new();
    for n in 1..=10u8 {
        let r = card.process(&Request::ReadLog(ReadLog { record: n }).to_bytes());
        let r = purse::apdu::Response::parse(&r).expect("response");
        if !r.sw.is_ok() {
            break;
        }
        out.push(LogRecord::decode(&r.data).expect("37-byte record"));
    }
    out
}

/// The card proving itself as a terminal would (after a reset): SELECT, then
/// INITIALIZE FOR LOAD of amount 0 on `purse` for `terminal`; the answer's
/// data (balance, ATC, key version, alg, R, S1).
pub fn card_proof(card: &mut Card, purse: PurseId, terminal: Terminal) -> Vec<u8> {
    reset_and_select(card);
    let r = card.process(
        &Request::InitializeLoad(InitializeLoad {
            purse,
            amount: 0,
            terminal,
        })
        .to_bytes(),
    );
    let r = purse::apdu::Response::parse(&r).expect("response");
    assert!(r.sw.is_ok(), "INITIALIZE FOR LOAD 0: {:04X}", r.sw.0);
    r.data
}

/// A plan that cuts the DEBIT command with `cut` and lets everything else
/// through (a purchase torn at the card).
pub fn cut_debit(cut: Cut) -> impl FnMut(&mut Outgoing) -> Cut {
    move |r: &mut Outgoing| if is_debit(r) { cut } else { Cut::None }
}

/// Is this request an INITIALIZE with this P1 (01: FOR PURCHASE; 02: FOR
/// LOAD, which is also the card's proof)?
pub fn is_initialize(req: &Outgoing, p1: u8) -> bool {
    matches!(req, Outgoing::Card(a) if a.get(1) == Some(&0x50) && a.get(2) == Some(&p1))
}

/// Is this request the DEBIT command?
pub fn is_debit(req: &Outgoing) -> bool {
    matches!(req, Outgoing::Card(a) if a.get(1) == Some(&purse::command::INS_DEBIT))
}

/// Is this request a POST to `path`?
pub fn is_post(req: &Outgoing, path: &str) -> bool {
    matches!(req, Outgoing::Server { path: p, .. } if *p == path)
}

/// A hostile client rewrites a sealed field of a request body: open `field`
/// with the session's TSK as a `T`, change it, seal it again.
pub fn reseal<T: Sealed>(
    ws: &WidgetSession,
    body: &str,
    field: &str,
    f: impl FnOnce(&mut T),
) -> String {
    reseal_with(&ws.tsk().expect("tsk"), &ws.session.txn_id, body, field, f)
}

/// [`reseal`] under any TSK and txn id (purchases and loads).
pub fn reseal_with<T: Sealed>(
    tsk: &purse::session::Key32,
    txn_id: &str,
    body: &str,
    field: &str,
    f: impl FnOnce(&mut T),
) -> String {
    let mut v: serde_json::Value = serde_json::from_str(body).expect("json body");
    let sealed: Hex = serde_json::from_value(v[field].clone()).expect("sealed field");
    let mut m = T::open(tsk, txn_id, sealed.as_slice()).expect("opens under TSK");
    f(&mut m);
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).expect("random");
    v[field] = serde_json::to_value(m.seal(tsk, nonce)).expect("hex");
    v.to_string()
}

/// Rewrite the body of a server request in place (see [`reseal`]).
pub fn rewrite<T: Sealed>(
    req: &mut Outgoing,
    ws: &WidgetSession,
    field: &str,
    f: impl FnOnce(&mut T),
) {
    if let Outgoing::Server { body, .. } = req {
        *body = reseal(ws, body, field, f);
    }
}
