//! The checkout: the widget's state around one client — the purchase client
//! ([`purse::purchase::client::Client`]) or, in load mode, the load client
//! ([`purse::load::client::LoadClient`]). Sans-IO: the glue feeds
//! [`Input`]s and carries out the [`Effect`]s (a message to the extension, a
//! POST to the payment origin, a render, an event for the parent page), and
//! arms one timer for [`Checkout::poll_timeout`].
//!
//! What is the widget's own: capability detection ([`crate::bridge`]), the
//! keypad and the PIN digits, the view ([`crate::view`]) and the page's
//! events. Every protocol step is the client's.

use purse::client::{Driven, Entropy, Outgoing, Reply};
use purse::load::client::{LoadClient, Status as LoadStatus, Step as LoadStep};
use purse::load::{BankResult, LoadWidgetSession};
use purse::purchase::client::{Client, Status as PayStatus, Step as PayStep, PIN_MAX, PIN_MIN};
use purse::purchase::{MerchantResult, WidgetSession};
use purse::session::VerifyMode;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::bridge::{Bridge, Capability, Heard};
use crate::i18n::Lang;
use crate::keypad::Layout;
use crate::problem::Problem;
use crate::view::{Screen, Step, View};

/// Tunables (the tests shorten the timeouts).
#[derive(Debug, Clone)]
pub struct Config {
    pub lang: Lang,
    /// The request cancels itself after this long without an answer (120 s).
    pub timeout_ms: u32,
    /// How long to wait for the extension to answer `hello` before deciding it is absent.
    pub hello_timeout_ms: u32,
    /// Where the "install" link points.
    pub install_url: String,
    /// Today's date (the glue's clock), to refuse an expired card at once.
    pub today: Option<purse::BcdDate>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            lang: Lang::En,
            timeout_ms: 120_000,
            hello_timeout_ms: 1_500,
            install_url: "/install.html".into(),
            today: None,
        }
    }
}

/// What the page mounted: a purchase (default) or a load (`mode: 'load'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Purchase,
    Load,
}

/// Shopper actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Approve,
    Cancel,
    NotMine,
    Digit(u8),
    Delete,
    SubmitPin,
    Retry,
    /// "More time" on the expiry warning.
    MoreTime,
}

/// Everything that can happen to the checkout.
#[derive(Debug, Clone)]
pub enum Input {
    /// Begin: detect the card.
    Start,
    /// A message from the extension (its JSON text: a reply or an event).
    Extension(String),
    /// The payment origin answered request `id` (status, body), or the network failed.
    Http {
        id: u64,
        result: Result<(u16, String), String>,
    },
    User(Action),
    /// The timer for [`Checkout::poll_timeout`] fired (or time moved).
    Tick,
}

/// A result for the page: result M (or the S3 pair) of a purchase, the bank
/// result of a load. The page's server checks it; the page only forwards it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Purchase(MerchantResult),
    Load(BankResult),
}

/// What the page hears (posted to the parent window as `type: "cardpay:<event>"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ParentEvent {
    Ready {
        capability: Capability,
    },
    /// Capability changed after `ready` (card inserted/removed …).
    Capability {
        capability: Capability,
    },
    Result {
        txn_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        verify_mode: Option<VerifyMode>,
        result: Outcome,
    },
    Cancel {
        reason: &'static str,
        txn_id: String,
    },
    Error {
        code: &'static str,
        message: String,
        txn_id: String,
        /// Loads: whether the shopper's account is charged (`no` | `maybe` | `yes`).
        #[serde(skip_serializing_if = "Option::is_none")]
        charged: Option<&'static str>,
        /// Loads: what the bank's page posts to the bank, once decided.
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<BankResult>,
    },
}

/// What the glue must do.
#[derive(Clone, PartialEq)]
pub enum Effect {
    /// Post this message (JSON text of a [`purse::bridge_msg::Request`]) to the extension.
    Bridge {
        id: u64,
        msg: String,
    },
    /// POST `body` (JSON) to `path` on the payment origin.
    Http {
        id: u64,
        path: &'static str,
        body: String,
    },
    Render(View),
    Parent(ParentEvent),
}

impl core::fmt::Debug for Effect {
    // Never print APDUs (a VERIFY carries the PIN) or sealed bodies.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Effect::Bridge { id, msg } => {
                let kind = msg
                    .split("\"type\":\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("?");
                write!(f, "Bridge#{id}({kind})")
            }
            Effect::Http { id, path, .. } => write!(f, "Http#{id}({path})"),
            Effect::Render(v) => write!(f, "Render({})", crate::view::screen_name(&v.screen)),
            Effect::Parent(e) => write!(f, "Parent({e:?})"),
        }
    }
}

/// The client inside.
enum Txn {
    Pay(Client),
    Load(LoadClient),
}

impl Txn {
    fn driver(&mut self) -> &mut dyn Driven {
        match self {
            Txn::Pay(c) => c,
            Txn::Load(c) => c,
        }
    }
    fn driven(&self) -> &dyn Driven {
        match self {
            Txn::Pay(c) => c,
            Txn::Load(c) => c,
        }
    }
}

/// The checkout for one transaction.
pub struct Checkout {
    cfg: Config,
    txn: Txn,
    bridge: Bridge,
    /// This transaction's keypad layout.
    layout: Layout,
    /// PIN digits (0–9) entered so far; zeroized when dropped or cleared.
    pin: Zeroizing<Vec<u8>>,
    txn_id: String,
    payee: String,
    amount: u32,
    currency: u16,
    exponent: u8,
    purse: purse::PurseId,
    started: bool,
    hello_at: Option<u64>,
    /// The POST whose answer the client waits for.
    http: Option<u64>,
    next_http: u64,
    told: Option<Capability>,
    /// The last outcome told to the page ("done", "failed:<code>", …).
    last_outcome: Option<String>,
    released: bool,
    /// A torn DEBIT was being recovered.
    recovering: bool,
    /// The card's balance and masked number, as last read.
    seen: Option<(u32, String)>,
    /// When to look for the card again while a recovery waits for it (card
    /// events can be missed: a card pulled and put back within PC/SC's poll).
    card_poll_at: Option<u64>,
}

/// How often the checkout looks for the card while a recovery waits for it (ms).
pub const CARD_POLL_MS: u64 = 1_000;

/// Why a session cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    Json(String),
    Tsk,
    Origin,
}

impl core::fmt::Display for SessionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SessionError::Json(e) => write!(f, "session is not valid: {e}"),
            SessionError::Tsk => f.write_str("TSK must be 32 bytes of hex"),
            SessionError::Origin => f.write_str("the session is for another origin"),
        }
    }
}

impl Checkout {
    /// A checkout for the session the page handed over (JSON text), embedded
    /// by a page whose origin the browser reported as `parent_origin`.
    pub fn new(
        cfg: Config,
        mode: Mode,
        session: &str,
        parent_origin: &str,
        mut rng: Box<dyn Entropy>,
    ) -> Result<Self, SessionError> {
        let layout = Layout::random(&mut *rng);
        let json = |e: purse::json::Error| SessionError::Json(e.to_string());
        let (txn, head) = match mode {
            Mode::Purchase => {
                let b: WidgetSession = purse::json::from_str(session).map_err(json)?;
                let s = &b.session;
                let head = (
                    s.txn_id.clone(),
                    s.merchant_name.clone(),
                    s.amount,
                    s.currency,
                    s.exponent,
                    s.purse,
                );
                let c = Client::new(b, parent_origin, rng, cfg.today).map_err(|e| match e {
                    purse::purchase::client::BundleError::Tsk => SessionError::Tsk,
                    purse::purchase::client::BundleError::Origin => SessionError::Origin,
                })?;
                (Txn::Pay(c), head)
            }
            Mode::Load => {
                let b: LoadWidgetSession = purse::json::from_str(session).map_err(json)?;
                let s = &b.session;
                let head = (
                    s.txn_id.clone(),
                    s.bank_name.clone(),
                    s.amount,
                    s.currency,
                    s.exponent,
                    s.purse,
                );
                let c = LoadClient::new(b, parent_origin, rng, cfg.today).map_err(|e| match e {
                    purse::load::client::LoadBundleError::Tsk => SessionError::Tsk,
                    purse::load::client::LoadBundleError::Origin => SessionError::Origin,
                })?;
                (Txn::Load(c), head)
            }
        };
        let (txn_id, payee, amount, currency, exponent, purse) = head;
        let mut c = Self {
            cfg,
            txn,
            bridge: Bridge::new(),
            layout,
            pin: Zeroizing::new(Vec::new()),
            txn_id,
            payee,
            amount,
            currency,
            exponent,
            purse,
            started: false,
            hello_at: None,
            http: None,
            next_http: 1,
            told: None,
            last_outcome: None,
            released: false,
            recovering: false,
            seen: None,
            card_poll_at: None,
        };
        let timeout = c.cfg.timeout_ms as u64;
        c.txn.driver().set_timeout(timeout);
        Ok(c)
    }

    pub fn mode(&self) -> Mode {
        match self.txn {
            Txn::Pay(_) => Mode::Purchase,
            Txn::Load(_) => Mode::Load,
        }
    }

    /// The reader in use (or last seen).
    pub fn reader(&self) -> Option<&str> {
        self.bridge.reader()
    }

    pub fn capability(&self) -> Option<Capability> {
        self.bridge.capability()
    }

    /// This transaction's keypad layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn is_finished(&self) -> bool {
        self.txn.driven().is_finished()
    }

    /// When the glue must call back with [`Input::Tick`] (ms, the clock of `handle`).
    pub fn poll_timeout(&self) -> Option<u64> {
        let hello = self.hello_at.filter(|_| self.bridge.awaiting_hello());
        [hello, self.card_poll_at, self.txn.driven().poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Feed one input at `now` (ms, monotonic); get the effects to carry out, in order.
    pub fn handle(&mut self, input: Input, now: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        let force = matches!(input, Input::Start);
        let before = self.view();
        let mut out = Vec::new();
        match input {
            Input::Start if !self.started => {
                self.started = true;
                self.txn.driver().start_clock(now);
                self.hello_at = Some(now + self.cfg.hello_timeout_ms as u64);
                out.push(self.bridge.hello());
            }
            Input::Start => {}
            Input::Tick => {
                if self.hello_at.is_some_and(|t| t <= now) {
                    self.hello_at = None;
                    self.bridge.hello_timed_out();
                }
                self.txn.driver().handle_timeout(now);
                if self.card_poll_at.is_some_and(|t| t <= now) {
                    self.card_poll_at = None;
                    if self.txn.driven().wants_card() {
                        self.bridge.wants_card(&mut out);
                    }
                }
            }
            Input::Extension(text) => match self.bridge.on_message(&text, &mut out) {
                Some(Heard::Card(reply)) => self.txn.driver().handle(reply),
                Some(Heard::Removed) => self.card_removed(),
                Some(Heard::Inserted) if self.txn.driven().wants_card() => {
                    self.bridge.wants_card(&mut out)
                }
                _ => {}
            },
            Input::Http { id, result } => {
                if self.http == Some(id) {
                    self.http = None;
                    let reply = match result {
                        Ok((status, body)) => Reply::Server(status, body),
                        Err(_) => Reply::ServerUnreachable,
                    };
                    self.txn.driver().handle(reply);
                }
            }
            Input::User(a) => self.on_user(a, now, &mut out),
        }
        for (id, msg) in out {
            fx.push(Effect::Bridge { id, msg });
        }
        self.pump(&mut fx);
        self.remember_card();
        // A recovery waits for the card: look for it now and then, not only on events.
        let waiting = self.txn.driven().wants_card() && self.txn.driven().past_point_of_no_return();
        if !waiting {
            self.card_poll_at = None;
        } else if self.card_poll_at.is_none() {
            self.card_poll_at = Some(now + CARD_POLL_MS);
        }
        self.tell(&mut fx);
        let after = self.view();
        if force || after != before {
            fx.push(Effect::Render(after));
        }
        fx
    }

    fn on_user(&mut self, a: Action, now: u64, out: &mut Vec<(u64, String)>) {
        let pin_screen = matches!(
            self.txn,
            Txn::Pay(ref c) if matches!(c.status(), PayStatus::NeedPin { .. })
        );
        match a {
            Action::Approve => self.txn.driver().approve(),
            Action::Cancel => {
                self.txn.driver().cancel();
            }
            Action::NotMine => {
                if let Txn::Pay(c) = &mut self.txn {
                    c.not_mine();
                }
            }
            Action::MoreTime => {
                if let Txn::Pay(c) = &mut self.txn {
                    c.more_time(now);
                }
            }
            Action::Digit(d) if pin_screen && d <= 9 && self.pin.len() < PIN_MAX => {
                self.pin.push(d)
            }
            Action::Delete if pin_screen => {
                self.pin.pop();
            }
            Action::SubmitPin if pin_screen && self.pin.len() >= PIN_MIN => {
                if let Txn::Pay(c) = &mut self.txn {
                    c.submit_pin(&self.pin);
                }
                self.pin.clear();
            }
            Action::Retry => {
                self.txn.driver().retry();
                if self.txn.driven().wants_card() {
                    // A fresh selection: connect the reader again.
                    if let Some(m) = self.bridge.release() {
                        out.push(m);
                    }
                    out.push(self.bridge.reconnect());
                }
            }
            _ => {}
        }
        if !matches!(
            self.txn,
            Txn::Pay(ref c) if matches!(c.status(), PayStatus::NeedPin { .. })
        ) {
            self.pin.clear();
        }
    }

    /// The card left the reader while no command was out.
    fn card_removed(&mut self) {
        let at_confirm = match &self.txn {
            Txn::Pay(c) => matches!(c.status(), PayStatus::Confirm),
            Txn::Load(c) => matches!(c.status(), LoadStatus::Confirm(_)),
        };
        let d = self.txn.driver();
        d.card_removed();
        if at_confirm {
            // Nothing started yet: back to "insert your card".
            d.retry();
        }
        self.pin.clear();
    }

    /// Carry the client's requests out, and give it the card when it wants one.
    fn pump(&mut self, fx: &mut Vec<Effect>) {
        for _ in 0..64 {
            if let Some(req) = self.txn.driver().poll_request() {
                match req {
                    Outgoing::Card(apdu) => match self.bridge.transmit(apdu) {
                        Some((id, msg)) => fx.push(Effect::Bridge { id, msg }),
                        None => self.txn.driver().handle(Reply::CardLost),
                    },
                    Outgoing::Server { path, body } => {
                        let id = self.next_http;
                        self.next_http += 1;
                        if self.txn.driven().is_awaiting() {
                            self.http = Some(id);
                        }
                        fx.push(Effect::Http { id, path, body });
                    }
                }
                continue;
            }
            if self.txn.driven().wants_card() && self.bridge.is_fresh() {
                // A client past the point of no return wants the card back to recover.
                self.recovering = self.txn.driven().past_point_of_no_return();
                self.txn.driver().card_ready();
                continue;
            }
            break;
        }
        if self.is_finished() && !self.released {
            self.released = true;
            if let Some((id, msg)) = self.bridge.release() {
                fx.push(Effect::Bridge { id, msg });
            }
        }
    }

    /// Tell the page what changed: capability, result, cancel, error.
    fn tell(&mut self, fx: &mut Vec<Effect>) {
        if let Some(c) = self.bridge.capability() {
            if self.told != Some(c) {
                let ev = if self.told.is_none() {
                    ParentEvent::Ready { capability: c }
                } else {
                    ParentEvent::Capability { capability: c }
                };
                self.told = Some(c);
                fx.push(Effect::Parent(ev));
            }
        }
        let (key, ev) = match self.outcome() {
            Some((k, e)) => (Some(k), Some(e)),
            None => (None, None),
        };
        if key != self.last_outcome {
            self.last_outcome = key;
            if let Some(e) = ev {
                fx.push(Effect::Parent(e));
            }
        }
    }

    /// The outcome the page is told about, with a key that changes when it does.
    fn outcome(&self) -> Option<(String, ParentEvent)> {
        let txn_id = self.txn_id.clone();
        match &self.txn {
            Txn::Pay(c) => match c.status() {
                PayStatus::Done { result, .. } => Some((
                    "done".into(),
                    ParentEvent::Result {
                        txn_id,
                        verify_mode: Some(c.session().verify_mode),
                        result: Outcome::Purchase(result.clone()),
                    },
                )),
                PayStatus::Failed { problem, .. } => Some(self.error(Problem::Pay(problem), None)),
                PayStatus::Cancelled(reason) => Some(self.cancelled(reason)),
                _ => None,
            },
            Txn::Load(c) => match c.status() {
                LoadStatus::Done { result, .. } => Some((
                    "done".into(),
                    ParentEvent::Result {
                        txn_id,
                        verify_mode: None,
                        result: Outcome::Load(result.clone()),
                    },
                )),
                LoadStatus::Failed {
                    problem,
                    charged,
                    result,
                    ..
                } => Some(self.error(Problem::Load(problem, charged), result.cloned())),
                LoadStatus::Cancelled(reason) => Some(self.cancelled(reason)),
                _ => None,
            },
        }
    }

    fn error(&self, p: Problem, result: Option<BankResult>) -> (String, ParentEvent) {
        (
            format!("failed:{}", p.code()),
            ParentEvent::Error {
                code: p.code(),
                message: p.text(Lang::En),
                txn_id: self.txn_id.clone(),
                charged: p.charged().map(|c| c.as_str()),
                result,
            },
        )
    }

    fn cancelled(&self, reason: &'static str) -> (String, ParentEvent) {
        (
            format!("cancel:{reason}"),
            ParentEvent::Cancel {
                reason,
                txn_id: self.txn_id.clone(),
            },
        )
    }

    /// The screen while the client waits for the card.
    fn waiting_screen(&self) -> Screen {
        match self.bridge.capability() {
            Some(Capability::Ready) | None if self.bridge.awaiting_hello() => {
                Screen::Progress(Step::Detecting)
            }
            Some(Capability::Ready) => Screen::Progress(Step::Connecting),
            Some(c) => Screen::Unavailable(c),
            None => Screen::Progress(Step::Connecting),
        }
    }

    /// The current view (also for re-renders on a width change).
    pub fn view(&self) -> View {
        let (screen, card, expiry_warning) = match &self.txn {
            Txn::Pay(c) => {
                let screen = match c.status() {
                    PayStatus::WaitingForCard => self.waiting_screen(),
                    PayStatus::Working(s) => Screen::Progress(pay_step(s)),
                    PayStatus::Confirm => Screen::Confirm,
                    PayStatus::NeedPin { wrong_tries_left } => Screen::Pin {
                        layout: self.layout.clone(),
                        entered: self.pin.len(),
                        wrong_tries_left,
                    },
                    PayStatus::Done { receipt, .. } => Screen::Done {
                        receipt: receipt.clone(),
                        recovered: self.recovering,
                    },
                    PayStatus::Failed { problem, retry } => Screen::Failed {
                        problem: Problem::Pay(problem),
                        retry,
                    },
                    PayStatus::Cancelled(r) => Screen::Cancelled(r),
                };
                (screen, c.card().copied(), c.expiry_warning())
            }
            Txn::Load(c) => {
                let screen = match c.status() {
                    LoadStatus::WaitingForCard => self.waiting_screen(),
                    LoadStatus::Working(s) => Screen::Progress(load_step(s)),
                    LoadStatus::Confirm(v) => Screen::LoadConfirm(v),
                    LoadStatus::Done { receipt, .. } => Screen::Loaded(receipt.clone()),
                    LoadStatus::Failed {
                        problem,
                        retry,
                        charged,
                        ..
                    } => Screen::Failed {
                        problem: Problem::Load(problem, charged),
                        retry,
                    },
                    LoadStatus::Cancelled(r) => Screen::Cancelled(r),
                };
                (screen, c.card().copied(), false)
            }
        };
        let seen = card
            .map(|c| (c.purse(self.purse).balance, c.card_id.masked()))
            .or_else(|| self.seen.clone());
        View {
            screen,
            lang: self.cfg.lang,
            mode: self.mode(),
            payee: self.payee.clone(),
            amount: self.amount,
            currency: self.currency,
            exponent: self.exponent,
            balance: seen.as_ref().map(|s| s.0),
            card: seen.map(|s| s.1),
            install_url: self.cfg.install_url.clone(),
            expiry_warning,
        }
    }

    /// Keep what the card said for the summary.
    fn remember_card(&mut self) {
        let card = match &self.txn {
            Txn::Pay(c) => c.card().copied(),
            Txn::Load(c) => c.card().copied(),
        };
        if let Some(c) = card {
            self.seen = Some((c.purse(self.purse).balance, c.card_id.masked()));
        }
        let after = match &self.txn {
            Txn::Pay(c) => match c.status() {
                PayStatus::Done { receipt, .. } => Some(receipt.balance_after),
                _ => None,
            },
            Txn::Load(c) => match c.status() {
                LoadStatus::Done { receipt, .. } => Some(receipt.balance_after),
                _ => None,
            },
        };
        if let (Some(b), Some(seen)) = (after, self.seen.as_mut()) {
            seen.0 = b;
        }
    }
}

fn pay_step(s: PayStep) -> Step {
    match s {
        PayStep::Reading => Step::Reading,
        PayStep::Preparing => Step::Preparing,
        PayStep::CheckingPin => Step::CheckingPin,
        PayStep::Authorizing => Step::Authorizing,
        PayStep::Debiting => Step::Debiting,
        PayStep::Confirming => Step::Confirming,
        PayStep::Recovering => Step::Recovering,
        PayStep::Reporting => Step::Reporting,
    }
}

fn load_step(s: LoadStep) -> Step {
    match s {
        LoadStep::Reading => Step::Reading,
        LoadStep::Preparing => Step::Preparing,
        LoadStep::Authorizing => Step::LoadAuthorizing,
        LoadStep::Crediting => Step::Crediting,
        LoadStep::Confirming => Step::ConfirmingLoad,
        LoadStep::Recovering => Step::Recovering,
    }
}
