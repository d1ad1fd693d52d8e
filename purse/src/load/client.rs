//! The client half of a load, as a sans-IO state machine, with the driver
//! types and the steps it shares with the purchase client
//! ([`crate::client`]): the widget drives both with one loop. No bridge,
//! DOM, sockets or clock here.
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
use crate::bridge_msg::Limit;
use crate::client::{
    log_hex, Answer, CardRead, CardReader, Core, Envelope, Expect, ReadStep, ReadStop,
};
use crate::command::{
    CreditResponse, InitializeLoad, InitializeLoadResponse, LogRecord, Request, SelectResponse,
};
use crate::prelude::*;
use crate::types::CardId;
use crate::wire::{ApiCode, Hex};
use zeroize::Zeroizing;

pub use crate::client::{
    Cipher, Crypto, Driven, Entropy, Outgoing, Refusal, Reply, DEFAULT_TIMEOUT_MS,
};

/// Why a load bundle cannot be used (the purchase client's reasons).
pub type LoadBundleError = crate::client::BundleError;

use super::draw::CreditChecked;
use super::{
    BankResult, CreditCommand, CreditResponseMsg, LoadCompleteResponse, LoadDrawRequest,
    LoadDrawResponse, LoadRecoverRequest, LoadRecoverResponse, LoadRecoverStatus, LoadResultC,
    LoadSession, LoadStatus, LoadWidgetSession, PATH_LOAD_COMPLETE, PATH_LOAD_DRAW,
    PATH_LOAD_RECOVER,
};

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

impl Charged {
    /// `no` | `maybe` | `yes`, as the bank's page hears it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::No => "no",
            Self::Maybe => "maybe",
            Self::Yes => "yes",
        }
    }
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
    /// A limit of the bridge refused a command (nothing reached the card).
    RateLimited {
        limit: Limit,
        retry_after_ms: u64,
    },
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
            Self::RateLimited { .. } => "rate_limited",
            Self::ServerUnreachable => "network",
            Self::ServerRefused(ApiCode::BadMac | ApiCode::Expired) => "bad_session",
            Self::ServerRefused(_) => "server",
            Self::Torn => "credit_unknown",
            Self::NotCredited => "not_credited",
            Self::Undecided => "credit_undecided",
        }
    }

    fn of_card(sw: StatusWord) -> Self {
        match sw {
            StatusWord::OVER_MAX_BALANCE => Self::OverMaxBalance,
            StatusWord::EXPIRED => Self::CardExpired,
            sw => Self::CardRefused(sw),
        }
    }

    fn of_server(code: ApiCode) -> Self {
        match code {
            ApiCode::CardExpired => Self::CardExpired,
            ApiCode::OverMaxBalance => Self::OverMaxBalance,
            c => Self::ServerRefused(c),
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

/// A drawn load: what CREDIT and recovery need.
#[derive(Debug, Clone)]
pub(crate) struct Drawn {
    card_id: CardId,
    atc: u16,
    balance_before: u32,
    cmd: CreditCommand,
}

#[derive(Debug, Clone)]
pub(crate) enum State {
    Idle,
    /// SELECT and READ LOG (for a new load, or to recover `recovering`).
    Reading {
        reader: CardReader,
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
        body: Envelope,
        init: InitializeLoadResponse,
    },
    /// The credit command came; the driver opens it.
    OpeningCredit {
        card: CardRead,
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
        body: Envelope,
        balance_after: u32,
    },
    /// Credited (said the server): the driver opens the result for the receipt.
    OpeningResult {
        card: Option<SelectResponse>,
        drawn: Drawn,
        result: BankResult,
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
        body: Envelope,
    },
    Torn {
        drawn: Drawn,
    },
    Done {
        receipt: Receipt,
        result: BankResult,
    },
    /// `resume`: the state a retry goes back to (its request is sent again).
    Failed {
        problem: LoadProblem,
        resume: Option<Box<State>>,
        charged: Charged,
        result: Option<BankResult>,
    },
    Cancelled(&'static str),
}

/// The load client for one load session.
pub struct LoadClient {
    core: Core,
    session: LoadSession,
    state: State,
}

impl LoadClient {
    crate::client::client_new!(LoadWidgetSession, LoadSession, false);

    crate::client::driver_methods!();

    crate::client::past_point_of_no_return!(
        [Crediting, Completing, OpeningResult, ZeroInit, Recovering, Torn, Done],
        State::Failed { charged, .. } => *charged != Charged::No
    );

    crate::client::card_accessor!(
        Confirm,
        Initializing,
        Drawing,
        OpeningCredit,
        Crediting,
        Completing
    );

    /// Where the load stands.
    pub fn status(&self) -> Status<'_> {
        match &self.state {
            State::Idle | State::Torn { .. } => Status::WaitingForCard,
            State::Reading { recovering, .. } => Status::Working(if recovering.is_some() {
                Step::Recovering
            } else {
                Step::Reading
            }),
            State::Confirm { card } => {
                let p = card.select.purse(self.session.purse);
                let after = p.balance as u64 + self.session.amount as u64;
                Status::Confirm(ConfirmView {
                    balance: p.balance,
                    max_balance: p.max_balance,
                    balance_after: after,
                    over_max: after > p.max_balance as u64,
                })
            }
            State::Initializing { .. } => Status::Working(Step::Preparing),
            State::Drawing { .. } | State::OpeningCredit { .. } => {
                Status::Working(Step::Authorizing)
            }
            State::Crediting { .. } => Status::Working(Step::Crediting),
            State::Completing { .. } | State::OpeningResult { .. } => {
                Status::Working(Step::Confirming)
            }
            State::ZeroInit { .. } | State::Recovering { .. } => Status::Working(Step::Recovering),
            State::Done { receipt, result } => Status::Done { receipt, result },
            State::Failed {
                problem,
                resume,
                charged,
                result,
            } => Status::Failed {
                problem: *problem,
                retry: resume.is_some(),
                charged: *charged,
                result: result.as_ref(),
            },
            State::Cancelled(r) => Status::Cancelled(r),
        }
    }

    /// The card is connected in a fresh selection: read it, or recover a
    /// lost CREDIT answer.
    pub fn card_ready(&mut self) {
        let (reader, recovering) = match self.waiting() {
            State::Idle => {
                let s = &self.session;
                (self.core.read_fresh(s.purse, s.currency, s.exponent), None)
            }
            State::Torn { drawn } => {
                let drawn = drawn.clone();
                let again = Expect::Recovering {
                    atc: drawn.atc,
                    card_id: Some(drawn.card_id),
                };
                (self.core.read(again), Some(drawn))
            }
            _ => return,
        };
        self.state = State::Reading { reader, recovering };
    }

    /// The card went away while nothing was outstanding.
    pub fn card_removed(&mut self) {
        if !self.core.wire.is_awaiting() && matches!(self.state, State::Confirm { .. }) {
            self.fail(LoadProblem::CardRemoved, Some(State::Idle));
        }
    }

    /// The shopper approved the amount: INITIALIZE FOR LOAD. (`now`, the
    /// driver's clock, as [`crate::client::Driven::approve`] takes it: a load
    /// sends nothing before the click, so it has no press to be timed against.)
    pub fn approve(&mut self, _now: u64) {
        if !matches!(self.state, State::Confirm { .. }) {
            return;
        }
        if let State::Confirm { card } = core::mem::replace(&mut self.state, State::Idle) {
            self.initialize(card);
        }
    }

    /// Retry where the failure left off.
    pub fn retry(&mut self) {
        let Some(next) = self.take_resume() else {
            return;
        };
        let again = match next.as_ref() {
            State::Drawing { body, .. } => Some((PATH_LOAD_DRAW, body)),
            State::Completing { body, .. } => Some((PATH_LOAD_COMPLETE, body)),
            State::Recovering { body, .. } => Some((PATH_LOAD_RECOVER, body)),
            _ => None,
        };
        if let Some((path, body)) = again {
            self.core.wire.post(path, body);
        }
        self.state = *next;
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

    // ---- internals -------------------------------------------------------

    fn not_loaded(&self, reason: &str) -> BankResult {
        BankResult::NotLoaded {
            txn_id: self.session.txn_id.clone(),
            reason: reason.to_string(),
        }
    }

    /// A failure before any CREDIT went out: nothing can have been loaded.
    fn fail(&mut self, problem: LoadProblem, resume: Option<State>) {
        let result = Some(self.not_loaded(problem.code()));
        self.fail_with(problem, resume, Charged::No, result);
    }

    /// A failure once CREDIT may have gone out: the card's proof decides.
    fn fail_maybe(&mut self, problem: LoadProblem, resume: State) {
        self.fail_with(problem, Some(resume), Charged::Maybe, None);
    }

    fn fail_with(
        &mut self,
        problem: LoadProblem,
        resume: Option<State>,
        charged: Charged,
        result: Option<BankResult>,
    ) {
        self.core.wire.drop_pending();
        self.state = State::Failed {
            problem,
            resume: resume.map(Box::new),
            charged,
            result,
        };
    }

    fn torn(&mut self, drawn: Drawn) {
        self.fail_maybe(LoadProblem::Torn, State::Torn { drawn });
    }

    fn initialize(&mut self, card: CardRead) {
        let s = &self.session;
        let r = Request::InitializeLoad(InitializeLoad {
            purse: s.purse,
            amount: s.amount,
            terminal: s.terminal,
        });
        self.state = State::Initializing { card };
        self.core.wire.card(&r);
    }

    /// The seed's negative-result handling: a zero-value INITIALIZE FOR LOAD.
    fn zero_init(&mut self, drawn: Drawn, card_answer: Option<Vec<u8>>, log: Vec<LogRecord>) {
        let s = &self.session;
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
        self.core.wire.card(&r);
    }

    fn recover(
        &mut self,
        drawn: Drawn,
        card_answer: Option<Vec<u8>>,
        zero: Option<Vec<u8>>,
        log: Vec<LogRecord>,
    ) {
        let req = LoadRecoverRequest {
            txn_id: self.session.txn_id.clone(),
            card_answer: card_answer.map(Hex),
            zero_initialize: zero.map(Hex),
            log: log_hex(&log),
        };
        let body = self.core.sealer.envelope("recover_request", &req);
        self.core.wire.post(PATH_LOAD_RECOVER, &body);
        self.state = State::Recovering { drawn, body };
    }

    fn draw(&mut self, card: CardRead, init: InitializeLoadResponse) {
        let s = &self.session;
        let e = self
            .core
            .evidence(&card, &s.txn_id, s.amount, s.purse, init.encode());
        let req = LoadDrawRequest::from(e);
        let body = self.core.sealer.envelope("load_request", &req);
        self.core.wire.post(PATH_LOAD_DRAW, &body);
        self.state = State::Drawing { card, body, init };
    }

    /// CREDIT's answer.
    fn credited(&mut self, card: CardRead, drawn: Drawn, r: Response) {
        let rapdu = r.to_bytes();
        let loaded =
            r.sw.is_ok()
                .then(|| CreditResponse::decode(&r.data).ok())
                .flatten()
                .filter(|c| c.result == CreditResponse::LOADED);
        let Some(c) = loaded else {
            // A negative result: the card's word alone proves nothing;
            // a zero-value INITIALIZE in this same selection does.
            return self.zero_init(drawn, Some(rapdu), card.log);
        };
        let msg = CreditResponseMsg {
            txn_id: self.session.txn_id.clone(),
            response: Hex(rapdu),
        };
        let body = self.core.sealer.envelope("credit_response", &msg);
        self.core.wire.post(PATH_LOAD_COMPLETE, &body);
        self.state = State::Completing {
            card,
            drawn,
            body,
            balance_after: c.balance_after,
        };
    }

    /// The credit command came: the driver opens it.
    fn open_credit(
        &mut self,
        card: CardRead,
        init: InitializeLoadResponse,
        answer: LoadDrawResponse,
    ) {
        let job = self
            .core
            .sealer
            .open::<CreditCommand>(&answer.credit_command);
        self.core.wire.crypto(job);
        self.state = State::OpeningCredit { card, init };
    }

    /// The credit command opened: check it, then CREDIT.
    fn credit(
        &mut self,
        card: CardRead,
        init: InitializeLoadResponse,
        plain: Option<Zeroizing<Vec<u8>>>,
    ) {
        let Some(cmd) = self.core.sealer.read::<CreditCommand>(plain) else {
            return self.fail(LoadProblem::ServerRefused(ApiCode::BadSeal), None);
        };
        let Ok(checked) = cmd.check(&self.session) else {
            return self.fail(LoadProblem::CreditChanged, None);
        };
        self.core.wire.apdu(checked.apdu().to_vec());
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
    }

    /// The server decided: not credited, or credited (the driver opens the
    /// result for the receipt).
    fn finish_with(
        &mut self,
        card: Option<&SelectResponse>,
        drawn: Drawn,
        status: LoadStatus,
        result_c: Hex,
        result_b: Hex,
    ) {
        let result = BankResult::ResultB {
            txn_id: self.session.txn_id.clone(),
            result_b,
        };
        if status == LoadStatus::NotCredited {
            return self.fail_with(LoadProblem::NotCredited, None, Charged::No, Some(result));
        }
        let job = self.core.sealer.open::<LoadResultC>(&result_c);
        self.core.wire.crypto(job);
        self.state = State::OpeningResult {
            card: card.cloned(),
            drawn,
            result,
        };
    }

    /// Done, with what the result says for the receipt (the credit command's
    /// balance and no date when it does not open).
    fn finish(
        &mut self,
        card: Option<&SelectResponse>,
        drawn: &Drawn,
        result: BankResult,
        plain: Option<Zeroizing<Vec<u8>>>,
    ) {
        let c = self.core.sealer.read::<LoadResultC>(plain);
        let s = &self.session;
        let receipt = Receipt {
            txn_id: s.txn_id.clone(),
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
                .map(|c| crate::client::stamp(&c.date, &c.time))
                .unwrap_or_default(),
        };
        self.state = State::Done { receipt, result };
    }
}

impl crate::client::Machine for LoadClient {
    crate::client::machine_plumbing!(LoadProblem);

    /// The card's answer did not come back, came back unreadable, or the
    /// bridge did not send the command.
    fn card_gone(&mut self, state: State, problem: LoadProblem) {
        match state {
            // CREDIT went out (or was meant to): the card's proof settles it.
            State::Crediting { drawn, .. }
            | State::ZeroInit { drawn, .. }
            | State::Reading {
                recovering: Some(drawn),
                ..
            } => self.torn(drawn),
            _ => self.fail(problem, Some(State::Idle)),
        }
    }

    fn on_refused(&mut self, state: State, r: Refusal) {
        let problem = match r {
            Refusal::RateLimited {
                retry_after_ms,
                limit,
            } => LoadProblem::RateLimited {
                limit,
                retry_after_ms,
            },
            _ => LoadProblem::CardUnreadable,
        };
        self.card_gone(state, problem)
    }

    fn on_card(&mut self, state: State, r: Response) {
        match state {
            State::Reading { reader, recovering } => {
                let (stop, drawn) = match (reader.step(r, &mut self.core.wire), recovering) {
                    (ReadStep::Reading(reader), recovering) => {
                        self.state = State::Reading { reader, recovering };
                        return;
                    }
                    (ReadStep::Done(card), None) => {
                        self.state = State::Confirm { card };
                        return;
                    }
                    (ReadStep::Done(card), Some(drawn)) => {
                        return self.zero_init(drawn, None, card.log)
                    }
                    (ReadStep::Stopped(stop), drawn) => (stop, drawn),
                };
                match (stop, drawn) {
                    (ReadStop::OtherCard, Some(drawn)) => {
                        self.fail_maybe(LoadProblem::OtherCard, State::Torn { drawn })
                    }
                    (_, Some(drawn)) => self.torn(drawn),
                    (ReadStop::Expired, None) => self.fail(LoadProblem::CardExpired, None),
                    (ReadStop::WrongCurrency, None) => self.fail(LoadProblem::WrongCurrency, None),
                    (_, None) => self.fail(LoadProblem::CardUnreadable, Some(State::Idle)),
                }
            }
            State::Initializing { card } => {
                if !r.sw.is_ok() {
                    return self.fail(LoadProblem::of_card(r.sw), None);
                }
                match InitializeLoadResponse::decode(&r.data) {
                    Ok(init) => self.draw(card, init),
                    Err(_) => self.fail(LoadProblem::CardUnreadable, Some(State::Idle)),
                }
            }
            State::Crediting { card, drawn, .. } => self.credited(card, drawn, r),
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

    fn on_server(&mut self, state: State, answer: Answer) {
        let transient = answer == Answer::Transient;
        match state {
            // The server may have drawn; the card was not credited (no
            // CREDIT went out). The same request again gets the same answer.
            State::Drawing { card, body, init } if transient => {
                let result = Some(self.not_loaded("network"));
                let back = State::Drawing { card, body, init };
                self.fail_with(
                    LoadProblem::ServerUnreachable,
                    Some(back),
                    Charged::No,
                    result,
                );
            }
            State::Drawing { card, init, .. } => match answer.parse::<LoadDrawResponse>() {
                Ok(a) => self.open_credit(card, init, a),
                Err(code) => self.fail(LoadProblem::of_server(code), None),
            },
            // The card answered 9000 and result 00: it is credited; the
            // server has yet to verify its S3.
            State::Completing {
                card,
                drawn,
                body,
                balance_after,
            } if transient => {
                let back = State::Completing {
                    card,
                    drawn,
                    body,
                    balance_after,
                };
                self.fail_with(
                    LoadProblem::ServerUnreachable,
                    Some(back),
                    Charged::Yes,
                    None,
                );
            }
            State::Completing { card, drawn, .. } => match answer.parse::<LoadCompleteResponse>() {
                Ok(c) => {
                    self.finish_with(Some(&card.select), drawn, c.status, c.result_c, c.result_b)
                }
                // A refusal here (an S3 that does not verify): the card's
                // proof decides through recovery.
                Err(code) => self.fail_maybe(LoadProblem::of_server(code), State::Torn { drawn }),
            },
            State::Recovering { drawn, body } if transient => self.fail_maybe(
                LoadProblem::ServerUnreachable,
                State::Recovering { drawn, body },
            ),
            State::Recovering { drawn, .. } => match answer.parse::<LoadRecoverResponse>() {
                Ok(LoadRecoverResponse {
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
                    self.finish_with(None, drawn, st, c, b)
                }
                Ok(_) => self.fail_maybe(LoadProblem::Undecided, State::Torn { drawn }),
                Err(code) => self.fail_maybe(LoadProblem::of_server(code), State::Torn { drawn }),
            },
            other => self.state = other,
        }
    }

    fn on_opened(&mut self, state: State, plain: Option<Zeroizing<Vec<u8>>>) {
        match state {
            State::OpeningCredit { card, init } => self.credit(card, init, plain),
            State::OpeningResult {
                card,
                drawn,
                result,
            } => self.finish(card.as_ref(), &drawn, result, plain),
            other => self.state = other,
        }
    }
}

crate::client::driven!(LoadClient);
