//! The client half of the purchase, as a sans-IO state machine: the card
//! dialogue and the payment-server calls, with no bridge, DOM, sockets or
//! clock. The widget wraps it with capability detection and a view; the test
//! kit drives it against the real virtual card and the real payment server;
//! the benches use it too. One implementation of every client step.
//!
//! ```text
//! card_ready → SELECT → READ LOG 1.. → [Confirm] → approve → INITIALIZE
//!   → (6982: [NeedPin] → VERIFY → INITIALIZE) → POST draw → check amount
//!   → DEBIT → POST complete → [Done]            (payment_server, security_module)
//!   → DEBIT → [Done] (+ complete in the background)   (client, merchant)
//! DEBIT's answer lost → [Torn] → card_ready → SELECT → READ LOG … → POST recover → [Done] / [Failed]
//! ```
//!
//! Drive it with [`Client::poll_request`] (at most one request outstanding:
//! an APDU for the card or a POST to the payment origin) and
//! [`Client::handle`] with its [`Reply`]; shopper actions are methods; time is
//! an input ([`Client::poll_timeout`], [`Client::handle_timeout`]).

use zeroize::Zeroizing;

use crate::apdu::{Response, StatusWord};
use crate::command::{
    DebitResponse, InitializePurchase, InitializePurchaseResponse, LogRecord, ReadLog, Request,
    Select, SelectResponse, Verify,
};
use crate::session::{Key32, Session, VerifyMode, NONCE_LEN};
use crate::types::BcdDate;
use crate::wire::{ApiCode, ErrorBody, Hex, Sealed};
use crate::AID;

use super::draw::AmountChecked;
use super::{
    CompleteEnvelope, CompleteResponse, DebitCommand, DebitResponseMsg, DrawEnvelope, DrawRequest,
    DrawResponse, MerchantResult, PurchaseStatus, RecoverEnvelope, RecoverRequest, RecoverResponse,
    RecoverStatus, ResultC, SuspiciousEnvelope, SuspiciousReport, WidgetSession, MAX_LOG_RECORDS,
    PATH_COMPLETE, PATH_DRAW, PATH_RECOVER, PATH_SUSPICIOUS,
};

/// The request expires after this long without the shopper finishing (ms).
pub const DEFAULT_TIMEOUT_MS: u64 = 120_000;
/// The shopper is warned this long before the request expires (ms).
pub const WARN_BEFORE_MS: u64 = 20_000;
/// How often the shopper may ask for more time.
pub const MAX_EXTENSIONS: u8 = 10;
/// Shortest and longest PIN the card accepts.
pub const PIN_MIN: usize = 4;
pub const PIN_MAX: usize = 8;

/// Fresh random bytes (AES-GCM nonces): the OS source natively,
/// `crypto.getRandomValues` in the browser.
pub trait Entropy: Send {
    fn fill(&mut self, buf: &mut [u8]);
}

/// What the client asks its driver to do.
#[derive(Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Send this command APDU to the card.
    Card(Vec<u8>),
    /// POST `body` (JSON) to `path` on the payment origin.
    Server { path: &'static str, body: String },
}

impl core::fmt::Debug for Outgoing {
    // Never print APDUs (a VERIFY carries the PIN) or sealed bodies.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Outgoing::Card(a) => write!(f, "Card({:02X?})", &a[..a.len().min(4)]),
            Outgoing::Server { path, .. } => write!(f, "Server({path})"),
        }
    }
}

/// Why the bridge refused to send a command (nothing reached the card).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A per-origin limit of the bridge; try again after `retry_after_ms`.
    RateLimited { retry_after_ms: u64 },
    /// The VERIFY would use the card's last PIN try: web pages may not.
    LastPinTry,
    /// Any other refusal.
    Other,
}

/// The answer to the outstanding [`Outgoing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The card's response APDU (data then SW).
    Card(Vec<u8>),
    /// The command did not come back: card pulled, reader or bridge gone.
    /// Whether the card processed it is unknown.
    CardLost,
    /// The bridge did not send the command.
    Refused(Refusal),
    /// The payment server answered (HTTP status, body).
    Server(u16, String),
    /// No answer from the payment server (network, timeout).
    ServerUnreachable,
}

/// Who failed, and how (each maps to one plain-language message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The card was removed (nothing was taken).
    CardRemoved,
    /// The card answered something the client cannot read.
    CardUnreadable,
    /// The card refused with this status word (nothing was taken).
    CardRefused(StatusWord),
    Funds,
    CardExpired,
    WrongCurrency,
    PinBlocked,
    /// The bridge protects the card's last PIN try from web pages.
    LastPinTry,
    /// Too many PIN tries from this site for now.
    PinRateLimited {
        retry_after_ms: u64,
    },
    /// The debit command would charge something other than what was approved.
    AmountChanged,
    /// The payment server could not be reached.
    ServerUnreachable,
    /// The payment server refused.
    ServerRefused(ApiCode),
    /// DEBIT went to the card and its answer was lost: the card may be
    /// charged. Put the card back to find out.
    Torn,
    /// After a torn DEBIT, the server decided from the card's log: not charged.
    NotCharged,
    /// The card's log cannot decide yet; the merchant will be told when it does.
    Undecided,
}

impl Problem {
    /// Stable code for the merchant page's `error` event.
    pub fn code(self) -> &'static str {
        match self {
            Self::CardRemoved => "card_removed",
            Self::CardUnreadable => "card_error",
            Self::CardRefused(_) => "card_refused",
            Self::Funds => "insufficient_funds",
            Self::CardExpired => "card_expired",
            Self::WrongCurrency => "wrong_currency",
            Self::PinBlocked => "pin_blocked",
            Self::LastPinTry => "last_pin_try",
            Self::PinRateLimited { .. } => "pin_rate_limited",
            Self::AmountChanged => "amount_mismatch",
            Self::ServerUnreachable => "network",
            Self::ServerRefused(ApiCode::BadMac | ApiCode::Expired) => "bad_session",
            Self::ServerRefused(ApiCode::OrderPaid) => "order_paid",
            Self::ServerRefused(ApiCode::OrderInFlight) => "order_in_flight",
            Self::ServerRefused(_) => "server",
            Self::Torn => "debit_unknown",
            Self::NotCharged => "debit_not_done",
            Self::Undecided => "debit_undecided",
        }
    }

    /// Whether money may have left the card: the shopper must hear it.
    pub fn maybe_charged(self) -> bool {
        matches!(self, Self::Torn | Self::Undecided)
    }
}

/// Progress steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Reading,
    Preparing,
    CheckingPin,
    Authorizing,
    Debiting,
    Confirming,
    Recovering,
    Reporting,
}

/// What the receipt screen shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub txn_id: String,
    pub merchant_name: String,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub balance_after: u32,
    /// Card number, masked.
    pub card: String,
    /// `YYYYMMDD HHMMSS` of the debit, when known.
    pub when: String,
}

/// Where the purchase stands, for the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status<'a> {
    /// Waiting for the card (the driver calls [`Client::card_ready`]).
    WaitingForCard,
    Working(Step),
    /// The card was read: show amount and balance, wait for Approve.
    Confirm,
    /// The card wants the PIN for this amount.
    NeedPin {
        wrong_tries_left: Option<u8>,
    },
    Done {
        receipt: &'a Receipt,
        result: &'a MerchantResult,
    },
    Failed {
        problem: Problem,
        retry: bool,
    },
    Cancelled(&'static str),
}

/// Where a retry resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resume {
    /// Read the card again (card_ready, then Confirm).
    Card,
    /// Resend the same draw (idempotent by txn id and body).
    Draw(String),
    /// Resend the same complete (idempotent).
    Complete(String),
    /// Back to the PIN pad.
    Pin,
    /// Read the card's log again and ask the server (card_ready).
    Recover,
}

/// What the card told us in this selection.
#[derive(Debug, Clone)]
struct CardRead {
    select: SelectResponse,
    select_data: Vec<u8>,
    /// READ LOG records, newest first.
    log: Vec<LogRecord>,
    pin_verified: bool,
}

/// A drawn transaction: what DEBIT needs and what recovery needs.
#[derive(Debug, Clone)]
struct Drawn {
    atc: u16,
    answer: DrawResponse,
    cmd: DebitCommand,
}

#[derive(Debug, Clone)]
enum State {
    Idle,
    Selecting {
        recovering: Option<Drawn>,
    },
    ReadingLog {
        card: CardRead,
        recovering: Option<Drawn>,
    },
    /// Recovery: an INITIALIZE of amount 0 tells the card's ATC (and cancels
    /// any pending INITIALIZE, so the torn DEBIT can never apply later).
    ReadingAtc {
        card: CardRead,
        drawn: Drawn,
    },
    Confirm {
        card: CardRead,
    },
    Initializing {
        card: CardRead,
    },
    NeedPin {
        card: CardRead,
        wrong_tries_left: Option<u8>,
    },
    Verifying {
        card: CardRead,
    },
    Drawing {
        card: CardRead,
        body: String,
        atc: u16,
    },
    Debiting {
        card: CardRead,
        drawn: Drawn,
        _checked: AmountChecked,
    },
    /// DEBIT refused by the card: the server records the failure, then we say so.
    Refused {
        problem: Problem,
        body: String,
    },
    Completing {
        card: CardRead,
        drawn: Drawn,
        body: String,
    },
    Torn {
        drawn: Drawn,
    },
    Recovering {
        drawn: Drawn,
    },
    Reporting,
    Done {
        receipt: Receipt,
        result: MerchantResult,
    },
    Failed {
        problem: Problem,
        resume: Option<Resume>,
        keep: Option<Box<State>>,
    },
    Cancelled(&'static str),
}

/// The purchase client for one transaction.
pub struct Client {
    bundle: WidgetSession,
    tsk: Key32,
    page_origin: String,
    rng: Box<dyn Entropy>,
    state: State,
    pending: Option<Outgoing>,
    /// A reply is expected for the request last taken by `poll_request`.
    awaiting: bool,
    /// A background request (one-trip modes' complete) whose answer nobody waits for.
    background: Option<Outgoing>,
    today: Option<BcdDate>,
    deadlines: Deadlines,
}

#[derive(Debug, Clone, Copy)]
struct Deadlines {
    timeout_ms: u64,
    warn_at: Option<u64>,
    expire_at: Option<u64>,
    warning: bool,
    extensions: u8,
}

/// Why a session bundle cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("TSK must be 32 bytes")]
    Tsk,
    #[error("the session is for another merchant origin")]
    Origin,
}

impl Client {
    /// A client for the merchant's `bundle`, embedded by a page whose origin the
    /// browser reported as `page_origin` (it must be the session's origin).
    /// `today` (the driver's clock) lets an expired card be refused at once.
    pub fn new(
        bundle: WidgetSession,
        page_origin: &str,
        rng: Box<dyn Entropy>,
        today: Option<BcdDate>,
    ) -> Result<Self, BundleError> {
        let tsk = bundle.tsk().ok_or(BundleError::Tsk)?;
        if bundle.session.origin.trim_end_matches('/') != page_origin.trim_end_matches('/') {
            return Err(BundleError::Origin);
        }
        Ok(Self {
            bundle,
            tsk,
            page_origin: page_origin.trim_end_matches('/').to_string(),
            rng,
            state: State::Idle,
            pending: None,
            awaiting: false,
            background: None,
            today,
            deadlines: Deadlines {
                timeout_ms: DEFAULT_TIMEOUT_MS,
                warn_at: None,
                expire_at: None,
                warning: false,
                extensions: 0,
            },
        })
    }

    pub fn session(&self) -> &Session {
        &self.bundle.session
    }

    /// The request's lifetime (ms); call before [`Self::start_clock`].
    pub fn set_timeout(&mut self, ms: u64) {
        self.deadlines.timeout_ms = ms;
    }

    /// Start the request's clock at `now` (ms, the driver's monotonic time).
    pub fn start_clock(&mut self, now: u64) {
        let d = &mut self.deadlines;
        let lead = WARN_BEFORE_MS.min(d.timeout_ms / 4);
        d.expire_at = Some(now + d.timeout_ms);
        d.warn_at = Some(now + d.timeout_ms - lead);
        d.warning = false;
    }

    /// The next deadline, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.is_finished() || self.past_point_of_no_return() {
            return None;
        }
        let d = &self.deadlines;
        if d.warning {
            d.expire_at
        } else {
            [d.warn_at, d.expire_at].into_iter().flatten().min()
        }
    }

    /// Time moved to `now`: warn, or cancel the request when it expired
    /// (never once DEBIT is on its way).
    pub fn handle_timeout(&mut self, now: u64) {
        if self.is_finished() || self.past_point_of_no_return() {
            return;
        }
        if self.deadlines.expire_at.is_some_and(|t| t <= now) {
            self.cancel_with("timeout");
        } else if self.deadlines.warn_at.is_some_and(|t| t <= now) {
            self.deadlines.warning = true;
        }
    }

    /// The expiry warning is showing.
    pub fn expiry_warning(&self) -> bool {
        self.deadlines.warning && !self.past_point_of_no_return() && !self.is_finished()
    }

    /// "More time": restart the clock (at most [`MAX_EXTENSIONS`] times).
    pub fn more_time(&mut self, now: u64) -> bool {
        if !self.expiry_warning() || self.deadlines.extensions >= MAX_EXTENSIONS {
            return false;
        }
        self.deadlines.extensions += 1;
        self.start_clock(now);
        true
    }

    /// The next request to carry out (each is returned once).
    pub fn poll_request(&mut self) -> Option<Outgoing> {
        if let Some(p) = self.pending.take() {
            self.awaiting = true;
            return Some(p);
        }
        self.background.take()
    }

    /// A request is out and its reply is awaited.
    pub fn is_awaiting(&self) -> bool {
        self.awaiting
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done { .. } | State::Cancelled(_))
    }

    /// Once DEBIT is on its way the shopper can no longer cancel, and the
    /// request does not expire.
    pub fn past_point_of_no_return(&self) -> bool {
        match &self.state {
            State::Debiting { .. }
            | State::Refused { .. }
            | State::Completing { .. }
            | State::Torn { .. }
            | State::Recovering { .. }
            | State::ReadingAtc { .. }
            | State::Done { .. } => true,
            State::Selecting { recovering } | State::ReadingLog { recovering, .. } => {
                recovering.is_some()
            }
            State::Failed {
                problem, resume, ..
            } => {
                matches!(
                    problem,
                    Problem::Torn | Problem::Undecided | Problem::NotCharged
                ) || matches!(resume, Some(Resume::Complete(_) | Resume::Recover))
            }
            _ => false,
        }
    }

    /// The card's SELECT answer, once read.
    pub fn card(&self) -> Option<&SelectResponse> {
        match &self.state {
            State::ReadingLog { card, .. }
            | State::Confirm { card }
            | State::Initializing { card }
            | State::NeedPin { card, .. }
            | State::Verifying { card }
            | State::Drawing { card, .. }
            | State::Debiting { card, .. }
            | State::Completing { card, .. } => Some(&card.select),
            _ => None,
        }
    }

    /// Where the purchase stands.
    pub fn status(&self) -> Status<'_> {
        match &self.state {
            State::Idle | State::Torn { .. } => Status::WaitingForCard,
            State::ReadingAtc { .. } => Status::Working(Step::Recovering),
            State::Selecting { recovering } | State::ReadingLog { recovering, .. } => {
                Status::Working(if recovering.is_some() {
                    Step::Recovering
                } else {
                    Step::Reading
                })
            }
            State::Confirm { .. } => Status::Confirm,
            State::Initializing { .. } => Status::Working(Step::Preparing),
            State::NeedPin {
                wrong_tries_left, ..
            } => Status::NeedPin {
                wrong_tries_left: *wrong_tries_left,
            },
            State::Verifying { .. } => Status::Working(Step::CheckingPin),
            State::Drawing { .. } => Status::Working(Step::Authorizing),
            State::Debiting { .. } => Status::Working(Step::Debiting),
            State::Refused { .. } | State::Completing { .. } => Status::Working(Step::Confirming),
            State::Recovering { .. } => Status::Working(Step::Recovering),
            State::Reporting => Status::Working(Step::Reporting),
            State::Done { receipt, result } => Status::Done { receipt, result },
            State::Failed {
                problem, resume, ..
            } => Status::Failed {
                problem: *problem,
                retry: resume.is_some(),
            },
            State::Cancelled(r) => Status::Cancelled(r),
        }
    }

    /// The card is connected in a fresh selection (first time, after it was
    /// put back, or after a reset): read it, or recover a torn DEBIT.
    pub fn card_ready(&mut self) {
        let recovering = match &self.state {
            State::Idle => None,
            State::Failed {
                resume: Some(Resume::Card),
                ..
            } => None,
            State::Torn { drawn } => Some(drawn.clone()),
            State::Failed {
                resume: Some(Resume::Recover),
                keep: Some(k),
                ..
            } => match k.as_ref() {
                State::Torn { drawn } => Some(drawn.clone()),
                _ => return,
            },
            // Not waiting for a card: nothing to do.
            _ => return,
        };
        self.card_ready_from(recovering);
    }

    /// The driver must connect to the card and call [`Self::card_ready`].
    pub fn wants_card(&self) -> bool {
        match &self.state {
            State::Idle | State::Torn { .. } => true,
            State::Failed { resume, keep, .. } => {
                matches!(resume, Some(Resume::Card))
                    || matches!(
                        (resume, keep.as_deref()),
                        (Some(Resume::Recover), Some(State::Torn { .. }))
                    )
            }
            _ => false,
        }
    }

    /// The card went away while nothing was outstanding.
    pub fn card_removed(&mut self) {
        if self.awaiting {
            // The outstanding command's fate is reported through `handle`.
            return;
        }
        match &self.state {
            State::Confirm { .. } | State::NeedPin { .. } => {
                self.fail(Problem::CardRemoved, Some(Resume::Card));
            }
            _ => {}
        }
    }

    /// The shopper approved the amount.
    pub fn approve(&mut self) {
        if !matches!(self.state, State::Confirm { .. }) {
            return;
        }
        if let State::Confirm { card } = std::mem::replace(&mut self.state, State::Idle) {
            self.initialize(card);
        }
    }

    /// The shopper entered a PIN on the keypad (4–8 digits, `0`..=`9`).
    pub fn submit_pin(&mut self, pin: &[u8]) {
        if !(PIN_MIN..=PIN_MAX).contains(&pin.len()) || pin.iter().any(|d| *d > 9) {
            return;
        }
        if !matches!(self.state, State::NeedPin { .. }) {
            return;
        }
        let State::NeedPin { card, .. } = std::mem::replace(&mut self.state, State::Idle) else {
            return;
        };
        let digits = Zeroizing::new(pin.iter().map(|d| b'0' + d).collect::<Vec<u8>>());
        let apdu = Zeroizing::new(
            Request::Verify(Verify {
                pin: Some(digits.to_vec()),
            })
            .to_bytes(),
        );
        self.state = State::Verifying { card };
        self.pending = Some(Outgoing::Card(apdu.to_vec()));
    }

    /// Retry where the failure left off. After a card problem the client
    /// waits for the card again ([`Self::wants_card`]).
    pub fn retry(&mut self) {
        if !matches!(
            self.state,
            State::Failed {
                resume: Some(_),
                ..
            }
        ) {
            return;
        }
        let State::Failed {
            resume: Some(resume),
            keep,
            problem,
        } = std::mem::replace(&mut self.state, State::Idle)
        else {
            return;
        };
        match (resume, keep.map(|k| *k)) {
            (Resume::Draw(body), Some(State::Drawing { card, atc, .. })) => {
                self.state = State::Drawing {
                    card,
                    body: body.clone(),
                    atc,
                };
                self.send_server(PATH_DRAW, body);
            }
            (Resume::Complete(body), Some(State::Completing { card, drawn, .. })) => {
                self.state = State::Completing {
                    card,
                    drawn,
                    body: body.clone(),
                };
                self.send_server(PATH_COMPLETE, body);
            }
            (Resume::Complete(body), Some(State::Refused { problem, .. })) => {
                self.state = State::Refused {
                    problem,
                    body: body.clone(),
                };
                self.send_server(PATH_COMPLETE, body);
            }
            (Resume::Pin, Some(State::NeedPin { card, .. })) => {
                self.state = State::NeedPin {
                    card,
                    wrong_tries_left: None,
                };
            }
            (Resume::Card, _) => self.state = State::Idle,
            (Resume::Recover, Some(State::Torn { drawn })) => self.state = State::Torn { drawn },
            (resume, keep) => {
                // Nothing to resume from: stay as we were.
                self.state = State::Failed {
                    problem,
                    resume: Some(resume),
                    keep: keep.map(Box::new),
                };
            }
        }
    }

    /// The shopper cancelled. Refused once DEBIT is on its way.
    pub fn cancel(&mut self) -> bool {
        if self.past_point_of_no_return() || self.is_finished() {
            return false;
        }
        self.cancel_with("user");
        true
    }

    /// "This is not my purchase": report it, then the purchase is off.
    pub fn not_mine(&mut self) -> bool {
        if self.past_point_of_no_return()
            || self.is_finished()
            || matches!(self.state, State::Reporting)
        {
            return false;
        }
        let s = &self.bundle.session;
        let report = SuspiciousReport {
            txn_id: s.txn_id.clone(),
            page_origin: self.page_origin.clone(),
            reason: "not my purchase (shopper pressed the button in the widget)".into(),
        };
        let sealed = self.seal(&report);
        let body = json(&SuspiciousEnvelope {
            session: self.bundle.session.clone(),
            session_mac: self.bundle.session_mac.clone(),
            etsk: self.bundle.etsk.clone(),
            report: sealed,
        });
        self.state = State::Reporting;
        self.awaiting = false;
        self.send_server(PATH_SUSPICIOUS, body);
        true
    }

    /// Feed the answer to the outstanding request. A reply when none is
    /// awaited (a late answer, a background request's) is ignored.
    pub fn handle(&mut self, reply: Reply) {
        if !self.awaiting {
            return;
        }
        self.awaiting = false;
        let state = std::mem::replace(&mut self.state, State::Idle);
        match reply {
            Reply::Card(bytes) => match Response::parse(&bytes) {
                Ok(r) => self.on_card(state, r),
                Err(_) => self.on_card_unreadable(state),
            },
            Reply::CardLost => self.on_card_lost(state),
            Reply::Refused(r) => self.on_refused(state, r),
            Reply::Server(status, body) => self.on_server(state, Ok((status, body))),
            Reply::ServerUnreachable => self.on_server(state, Err(())),
        }
    }

    // ---- internals -------------------------------------------------------

    fn card_ready_from(&mut self, recovering: Option<Drawn>) {
        self.state = State::Selecting { recovering };
        self.send_card(Request::Select(Select { aid: AID.to_vec() }));
    }

    /// Seal a message under TSK with a fresh nonce.
    fn seal<T: Sealed>(&mut self, m: &T) -> Hex {
        let mut n = [0u8; NONCE_LEN];
        self.rng.fill(&mut n);
        m.seal(&self.tsk, n)
    }

    fn send_card(&mut self, r: Request) {
        self.pending = Some(Outgoing::Card(r.to_bytes()));
    }

    fn send_server(&mut self, path: &'static str, body: String) {
        self.pending = Some(Outgoing::Server { path, body });
    }

    fn fail(&mut self, problem: Problem, resume: Option<Resume>) {
        self.fail_keeping(problem, resume, None);
    }

    fn fail_keeping(&mut self, problem: Problem, resume: Option<Resume>, keep: Option<State>) {
        self.pending = None;
        self.state = State::Failed {
            problem,
            resume,
            keep: keep.map(Box::new),
        };
    }

    fn cancel_with(&mut self, reason: &'static str) {
        self.pending = None;
        self.awaiting = false;
        self.state = State::Cancelled(reason);
    }

    fn initialize(&mut self, card: CardRead) {
        let s = &self.bundle.session;
        let r = Request::InitializePurchase(InitializePurchase {
            purse: s.purse,
            amount: s.amount,
            terminal: s.terminal,
        });
        self.state = State::Initializing { card };
        self.send_card(r);
    }

    fn read_log(&mut self, card: CardRead, recovering: Option<Drawn>) {
        let n = card.log.len() + 1;
        // Recovery reads until the log has passed the transaction's ATC.
        let passed = recovering
            .as_ref()
            .is_some_and(|d| card.log.last().is_some_and(|r| r.atc <= d.atc));
        if n > MAX_LOG_RECORDS || passed {
            return self.log_read(card, recovering);
        }
        self.state = State::ReadingLog { card, recovering };
        self.send_card(Request::ReadLog(ReadLog { record: n as u8 }));
    }

    fn log_read(&mut self, card: CardRead, recovering: Option<Drawn>) {
        match recovering {
            None => self.state = State::Confirm { card },
            Some(drawn) => {
                // The log decides if it holds the transaction's ATC or an
                // older one, or is full; else the card's ATC must say.
                let decides = card.log.len() >= MAX_LOG_RECORDS
                    || card.log.iter().any(|r| r.atc <= drawn.atc);
                if !decides {
                    let s = &self.bundle.session;
                    let r = Request::InitializePurchase(InitializePurchase {
                        purse: s.purse,
                        amount: 0,
                        terminal: s.terminal,
                    });
                    self.state = State::ReadingAtc { card, drawn };
                    return self.send_card(r);
                }
                self.recover(card, drawn, None);
            }
        }
    }

    fn recover(&mut self, card: CardRead, drawn: Drawn, current_atc: Option<u16>) {
        let req = RecoverRequest {
            txn_id: self.bundle.session.txn_id.clone(),
            log: card.log.iter().map(|r| Hex(r.encode())).collect(),
            current_atc,
        };
        let sealed = self.seal(&req);
        let body = json(&RecoverEnvelope {
            session: self.bundle.session.clone(),
            session_mac: self.bundle.session_mac.clone(),
            etsk: self.bundle.etsk.clone(),
            recover_request: sealed,
        });
        self.state = State::Recovering { drawn };
        self.send_server(PATH_RECOVER, body);
    }

    fn draw(&mut self, card: CardRead, init: InitializePurchaseResponse) {
        let s = &self.bundle.session;
        let dr = DrawRequest {
            txn_id: s.txn_id.clone(),
            page_origin: self.page_origin.clone(),
            amount: s.amount,
            purse: s.purse,
            select: Hex(card.select_data.clone()),
            initialize: Hex(init.encode()),
            pin_verified: card.pin_verified,
            log: card.log.iter().map(|r| Hex(r.encode())).collect(),
        };
        let sealed = self.seal(&dr);
        let body = json(&DrawEnvelope {
            session: self.bundle.session.clone(),
            session_mac: self.bundle.session_mac.clone(),
            etsk: self.bundle.etsk.clone(),
            draw_request: sealed,
        });
        self.state = State::Drawing {
            card,
            body: body.clone(),
            atc: init.atc,
        };
        self.send_server(PATH_DRAW, body);
    }

    fn complete_body(&mut self, rapdu: Vec<u8>) -> String {
        let s = &self.bundle.session;
        let msg = DebitResponseMsg {
            txn_id: s.txn_id.clone(),
            response: Hex(rapdu),
        };
        let sealed = self.seal(&msg);
        json(&CompleteEnvelope {
            session: self.bundle.session.clone(),
            session_mac: self.bundle.session_mac.clone(),
            etsk: self.bundle.etsk.clone(),
            debit_response: sealed,
        })
    }

    fn receipt(&self, card: Option<&SelectResponse>, balance_after: u32, when: String) -> Receipt {
        let s = &self.bundle.session;
        Receipt {
            txn_id: s.txn_id.clone(),
            merchant_name: s.merchant_name.clone(),
            amount: s.amount,
            currency: s.currency,
            exponent: s.exponent,
            balance_after,
            card: card.map(|c| c.card_id.masked()).unwrap_or_default(),
            when,
        }
    }

    fn card_problem(sw: StatusWord) -> Problem {
        match sw {
            StatusWord::FUNDS => Problem::Funds,
            StatusWord::EXPIRED => Problem::CardExpired,
            StatusWord::PIN_BLOCKED => Problem::PinBlocked,
            sw => Problem::CardRefused(sw),
        }
    }

    fn on_card_unreadable(&mut self, state: State) {
        match state {
            // DEBIT went out; whatever came back, the debit may have happened.
            State::Debiting { drawn, .. } => self.torn(drawn),
            State::ReadingLog {
                recovering: Some(drawn),
                ..
            }
            | State::Selecting {
                recovering: Some(drawn),
            }
            | State::ReadingAtc { drawn, .. } => self.torn(drawn),
            _ => self.fail(Problem::CardUnreadable, Some(Resume::Card)),
        }
    }

    fn on_card_lost(&mut self, state: State) {
        match state {
            State::Debiting { drawn, .. } => self.torn(drawn),
            State::ReadingLog {
                recovering: Some(drawn),
                ..
            }
            | State::Selecting {
                recovering: Some(drawn),
            }
            | State::ReadingAtc { drawn, .. } => self.torn(drawn),
            _ => self.fail(Problem::CardRemoved, Some(Resume::Card)),
        }
    }

    fn torn(&mut self, drawn: Drawn) {
        self.pending = None;
        self.state = State::Failed {
            problem: Problem::Torn,
            resume: Some(Resume::Recover),
            keep: Some(Box::new(State::Torn { drawn })),
        };
    }

    fn on_refused(&mut self, state: State, r: Refusal) {
        match (state, r) {
            (State::Verifying { card }, Refusal::RateLimited { retry_after_ms }) => self
                .fail_keeping(
                    Problem::PinRateLimited { retry_after_ms },
                    Some(Resume::Pin),
                    Some(State::NeedPin {
                        card,
                        wrong_tries_left: None,
                    }),
                ),
            (State::Verifying { .. }, Refusal::LastPinTry) => self.fail(Problem::LastPinTry, None),
            // Nothing reached the card: a DEBIT refused by the bridge was not applied.
            (State::Debiting { .. }, _) => {
                self.fail(Problem::CardRefused(StatusWord(0x6985)), None)
            }
            (
                State::ReadingLog {
                    recovering: Some(drawn),
                    ..
                }
                | State::Selecting {
                    recovering: Some(drawn),
                }
                | State::ReadingAtc { drawn, .. },
                _,
            ) => self.torn(drawn),
            _ => self.fail(Problem::CardUnreadable, Some(Resume::Card)),
        }
    }

    fn on_card(&mut self, state: State, r: Response) {
        let s = self.bundle.session.clone();
        match state {
            State::Selecting { recovering } => {
                let sel = match (r.sw.is_ok(), SelectResponse::decode(&r.data)) {
                    (true, Ok(sel)) => sel,
                    _ => return self.on_card_unreadable(State::Selecting { recovering }),
                };
                if recovering.is_none() {
                    if self.today.is_some_and(|d| sel.expiry.is_expired_on(&d)) {
                        return self.fail(Problem::CardExpired, None);
                    }
                    let p = sel.purse(s.purse);
                    if p.currency != s.currency || p.exponent != s.exponent {
                        return self.fail(Problem::WrongCurrency, None);
                    }
                }
                let card = CardRead {
                    select: sel,
                    select_data: r.data,
                    log: Vec::new(),
                    pin_verified: false,
                };
                self.read_log(card, recovering);
            }
            State::ReadingLog {
                mut card,
                recovering,
            } => {
                // 6A83: the log holds no more records. Anything else ends the read too.
                if r.sw.is_ok() {
                    match LogRecord::decode(&r.data) {
                        Ok(rec) => card.log.push(rec),
                        Err(_) => return self.log_read(card, recovering),
                    }
                    return self.read_log(card, recovering);
                }
                self.log_read(card, recovering)
            }
            State::ReadingAtc { card, drawn } => {
                // Any answer but a readable one leaves the ATC unknown: the
                // server then decides from the log alone.
                let atc =
                    r.sw.is_ok()
                        .then(|| InitializePurchaseResponse::decode(&r.data).ok())
                        .flatten()
                        .map(|i| i.atc);
                self.recover(card, drawn, atc);
            }
            State::Initializing { card } => {
                if r.sw == StatusWord::PIN_REQUIRED {
                    self.state = State::NeedPin {
                        card,
                        wrong_tries_left: None,
                    };
                    return;
                }
                if !r.sw.is_ok() {
                    return self.fail(Self::card_problem(r.sw), None);
                }
                match InitializePurchaseResponse::decode(&r.data) {
                    Ok(init) => self.draw(card, init),
                    Err(_) => self.fail(Problem::CardUnreadable, Some(Resume::Card)),
                }
            }
            State::Verifying { mut card } => {
                if r.sw.is_ok() {
                    card.pin_verified = true;
                    return self.initialize(card);
                }
                match r.sw.pin_tries_left() {
                    Some(0) => self.fail(Problem::PinBlocked, None),
                    Some(left) => {
                        self.state = State::NeedPin {
                            card,
                            wrong_tries_left: Some(left),
                        }
                    }
                    None => self.fail(Self::card_problem(r.sw), None),
                }
            }
            State::Debiting { card, drawn, .. } => {
                let rapdu = r.to_bytes();
                if !r.sw.is_ok() {
                    // The card refused and wrote nothing; the server records the failure.
                    let body = self.complete_body(rapdu);
                    self.state = State::Refused {
                        problem: Self::card_problem(r.sw),
                        body: body.clone(),
                    };
                    return self.send_server(PATH_COMPLETE, body);
                }
                let Ok(resp) = DebitResponse::decode(&r.data) else {
                    return self.torn(drawn);
                };
                let body = self.complete_body(rapdu);
                let one_trip = match s.verify_mode {
                    VerifyMode::Merchant => true,
                    // The check value says the answer is right without the
                    // client ever holding S3; a mismatch is for the server.
                    VerifyMode::Client => drawn.cmd.answer_matches(resp.balance_after, &resp.s3),
                    _ => false,
                };
                if one_trip {
                    let receipt =
                        self.receipt(Some(&card.select), resp.balance_after, String::new());
                    let result = MerchantResult::S3 {
                        txn_id: s.txn_id.clone(),
                        balance_after: resp.balance_after,
                        s3: Hex(resp.s3.to_vec()),
                        expected_s3_m: drawn.answer.expected_s3_m.clone().unwrap_or_default(),
                    };
                    self.state = State::Done { receipt, result };
                    // The server still captures on the card's own S3, in the background.
                    self.background = Some(Outgoing::Server {
                        path: PATH_COMPLETE,
                        body,
                    });
                } else {
                    self.state = State::Completing {
                        card,
                        drawn,
                        body: body.clone(),
                    };
                    self.send_server(PATH_COMPLETE, body);
                }
            }
            other => self.state = other,
        }
    }

    fn server_error(status: u16, body: &str) -> Problem {
        let code = serde_json::from_str::<ErrorBody>(body)
            .map(|b| b.error.code)
            .unwrap_or(ApiCode::Other);
        match code {
            ApiCode::CardExpired => Problem::CardExpired,
            ApiCode::InsufficientFunds => Problem::Funds,
            ApiCode::Other if status >= 500 => Problem::ServerUnreachable,
            c => Problem::ServerRefused(c),
        }
    }

    fn on_server(&mut self, state: State, answer: Result<(u16, String), ()>) {
        let transient = match &answer {
            Err(()) => true,
            Ok((status, _)) => *status >= 500,
        };
        match state {
            State::Reporting => self.cancel_with("not_mine"),
            State::Drawing { card, body, atc } => {
                if transient {
                    return self.fail_keeping(
                        Problem::ServerUnreachable,
                        Some(Resume::Draw(body.clone())),
                        Some(State::Drawing { card, body, atc }),
                    );
                }
                let (status, text) = answer.expect("not transient");
                if status != 200 {
                    return self.fail(Self::server_error(status, &text), None);
                }
                let Ok(answer) = serde_json::from_str::<DrawResponse>(&text) else {
                    return self.fail(Problem::ServerRefused(ApiCode::Other), None);
                };
                let Ok(cmd) = DebitCommand::open(
                    &self.tsk,
                    &self.bundle.session.txn_id,
                    answer.debit_command.as_slice(),
                ) else {
                    return self.fail(Problem::ServerRefused(ApiCode::BadSeal), None);
                };
                // The card is charged only what the shopper approved.
                let Ok(checked) = cmd.check(&self.bundle.session) else {
                    return self.fail(Problem::AmountChanged, None);
                };
                let apdu = checked.apdu().to_vec();
                self.state = State::Debiting {
                    card,
                    drawn: Drawn { atc, answer, cmd },
                    _checked: checked,
                };
                self.pending = Some(Outgoing::Card(apdu));
            }
            State::Refused { problem, body } => {
                if transient {
                    // The card refused: nothing was taken whatever the server
                    // says; retrying only lets the server record it.
                    return self.fail_keeping(
                        problem,
                        Some(Resume::Complete(body.clone())),
                        Some(State::Refused { problem, body }),
                    );
                }
                self.fail(problem, None)
            }
            State::Completing { card, drawn, body } => {
                if transient {
                    return self.fail_keeping(
                        Problem::ServerUnreachable,
                        Some(Resume::Complete(body.clone())),
                        Some(State::Completing { card, drawn, body }),
                    );
                }
                let (status, text) = answer.expect("not transient");
                if status != 200 {
                    return self.fail(Self::server_error(status, &text), None);
                }
                let Ok(c) = serde_json::from_str::<CompleteResponse>(&text) else {
                    return self.fail(Problem::ServerRefused(ApiCode::Other), None);
                };
                self.finish_with(Some(&card.select), c.status, c.result_c, c.result_m);
            }
            State::Recovering { drawn } => {
                if transient {
                    return self.fail_keeping(
                        Problem::ServerUnreachable,
                        Some(Resume::Recover),
                        Some(State::Torn { drawn }),
                    );
                }
                let (status, text) = answer.expect("not transient");
                let decided = (status == 200)
                    .then(|| serde_json::from_str::<RecoverResponse>(&text).ok())
                    .flatten();
                match decided {
                    Some(RecoverResponse {
                        status: RecoverStatus::Debited,
                        result_c: Some(c),
                        result_m: Some(m),
                        ..
                    }) => self.finish_with(None, PurchaseStatus::Debited, c, m),
                    Some(RecoverResponse {
                        status: RecoverStatus::Failed,
                        ..
                    }) => self.fail(Problem::NotCharged, None),
                    Some(_) => self.fail_keeping(
                        Problem::Undecided,
                        Some(Resume::Recover),
                        Some(State::Torn { drawn }),
                    ),
                    None => self.fail_keeping(
                        Self::server_error(status, &text),
                        Some(Resume::Recover),
                        Some(State::Torn { drawn }),
                    ),
                }
            }
            other => self.state = other,
        }
    }

    fn finish_with(
        &mut self,
        card: Option<&SelectResponse>,
        status: PurchaseStatus,
        result_c: Hex,
        result_m: Hex,
    ) {
        if status != PurchaseStatus::Debited {
            return self.fail(Problem::CardRefused(StatusWord(0x6985)), None);
        }
        let txn = self.bundle.session.txn_id.clone();
        let c = ResultC::open(&self.tsk, &txn, result_c.as_slice()).ok();
        let receipt = self.receipt(
            card,
            c.as_ref().and_then(|c| c.balance_after).unwrap_or(0),
            c.as_ref()
                .map(|c| format!("{} {}", c.date, c.time))
                .unwrap_or_default(),
        );
        self.state = State::Done {
            receipt,
            result: MerchantResult::ResultM {
                txn_id: txn,
                result_m,
            },
        };
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("messages serialize")
}
