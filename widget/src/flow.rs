//! The checkout flow as a sans-IO state machine.
//!
//! The glue feeds [`Input`]s (bridge replies and card events from the extension,
//! HTTP answers, shopper actions, timer expiries) into [`Flow::handle`] and carries
//! out the [`Effect`]s it returns (send to the extension, POST to the payment
//! server, render a [`View`], post an event to the merchant page, start/stop
//! timers). No I/O, clocks or globals here, so the whole purchase runs in native
//! unit tests against the virtual card's logic and in wasm-bindgen-test.
//!
//! The card dialogue is DESIGN §4: SELECT → (VERIFY) → INITIALIZE FOR PURCHASE →
//! draw request → debit command (amount checked) → DEBIT → S3 → complete.

use purse::apdu::{Command, Response, StatusWord};
use purse::command::{
    DebitPurchase, DebitResponse, InitializePurchase, InitializePurchaseResponse, Request,
    SelectResponse, Verify,
};
use purse::session::{aad, label, open, seal, Key32, Session, VerifyMode, NONCE_LEN};
use purse::AID;
use serde::Serialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::api::{self, Bundle};
use crate::i18n::Lang;
use crate::keypad::{Entropy, Layout};

/// The warning comes this long before the request expires.
pub const WARN_BEFORE_MS: u32 = 20_000;
/// How often the shopper may ask for more time.
pub const MAX_EXTENSIONS: u8 = 10;

/// Shortest and longest PIN the card accepts.
pub const PIN_MIN: usize = 4;
pub const PIN_MAX: usize = 8;

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

/// What the shopper's machine can do, reported to the merchant with `ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    NoExtension,
    NoBridge,
    NoReader,
    NoCard,
    Ready,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::NoExtension => "no_extension",
            Capability::NoBridge => "no_bridge",
            Capability::NoReader => "no_reader",
            Capability::NoCard => "no_card",
            Capability::Ready => "ready",
        }
    }
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

/// Timers the flow asks the glue to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The extension did not answer `hello` in time: it is not installed.
    Hello,
    /// The whole request expires (120 s without an answer).
    Expiry,
    /// 20 s before expiry: warn and offer more time (WCAG 2.2.1, timing adjustable).
    Warn,
}

/// A bridge error as the extension relays it (`{code, message}`). Codes
/// mapped: `rate_limited` (a per-origin limit of the bridge; on VERIFY:
/// [`Problem::PinRateLimited`]), `forbidden_apdu` (on VERIFY: the last PIN try
/// is protected, [`Problem::LastPinTry`]), `card_removed`, `no_card`, ….
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeError {
    pub code: String,
    pub message: String,
}

/// Everything that can happen to the flow.
#[derive(Debug, Clone)]
pub enum Input {
    /// Begin: detect the card.
    Start,
    /// The extension answered request `id`.
    BridgeReply {
        id: u64,
        result: Result<Value, BridgeError>,
    },
    CardInserted {
        reader: String,
    },
    CardRemoved {
        reader: String,
    },
    /// The payment server answered request `id` (status, body), or the network failed.
    Http {
        id: u64,
        result: Result<(u16, String), String>,
    },
    User(Action),
    Timer(Timer),
}

/// What the merchant page hears (posted to the parent window with `type: "cardpay:<event>"`).
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
    /// The purchase went through: result M (sealed under DK) or, in the one-round-trip
    /// modes, the card's S3 with the DK-sealed expected S3. The merchant's server
    /// checks it; the page only forwards it.
    Result {
        txn_id: String,
        verify_mode: VerifyMode,
        result: api::MerchantResult,
    },
    Cancel {
        reason: &'static str,
        txn_id: String,
    },
    Error {
        code: &'static str,
        message: String,
        txn_id: String,
    },
}

/// What the glue must do.
#[derive(Clone, PartialEq)]
pub enum Effect {
    /// Send `{id, ...msg}` to the extension.
    Bridge {
        id: u64,
        msg: Value,
    },
    /// POST `body` (JSON) to `path` on the payment origin.
    Http {
        id: u64,
        path: &'static str,
        body: String,
    },
    Render(View),
    Parent(ParentEvent),
    StartTimer(Timer, u32),
    StopTimer(Timer),
}

impl core::fmt::Debug for Effect {
    // Never print APDUs (a VERIFY carries the PIN) or sealed bodies.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Effect::Bridge { id, msg } => {
                write!(f, "Bridge#{id}({})", msg["type"].as_str().unwrap_or("?"))
            }
            Effect::Http { id, path, .. } => write!(f, "Http#{id}({path})"),
            Effect::Render(v) => write!(f, "Render({:?})", v.screen),
            Effect::Parent(e) => write!(f, "Parent({e:?})"),
            Effect::StartTimer(t, ms) => write!(f, "StartTimer({t:?}, {ms})"),
            Effect::StopTimer(t) => write!(f, "StopTimer({t:?})"),
        }
    }
}

/// Plain-language problems (each maps to a message in [`crate::i18n`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    CardRemoved,
    /// The card was pulled after DEBIT was sent: it may have been charged.
    CardRemovedCharged,
    /// After such a pull, the card's log shows the debit: charged, not yet confirmed.
    DebitDone,
    /// After such a pull, the card's log shows no debit: nothing was charged.
    DebitNotDone,
    CardError,
    PinBlocked,
    LastPinTry,
    /// The bridge refused more PIN tries for now (per-origin rate limit).
    PinRateLimited,
    Funds,
    Expired,
    Network,
    Server,
    CardRefused,
    AmountMismatch,
    BadSession,
    WrongCurrency,
}

impl Problem {
    pub fn code(self) -> &'static str {
        match self {
            Problem::CardRemoved => "card_removed",
            Problem::CardRemovedCharged => "debit_unknown",
            Problem::DebitDone => "debit_unconfirmed",
            Problem::DebitNotDone => "debit_not_done",
            Problem::CardError => "card_error",
            Problem::PinBlocked => "pin_blocked",
            Problem::LastPinTry => "last_pin_try",
            Problem::PinRateLimited => "pin_rate_limited",
            Problem::Funds => "insufficient_funds",
            Problem::Expired => "card_expired",
            Problem::Network => "network",
            Problem::Server => "server",
            Problem::CardRefused => "card_refused",
            Problem::AmountMismatch => "amount_mismatch",
            Problem::BadSession => "bad_session",
            Problem::WrongCurrency => "wrong_currency",
        }
    }
}

/// Progress steps shown to the shopper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Detecting,
    Connecting,
    Reading,
    Preparing,
    CheckingPin,
    Authorizing,
    Debiting,
    Confirming,
    Reporting,
}

/// Which screen and what is on it: everything the renderer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub screen: Screen,
    pub lang: Lang,
    pub merchant_name: String,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    /// The card's balance in the session's purse, once read.
    pub balance: Option<u32>,
    /// Masked card number, once read.
    pub card: Option<String>,
    pub install_url: String,
    /// The request expires soon: show the warning with "More time".
    pub expiry_warning: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Screen {
    Progress(Step),
    Unavailable(Capability),
    Confirm,
    Pin {
        layout: Layout,
        entered: usize,
        /// Tries left after a wrong PIN.
        wrong_tries_left: Option<u8>,
    },
    Failed {
        problem: Problem,
        retry: bool,
    },
    Done(api::Receipt),
    Cancelled(&'static str),
}

/// Where a retry resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    /// Read the card again (then Confirm).
    Card,
    /// Resend the same draw request (idempotent by txn id).
    Draw,
    /// Resend the same complete request (idempotent).
    Complete,
    /// Back to the PIN pad (same layout).
    Pin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    ReadLog,
    Hello,
    Readers,
    Connect,
    Select,
    Initialize,
    Verify,
    Debit,
    Draw,
    Complete,
    Report,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Idle,
    Detecting,
    Unavailable(Capability),
    Connecting,
    Selecting,
    Confirm,
    Initializing,
    Pin,
    Verifying,
    Drawing,
    Debiting,
    Completing,
    Reporting,
    Failed(Problem, Option<Resume>),
    Done,
    Cancelled(&'static str),
}

impl Stage {
    fn is_final(self) -> bool {
        matches!(self, Stage::Done | Stage::Cancelled(_))
    }
    /// Once DEBIT is on its way, the shopper can no longer cancel.
    fn past_point_of_no_return(self) -> bool {
        matches!(
            self,
            Stage::Debiting
                | Stage::Completing
                | Stage::Done
                | Stage::Failed(
                    Problem::CardRemovedCharged | Problem::DebitDone | Problem::DebitNotDone,
                    _
                )
                | Stage::Failed(_, Some(Resume::Complete))
        )
    }
}

/// The checkout flow for one transaction.
pub struct Flow {
    cfg: Config,
    bundle: Bundle,
    tsk: Key32,
    rng: Box<dyn Entropy>,
    stage: Stage,
    next_id: u64,
    pending: Option<(u64, Pending)>,
    capability: Option<Capability>,
    ready_sent: bool,
    reader: Option<String>,
    handle: Option<u32>,
    card: Option<SelectResponse>,
    select_data: Vec<u8>,
    layout: Option<Layout>,
    pin: Zeroizing<Vec<u8>>,
    wrong_tries_left: Option<u8>,
    page_origin: String,
    pin_verified: bool,
    /// ATC of this transaction's INITIALIZE (to find the debit in the card's log).
    init_atc: Option<u16>,
    /// Re-reading the card after it was pulled during DEBIT.
    recovering: bool,
    expiry_warning: bool,
    extensions: u8,
    draw_body: Option<String>,
    draw_answer: Option<api::DrawResponse>,
    debit_cmd: Option<api::DebitCommand>,
    /// The card refused DEBIT: shown once the server has recorded the failure.
    refused: Option<Problem>,
    complete_body: Option<String>,
    receipt: Option<api::Receipt>,
}

/// Why a bundle cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleError {
    Json(String),
    Tsk,
    Origin,
}

impl core::fmt::Display for BundleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BundleError::Json(e) => write!(f, "session is not valid JSON: {e}"),
            BundleError::Tsk => f.write_str("TSK must be 64 hex digits"),
            BundleError::Origin => f.write_str("the session is for another merchant origin"),
        }
    }
}

impl Flow {
    /// A flow for the merchant's `bundle`, embedded by a page whose origin the browser
    /// reported as `parent_origin` (it must match the origin the session was made for).
    pub fn new(
        cfg: Config,
        bundle: Bundle,
        parent_origin: &str,
        rng: Box<dyn Entropy>,
    ) -> Result<Self, BundleError> {
        let tsk = Key32::from_hex(&bundle.tsk).map_err(|_| BundleError::Tsk)?;
        if bundle.session.origin.trim_end_matches('/') != parent_origin.trim_end_matches('/') {
            return Err(BundleError::Origin);
        }
        Ok(Self {
            cfg,
            bundle,
            tsk,
            rng,
            stage: Stage::Idle,
            next_id: 1,
            pending: None,
            capability: None,
            ready_sent: false,
            reader: None,
            handle: None,
            card: None,
            select_data: vec![],
            layout: None,
            pin: Zeroizing::new(Vec::new()),
            wrong_tries_left: None,
            page_origin: parent_origin.to_string(),
            pin_verified: false,
            init_atc: None,
            recovering: false,
            expiry_warning: false,
            extensions: 0,
            draw_body: None,
            draw_answer: None,
            debit_cmd: None,
            refused: None,
            complete_body: None,
            receipt: None,
        })
    }

    pub fn session(&self) -> &Session {
        &self.bundle.session
    }

    /// The reader in use (or last seen).
    pub fn reader(&self) -> Option<&str> {
        self.reader.as_deref()
    }

    pub fn capability(&self) -> Option<Capability> {
        self.capability
    }

    /// The keypad layout of this transaction, once PIN entry was needed.
    pub fn layout(&self) -> Option<&Layout> {
        self.layout.as_ref()
    }

    pub fn is_finished(&self) -> bool {
        self.stage.is_final()
    }

    /// The current view (for the first render and for re-renders on language change).
    pub fn view(&self) -> View {
        let s = &self.bundle.session;
        let screen = match self.stage {
            Stage::Idle | Stage::Detecting => Screen::Progress(Step::Detecting),
            Stage::Unavailable(c) => Screen::Unavailable(c),
            Stage::Connecting => Screen::Progress(Step::Connecting),
            Stage::Selecting => Screen::Progress(Step::Reading),
            Stage::Confirm => Screen::Confirm,
            Stage::Initializing => Screen::Progress(Step::Preparing),
            Stage::Pin => Screen::Pin {
                layout: self.layout.clone().expect("layout made on entering PIN"),
                entered: self.pin.len(),
                wrong_tries_left: self.wrong_tries_left,
            },
            Stage::Verifying => Screen::Progress(Step::CheckingPin),
            Stage::Drawing => Screen::Progress(Step::Authorizing),
            Stage::Debiting => Screen::Progress(Step::Debiting),
            Stage::Completing => Screen::Progress(Step::Confirming),
            Stage::Reporting => Screen::Progress(Step::Reporting),
            Stage::Failed(problem, resume) => Screen::Failed {
                problem,
                retry: resume.is_some(),
            },
            Stage::Done => Screen::Done(self.receipt.clone().expect("receipt when done")),
            Stage::Cancelled(r) => Screen::Cancelled(r),
        };
        View {
            screen,
            lang: self.cfg.lang,
            merchant_name: s.merchant_name.clone(),
            amount: s.amount,
            currency: s.currency,
            exponent: s.exponent,
            balance: self.card.map(|c| c.purse(s.purse).balance),
            card: self.card.map(|c| c.card_id.masked()),
            install_url: self.cfg.install_url.clone(),
            expiry_warning: self.expiry_warning && !self.stage.past_point_of_no_return(),
        }
    }

    /// Feed one input; get the effects to carry out, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        let mut fx = Vec::new();
        let force = matches!(input, Input::Start);
        let before = self.view();
        self.step(input, &mut fx);
        let after = self.view();
        if force || after != before {
            fx.push(Effect::Render(after));
        }
        fx
    }

    fn start_expiry(&mut self, fx: &mut Vec<Effect>) {
        fx.push(Effect::StartTimer(Timer::Expiry, self.cfg.timeout_ms));
        // The real 120 s request warns at 100 s; short ones a quarter before the end.
        let lead = WARN_BEFORE_MS.min(self.cfg.timeout_ms / 4);
        fx.push(Effect::StartTimer(Timer::Warn, self.cfg.timeout_ms - lead));
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn bridge(&mut self, fx: &mut Vec<Effect>, what: Pending, msg: Value) {
        let id = self.id();
        self.pending = Some((id, what));
        fx.push(Effect::Bridge { id, msg });
    }

    fn http(&mut self, fx: &mut Vec<Effect>, what: Pending, path: &'static str, body: String) {
        let id = self.id();
        self.pending = Some((id, what));
        fx.push(Effect::Http { id, path, body });
    }

    fn transmit(&mut self, fx: &mut Vec<Effect>, what: Pending, apdu: Vec<u8>) {
        let Some(handle) = self.handle else {
            self.fail(fx, Problem::CardRemoved, Some(Resume::Card));
            return;
        };
        self.bridge(
            fx,
            what,
            json!({"type": "transmit", "handle": handle, "apdu": hex::encode_upper(apdu)}),
        );
    }

    fn set_capability(&mut self, fx: &mut Vec<Effect>, c: Capability) {
        if self.capability == Some(c) {
            return;
        }
        self.capability = Some(c);
        if self.ready_sent {
            fx.push(Effect::Parent(ParentEvent::Capability { capability: c }));
        } else {
            self.ready_sent = true;
            fx.push(Effect::Parent(ParentEvent::Ready { capability: c }));
        }
    }

    fn unavailable(&mut self, fx: &mut Vec<Effect>, c: Capability) {
        self.pending = None;
        self.stage = Stage::Unavailable(c);
        self.set_capability(fx, c);
    }

    fn fail(&mut self, fx: &mut Vec<Effect>, problem: Problem, resume: Option<Resume>) {
        self.pending = None;
        self.stage = Stage::Failed(problem, resume);
        self.pin.clear();
        let message = crate::i18n::t(Lang::En, crate::view::problem_msg(problem)).to_string();
        fx.push(Effect::Parent(ParentEvent::Error {
            code: problem.code(),
            message,
            txn_id: self.bundle.session.txn_id.clone(),
        }));
    }

    fn finish_cancelled(&mut self, fx: &mut Vec<Effect>, reason: &'static str) {
        self.pending = None;
        self.stage = Stage::Cancelled(reason);
        self.pin.clear();
        fx.push(Effect::StopTimer(Timer::Expiry));
        fx.push(Effect::StopTimer(Timer::Warn));
        self.release_card(fx);
        fx.push(Effect::Parent(ParentEvent::Cancel {
            reason,
            txn_id: self.bundle.session.txn_id.clone(),
        }));
    }

    fn release_card(&mut self, fx: &mut Vec<Effect>) {
        if let Some(handle) = self.handle.take() {
            // Fire and forget: nobody waits for this reply.
            let id = self.id();
            fx.push(Effect::Bridge {
                id,
                msg: json!({"type": "disconnect", "handle": handle}),
            });
        }
    }

    fn connect(&mut self, fx: &mut Vec<Effect>, reader: String) {
        self.stage = Stage::Connecting;
        self.handle = None;
        self.reader = Some(reader.clone());
        self.bridge(
            fx,
            Pending::Connect,
            json!({"type": "connect", "reader": reader}),
        );
    }

    fn step(&mut self, input: Input, fx: &mut Vec<Effect>) {
        if self.stage.is_final() {
            return;
        }
        match input {
            Input::Start => {
                if self.stage != Stage::Idle {
                    return;
                }
                fx.push(Effect::StartTimer(Timer::Hello, self.cfg.hello_timeout_ms));
                self.start_expiry(fx);
                self.stage = Stage::Detecting;
                self.bridge(fx, Pending::Hello, json!({"type": "hello"}));
            }
            Input::Timer(Timer::Hello) => {
                if let Some(p @ (_, Pending::Hello)) = self.pending {
                    self.unavailable(fx, Capability::NoExtension);
                    // A slow first start of the bridge still counts: keep listening.
                    self.pending = Some(p);
                }
            }
            Input::Timer(Timer::Warn) => {
                if !self.stage.past_point_of_no_return() && !self.recovering {
                    self.expiry_warning = true;
                }
            }
            Input::Timer(Timer::Expiry) => {
                if !self.stage.past_point_of_no_return() && !self.recovering {
                    self.finish_cancelled(fx, "timeout");
                }
            }
            Input::BridgeReply { id, result } => {
                let Some((pid, what)) = self.pending else {
                    return;
                };
                if pid != id {
                    return; // a stale answer (e.g. to a request made before a card swap)
                }
                self.pending = None;
                self.on_bridge(what, result, fx);
            }
            Input::Http { id, result } => {
                let Some((pid, what)) = self.pending else {
                    return;
                };
                if pid != id {
                    return;
                }
                self.pending = None;
                self.on_http(what, result, fx);
            }
            Input::CardInserted { reader } => self.on_inserted(reader, fx),
            Input::CardRemoved { reader } => self.on_removed(reader, fx),
            Input::User(a) => self.on_user(a, fx),
        }
    }

    fn on_inserted(&mut self, reader: String, fx: &mut Vec<Effect>) {
        match self.stage {
            // Pulled during DEBIT: read the card's log to tell the shopper what happened.
            Stage::Failed(Problem::CardRemovedCharged, _) => {
                self.recovering = true;
                self.connect(fx, reader)
            }
            Stage::Unavailable(Capability::NoCard | Capability::NoReader) => {
                self.connect(fx, reader)
            }
            Stage::Failed(Problem::CardRemoved | Problem::CardError, _) => self.connect(fx, reader),
            _ => {}
        }
    }

    fn on_removed(&mut self, reader: String, fx: &mut Vec<Effect>) {
        if self.reader.as_deref() != Some(reader.as_str()) {
            return;
        }
        self.handle = None;
        self.card = None;
        if self.recovering && !matches!(self.stage, Stage::Failed(..)) {
            self.set_capability(fx, Capability::NoCard);
            return self.fail(fx, Problem::CardRemovedCharged, None);
        }
        match self.stage {
            Stage::Connecting | Stage::Selecting | Stage::Confirm => {
                self.unavailable(fx, Capability::NoCard);
            }
            Stage::Initializing | Stage::Pin | Stage::Verifying | Stage::Drawing => {
                self.set_capability(fx, Capability::NoCard);
                self.fail(fx, Problem::CardRemoved, Some(Resume::Card));
            }
            Stage::Debiting => {
                self.set_capability(fx, Capability::NoCard);
                self.fail(fx, Problem::CardRemovedCharged, None);
            }
            Stage::Failed(..) => self.set_capability(fx, Capability::NoCard),
            // Completing needs no card: the debit response is in hand.
            _ => {}
        }
    }

    fn on_user(&mut self, a: Action, fx: &mut Vec<Effect>) {
        if self.recovering {
            return; // the debit may have happened: nothing to cancel or retry here
        }
        match (a, self.stage) {
            (Action::Cancel, s) if !s.past_point_of_no_return() && s != Stage::Reporting => {
                self.finish_cancelled(fx, "user")
            }
            (Action::NotMine, s) if !s.past_point_of_no_return() && s != Stage::Reporting => {
                self.pin.clear();
                self.stage = Stage::Reporting;
                let report = api::SuspiciousReport {
                    txn_id: self.bundle.session.txn_id.clone(),
                    page_origin: self.page_origin.clone(),
                    reason: "not my purchase (shopper pressed the button in the widget)".into(),
                };
                let sealed = self.seal_json(label::SUSPICIOUS, &report);
                let body = api::SuspiciousEnvelope {
                    session: self.bundle.session.clone(),
                    session_mac: self.bundle.session_mac.clone(),
                    etsk: self.bundle.etsk.clone(),
                    report: sealed,
                };
                let body = serde_json::to_string(&body).expect("serializable");
                self.http(fx, Pending::Report, api::PATH_SUSPICIOUS, body);
            }
            (Action::MoreTime, s) if self.expiry_warning && !s.past_point_of_no_return() => {
                self.expiry_warning = false;
                if self.extensions < MAX_EXTENSIONS {
                    self.extensions += 1;
                    self.start_expiry(fx);
                }
            }
            (Action::Approve, Stage::Confirm) => self.initialize(fx),
            (Action::Digit(d), Stage::Pin) if d <= 9 && self.pin.len() < PIN_MAX => {
                self.pin.push(b'0' + d);
            }
            (Action::Delete, Stage::Pin) => {
                self.pin.pop();
            }
            (Action::SubmitPin, Stage::Pin) if self.pin.len() >= PIN_MIN => {
                let apdu = Request::Verify(Verify {
                    pin: Some(self.pin.to_vec()),
                })
                .to_bytes();
                self.pin.clear();
                self.stage = Stage::Verifying;
                self.transmit(fx, Pending::Verify, apdu);
            }
            (Action::Retry, Stage::Failed(_, Some(resume))) => match resume {
                Resume::Card => match self.reader.clone() {
                    Some(r) => self.connect(fx, r),
                    None => {
                        self.stage = Stage::Detecting;
                        self.bridge(fx, Pending::Readers, json!({"type": "readers"}));
                    }
                },
                Resume::Draw => {
                    self.stage = Stage::Drawing;
                    let body = self.draw_body.clone().expect("draw body kept for retry");
                    self.http(fx, Pending::Draw, api::PATH_DRAW, body);
                }
                Resume::Pin => {
                    self.pin.clear();
                    self.stage = Stage::Pin;
                }
                Resume::Complete => {
                    self.stage = Stage::Completing;
                    let body = self.complete_body.clone().expect("complete body kept");
                    self.http(fx, Pending::Complete, api::PATH_COMPLETE, body);
                }
            },
            _ => {}
        }
    }

    fn initialize(&mut self, fx: &mut Vec<Effect>) {
        let s = &self.bundle.session;
        let apdu = Request::InitializePurchase(InitializePurchase {
            purse: s.purse,
            amount: s.amount,
            terminal: s.terminal,
        })
        .to_bytes();
        self.stage = Stage::Initializing;
        self.transmit(fx, Pending::Initialize, apdu);
    }

    fn nonce(&mut self) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        self.rng.fill(&mut n);
        n
    }

    fn seal_json<T: Serialize>(&mut self, lbl: &str, msg: &T) -> api::Hex {
        let plain = Zeroizing::new(serde_json::to_vec(msg).expect("serializable"));
        let nonce = self.nonce();
        let txn = &self.bundle.session.txn_id;
        api::Hex(seal(&self.tsk, nonce, &aad(lbl, txn), &plain))
    }

    fn open_json<T: serde::de::DeserializeOwned>(&self, lbl: &str, sealed: &api::Hex) -> Option<T> {
        let plain = Zeroizing::new(
            open(
                &self.tsk,
                &aad(lbl, &self.bundle.session.txn_id),
                sealed.as_slice(),
            )
            .ok()?,
        );
        serde_json::from_slice(&plain).ok()
    }

    fn card_status_problem(sw: StatusWord) -> Problem {
        match sw {
            StatusWord::FUNDS => Problem::Funds,
            StatusWord::EXPIRED => Problem::Expired,
            StatusWord::PIN_BLOCKED => Problem::PinBlocked,
            _ => Problem::CardRefused,
        }
    }

    fn on_bridge_error(&mut self, what: Pending, e: BridgeError, fx: &mut Vec<Effect>) {
        let code = e.code.as_str();
        match (what, code) {
            (Pending::Hello, "no_host" | "no_bridge" | "native_host" | "host_not_found") => {
                self.unavailable(fx, Capability::NoBridge)
            }
            (Pending::Hello | Pending::Readers, "no_service" | "no_reader") => {
                self.unavailable(fx, Capability::NoReader)
            }
            (Pending::Hello | Pending::Readers, "forbidden_origin") => {
                self.unavailable(fx, Capability::NoBridge)
            }
            (Pending::Hello | Pending::Readers, _) => self.unavailable(fx, Capability::NoBridge),
            (Pending::Connect, "no_card" | "card_removed") => {
                self.unavailable(fx, Capability::NoCard)
            }
            (Pending::Connect, "no_reader" | "no_service") => {
                self.unavailable(fx, Capability::NoReader)
            }
            // The bridge's per-origin VERIFY limit: nothing reached the card; the
            // shopper may try again after a wait (`retry_after_ms`).
            (Pending::Verify, "rate_limited") => {
                self.fail(fx, Problem::PinRateLimited, Some(Resume::Pin))
            }
            // The guard refused the VERIFY: it would spend the card's last PIN try.
            (Pending::Verify, "forbidden_apdu") => self.fail(fx, Problem::LastPinTry, None),
            (Pending::Debit, _) => {
                // DEBIT went out; whether the card wrote it is unknown.
                self.handle = None;
                self.fail(fx, Problem::CardRemovedCharged, None)
            }
            (_, "card_removed" | "no_card") => {
                self.handle = None;
                self.card = None;
                self.fail(fx, Problem::CardRemoved, Some(Resume::Card))
            }
            _ => {
                self.handle = None;
                self.fail(fx, Problem::CardError, Some(Resume::Card))
            }
        }
    }

    fn on_bridge(
        &mut self,
        what: Pending,
        result: Result<Value, BridgeError>,
        fx: &mut Vec<Effect>,
    ) {
        let v = match result {
            Ok(v) => v,
            Err(e) => return self.on_bridge_error(what, e, fx),
        };
        match what {
            Pending::Hello => {
                fx.push(Effect::StopTimer(Timer::Hello));
                self.bridge(fx, Pending::Readers, json!({"type": "readers"}));
            }
            Pending::Readers => {
                let readers: Vec<(String, bool)> = v
                    .get("readers")
                    .unwrap_or(&v)
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|r| {
                                Some((
                                    r.get("name")?.as_str()?.to_string(),
                                    r.get("card_present")
                                        .and_then(Value::as_bool)
                                        .unwrap_or(false),
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some((name, _)) = readers.iter().find(|r| r.1) {
                    self.connect(fx, name.clone());
                } else if let Some((name, _)) = readers.first() {
                    self.reader = Some(name.clone());
                    self.unavailable(fx, Capability::NoCard);
                } else {
                    self.unavailable(fx, Capability::NoReader);
                }
            }
            Pending::Connect => {
                let Some(handle) = v.get("handle").and_then(Value::as_u64) else {
                    return self.fail(fx, Problem::CardError, Some(Resume::Card));
                };
                self.handle = Some(handle as u32);
                self.stage = Stage::Selecting;
                let apdu = Request::Select(purse::command::Select { aid: AID.to_vec() }).to_bytes();
                self.transmit(fx, Pending::Select, apdu);
            }
            _ => {
                let Some(r) = v
                    .get("rapdu")
                    .and_then(Value::as_str)
                    .and_then(|h| hex::decode(h.replace(' ', "")).ok())
                    .and_then(|b| Response::parse(&b).ok())
                else {
                    return self.fail(fx, Problem::CardError, Some(Resume::Card));
                };
                self.on_card(what, r, fx);
            }
        }
    }

    fn on_card(&mut self, what: Pending, r: Response, fx: &mut Vec<Effect>) {
        let s = self.bundle.session.clone();
        match what {
            Pending::Select => {
                if !r.sw.is_ok() {
                    return self.fail(fx, Problem::CardError, Some(Resume::Card));
                }
                let Ok(sel) = SelectResponse::decode(&r.data) else {
                    return self.fail(fx, Problem::CardError, Some(Resume::Card));
                };
                if self.cfg.today.is_some_and(|d| sel.expiry.is_expired_on(&d)) {
                    self.card = Some(sel);
                    self.set_capability(fx, Capability::Ready);
                    return self.fail(fx, Problem::Expired, None);
                }
                let p = sel.purse(s.purse);
                if p.currency != s.currency || p.exponent != s.exponent {
                    self.card = Some(sel);
                    self.set_capability(fx, Capability::Ready);
                    return self.fail(fx, Problem::WrongCurrency, None);
                }
                self.card = Some(sel);
                self.select_data = r.data;
                self.set_capability(fx, Capability::Ready);
                if self.recovering {
                    let apdu = Request::ReadLog(purse::command::ReadLog { record: 1 }).to_bytes();
                    return self.transmit(fx, Pending::ReadLog, apdu);
                }
                self.stage = Stage::Confirm;
            }
            Pending::Initialize => {
                if r.sw == StatusWord::PIN_REQUIRED {
                    if self.layout.is_none() {
                        self.layout = Some(Layout::random(&mut *self.rng));
                    }
                    self.pin.clear();
                    self.stage = Stage::Pin;
                    return;
                }
                if !r.sw.is_ok() {
                    let p = Self::card_status_problem(r.sw);
                    return self.fail(fx, p, None);
                }
                let Ok(init) = InitializePurchaseResponse::decode(&r.data) else {
                    return self.fail(fx, Problem::CardError, Some(Resume::Card));
                };
                self.init_atc = Some(init.atc);
                let draw = api::DrawRequest {
                    txn_id: s.txn_id.clone(),
                    page_origin: self.page_origin.clone(),
                    amount: s.amount,
                    purse: s.purse,
                    select: api::Hex(self.select_data.clone()),
                    initialize: api::Hex(init.encode()),
                    pin_verified: self.pin_verified,
                    log: vec![],
                };
                let sealed = self.seal_json(label::DRAW_REQUEST, &draw);
                let body = api::DrawEnvelope {
                    session: s,
                    session_mac: self.bundle.session_mac.clone(),
                    etsk: self.bundle.etsk.clone(),
                    draw_request: sealed,
                };
                let body = serde_json::to_string(&body).expect("serializable");
                self.draw_body = Some(body.clone());
                self.stage = Stage::Drawing;
                self.http(fx, Pending::Draw, api::PATH_DRAW, body);
            }
            Pending::Verify => {
                if r.sw.is_ok() {
                    self.wrong_tries_left = None;
                    self.pin_verified = true;
                    return self.initialize(fx);
                }
                if let Some(left) = r.sw.pin_tries_left() {
                    if left == 0 {
                        return self.fail(fx, Problem::PinBlocked, None);
                    }
                    self.wrong_tries_left = Some(left);
                    self.stage = Stage::Pin;
                    return;
                }
                let p = Self::card_status_problem(r.sw);
                self.fail(fx, p, None)
            }
            Pending::ReadLog => {
                let s = &self.bundle.session;
                let debited = r.sw.is_ok()
                    && purse::command::LogRecord::decode(&r.data).is_ok_and(|l| {
                        l.kind == purse::command::LogKind::Purchase
                            && Some(l.atc) == self.init_atc
                            && l.amount == s.amount
                            && l.purse == s.purse
                            && l.terminal == s.terminal
                    });
                if !r.sw.is_ok() && r.sw != StatusWord(0x6A83) {
                    // The log could not be read: still unknown.
                    return self.fail(fx, Problem::CardRemovedCharged, None);
                }
                self.release_card(fx);
                let p = if debited {
                    Problem::DebitDone
                } else {
                    Problem::DebitNotDone
                };
                self.fail(fx, p, None)
            }
            Pending::Debit => {
                if !r.sw.is_ok() {
                    // The card refused and wrote nothing; let the server record the failure.
                    let p = Self::card_status_problem(r.sw);
                    self.refused = Some(p);
                    return self.complete(fx, r.to_bytes());
                }
                let Ok(resp) = DebitResponse::decode(&r.data) else {
                    return self.fail(fx, Problem::CardError, None);
                };
                self.after_debit(resp, r.to_bytes(), fx);
            }
            _ => {}
        }
    }

    fn complete(&mut self, fx: &mut Vec<Effect>, rapdu: Vec<u8>) {
        let s = self.bundle.session.clone();
        let msg = api::DebitResponseMsg {
            txn_id: s.txn_id.clone(),
            response: api::Hex(rapdu),
        };
        let sealed = self.seal_json(label::DEBIT_RESPONSE, &msg);
        let body = api::CompleteEnvelope {
            session: s,
            session_mac: self.bundle.session_mac.clone(),
            etsk: self.bundle.etsk.clone(),
            debit_response: sealed,
        };
        let body = serde_json::to_string(&body).expect("serializable");
        self.complete_body = Some(body.clone());
        self.stage = Stage::Completing;
        self.http(fx, Pending::Complete, api::PATH_COMPLETE, body);
    }

    fn after_debit(&mut self, resp: DebitResponse, rapdu: Vec<u8>, fx: &mut Vec<Effect>) {
        let s = self.bundle.session.clone();
        let answer = self.draw_answer.clone().expect("draw answer before debit");
        let cmd = self.debit_cmd.clone().expect("debit command before debit");
        if let Some(c) = self.card.as_mut() {
            c.purses[s.purse.index()].balance = resp.balance_after;
        }
        match s.verify_mode {
            VerifyMode::PaymentServer | VerifyMode::SecurityModule => self.complete(fx, rapdu),
            VerifyMode::Client if !cmd.answer_matches(resp.balance_after, &resp.s3) => {
                self.fail(fx, Problem::CardRefused, None)
            }
            VerifyMode::Client | VerifyMode::Merchant => {
                self.receipt = Some(self.local_receipt(resp.balance_after));
                let result = api::MerchantResult::S3 {
                    txn_id: s.txn_id.clone(),
                    balance_after: resp.balance_after,
                    s3: api::Hex(resp.s3.to_vec()),
                    expected_s3_m: answer.expected_s3_m.unwrap_or_default(),
                };
                self.done(fx, result);
                // Best effort, in the background: the server captures without waiting
                // for the merchant. Its answer is not awaited (no pending request).
                self.complete(fx, rapdu);
                self.pending = None;
                self.stage = Stage::Done;
            }
        }
    }

    fn local_receipt(&self, balance_after: u32) -> api::Receipt {
        let s = &self.bundle.session;
        api::Receipt {
            txn_id: s.txn_id.clone(),
            merchant_name: s.merchant_name.clone(),
            amount: s.amount,
            currency: s.currency,
            exponent: s.exponent,
            balance_after,
            card: self.card.map(|c| c.card_id.masked()).unwrap_or_default(),
            when: String::new(),
        }
    }

    fn done(&mut self, fx: &mut Vec<Effect>, result: api::MerchantResult) {
        self.stage = Stage::Done;
        fx.push(Effect::StopTimer(Timer::Expiry));
        fx.push(Effect::StopTimer(Timer::Warn));
        self.release_card(fx);
        fx.push(Effect::Parent(ParentEvent::Result {
            txn_id: self.bundle.session.txn_id.clone(),
            verify_mode: self.bundle.session.verify_mode,
            result,
        }));
    }

    fn server_problem(status: u16, body: &str) -> Problem {
        use api::ApiCode;
        let code = serde_json::from_str::<api::ErrorBody>(body)
            .map(|b| b.error.code)
            .unwrap_or(ApiCode::Other);
        match code {
            ApiCode::CardExpired => Problem::Expired,
            ApiCode::InsufficientFunds => Problem::Funds,
            ApiCode::Expired | ApiCode::BadMac => Problem::BadSession,
            _ if status == 400 || status == 401 || status == 403 => Problem::BadSession,
            _ => Problem::Server,
        }
    }

    fn on_http(
        &mut self,
        what: Pending,
        result: Result<(u16, String), String>,
        fx: &mut Vec<Effect>,
    ) {
        if what == Pending::Report {
            // Whatever the server said, the purchase is off for the shopper.
            return self.finish_cancelled(fx, "not_mine");
        }
        if what == Pending::Complete {
            if let Some(p) = self.refused.take() {
                // The card refused DEBIT; whatever the server answered, nothing was taken.
                return self.fail(fx, p, None);
            }
        }
        let (status, body) = match result {
            Ok(x) => x,
            Err(_) => {
                let resume = if what == Pending::Draw {
                    Resume::Draw
                } else {
                    Resume::Complete
                };
                return self.fail(fx, Problem::Network, Some(resume));
            }
        };
        if status >= 500 {
            let resume = if what == Pending::Draw {
                Resume::Draw
            } else {
                Resume::Complete
            };
            return self.fail(fx, Problem::Server, Some(resume));
        }
        if status != 200 {
            let p = Self::server_problem(status, &body);
            return self.fail(fx, p, None);
        }
        match what {
            Pending::Draw => {
                let Ok(answer) = serde_json::from_str::<api::DrawResponse>(&body) else {
                    return self.fail(fx, Problem::Server, Some(Resume::Draw));
                };
                let Some(cmd) = self
                    .open_json::<api::DebitCommand>(label::DEBIT_COMMAND, &answer.debit_command)
                else {
                    return self.fail(fx, Problem::Server, None);
                };
                // The amount check: the card is charged only what the shopper approved,
                // both as the server states it and as the APDU really says.
                let s = &self.bundle.session;
                let apdu_ok = Command::parse(cmd.apdu.as_slice())
                    .ok()
                    .and_then(|c| Request::parse(&c).ok())
                    .is_some_and(|r| {
                        matches!(r, Request::DebitPurchase(DebitPurchase { purse, amount, .. })
                            if purse == s.purse && amount == s.amount)
                    });
                if !apdu_ok || cmd.amount != s.amount || cmd.txn_id != s.txn_id {
                    return self.fail(fx, Problem::AmountMismatch, None);
                }
                let apdu = cmd.apdu.0.clone();
                self.draw_answer = Some(answer);
                self.debit_cmd = Some(cmd);
                self.stage = Stage::Debiting;
                self.transmit(fx, Pending::Debit, apdu);
            }
            Pending::Complete => {
                let Ok(answer) = serde_json::from_str::<api::CompleteResponse>(&body) else {
                    return self.fail(fx, Problem::Server, Some(Resume::Complete));
                };
                if answer.status != api::PurchaseStatus::Debited {
                    return self.fail(fx, Problem::CardRefused, None);
                }
                let fallback = self
                    .card
                    .map(|c| c.purse(self.bundle.session.purse).balance)
                    .unwrap_or(0);
                let mut receipt = self.local_receipt(fallback);
                if let Some(c) = self.open_json::<api::ResultC>(label::RESULT_C, &answer.result_c) {
                    receipt.merchant_name = c.merchant_name;
                    receipt.amount = c.amount;
                    receipt.balance_after = c.balance_after.unwrap_or(fallback);
                    receipt.when = format!("{} {}", c.date, c.time);
                }
                self.receipt = Some(receipt);
                let result = api::MerchantResult::ResultM {
                    txn_id: answer.txn_id,
                    result_m: answer.result_m,
                };
                self.done(fx, result);
            }
            _ => {}
        }
    }
}
