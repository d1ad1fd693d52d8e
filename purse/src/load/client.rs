//! The client half of a load, as a sans-IO state machine, in the style of
//! the purchase client ([`crate::purchase::client`]) and with its driver
//! types ([`Outgoing`], [`Reply`], [`Entropy`]): the widget drives both with
//! one loop. No bridge, DOM, sockets or clock here.
//!
//! ```text
//! card_ready → SELECT → READ LOG 1.. → [Confirm] → approve → INITIALIZE FOR LOAD (S1)
//!   → POST /v1/loads/draw → check the credit command → CREDIT
//!   → 9000, result 00 → POST /v1/loads/complete → [Done]
//!   → refused / result ≠ 00 (a negative result) → INITIALIZE FOR LOAD 0 (fresh S1)
//!       → POST /v1/loads/recover → [Done] / [Failed NotCredited]
//! CREDIT's answer lost → [Torn] → card_ready → SELECT → READ LOG …
//!   → INITIALIZE FOR LOAD 0 → POST /v1/loads/recover → [Done] / [Failed NotCredited | Undecided]
//! ```
//!
//! The account is charged if and only if the card was credited; every
//! failure says which ([`Charged`]). Loads need no PIN (the bank's login
//! authenticates the shopper; the card checks max balance, 9402, and expiry,
//! 9403).

use crate::apdu::{Response, StatusWord};
use crate::command::{
    CreditResponse, InitializeLoad, InitializeLoadResponse, LogRecord, ReadLog, Request, Select,
    SelectResponse,
};
use crate::purchase::client::{Entropy, Outgoing, Refusal, Reply};
use crate::session::{Key32, NONCE_LEN};
use crate::types::{BcdDate, CardId};
use crate::wire::{ApiCode, ErrorBody, Hex, Sealed};
use crate::AID;

use super::draw::CreditChecked;
use super::{
    BankResult, CreditCommand, CreditResponseMsg, LoadCompleteEnvelope, LoadCompleteResponse,
    LoadDrawRequest, LoadDrawResponse, LoadEnvelope, LoadRecoverEnvelope, LoadRecoverRequest,
    LoadRecoverResponse, LoadRecoverStatus, LoadResultC, LoadSession, LoadStatus,
    LoadWidgetSession, MAX_LOG_RECORDS, PATH_LOAD_COMPLETE, PATH_LOAD_DRAW, PATH_LOAD_RECOVER,
};

/// The load expires after this long without the shopper finishing (ms).
pub const DEFAULT_TIMEOUT_MS: u64 = 120_000;

/// Whether the shopper's bank account is (or will be) charged: exactly when
/// the card was credited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charged {
    /// Not charged: the card was not credited (the hold is released).
    No,
    /// Unknown until the card is back: it may have been credited.
    Maybe,
    /// The card was credited; the bank debits the account.
    Yes,
}

/// Who failed, and how (each maps to one plain-language message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadProblem {
    /// The card was removed before anything was loaded.
    CardRemoved,
    /// The card answered something the client cannot read.
    CardUnreadable,
    /// The card refused with this status word.
    CardRefused(StatusWord),
    /// The card would exceed its maximum balance (9402).
    OverMaxBalance,
    CardExpired,
    WrongCurrency,
    /// After a lost CREDIT answer, another card was put in.
    OtherCard,
    /// The credit command is not for what the shopper approved.
    CreditChanged,
    /// The load server could not be reached.
    ServerUnreachable,
    /// The load server refused.
    ServerRefused(ApiCode),
    /// CREDIT went to the card and its answer was lost: the card may be
    /// loaded. Put the card back to find out.
    Torn,
    /// The card proved it was not loaded: the account is not charged.
    NotCredited,
    /// The card's proof does not decide yet (it was used elsewhere since):
    /// the bank keeps the amount on hold until it does.
    Undecided,
}

impl LoadProblem {
    /// Stable code for the bank page's `error` event.
    pub fn code(self) -> &'static str {
        match self {
            Self::CardRemoved => "card_removed",
            Self::CardUnreadable => "card_error",
            Self::CardRefused(_) => "card_refused",
            Self::OverMaxBalance => "over_max_balance",
            Self::CardExpired => "card_expired",
            Self::WrongCurrency => "wrong_currency",
            Self::OtherCard => "other_card",
            Self::CreditChanged => "amount_mismatch",
            Self::ServerUnreachable => "network",
            Self::ServerRefused(ApiCode::BadMac | ApiCode::Expired) => "bad_session",
            Self::ServerRefused(_) => "server",
            Self::Torn => "credit_unknown",
            Self::NotCredited => "not_credited",
            Self::Undecided => "credit_undecided",
        }
    }
}

/// Progress steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Reading,
    Preparing,
    Authorizing,
    Crediting,
    Confirming,
    Recovering,
}

/// What the receipt screen shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub txn_id: String,
    pub bank_name: String,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub balance_before: u32,
    pub balance_after: u32,
    /// Card number, masked.
    pub card: String,
    /// `YYYYMMDD HHMMSS` of the credit, when known.
    pub when: String,
}

/// What the Confirm screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfirmView {
    pub balance: u32,
    pub max_balance: u32,
    /// `balance + amount` (what the card will hold).
    pub balance_after: u64,
    /// The card will refuse (9402): say so before the shopper approves.
    pub over_max: bool,
}

/// Where the load stands, for the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status<'a> {
    WaitingForCard,
    Working(Step),
    Confirm(ConfirmView),
    Done {
        receipt: &'a Receipt,
        result: &'a BankResult,
    },
    Failed {
        problem: LoadProblem,
        retry: bool,
        charged: Charged,
        /// What the bank's page posts to the bank (a sealed decision, or the
        /// widget's word that nothing was loaded). `None` while undecided.
        result: Option<&'a BankResult>,
    },
    Cancelled(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Resume {
    Card,
    Draw(String),
    Complete(String),
    Recover,
}

#[derive(Debug, Clone)]
struct CardRead {
    select: SelectResponse,
    select_data: Vec<u8>,
    log: Vec<LogRecord>,
}

/// A drawn load: what CREDIT and recovery need.
#[derive(Debug, Clone)]
struct Drawn {
    card_id: CardId,
    atc: u16,
    balance_before: u32,
    cmd: CreditCommand,
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
    Confirm {
        card: CardRead,
    },
    Initializing {
        card: CardRead,
    },
    Drawing {
        card: CardRead,
        body: String,
        init: InitializeLoadResponse,
    },
    Crediting {
        card: CardRead,
        drawn: Drawn,
        _checked: CreditChecked,
    },
    Completing {
        card: CardRead,
        drawn: Drawn,
        body: String,
        balance_after: u32,
    },
    /// INITIALIZE FOR LOAD of amount 0: a fresh S1 over the card's balance
    /// and ATC (negative result, or recovery of a lost answer).
    ZeroInit {
        drawn: Drawn,
        card_answer: Option<Vec<u8>>,
        log: Vec<LogRecord>,
    },
    Recovering {
        drawn: Drawn,
        body: String,
    },
    Torn {
        drawn: Drawn,
    },
    Done {
        receipt: Receipt,
        result: BankResult,
    },
    Failed {
        problem: LoadProblem,
        resume: Option<Resume>,
        keep: Option<Box<State>>,
        charged: Charged,
        result: Option<BankResult>,
    },
    Cancelled(&'static str),
}

/// The load client for one load session.
pub struct LoadClient {
    bundle: LoadWidgetSession,
    tsk: Key32,
    page_origin: String,
    rng: Box<dyn Entropy>,
    state: State,
    pending: Option<Outgoing>,
    awaiting: bool,
    today: Option<BcdDate>,
    timeout_ms: u64,
    expire_at: Option<u64>,
}

/// Why a load bundle cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadBundleError {
    #[error("TSK must be 32 bytes")]
    Tsk,
    #[error("the session is for another bank origin")]
    Origin,
}

impl LoadClient {
    /// A client for the bank's `bundle`, embedded by a page whose origin the
    /// browser reported as `page_origin` (it must be the session's origin).
    pub fn new(
        bundle: LoadWidgetSession,
        page_origin: &str,
        rng: Box<dyn Entropy>,
        today: Option<BcdDate>,
    ) -> Result<Self, LoadBundleError> {
        let tsk = bundle.tsk().ok_or(LoadBundleError::Tsk)?;
        if bundle.session.origin.trim_end_matches('/') != page_origin.trim_end_matches('/') {
            return Err(LoadBundleError::Origin);
        }
        Ok(Self {
            bundle,
            tsk,
            page_origin: page_origin.trim_end_matches('/').to_string(),
            rng,
            state: State::Idle,
            pending: None,
            awaiting: false,
            today,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            expire_at: None,
        })
    }

    pub fn session(&self) -> &LoadSession {
        &self.bundle.session
    }

    /// The load's lifetime (ms); call before [`Self::start_clock`].
    pub fn set_timeout(&mut self, ms: u64) {
        self.timeout_ms = ms;
    }

    /// Start the clock at `now` (ms, the driver's monotonic time).
    pub fn start_clock(&mut self, now: u64) {
        self.expire_at = Some(now + self.timeout_ms);
    }

    /// The next deadline, if any (none once CREDIT is on its way).
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.is_finished() || self.past_point_of_no_return() {
            return None;
        }
        self.expire_at
    }

    /// Time moved to `now`: cancel the load when it expired (never once
    /// CREDIT is on its way).
    pub fn handle_timeout(&mut self, now: u64) {
        if self.is_finished() || self.past_point_of_no_return() {
            return;
        }
        if self.expire_at.is_some_and(|t| t <= now) {
            self.cancel_with("timeout");
        }
    }

    /// The next request to carry out (each is returned once).
    pub fn poll_request(&mut self) -> Option<Outgoing> {
        let p = self.pending.take();
        if p.is_some() {
            self.awaiting = true;
        }
        p
    }

    pub fn is_awaiting(&self) -> bool {
        self.awaiting
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done { .. } | State::Cancelled(_))
    }

    /// Once CREDIT is on its way the shopper can no longer cancel.
    pub fn past_point_of_no_return(&self) -> bool {
        match &self.state {
            State::Crediting { .. }
            | State::Completing { .. }
            | State::ZeroInit { .. }
            | State::Recovering { .. }
            | State::Torn { .. }
            | State::Done { .. } => true,
            State::Selecting { recovering } | State::ReadingLog { recovering, .. } => {
                recovering.is_some()
            }
            State::Failed { charged, .. } => *charged != Charged::No,
            _ => false,
        }
    }

    /// The card's SELECT answer, once read.
    pub fn card(&self) -> Option<&SelectResponse> {
        match &self.state {
            State::ReadingLog { card, .. }
            | State::Confirm { card }
            | State::Initializing { card }
            | State::Drawing { card, .. }
            | State::Crediting { card, .. }
            | State::Completing { card, .. } => Some(&card.select),
            _ => None,
        }
    }

    /// Where the load stands.
    pub fn status(&self) -> Status<'_> {
        match &self.state {
            State::Idle | State::Torn { .. } => Status::WaitingForCard,
            State::Selecting { recovering } | State::ReadingLog { recovering, .. } => {
                Status::Working(if recovering.is_some() {
                    Step::Recovering
                } else {
                    Step::Reading
                })
            }
            State::Confirm { card } => {
                let p = card.select.purse(self.bundle.session.purse);
                let after = p.balance as u64 + self.bundle.session.amount as u64;
                Status::Confirm(ConfirmView {
                    balance: p.balance,
                    max_balance: p.max_balance,
                    balance_after: after,
                    over_max: after > p.max_balance as u64,
                })
            }
            State::Initializing { .. } => Status::Working(Step::Preparing),
            State::Drawing { .. } => Status::Working(Step::Authorizing),
            State::Crediting { .. } => Status::Working(Step::Crediting),
            State::Completing { .. } => Status::Working(Step::Confirming),
            State::ZeroInit { .. } | State::Recovering { .. } => Status::Working(Step::Recovering),
            State::Done { receipt, result } => Status::Done { receipt, result },
            State::Failed {
                problem,
                resume,
                charged,
                result,
                ..
            } => Status::Failed {
                problem: *problem,
                retry: resume.is_some(),
                charged: *charged,
                result: result.as_ref(),
            },
            State::Cancelled(r) => Status::Cancelled(r),
        }
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

    /// The card is connected in a fresh selection: read it, or recover a
    /// lost CREDIT answer.
    pub fn card_ready(&mut self) {
        let recovering = match &self.state {
            State::Idle
            | State::Failed {
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
            _ => return,
        };
        self.state = State::Selecting { recovering };
        self.send_card(Request::Select(Select { aid: AID.to_vec() }));
    }

    /// The card went away while nothing was outstanding.
    pub fn card_removed(&mut self) {
        if self.awaiting {
            return;
        }
        if matches!(self.state, State::Confirm { .. }) {
            self.fail(LoadProblem::CardRemoved, Some(Resume::Card));
        }
    }

    /// The shopper approved the load.
    pub fn approve(&mut self) {
        if let State::Confirm { .. } = self.state {
            let State::Confirm { card } = std::mem::replace(&mut self.state, State::Idle) else {
                return;
            };
            let s = &self.bundle.session;
            let r = Request::InitializeLoad(InitializeLoad {
                purse: s.purse,
                amount: s.amount,
                terminal: s.terminal,
            });
            self.state = State::Initializing { card };
            self.send_card(r);
        }
    }

    /// Retry where the failure left off.
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
            charged,
            result,
        } = std::mem::replace(&mut self.state, State::Idle)
        else {
            return;
        };
        match (resume, keep.map(|k| *k)) {
            (Resume::Draw(body), Some(State::Drawing { card, init, .. })) => {
                self.state = State::Drawing {
                    card,
                    body: body.clone(),
                    init,
                };
                self.send_server(PATH_LOAD_DRAW, body);
            }
            (
                Resume::Complete(body),
                Some(State::Completing {
                    card,
                    drawn,
                    balance_after,
                    ..
                }),
            ) => {
                self.state = State::Completing {
                    card,
                    drawn,
                    body: body.clone(),
                    balance_after,
                };
                self.send_server(PATH_LOAD_COMPLETE, body);
            }
            (Resume::Recover, Some(State::Recovering { drawn, body })) => {
                self.state = State::Recovering {
                    drawn,
                    body: body.clone(),
                };
                self.send_server(PATH_LOAD_RECOVER, body);
            }
            (Resume::Card, _) => self.state = State::Idle,
            (Resume::Recover, Some(State::Torn { drawn })) => self.state = State::Torn { drawn },
            (resume, keep) => {
                self.state = State::Failed {
                    problem,
                    resume: Some(resume),
                    keep: keep.map(Box::new),
                    charged,
                    result,
                };
            }
        }
    }

    /// The shopper cancelled. Refused once CREDIT is on its way.
    pub fn cancel(&mut self) -> bool {
        if self.past_point_of_no_return() || self.is_finished() {
            return false;
        }
        self.cancel_with("user");
        true
    }

    /// What the bank's page posts to the bank now: the result of a finished
    /// load, or of a failure that decided (`None` while it may be credited).
    pub fn bank_result(&self) -> Option<BankResult> {
        match &self.state {
            State::Done { result, .. } => Some(result.clone()),
            State::Failed { result, .. } => result.clone(),
            State::Cancelled(reason) => Some(self.not_loaded(reason)),
            _ => None,
        }
    }

    /// Feed the answer to the outstanding request.
    pub fn handle(&mut self, reply: Reply) {
        if !self.awaiting {
            return;
        }
        self.awaiting = false;
        let state = std::mem::replace(&mut self.state, State::Idle);
        match reply {
            Reply::Card(bytes) => match Response::parse(&bytes) {
                Ok(r) => self.on_card(state, r),
                Err(_) => self.on_card_lost_or_garbled(state, LoadProblem::CardUnreadable),
            },
            Reply::CardLost => self.on_card_lost_or_garbled(state, LoadProblem::CardRemoved),
            Reply::Refused(r) => self.on_refused(state, r),
            Reply::Server(status, body) => self.on_server(state, Ok((status, body))),
            Reply::ServerUnreachable => self.on_server(state, Err(())),
        }
    }

    // ---- internals -------------------------------------------------------

    fn not_loaded(&self, reason: &str) -> BankResult {
        BankResult::NotLoaded {
            txn_id: self.bundle.session.txn_id.clone(),
            reason: reason.to_string(),
        }
    }

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

    /// A failure before any CREDIT went out: nothing can have been loaded.
    fn fail(&mut self, problem: LoadProblem, resume: Option<Resume>) {
        let result = Some(self.not_loaded(problem.code()));
        self.fail_with(problem, resume, None, Charged::No, result);
    }

    fn fail_with(
        &mut self,
        problem: LoadProblem,
        resume: Option<Resume>,
        keep: Option<State>,
        charged: Charged,
        result: Option<BankResult>,
    ) {
        self.pending = None;
        self.state = State::Failed {
            problem,
            resume,
            keep: keep.map(Box::new),
            charged,
            result,
        };
    }

    fn cancel_with(&mut self, reason: &'static str) {
        self.pending = None;
        self.awaiting = false;
        self.state = State::Cancelled(reason);
    }

    fn torn(&mut self, drawn: Drawn) {
        self.fail_with(
            LoadProblem::Torn,
            Some(Resume::Recover),
            Some(State::Torn { drawn }),
            Charged::Maybe,
            None,
        );
    }

    fn on_card_lost_or_garbled(&mut self, state: State, problem: LoadProblem) {
        match state {
            // CREDIT went out: whatever came back, the card may be credited.
            State::Crediting { drawn, .. }
            | State::ZeroInit { drawn, .. }
            | State::Selecting {
                recovering: Some(drawn),
            }
            | State::ReadingLog {
                recovering: Some(drawn),
                ..
            } => self.torn(drawn),
            _ => self.fail(problem, Some(Resume::Card)),
        }
    }

    fn on_refused(&mut self, state: State, _r: Refusal) {
        match state {
            // The bridge did not send CREDIT: nothing reached the card, but the
            // load stays drawn; the card's proof settles it.
            State::Crediting { drawn, .. }
            | State::ZeroInit { drawn, .. }
            | State::Selecting {
                recovering: Some(drawn),
            }
            | State::ReadingLog {
                recovering: Some(drawn),
                ..
            } => self.torn(drawn),
            _ => self.fail(LoadProblem::CardUnreadable, Some(Resume::Card)),
        }
    }

    fn read_log(&mut self, card: CardRead, recovering: Option<Drawn>) {
        let n = card.log.len() + 1;
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
            Some(drawn) => self.zero_init(drawn, None, card.log),
        }
    }

    /// The seed's negative-result handling: a zero-value INITIALIZE FOR LOAD.
    fn zero_init(&mut self, drawn: Drawn, card_answer: Option<Vec<u8>>, log: Vec<LogRecord>) {
        let s = &self.bundle.session;
        let r = Request::InitializeLoad(InitializeLoad {
            purse: s.purse,
            amount: 0,
            terminal: s.terminal,
        });
        self.state = State::ZeroInit {
            drawn,
            card_answer,
            log,
        };
        self.send_card(r);
    }

    fn recover(
        &mut self,
        drawn: Drawn,
        card_answer: Option<Vec<u8>>,
        zero: Option<Vec<u8>>,
        log: Vec<LogRecord>,
    ) {
        let req = LoadRecoverRequest {
            txn_id: self.bundle.session.txn_id.clone(),
            card_answer: card_answer.map(Hex),
            zero_initialize: zero.map(Hex),
            log: log.iter().map(|r| Hex(r.encode())).collect(),
        };
        let sealed = self.seal(&req);
        let body = json(&LoadRecoverEnvelope {
            session: self.bundle.session.clone(),
            session_mac: self.bundle.session_mac.clone(),
            etsk: self.bundle.etsk.clone(),
            recover_request: sealed,
        });
        self.state = State::Recovering {
            drawn,
            body: body.clone(),
        };
        self.send_server(PATH_LOAD_RECOVER, body);
    }

    fn draw(&mut self, card: CardRead, init: InitializeLoadResponse) {
        let s = &self.bundle.session;
        let req = LoadDrawRequest {
            txn_id: s.txn_id.clone(),
            page_origin: self.page_origin.clone(),
            amount: s.amount,
            purse: s.purse,
            select: Hex(card.select_data.clone()),
            initialize: Hex(init.encode()),
            log: card.log.iter().map(|r| Hex(r.encode())).collect(),
        };
        let sealed = self.seal(&req);
        let body = json(&LoadEnvelope {
            session: self.bundle.session.clone(),
            session_mac: self.bundle.session_mac.clone(),
            etsk: self.bundle.etsk.clone(),
            load_request: sealed,
        });
        self.state = State::Drawing {
            card,
            body: body.clone(),
            init,
        };
        self.send_server(PATH_LOAD_DRAW, body);
    }

    fn complete_body(&mut self, rapdu: Vec<u8>) -> String {
        let msg = CreditResponseMsg {
            txn_id: self.bundle.session.txn_id.clone(),
            response: Hex(rapdu),
        };
        let sealed = self.seal(&msg);
        json(&LoadCompleteEnvelope {
            session: self.bundle.session.clone(),
            session_mac: self.bundle.session_mac.clone(),
            etsk: self.bundle.etsk.clone(),
            credit_response: sealed,
        })
    }

    fn card_problem(sw: StatusWord) -> LoadProblem {
        match sw {
            StatusWord::OVER_MAX_BALANCE => LoadProblem::OverMaxBalance,
            StatusWord::EXPIRED => LoadProblem::CardExpired,
            sw => LoadProblem::CardRefused(sw),
        }
    }

    fn on_card(&mut self, state: State, r: Response) {
        let s = self.bundle.session.clone();
        match state {
            State::Selecting { recovering } => {
                let sel = match (r.sw.is_ok(), SelectResponse::decode(&r.data)) {
                    (true, Ok(sel)) => sel,
                    _ => {
                        return self.on_card_lost_or_garbled(
                            State::Selecting { recovering },
                            LoadProblem::CardUnreadable,
                        )
                    }
                };
                match &recovering {
                    None => {
                        if self.today.is_some_and(|d| sel.expiry.is_expired_on(&d)) {
                            return self.fail(LoadProblem::CardExpired, None);
                        }
                        let p = sel.purse(s.purse);
                        if p.currency != s.currency || p.exponent != s.exponent {
                            return self.fail(LoadProblem::WrongCurrency, None);
                        }
                    }
                    Some(d) if d.card_id != sel.card_id => {
                        let drawn = d.clone();
                        return self.fail_with(
                            LoadProblem::OtherCard,
                            Some(Resume::Recover),
                            Some(State::Torn { drawn }),
                            Charged::Maybe,
                            None,
                        );
                    }
                    Some(_) => {}
                }
                let card = CardRead {
                    select: sel,
                    select_data: r.data,
                    log: Vec::new(),
                };
                self.read_log(card, recovering);
            }
            State::ReadingLog {
                mut card,
                recovering,
            } => {
                if r.sw.is_ok() {
                    match LogRecord::decode(&r.data) {
                        Ok(rec) => card.log.push(rec),
                        Err(_) => return self.log_read(card, recovering),
                    }
                    return self.read_log(card, recovering);
                }
                self.log_read(card, recovering)
            }
            State::Initializing { card } => {
                if !r.sw.is_ok() {
                    return self.fail(Self::card_problem(r.sw), None);
                }
                match InitializeLoadResponse::decode(&r.data) {
                    Ok(init) => self.draw(card, init),
                    Err(_) => self.fail(LoadProblem::CardUnreadable, Some(Resume::Card)),
                }
            }
            State::Crediting { card, drawn, .. } => {
                let rapdu = r.to_bytes();
                let loaded =
                    r.sw.is_ok()
                        .then(|| CreditResponse::decode(&r.data).ok())
                        .flatten()
                        .filter(|c| c.result == CreditResponse::LOADED);
                match loaded {
                    Some(c) => {
                        let body = self.complete_body(rapdu);
                        self.state = State::Completing {
                            card,
                            drawn,
                            body: body.clone(),
                            balance_after: c.balance_after,
                        };
                        self.send_server(PATH_LOAD_COMPLETE, body);
                    }
                    // A negative result: the card's word alone proves nothing;
                    // a zero-value INITIALIZE in this same selection does.
                    None => self.zero_init(drawn, Some(rapdu), card.log),
                }
            }
            State::ZeroInit {
                drawn,
                card_answer,
                log,
            } => {
                let zero =
                    r.sw.is_ok()
                        .then(|| InitializeLoadResponse::decode(&r.data).ok())
                        .flatten()
                        .map(|i| i.encode());
                self.recover(drawn, card_answer, zero, log);
            }
            other => self.state = other,
        }
    }

    fn server_error(status: u16, body: &str) -> LoadProblem {
        let code = serde_json::from_str::<ErrorBody>(body)
            .map(|b| b.error.code)
            .unwrap_or(ApiCode::Other);
        match code {
            ApiCode::CardExpired => LoadProblem::CardExpired,
            ApiCode::OverMaxBalance => LoadProblem::OverMaxBalance,
            ApiCode::Other if status >= 500 => LoadProblem::ServerUnreachable,
            c => LoadProblem::ServerRefused(c),
        }
    }

    fn on_server(&mut self, state: State, answer: Result<(u16, String), ()>) {
        let transient = match &answer {
            Err(()) => true,
            Ok((status, _)) => *status >= 500,
        };
        match state {
            State::Drawing { card, body, init } => {
                if transient {
                    // The server may have drawn; the card was not credited
                    // (no CREDIT went out). The same request again gets the
                    // same answer.
                    let result = Some(self.not_loaded("network"));
                    return self.fail_with(
                        LoadProblem::ServerUnreachable,
                        Some(Resume::Draw(body.clone())),
                        Some(State::Drawing { card, body, init }),
                        Charged::No,
                        result,
                    );
                }
                let (status, text) = answer.expect("not transient");
                if status != 200 {
                    return self.fail(Self::server_error(status, &text), None);
                }
                let Ok(answer) = serde_json::from_str::<LoadDrawResponse>(&text) else {
                    return self.fail(LoadProblem::ServerRefused(ApiCode::Other), None);
                };
                let Ok(cmd) = CreditCommand::open(
                    &self.tsk,
                    &self.bundle.session.txn_id,
                    answer.credit_command.as_slice(),
                ) else {
                    return self.fail(LoadProblem::ServerRefused(ApiCode::BadSeal), None);
                };
                let Ok(checked) = cmd.check(&self.bundle.session) else {
                    return self.fail(LoadProblem::CreditChanged, None);
                };
                let apdu = checked.apdu().to_vec();
                self.state = State::Crediting {
                    drawn: Drawn {
                        card_id: card.select.card_id,
                        atc: init.atc,
                        balance_before: init.balance,
                        cmd,
                    },
                    card,
                    _checked: checked,
                };
                self.pending = Some(Outgoing::Card(apdu));
            }
            State::Completing {
                card,
                drawn,
                body,
                balance_after,
            } => {
                if transient {
                    // The card answered 9000 and result 00: it is credited;
                    // the server has yet to verify its S3.
                    return self.fail_with(
                        LoadProblem::ServerUnreachable,
                        Some(Resume::Complete(body.clone())),
                        Some(State::Completing {
                            card,
                            drawn,
                            body,
                            balance_after,
                        }),
                        Charged::Yes,
                        None,
                    );
                }
                let (status, text) = answer.expect("not transient");
                let done = (status == 200)
                    .then(|| serde_json::from_str::<LoadCompleteResponse>(&text).ok())
                    .flatten();
                match done {
                    Some(c) => {
                        self.finish(Some(&card.select), &drawn, c.status, c.result_c, c.result_b)
                    }
                    // A refusal here (an S3 that does not verify): the card's
                    // proof decides through recovery.
                    None => {
                        let problem = Self::server_error(status, &text);
                        self.fail_with(
                            problem,
                            Some(Resume::Recover),
                            Some(State::Torn { drawn }),
                            Charged::Maybe,
                            None,
                        )
                    }
                }
            }
            State::Recovering { drawn, body } => {
                if transient {
                    return self.fail_with(
                        LoadProblem::ServerUnreachable,
                        Some(Resume::Recover),
                        Some(State::Recovering { drawn, body }),
                        Charged::Maybe,
                        None,
                    );
                }
                let (status, text) = answer.expect("not transient");
                let decided = (status == 200)
                    .then(|| serde_json::from_str::<LoadRecoverResponse>(&text).ok())
                    .flatten();
                match decided {
                    Some(LoadRecoverResponse {
                        status: s,
                        result_c: Some(c),
                        result_b: Some(b),
                        ..
                    }) if s != LoadRecoverStatus::Unknown => {
                        let st = if s == LoadRecoverStatus::Credited {
                            LoadStatus::Credited
                        } else {
                            LoadStatus::NotCredited
                        };
                        self.finish(None, &drawn, st, c, b)
                    }
                    Some(_) => self.fail_with(
                        LoadProblem::Undecided,
                        Some(Resume::Recover),
                        Some(State::Torn { drawn }),
                        Charged::Maybe,
                        None,
                    ),
                    None => self.fail_with(
                        Self::server_error(status, &text),
                        Some(Resume::Recover),
                        Some(State::Torn { drawn }),
                        Charged::Maybe,
                        None,
                    ),
                }
            }
            other => self.state = other,
        }
    }

    fn finish(
        &mut self,
        card: Option<&SelectResponse>,
        drawn: &Drawn,
        status: LoadStatus,
        result_c: Hex,
        result_b: Hex,
    ) {
        let s = &self.bundle.session;
        let txn = s.txn_id.clone();
        let result = BankResult::ResultB {
            txn_id: txn.clone(),
            result_b,
        };
        if status == LoadStatus::NotCredited {
            return self.fail_with(
                LoadProblem::NotCredited,
                None,
                None,
                Charged::No,
                Some(result),
            );
        }
        let c = LoadResultC::open(&self.tsk, &txn, result_c.as_slice()).ok();
        let receipt = Receipt {
            txn_id: txn,
            bank_name: s.bank_name.clone(),
            amount: s.amount,
            currency: s.currency,
            exponent: s.exponent,
            balance_before: drawn.balance_before,
            balance_after: c
                .as_ref()
                .and_then(|c| c.balance_after)
                .unwrap_or(drawn.cmd.balance_after),
            card: card
                .map(|c| c.card_id.masked())
                .unwrap_or_else(|| drawn.card_id.masked()),
            when: c
                .as_ref()
                .map(|c| format!("{} {}", c.date, c.time))
                .unwrap_or_default(),
        };
        self.state = State::Done { receipt, result };
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("messages serialize")
}
