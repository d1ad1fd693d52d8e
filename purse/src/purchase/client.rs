//! The client half of the purchase, as a sans-IO state machine: the card
//! dialogue and the payment-server calls, with no bridge, DOM, sockets or
//! clock. The widget wraps it with capability detection and a view; the test
//! kit drives it against the real virtual card and the real payment server;
//! the benches use it too. What it shares with the load client (request
//! plumbing, deadlines, sealing and envelopes, the card read) is
//! [`crate::client`].
//!
//! ```text
//! card_ready → SELECT → READ LOG 1.. → [Confirm] → (gesture) INITIALIZE FOR LOAD 0
//!   [→ (press) INITIALIZE] → approve → INITIALIZE (unless the press's is in)
//!   → (6982: [NeedPin] → VERIFY → INITIALIZE) → POST draw → check amount
//!   → DEBIT → POST complete → [Done]            (payment_server, security_module)
//!   → DEBIT → [Done] (+ complete in the background)   (client, merchant)
//! DEBIT's answer lost → [Torn] → card_ready → SELECT → READ LOG … → (INITIALIZE FOR LOAD 0)
//!   → POST recover → [Done] / [Failed]
//! ```
//!
//! The INITIALIZE FOR LOAD of amount 0 is the card proving itself: its S1 (a
//! MAC under the card's load key) shows the server that the card named in
//! SELECT is present and what its ATC is. INITIALIZE FOR PURCHASE carries no
//! MAC, so without it anyone who knows a card's number could draw in its name
//! (take its next ATCs, or decide its torn purchases from a log they made up).
//! It is sent at the shopper's first gesture while the amount is shown
//! ([`Client::press`]: the press on Approve; [`Client::gesture`]: a key), so
//! Approve waits for one card round trip less, and never before one: a page
//! that only shows checkouts spends none of the card's ATCs nor of the
//! bridge's INITIALIZE budget. It only has to come right before the
//! INITIALIZE FOR PURCHASE in the card's ATCs, not in time: if the card was
//! used meanwhile (another terminal, another tab), the INITIALIZE's ATC shows
//! it, and the card proves itself again first. At a press on Approve the
//! INITIALIZE FOR PURCHASE follows the proof at once (it moves no money: only
//! the draw, which the click sends, does), so the click goes straight to the
//! draw; a click more than [`PRESS_TO_CLICK_MS`] after its press proves and
//! initializes again. The cost: a checkout the shopper typed in but never
//! approved spends one ATC and one token of that budget; one pressed on
//! Approve but never clicked, two of each.
//!
//! Drive it with [`Client::poll_request`] (at most one request outstanding:
//! an APDU for the card or a POST to the payment origin) and
//! [`Client::handle`] with its [`Reply`]; shopper actions are methods; time is
//! an input ([`Client::poll_timeout`], [`Client::handle_timeout`]).

use crate::prelude::*;
use zeroize::Zeroizing;

use crate::apdu::{Response, StatusWord};
use crate::bridge_msg::Limit;
use crate::client::{Answer, CardRead, CardReader, Core, Envelope, Expect, ReadStep, ReadStop};
use crate::command::{
    DebitResponse, InitializeLoad, InitializeLoadResponse, InitializePurchase,
    InitializePurchaseResponse, Request, SelectResponse, Verify,
};
use crate::session::{Session, VerifyMode};
use crate::wire::{ApiCode, Hex};

pub use crate::client::{
    BundleError, Cipher, Crypto, Driven, Entropy, Outgoing, Refusal, Reply, DEFAULT_TIMEOUT_MS,
    MAX_EXTENSIONS, WARN_BEFORE_MS,
};

use super::draw::{check_value_input, AmountChecked};
use super::{
    DebitCommand, DebitResponseMsg, DrawRequest, DrawResponse, MerchantResult, PurchaseStatus,
    RecoverRequest, RecoverResponse, RecoverStatus, ResultC, SuspiciousReport, WidgetSession,
    PATH_COMPLETE, PATH_DRAW, PATH_RECOVER, PATH_SUSPICIOUS,
};

/// Shortest and longest PIN the card accepts.
pub const PIN_MIN: usize = 4;
pub const PIN_MAX: usize = 8;

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
    /// Another limit of the bridge refused a command (nothing reached the card).
    RateLimited {
        limit: Limit,
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
            Self::RateLimited { .. } => "rate_limited",
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

    fn of_card(sw: StatusWord) -> Self {
        match sw {
            StatusWord::FUNDS => Self::Funds,
            StatusWord::EXPIRED => Self::CardExpired,
            StatusWord::PIN_BLOCKED => Self::PinBlocked,
            sw => Self::CardRefused(sw),
        }
    }

    fn of_server(code: ApiCode) -> Self {
        match code {
            ApiCode::CardExpired => Self::CardExpired,
            ApiCode::InsufficientFunds => Self::Funds,
            c => Self::ServerRefused(c),
        }
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

/// A drawn transaction: what DEBIT needs and what recovery needs.
#[derive(Debug, Clone)]
pub(crate) struct Drawn {
    atc: u16,
    answer: DrawResponse,
    cmd: DebitCommand,
}

/// The card's proof (its answer to an INITIALIZE FOR LOAD of amount 0) while
/// the amount is shown: asked at the shopper's first gesture, not before, so
/// that only the shopper can make the card spend an ATC. At the press on
/// Approve the INITIALIZE FOR PURCHASE follows it at once, its answer kept for
/// the click ([`Client::press`]).
#[derive(Debug, Clone)]
pub(crate) enum EarlyProof {
    NotAsked,
    /// The proof is on its way (asked by a press on Approve, with
    /// `pressed_at`, the INITIALIZE FOR PURCHASE follows its answer).
    OnItsWay,
    In(InitializeLoadResponse),
    /// The press's INITIALIZE FOR PURCHASE is on its way, right after the proof.
    Initializing(InitializeLoadResponse),
    /// Its answer (whatever it says: read at the click, as an answer at the
    /// click would be).
    Initialized(InitializeLoadResponse, Response),
}

/// How long after the press on Approve its INITIALIZE FOR PURCHASE still
/// serves the click (ms). A press and its click are 50–150 ms apart; a press
/// let go off the button leaves the card initialized, and the longer that
/// waits, the likelier another terminal or tab used the card meanwhile (which
/// the card's answer to the DEBIT, not the ATCs, would then show: a purchase
/// refused, nothing taken). Past it, the click proves and initializes again.
pub const PRESS_TO_CLICK_MS: u64 = 2_000;

#[derive(Debug, Clone)]
pub(crate) enum State {
    Idle,
    /// SELECT and READ LOG (for a new purchase, or to recover `recovering`).
    Reading {
        reader: CardReader,
        recovering: Option<Drawn>,
    },
    /// Recovery: an INITIALIZE FOR LOAD of amount 0 proves the card's ATC
    /// (and cancels any pending INITIALIZE, so the torn DEBIT can never apply
    /// later).
    RecoveryProof {
        card: CardRead,
        drawn: Drawn,
    },
    /// The amount is shown, with the card's proof as far as it got
    /// (`pressed_at`: the press on Approve that asked for it, if one did).
    Confirm {
        card: CardRead,
        proof: EarlyProof,
        pressed_at: Option<u64>,
    },
    /// Approved: the INITIALIZE FOR LOAD of amount 0 that proves the card
    /// (its S1) is on its way (`fresh`: sent after the approval, right before
    /// the INITIALIZE FOR PURCHASE; else sent as the amount was shown).
    Proving {
        card: CardRead,
        fresh: bool,
    },
    /// INITIALIZE FOR PURCHASE, with the proving answer (`fresh`: sent right
    /// before it, not kept across a VERIFY).
    Initializing {
        card: CardRead,
        proof: InitializeLoadResponse,
        fresh: bool,
    },
    /// The card asked for the PIN (`6982`: no ATC spent): the proof is kept
    /// for the INITIALIZE after the VERIFY.
    NeedPin {
        card: CardRead,
        proof: InitializeLoadResponse,
        wrong_tries_left: Option<u8>,
    },
    Verifying {
        card: CardRead,
        proof: InitializeLoadResponse,
    },
    Drawing {
        card: CardRead,
        body: Envelope,
        atc: u16,
    },
    /// The debit command came; the driver opens it.
    OpeningDebit {
        card: CardRead,
        atc: u16,
        answer: DrawResponse,
    },
    Debiting {
        card: CardRead,
        drawn: Drawn,
        _checked: AmountChecked,
    },
    /// DEBIT refused by the card: the server records the failure, then we say so.
    Refused {
        problem: Problem,
        body: Envelope,
    },
    Completing {
        card: CardRead,
        drawn: Drawn,
        body: Envelope,
    },
    /// Mode `client`, debited: the driver hashes the card's answer for the
    /// check value.
    Checking {
        card: CardRead,
        drawn: Drawn,
        body: Envelope,
        resp: DebitResponse,
    },
    /// Debited: the driver opens the result for the shopper's receipt.
    OpeningResult {
        card: Option<SelectResponse>,
        result_m: Hex,
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
    /// `resume`: the state a retry goes back to (its request is sent again).
    Failed {
        problem: Problem,
        resume: Option<Box<State>>,
    },
    Cancelled(&'static str),
}

/// The purchase client for one transaction.
pub struct Client {
    core: Core,
    session: Session,
    state: State,
}

impl Client {
    crate::client::client_new!(WidgetSession, Session, true);

    crate::client::driver_methods!();

    /// The expiry warning is showing.
    pub fn expiry_warning(&self) -> bool {
        self.core.deadlines.warning() && !self.past_point_of_no_return() && !self.is_finished()
    }

    /// "More time": restart the clock (at most [`MAX_EXTENSIONS`] times).
    pub fn more_time(&mut self, now: u64) -> bool {
        self.expiry_warning() && self.core.deadlines.extend(now)
    }

    crate::client::past_point_of_no_return!(
        [
            Debiting,
            Checking,
            Refused,
            Completing,
            OpeningResult,
            Torn,
            Recovering,
            RecoveryProof,
            Done
        ],
        State::Failed { problem, resume } => matches!(
            problem,
            Problem::Torn | Problem::Undecided | Problem::NotCharged
        ) || matches!(
            resume.as_deref(),
            Some(State::Completing { .. } | State::Refused { .. } | State::Torn { .. })
        )
    );

    crate::client::card_accessor!(
        Confirm,
        Proving,
        Initializing,
        NeedPin,
        Verifying,
        Drawing,
        OpeningDebit,
        Debiting,
        Checking,
        Completing
    );

    /// Where the purchase stands.
    pub fn status(&self) -> Status<'_> {
        match &self.state {
            State::Idle | State::Torn { .. } => Status::WaitingForCard,
            State::RecoveryProof { .. } | State::Recovering { .. } => {
                Status::Working(Step::Recovering)
            }
            State::Reading { recovering, .. } => Status::Working(if recovering.is_some() {
                Step::Recovering
            } else {
                Step::Reading
            }),
            State::Confirm { .. } => Status::Confirm,
            State::Proving { .. } | State::Initializing { .. } => Status::Working(Step::Preparing),
            State::NeedPin {
                wrong_tries_left, ..
            } => Status::NeedPin {
                wrong_tries_left: *wrong_tries_left,
            },
            State::Verifying { .. } => Status::Working(Step::CheckingPin),
            State::Drawing { .. } | State::OpeningDebit { .. } => {
                Status::Working(Step::Authorizing)
            }
            State::Debiting { .. } | State::Checking { .. } => Status::Working(Step::Debiting),
            State::Refused { .. } | State::Completing { .. } | State::OpeningResult { .. } => {
                Status::Working(Step::Confirming)
            }
            State::Reporting => Status::Working(Step::Reporting),
            State::Done { receipt, result } => Status::Done { receipt, result },
            State::Failed { problem, resume } => Status::Failed {
                problem: *problem,
                retry: resume.is_some(),
            },
            State::Cancelled(r) => Status::Cancelled(r),
        }
    }

    /// The card is connected in a fresh selection (first time, after it was
    /// put back, or after a reset): read it, or recover a torn DEBIT.
    pub fn card_ready(&mut self) {
        let recovering = match self.waiting() {
            State::Idle => None,
            State::Torn { drawn } => Some(drawn.clone()),
            // Not waiting for a card: nothing to do.
            _ => return,
        };
        let s = &self.session;
        let reader = match &recovering {
            None => self.core.read_fresh(s.purse, s.currency, s.exponent),
            Some(d) => self.core.read(Expect::Recovering {
                atc: d.atc,
                card_id: None,
            }),
        };
        self.state = State::Reading { reader, recovering };
    }

    /// The card went away while nothing was outstanding.
    pub fn card_removed(&mut self) {
        if self.core.wire.is_awaiting() {
            // The outstanding command's fate is reported through `handle`.
            return;
        }
        if matches!(self.state, State::Confirm { .. } | State::NeedPin { .. }) {
            self.fail(Problem::CardRemoved, Some(State::Idle));
        }
    }

    /// The shopper approved the amount at `now` (ms, the driver's clock):
    /// INITIALIZE FOR PURCHASE after the card's proof, once that is in (a proof
    /// sent at an earlier gesture is not fresh: if the card was used since, it
    /// proves itself again). The press's INITIALIZE, if its answer is in (or on
    /// its way) and the press was no longer than [`PRESS_TO_CLICK_MS`] ago, is
    /// this click's: its answer is read now, as one sent now would be.
    pub fn approve(&mut self, now: u64) {
        if !matches!(self.state, State::Confirm { .. }) {
            return;
        }
        let State::Confirm {
            card,
            proof,
            pressed_at,
        } = core::mem::replace(&mut self.state, State::Idle)
        else {
            return;
        };
        let recent = pressed_at.is_some_and(|t| now.saturating_sub(t) <= PRESS_TO_CLICK_MS);
        match proof {
            EarlyProof::In(proof) => self.initialize_purchase(card, proof, false),
            EarlyProof::OnItsWay => self.state = State::Proving { card, fresh: false },
            EarlyProof::NotAsked => self.initialize(card),
            // Its answer comes to `Initializing`, as an INITIALIZE sent now.
            EarlyProof::Initializing(proof) => {
                self.state = State::Initializing {
                    card,
                    proof,
                    fresh: false,
                }
            }
            EarlyProof::Initialized(proof, answer) if recent => crate::client::Machine::on_card(
                self,
                State::Initializing {
                    card,
                    proof,
                    fresh: false,
                },
                answer,
            ),
            // Pressed long ago: the card may have been used since.
            EarlyProof::Initialized(..) => self.initialize(card),
        }
    }

    /// The shopper typed in the checkout (a key: what only the shopper makes,
    /// never the page around the frame). While the amount is shown the card
    /// proves itself now, before the click lands; once asked, later gestures
    /// do nothing (a press on Approve still adds its INITIALIZE).
    pub fn gesture(&mut self) {
        self.early(None);
    }

    /// The shopper pressed Approve at `now` (mouse button, finger, pen: a
    /// press's length before the click). Everything of the purchase that moves
    /// no money goes to the card now: its proof, then the INITIALIZE FOR
    /// PURCHASE, whose answer the click then finds in (the draw, which only
    /// the click sends, is what lets the card be debited). Costs two ATCs if
    /// the click never comes.
    pub fn press(&mut self, now: u64) {
        self.early(Some(now));
    }

    /// The card's part that moves no money, at a gesture (`press`: a press on
    /// Approve, which goes on to the INITIALIZE FOR PURCHASE). Once asked,
    /// later gestures ask nothing more.
    fn early(&mut self, press: Option<u64>) {
        if self.core.wire.is_awaiting() {
            return;
        }
        let State::Confirm {
            proof, pressed_at, ..
        } = &mut self.state
        else {
            return;
        };
        match *proof {
            EarlyProof::NotAsked => {
                *proof = EarlyProof::OnItsWay;
                *pressed_at = press;
                self.prove();
            }
            EarlyProof::In(p) if press.is_some() => {
                *proof = EarlyProof::Initializing(p);
                *pressed_at = press;
                self.send_initialize();
            }
            _ => {}
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
        let State::NeedPin { card, proof, .. } = core::mem::replace(&mut self.state, State::Idle)
        else {
            return;
        };
        let digits = Zeroizing::new(pin.iter().map(|d| b'0' + d).collect::<Vec<u8>>());
        let apdu = Zeroizing::new(
            Request::Verify(Verify {
                pin: Some(digits.to_vec()),
            })
            .to_bytes(),
        );
        self.state = State::Verifying { card, proof };
        self.core.wire.apdu(apdu.to_vec());
    }

    /// Retry where the failure left off. After a card problem the client
    /// waits for the card again ([`Self::wants_card`]).
    pub fn retry(&mut self) {
        let Some(next) = self.take_resume() else {
            return;
        };
        match next.as_ref() {
            State::Drawing { body, .. } => self.core.wire.post(PATH_DRAW, body),
            State::Completing { body, .. } | State::Refused { body, .. } => {
                self.core.wire.post(PATH_COMPLETE, body)
            }
            _ => {}
        }
        self.state = *next;
    }

    /// "This is not my purchase": report it, then the purchase is off.
    pub fn not_mine(&mut self) -> bool {
        if self.past_point_of_no_return()
            || self.is_finished()
            || matches!(self.state, State::Reporting)
        {
            return false;
        }
        let report = SuspiciousReport {
            txn_id: self.session.txn_id.clone(),
            page_origin: self.core.page_origin.clone(),
            reason: "not my purchase (shopper pressed the button in the widget)".into(),
        };
        let body = self.core.sealer.envelope("report", &report);
        self.state = State::Reporting;
        self.core.wire.stop();
        self.core.wire.post(PATH_SUSPICIOUS, &body);
        true
    }

    // ---- internals -------------------------------------------------------

    fn fail(&mut self, problem: Problem, resume: Option<State>) {
        self.core.wire.drop_pending();
        self.state = State::Failed {
            problem,
            resume: resume.map(Box::new),
        };
    }

    fn torn(&mut self, drawn: Drawn) {
        self.fail(Problem::Torn, Some(State::Torn { drawn }));
    }

    /// Approved, and the card must prove itself (again) right before the
    /// INITIALIZE FOR PURCHASE: the purchase's ATC is then the proven one plus 1.
    fn initialize(&mut self, card: CardRead) {
        self.state = State::Proving { card, fresh: true };
        self.prove();
    }

    /// An INITIALIZE FOR LOAD of amount 0 on the session's purse.
    fn prove(&mut self) {
        let s = &self.session;
        let r = Request::InitializeLoad(InitializeLoad {
            purse: s.purse,
            amount: 0,
            terminal: s.terminal,
        });
        self.core.wire.card(&r);
    }

    /// The card's answer to its proof, or the failure it is (set as the state).
    fn proved(&mut self, r: &Response) -> Option<InitializeLoadResponse> {
        if !r.sw.is_ok() {
            self.fail(Problem::of_card(r.sw), None);
            return None;
        }
        let proof = InitializeLoadResponse::decode(&r.data).ok();
        if proof.is_none() {
            self.fail(Problem::CardUnreadable, Some(State::Idle));
        }
        proof
    }

    /// The INITIALIZE FOR PURCHASE to the card (not inlined: it is sent from
    /// three places, at a press and at the click, and the widget's download
    /// would carry its encoding three times).
    #[inline(never)]
    fn send_initialize(&mut self) {
        let s = &self.session;
        let r = Request::InitializePurchase(InitializePurchase {
            purse: s.purse,
            amount: s.amount,
            terminal: s.terminal,
        });
        self.core.wire.card(&r);
    }

    fn initialize_purchase(&mut self, card: CardRead, proof: InitializeLoadResponse, fresh: bool) {
        self.state = State::Initializing { card, proof, fresh };
        self.send_initialize();
    }

    fn log_read(&mut self, card: CardRead, recovering: Option<Drawn>) {
        let Some(drawn) = recovering else {
            // The amount is shown; the card proves itself at the shopper's gesture.
            self.state = State::Confirm {
                card,
                proof: EarlyProof::NotAsked,
                pressed_at: None,
            };
            return;
        };
        // The transaction's own record decides by itself; the log's silence
        // decides only with the card's proof of its ATC.
        if card.log.iter().any(|r| r.atc == drawn.atc) {
            return self.recover(card, drawn, None);
        }
        self.state = State::RecoveryProof { card, drawn };
        self.prove();
    }

    fn recover(&mut self, card: CardRead, drawn: Drawn, proof: Option<InitializeLoadResponse>) {
        let req = RecoverRequest {
            txn_id: self.session.txn_id.clone(),
            log: card.log_hex(),
            initialize_load: proof.map(|p| Hex(p.encode())),
        };
        let body = self.core.sealer.envelope("recover_request", &req);
        self.state = State::Recovering { drawn };
        self.core.wire.post(PATH_RECOVER, &body);
    }

    fn draw(
        &mut self,
        card: CardRead,
        proof: InitializeLoadResponse,
        init: InitializePurchaseResponse,
    ) {
        let s = &self.session;
        let e = self
            .core
            .evidence(&card, &s.txn_id, s.amount, s.purse, init.encode());
        let dr = DrawRequest::from_card(e, proof.encode(), card.pin_verified);
        let body = self.core.sealer.envelope("draw_request", &dr);
        self.core.wire.post(PATH_DRAW, &body);
        self.state = State::Drawing {
            card,
            body,
            atc: init.atc,
        };
    }

    fn complete_body(&mut self, rapdu: Vec<u8>) -> Envelope {
        let msg = DebitResponseMsg {
            txn_id: self.session.txn_id.clone(),
            response: Hex(rapdu),
        };
        self.core.sealer.envelope("debit_response", &msg)
    }

    /// The debit command came: the driver opens it.
    fn open_debit(&mut self, card: CardRead, atc: u16, answer: DrawResponse) {
        let job = self.core.sealer.open::<DebitCommand>(&answer.debit_command);
        self.core.wire.crypto(job);
        self.state = State::OpeningDebit { card, atc, answer };
    }

    /// The debit command opened: check it, then DEBIT.
    fn debit(
        &mut self,
        card: CardRead,
        atc: u16,
        answer: DrawResponse,
        plain: Option<Zeroizing<Vec<u8>>>,
    ) {
        let Some(cmd) = self.core.sealer.read::<DebitCommand>(plain) else {
            return self.fail(Problem::ServerRefused(ApiCode::BadSeal), None);
        };
        // The card is charged only what the shopper approved.
        let Ok(checked) = cmd.check(&self.session) else {
            return self.fail(Problem::AmountChanged, None);
        };
        self.core.wire.apdu(checked.apdu().to_vec());
        self.state = State::Debiting {
            card,
            drawn: Drawn { atc, answer, cmd },
            _checked: checked,
        };
    }

    /// DEBIT's answer.
    fn debited(&mut self, card: CardRead, drawn: Drawn, r: Response) {
        let rapdu = r.to_bytes();
        if !r.sw.is_ok() {
            // The card refused and wrote nothing; the server records the failure.
            let body = self.complete_body(rapdu);
            self.core.wire.post(PATH_COMPLETE, &body);
            self.state = State::Refused {
                problem: Problem::of_card(r.sw),
                body,
            };
            return;
        }
        let Ok(resp) = DebitResponse::decode(&r.data) else {
            return self.torn(drawn);
        };
        let body = self.complete_body(rapdu);
        match self.session.verify_mode {
            VerifyMode::Merchant => self.done_in_one_trip(card, drawn, body, resp),
            // The check value says the answer is right without the client
            // ever holding S3 (the driver hashes); a mismatch is for the server.
            VerifyMode::Client if drawn.cmd.check_value.is_some() => {
                let data = check_value_input(&self.session.txn_id, resp.balance_after, &resp.s3);
                self.core.wire.crypto(Crypto::Digest { data });
                self.state = State::Checking {
                    card,
                    drawn,
                    body,
                    resp,
                };
            }
            _ => self.complete(card, drawn, body),
        }
    }

    /// The server checks the card's answer and captures (one more round trip).
    fn complete(&mut self, card: CardRead, drawn: Drawn, body: Envelope) {
        self.core.wire.post(PATH_COMPLETE, &body);
        self.state = State::Completing { card, drawn, body };
    }

    /// Modes `merchant` and `client`: the result goes to the page now, and the
    /// server captures in the background.
    fn done_in_one_trip(
        &mut self,
        card: CardRead,
        drawn: Drawn,
        body: Envelope,
        resp: DebitResponse,
    ) {
        let receipt = self.receipt(Some(&card.select), resp.balance_after, String::new());
        let result = MerchantResult::S3 {
            txn_id: self.session.txn_id.clone(),
            balance_after: resp.balance_after,
            s3: Hex(resp.s3.to_vec()),
            expected_s3_m: drawn.answer.expected_s3_m.clone().unwrap_or_default(),
        };
        self.state = State::Done { receipt, result };
        // The server still captures on the card's own S3, in the background.
        self.core.wire.post_in_background(PATH_COMPLETE, &body);
    }

    /// Debited (said the server): the driver opens the result for the receipt.
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
        let job = self.core.sealer.open::<ResultC>(&result_c);
        self.core.wire.crypto(job);
        self.state = State::OpeningResult {
            card: card.cloned(),
            result_m,
        };
    }

    /// Done, with what the result says for the receipt (balance, date; left
    /// blank when it does not open: the capture stands on the server's word).
    fn finish(
        &mut self,
        card: Option<&SelectResponse>,
        result_m: Hex,
        plain: Option<Zeroizing<Vec<u8>>>,
    ) {
        let c = self.core.sealer.read::<ResultC>(plain);
        let receipt = self.receipt(
            card,
            c.as_ref().and_then(|c| c.balance_after).unwrap_or(0),
            c.as_ref()
                .map(|c| crate::client::stamp(&c.date, &c.time))
                .unwrap_or_default(),
        );
        self.state = State::Done {
            receipt,
            result: MerchantResult::ResultM {
                txn_id: self.session.txn_id.clone(),
                result_m,
            },
        };
    }

    fn receipt(&self, card: Option<&SelectResponse>, balance_after: u32, when: String) -> Receipt {
        let s = &self.session;
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
}

impl crate::client::Machine for Client {
    crate::client::machine_plumbing!(Problem);

    /// The card's answer did not come back, or came back unreadable.
    fn card_gone(&mut self, state: State, problem: Problem) {
        match state {
            // DEBIT went out; whatever came back, the debit may have happened.
            State::Debiting { drawn, .. }
            | State::Reading {
                recovering: Some(drawn),
                ..
            }
            | State::RecoveryProof { drawn, .. } => self.torn(drawn),
            // Pulled while the amount is shown, its proof on the way: nothing
            // started, so back to waiting for the card, as when it is pulled
            // there with nothing on its way (no error to tell).
            State::Confirm { .. } if problem == Problem::CardRemoved => {
                self.core.wire.drop_pending();
                self.state = State::Idle;
            }
            _ => self.fail(problem, Some(State::Idle)),
        }
    }

    fn on_refused(&mut self, state: State, r: Refusal) {
        match (state, r) {
            (
                State::Verifying { card, proof },
                Refusal::RateLimited {
                    retry_after_ms,
                    limit,
                },
            ) => {
                let problem = match limit {
                    Limit::Verify => Problem::PinRateLimited { retry_after_ms },
                    limit => Problem::RateLimited {
                        limit,
                        retry_after_ms,
                    },
                };
                let back = State::NeedPin {
                    card,
                    proof,
                    wrong_tries_left: None,
                };
                self.fail(problem, Some(back))
            }
            (State::Verifying { .. }, Refusal::LastPinTry) => self.fail(Problem::LastPinTry, None),
            (State::Verifying { .. }, Refusal::PinBlocked) => self.fail(Problem::PinBlocked, None),
            // Nothing reached the card: a DEBIT refused by the bridge was not applied.
            (State::Debiting { .. }, _) => {
                self.fail(Problem::CardRefused(StatusWord(0x6985)), None)
            }
            (
                State::Reading {
                    recovering: Some(drawn),
                    ..
                }
                | State::RecoveryProof { drawn, .. },
                _,
            ) => self.torn(drawn),
            (
                _,
                Refusal::RateLimited {
                    retry_after_ms,
                    limit,
                },
            ) => self.fail(
                Problem::RateLimited {
                    limit,
                    retry_after_ms,
                },
                Some(State::Idle),
            ),
            _ => self.fail(Problem::CardUnreadable, Some(State::Idle)),
        }
    }

    fn on_card(&mut self, state: State, r: Response) {
        match state {
            State::Reading { reader, recovering } => match reader.step(r, &mut self.core.wire) {
                ReadStep::Reading(reader) => self.state = State::Reading { reader, recovering },
                ReadStep::Done(card) => self.log_read(card, recovering),
                ReadStep::Stopped(ReadStop::Expired) => self.fail(Problem::CardExpired, None),
                ReadStep::Stopped(ReadStop::WrongCurrency) => {
                    self.fail(Problem::WrongCurrency, None)
                }
                // A recovery's read: torn again; else nothing happened.
                ReadStep::Stopped(_) => match recovering {
                    Some(drawn) => self.torn(drawn),
                    None => self.fail(Problem::CardUnreadable, Some(State::Idle)),
                },
            },
            State::RecoveryProof { card, drawn } => {
                // Any answer but a readable one leaves the ATC unproven: the
                // server then decides only from records.
                let proof =
                    r.sw.is_ok()
                        .then(|| InitializeLoadResponse::decode(&r.data).ok())
                        .flatten();
                self.recover(card, drawn, proof);
            }
            State::Confirm {
                card,
                proof: EarlyProof::OnItsWay,
                pressed_at,
            } => {
                if let Some(proof) = self.proved(&r) {
                    // At a press, the INITIALIZE FOR PURCHASE follows it.
                    let proof = match pressed_at {
                        Some(_) => {
                            self.send_initialize();
                            EarlyProof::Initializing(proof)
                        }
                        None => EarlyProof::In(proof),
                    };
                    self.state = State::Confirm {
                        card,
                        proof,
                        pressed_at,
                    }
                }
            }
            State::Confirm {
                card,
                proof: EarlyProof::Initializing(proof),
                pressed_at,
            } => {
                self.state = State::Confirm {
                    card,
                    proof: EarlyProof::Initialized(proof, r),
                    pressed_at,
                }
            }
            State::Proving { card, fresh } => {
                if let Some(proof) = self.proved(&r) {
                    self.initialize_purchase(card, proof, fresh)
                }
            }
            State::Initializing { card, proof, fresh } => {
                if r.sw == StatusWord::PIN_REQUIRED {
                    self.state = State::NeedPin {
                        card,
                        proof,
                        wrong_tries_left: None,
                    };
                    return;
                }
                if !r.sw.is_ok() {
                    return self.fail(Problem::of_card(r.sw), None);
                }
                let Ok(init) = InitializePurchaseResponse::decode(&r.data) else {
                    return self.fail(Problem::CardUnreadable, Some(State::Idle));
                };
                // A proof kept across the VERIFY no longer comes right before
                // this INITIALIZE if the card was used meanwhile: prove again.
                let follows = proof.atc.checked_add(1) == Some(init.atc);
                if !follows && !fresh {
                    return self.initialize(card);
                }
                self.draw(card, proof, init)
            }
            State::Verifying { mut card, proof } => {
                if r.sw.is_ok() {
                    card.pin_verified = true;
                    return self.initialize_purchase(card, proof, false);
                }
                match r.sw.pin_tries_left() {
                    Some(0) => self.fail(Problem::PinBlocked, None),
                    Some(left) => {
                        self.state = State::NeedPin {
                            card,
                            proof,
                            wrong_tries_left: Some(left),
                        }
                    }
                    None => self.fail(Problem::of_card(r.sw), None),
                }
            }
            State::Debiting { card, drawn, .. } => self.debited(card, drawn, r),
            other => self.state = other,
        }
    }

    fn on_server(&mut self, state: State, answer: Answer) {
        let transient = answer == Answer::Transient;
        match state {
            State::Reporting => self.cancel_with("not_mine"),
            State::Drawing { card, body, atc } if transient => self.fail(
                Problem::ServerUnreachable,
                Some(State::Drawing { card, body, atc }),
            ),
            State::Drawing { card, atc, .. } => match answer.parse::<DrawResponse>() {
                Ok(a) => self.open_debit(card, atc, a),
                Err(code) => self.fail(Problem::of_server(code), None),
            },
            // The card refused: nothing was taken whatever the server says;
            // retrying only lets the server record it.
            State::Refused { problem, body } if transient => {
                self.fail(problem, Some(State::Refused { problem, body }))
            }
            State::Refused { problem, .. } => self.fail(problem, None),
            State::Completing { card, drawn, body } if transient => self.fail(
                Problem::ServerUnreachable,
                Some(State::Completing { card, drawn, body }),
            ),
            State::Completing { card, .. } => match answer.parse::<super::CompleteResponse>() {
                Ok(c) => self.finish_with(Some(&card.select), c.status, c.result_c, c.result_m),
                Err(code) => self.fail(Problem::of_server(code), None),
            },
            State::Recovering { drawn } if transient => {
                self.fail(Problem::ServerUnreachable, Some(State::Torn { drawn }))
            }
            State::Recovering { drawn } => match answer.parse::<RecoverResponse>() {
                Ok(RecoverResponse {
                    status: RecoverStatus::Debited,
                    result_c: Some(c),
                    result_m: Some(m),
                    ..
                }) => self.finish_with(None, PurchaseStatus::Debited, c, m),
                Ok(RecoverResponse {
                    status: RecoverStatus::Failed,
                    ..
                }) => self.fail(Problem::NotCharged, None),
                Ok(_) => self.fail(Problem::Undecided, Some(State::Torn { drawn })),
                Err(code) => self.fail(Problem::of_server(code), Some(State::Torn { drawn })),
            },
            other => self.state = other,
        }
    }

    fn on_opened(&mut self, state: State, plain: Option<Zeroizing<Vec<u8>>>) {
        match state {
            State::OpeningDebit { card, atc, answer } => self.debit(card, atc, answer, plain),
            State::OpeningResult { card, result_m } => self.finish(card.as_ref(), result_m, plain),
            State::Checking {
                card,
                drawn,
                body,
                resp,
            } => match plain {
                Some(d) if drawn.cmd.answer_matches(&d) => {
                    self.done_in_one_trip(card, drawn, body, resp)
                }
                _ => self.complete(card, drawn, body),
            },
            other => self.state = other,
        }
    }
}

crate::client::driven!(Client);
