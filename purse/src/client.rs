//! What every client half shares (the purchase client,
//! [`crate::purchase::client`], and the load client, [`crate::load::client`]):
//! the driver types, the request plumbing, the deadlines, sealing and the
//! request envelopes, the card read (SELECT + READ LOG) and the reading of
//! the server's answers. Each protocol step is written once, here or in its
//! message file; the two clients only say which step comes next.
//!
//! ```text
//! driver ──poll_request──▶ Outgoing::Card(APDU) | Outgoing::Server{path, body}
//!                           | Outgoing::Crypto(seal, open or hash)
//!        ◀──handle(Reply)── Card(RAPDU) | CardLost | Refused(why) | Server(status, body) | ServerUnreachable
//!                           | Crypto(sealed, opened or hashed bytes)
//!        ──poll_timeout / handle_timeout(now)── deadlines (time is an input)
//! ```
//!
//! AES-256-GCM and SHA-256 are the driver's too ([`Crypto`]): the browser has
//! them built in (WebCrypto), so the widget's wasm carries neither. What is
//! sealed, opened or hashed, under which key, nonce and associated data, stays
//! the client's; a request body goes out once the driver sealed its one sealed
//! field.

use crate::apdu::Response;
use crate::bridge_msg::Limit;
use crate::command::{LogRecord, ReadLog, Request, Select, SelectResponse};
use crate::prelude::*;
use crate::session::{self, Key32, NONCE_LEN};
use crate::types::{BcdDate, CardId, PurseId};
use crate::wire::{ApiCode, ErrorBody, Hex, Sealed};
use crate::AID;
use zeroize::Zeroizing;

/// The request expires after this long without the shopper finishing (ms).
pub const DEFAULT_TIMEOUT_MS: u64 = 120_000;
/// The shopper is warned this long before the request expires (ms).
pub const WARN_BEFORE_MS: u64 = 20_000;
/// How often the shopper may ask for more time.
pub const MAX_EXTENSIONS: u8 = 10;

/// Fresh random bytes (AES-GCM nonces): the OS source natively,
/// `crypto.getRandomValues` in the browser.
pub trait Entropy: Send {
    fn fill(&mut self, buf: &mut [u8]);
}

/// What a client asks its driver to do.
#[derive(Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Send this command APDU to the card.
    Card(Vec<u8>),
    /// POST `body` (JSON) to `path` on the payment origin.
    Server { path: &'static str, body: String },
    /// Seal or open with AES-256-GCM, or hash; the answer is [`Reply::Crypto`].
    Crypto(Crypto),
}

/// An AES-256-GCM or SHA-256 operation the client hands its driver:
/// WebCrypto's `crypto.subtle` in the browser, [`Crypto::perform`]
/// (RustCrypto's `aes-gcm` and `sha2`, as the servers use) natively. Sealed
/// bytes are `nonce (12) || ciphertext || tag (16)` either way
/// (docs/protocol.md §3).
#[derive(Clone, PartialEq, Eq)]
pub enum Crypto {
    /// Seal `plain` under `key` with `nonce` and `aad`: the answer is
    /// `nonce || ciphertext || tag`.
    Seal {
        key: Key32,
        nonce: [u8; NONCE_LEN],
        aad: Vec<u8>,
        plain: Zeroizing<Vec<u8>>,
    },
    /// Open `sealed` (`nonce || ciphertext || tag`) under `key` with `aad`:
    /// the answer is the plaintext, or nothing when it does not open.
    Open {
        key: Key32,
        aad: Vec<u8>,
        sealed: Vec<u8>,
    },
    /// SHA-256 of `data` (the client-mode check value's input): the answer is
    /// the 32-byte digest.
    Digest { data: Vec<u8> },
}

impl Crypto {
    /// What it gives, computed here (native drivers: the test kit, the
    /// benches, the widget's native tests).
    pub fn perform(&self) -> Cipher {
        Cipher(match self {
            Crypto::Seal {
                key,
                nonce,
                aad,
                plain,
            } => Some(Zeroizing::new(session::seal(key, *nonce, aad, plain))),
            Crypto::Open { key, aad, sealed } => {
                session::open(key, aad, sealed).ok().map(Zeroizing::new)
            }
            Crypto::Digest { data } => {
                use sha2::Digest;
                Some(Zeroizing::new(sha2::Sha256::digest(data).to_vec()))
            }
        })
    }
}

/// What a [`Crypto`] operation gave: the sealed bytes, the plaintext or the
/// digest, or nothing (the message did not open). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Cipher(pub Option<Zeroizing<Vec<u8>>>);

impl core::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0 {
            Some(b) => write!(f, "Cipher({} bytes)", b.len()),
            None => f.write_str("Cipher(failed)"),
        }
    }
}

impl core::fmt::Debug for Outgoing {
    // Never print APDUs (a VERIFY carries the PIN) or sealed bodies.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Outgoing::Card(a) => write!(f, "Card({:02X?})", &a[..a.len().min(4)]),
            Outgoing::Server { path, .. } => write!(f, "Server({path})"),
            Outgoing::Crypto(Crypto::Seal { .. }) => f.write_str("Crypto(seal)"),
            Outgoing::Crypto(Crypto::Open { .. }) => f.write_str("Crypto(open)"),
            Outgoing::Crypto(Crypto::Digest { .. }) => f.write_str("Crypto(digest)"),
        }
    }
}

/// Why the bridge refused to send a command (nothing reached the card).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A per-origin limit of the bridge (`limit`); one more passes after
    /// `retry_after_ms`.
    RateLimited { retry_after_ms: u64, limit: Limit },
    /// The VERIFY would use the card's last PIN try: web pages may not.
    LastPinTry,
    /// The card's PIN is blocked: the bridge sends no VERIFY.
    PinBlocked,
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
    /// What the [`Outgoing::Crypto`] gave.
    Crypto(Cipher),
}

/// A client as its driver sees it: the purchase and the load client both
/// are one, so a driver (the widget, the test kit) runs either with one loop.
pub trait Driven {
    /// The next request to carry out (each is returned once).
    fn poll_request(&mut self) -> Option<Outgoing>;
    /// A request is out and its reply is awaited.
    fn is_awaiting(&self) -> bool;
    /// Feed the answer to the outstanding request.
    fn handle(&mut self, reply: Reply);
    /// The card is connected in a fresh selection.
    fn card_ready(&mut self);
    /// The driver must connect to the card and call [`Driven::card_ready`].
    fn wants_card(&self) -> bool;
    /// The card went away while nothing was outstanding.
    fn card_removed(&mut self);
    /// The shopper approved at `now` (ms, the driver's clock).
    fn approve(&mut self, now: u64);
    /// Retry where the failure left off.
    fn retry(&mut self);
    /// The shopper cancelled (refused past the point of no return).
    fn cancel(&mut self) -> bool;
    /// The request's lifetime (ms), before [`Driven::start_clock`].
    fn set_timeout(&mut self, ms: u64);
    fn start_clock(&mut self, now: u64);
    fn poll_timeout(&self) -> Option<u64>;
    fn handle_timeout(&mut self, now: u64);
    fn is_finished(&self) -> bool;
    /// The card may have been written: no cancel, no expiry.
    fn past_point_of_no_return(&self) -> bool;
}

/// The driver-facing methods both clients have alike (request plumbing and
/// the clock), over their `wire` and `deadlines` fields and their own
/// `is_finished`, `past_point_of_no_return` and `cancel_with`.
macro_rules! driver_methods {
    () => {
        /// The request's lifetime (ms); call before `start_clock`.
        pub fn set_timeout(&mut self, ms: u64) {
            self.core.deadlines.set_timeout(ms);
        }

        /// Start the request's clock at `now` (ms, the driver's monotonic time).
        pub fn start_clock(&mut self, now: u64) {
            self.core.deadlines.start(now);
        }

        /// The next deadline, if any (none once the card may be written).
        pub fn poll_timeout(&self) -> Option<u64> {
            if self.is_finished() || self.past_point_of_no_return() {
                return None;
            }
            self.core.deadlines.next()
        }

        /// Time moved to `now`: warn, or cancel the request when it expired
        /// (never once the card may be written).
        pub fn handle_timeout(&mut self, now: u64) {
            if !self.is_finished()
                && !self.past_point_of_no_return()
                && self.core.deadlines.expired(now)
            {
                self.cancel_with("timeout");
            }
        }

        /// The next request to carry out (each is returned once).
        pub fn poll_request(&mut self) -> Option<$crate::client::Outgoing> {
            self.core.wire.poll()
        }

        /// A request is out and its reply is awaited.
        pub fn is_awaiting(&self) -> bool {
            self.core.wire.is_awaiting()
        }

        /// The shopper cancelled. Refused once the card may be written.
        pub fn cancel(&mut self) -> bool {
            if self.past_point_of_no_return() || self.is_finished() {
                return false;
            }
            self.cancel_with("user");
            true
        }

        fn cancel_with(&mut self, reason: &'static str) {
            self.core.wire.stop();
            self.state = State::Cancelled(reason);
        }

        /// Where the client waits: a failure's resume state, else the state itself.
        fn waiting(&self) -> &State {
            match &self.state {
                State::Failed {
                    resume: Some(next), ..
                } => next,
                s => s,
            }
        }

        /// The driver must connect to the card and call `card_ready`.
        pub fn wants_card(&self) -> bool {
            matches!(self.waiting(), State::Idle | State::Torn { .. })
        }

        /// The state a retry goes back to, taken out of a failure.
        fn take_resume(&mut self) -> Option<Box<State>> {
            match &mut self.state {
                State::Failed { resume, .. } => resume.take(),
                _ => None,
            }
        }

        /// Feed the answer to the outstanding request (ignored when none is awaited).
        pub fn handle(&mut self, reply: $crate::client::Reply) {
            $crate::client::dispatch(self, reply)
        }
    };
}
pub(crate) use driver_methods;

/// `card()`: the card's SELECT answer while the client holds one: in
/// `Reading` once SELECT was answered, and in the listed states (each has a
/// `card: CardRead`).
macro_rules! card_accessor {
    ($($v:ident),*) => {
        /// The card's SELECT answer, once read.
        pub fn card(&self) -> Option<&$crate::command::SelectResponse> {
            match &self.state {
                State::Reading { reader, .. } => reader.select(),
                $(State::$v { card, .. })|* => Some(&card.select),
                _ => None,
            }
        }
    };
}
pub(crate) use card_accessor;

/// The [`Machine`] methods every client has alike, over its `core` and `state`.
macro_rules! machine_plumbing {
    ($problem:ident) => {
        type State = State;
        type Problem = $problem;
        const REMOVED: $problem = $problem::CardRemoved;
        const UNREADABLE: $problem = $problem::CardUnreadable;

        fn core(&mut self) -> &mut $crate::client::Core {
            &mut self.core
        }

        fn take_state(&mut self) -> State {
            core::mem::replace(&mut self.state, State::Idle)
        }
    };
}
pub(crate) use machine_plumbing;

/// `past_point_of_no_return()`: true in the listed states (the card may have
/// been written), while recovering, and in a failure when `$failed` says so.
macro_rules! past_point_of_no_return {
    ([$($v:ident),*], $failed:pat => $when:expr) => {
        /// Once the card may have been written (DEBIT or CREDIT on its way) the
        /// shopper can no longer cancel, and the request does not expire.
        pub fn past_point_of_no_return(&self) -> bool {
            match &self.state {
                $(State::$v { .. })|* => true,
                State::Reading { recovering, .. } => recovering.is_some(),
                $failed => $when,
                _ => false,
            }
        }

        pub fn is_finished(&self) -> bool {
            matches!(self.state, State::Done { .. } | State::Cancelled(_))
        }
    };
}
pub(crate) use past_point_of_no_return;

/// `new` and `session` of a client over `$bundle` (`warns`: warn before expiry).
macro_rules! client_new {
    ($bundle:ty, $session:ty, $warns:expr) => {
        /// A client for `bundle`, embedded by a page whose origin the browser
        /// reported as `page_origin` (it must be the session's origin);
        /// `today` (the driver's clock) lets an expired card be refused at once.
        pub fn new(
            bundle: $bundle,
            page_origin: &str,
            rng: Box<dyn $crate::client::Entropy>,
            today: Option<$crate::types::BcdDate>,
        ) -> Result<Self, $crate::client::BundleError> {
            let core = $crate::client::Core::new(&bundle, page_origin, rng, today, $warns)?;
            Ok(Self {
                core,
                session: bundle.session,
                state: State::Idle,
            })
        }

        pub fn session(&self) -> &$session {
            &self.session
        }
    };
}
pub(crate) use client_new;

/// `impl Driven for $t` by its inherent methods of the same names.
macro_rules! driven {
    ($t:ty) => {
        impl $crate::client::Driven for $t {
            fn poll_request(&mut self) -> Option<$crate::client::Outgoing> {
                <$t>::poll_request(self)
            }
            fn is_awaiting(&self) -> bool {
                <$t>::is_awaiting(self)
            }
            fn handle(&mut self, reply: $crate::client::Reply) {
                <$t>::handle(self, reply)
            }
            fn card_ready(&mut self) {
                <$t>::card_ready(self)
            }
            fn wants_card(&self) -> bool {
                <$t>::wants_card(self)
            }
            fn card_removed(&mut self) {
                <$t>::card_removed(self)
            }
            fn approve(&mut self, now: u64) {
                <$t>::approve(self, now)
            }
            fn retry(&mut self) {
                <$t>::retry(self)
            }
            fn cancel(&mut self) -> bool {
                <$t>::cancel(self)
            }
            fn set_timeout(&mut self, ms: u64) {
                <$t>::set_timeout(self, ms)
            }
            fn start_clock(&mut self, now: u64) {
                <$t>::start_clock(self, now)
            }
            fn poll_timeout(&self) -> Option<u64> {
                <$t>::poll_timeout(self)
            }
            fn handle_timeout(&mut self, now: u64) {
                <$t>::handle_timeout(self, now)
            }
            fn is_finished(&self) -> bool {
                <$t>::is_finished(self)
            }
            fn past_point_of_no_return(&self) -> bool {
                <$t>::past_point_of_no_return(self)
            }
        }
    };
}
pub(crate) use driven;

/// The one outstanding request, and a background one nobody waits for.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    pending: Option<Outgoing>,
    awaiting: bool,
    background: Option<Outgoing>,
    /// The POST whose body the driver is sealing.
    sealing: Option<Sealing>,
}

/// A POST waiting for its sealed field (the outstanding request is its seal).
#[derive(Debug)]
struct Sealing {
    path: &'static str,
    head: String,
    background: bool,
}

impl Wire {
    pub fn poll(&mut self) -> Option<Outgoing> {
        if let Some(p) = self.pending.take() {
            self.awaiting = true;
            return Some(p);
        }
        self.background.take()
    }

    pub fn is_awaiting(&self) -> bool {
        self.awaiting
    }

    /// Whether a reply is expected now (it is taken: the next is not).
    pub fn take_reply(&mut self) -> bool {
        core::mem::replace(&mut self.awaiting, false)
    }

    pub fn card(&mut self, r: &Request) {
        self.pending = Some(Outgoing::Card(r.to_bytes()));
    }

    pub fn apdu(&mut self, apdu: Vec<u8>) {
        self.pending = Some(Outgoing::Card(apdu));
    }

    /// POST `body` to `path`, once the driver sealed it; the answer is awaited.
    pub fn post(&mut self, path: &'static str, body: &Envelope) {
        self.seal_then_post(path, body, false);
    }

    /// A POST whose answer nobody waits for (its seal is awaited).
    pub fn post_in_background(&mut self, path: &'static str, body: &Envelope) {
        self.seal_then_post(path, body, true);
    }

    fn seal_then_post(&mut self, path: &'static str, body: &Envelope, background: bool) {
        self.pending = Some(Outgoing::Crypto(body.seal.clone()));
        self.sealing = Some(Sealing {
            path,
            head: body.head.clone(),
            background,
        });
    }

    /// Ask the driver to open a sealed answer, or to hash ([`Machine::on_opened`]
    /// follows).
    pub fn crypto(&mut self, job: Crypto) {
        self.pending = Some(Outgoing::Crypto(job));
        self.sealing = None;
    }

    /// The driver sealed the body being sealed, if any: its POST is next.
    /// `Err` when it could not seal: the POST never went out.
    fn sealed(&mut self, sealed: Option<&[u8]>) -> Option<Result<(), ()>> {
        let Sealing {
            path,
            head,
            background,
        } = self.sealing.take()?;
        let Some(sealed) = sealed else {
            return Some(Err(()));
        };
        let body = [&head, &json(&Hex(sealed.to_vec())), "}"].concat();
        let post = Some(Outgoing::Server { path, body });
        if background {
            self.background = post;
        } else {
            self.pending = post;
        }
        Some(Ok(()))
    }

    /// Nothing more to send for the failed step.
    pub fn drop_pending(&mut self) {
        self.pending = None;
        self.sealing = None;
    }

    /// Stop: nothing to send, and no answer wanted.
    pub fn stop(&mut self) {
        self.pending = None;
        self.sealing = None;
        self.awaiting = false;
    }
}

/// What the page hands the widget, purchase or load: `{session, session_mac, etsk, tsk}`.
pub(crate) trait Bundle {
    type Session: crate::json::lite::Encode;
    fn session(&self) -> &Self::Session;
    fn txn_id(&self) -> &str;
    /// The page origin the session was made for.
    fn origin(&self) -> &str;
    fn session_mac(&self) -> &Hex;
    fn etsk(&self) -> &Hex;
    fn tsk(&self) -> Option<Key32>;
}

/// Why a session bundle cannot be used (purchase or load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("TSK must be 32 bytes")]
    Tsk,
    #[error("the session is for another page origin")]
    Origin,
}

/// What every client holds besides its session and its state: the page's
/// origin, the sealing key, the outstanding request, the clock.
pub(crate) struct Core {
    pub page_origin: String,
    pub sealer: Sealer,
    pub wire: Wire,
    /// The driver's date (an expired card is refused at once).
    pub today: Option<BcdDate>,
    pub deadlines: Deadlines,
}

impl Core {
    /// For `bundle`, embedded by a page whose origin the browser reported as
    /// `page_origin` (it must be the session's); `warns`: warn before expiry.
    pub fn new<B: Bundle>(
        bundle: &B,
        page_origin: &str,
        rng: Box<dyn Entropy>,
        today: Option<BcdDate>,
        warns: bool,
    ) -> Result<Self, BundleError> {
        let tsk = bundle.tsk().ok_or(BundleError::Tsk)?;
        if origin_bytes(bundle.origin()) != origin_bytes(page_origin) {
            return Err(BundleError::Origin);
        }
        let sealer = Sealer::new(
            bundle.session(),
            bundle.txn_id(),
            bundle.session_mac(),
            bundle.etsk(),
            tsk,
            rng,
        );
        Ok(Self {
            page_origin: page_origin.to_string(),
            sealer,
            wire: Wire::default(),
            today,
            deadlines: Deadlines::new(warns),
        })
    }

    /// A fresh card read for a new transaction on `purse`, in `currency`/`exponent`.
    pub fn read_fresh(&mut self, purse: PurseId, currency: u16, exponent: u8) -> CardReader {
        self.read(Expect::Fresh {
            today: self.today,
            purse,
            currency,
            exponent,
        })
    }

    /// Start a card read: SELECT goes out.
    pub fn read(&mut self, expect: Expect) -> CardReader {
        let (reader, select) = CardReader::start(expect);
        self.wire.card(&select);
        reader
    }
}

/// The steps a client takes on each kind of reply; [`dispatch`] reads the reply.
pub(crate) trait Machine {
    type State;
    type Problem;
    /// The card left during the command.
    const REMOVED: Self::Problem;
    /// The card answered something unreadable.
    const UNREADABLE: Self::Problem;
    fn core(&mut self) -> &mut Core;
    /// Take the state out (the step puts the next one in).
    fn take_state(&mut self) -> Self::State;
    fn on_card(&mut self, state: Self::State, r: Response);
    /// The command's fate is unknown (lost, unreadable answer).
    fn card_gone(&mut self, state: Self::State, problem: Self::Problem);
    fn on_refused(&mut self, state: Self::State, r: Refusal);
    fn on_server(&mut self, state: Self::State, answer: Answer);
    /// The driver opened (or failed to open: `None`), or hashed, what
    /// [`Wire::crypto`] asked.
    fn on_opened(&mut self, state: Self::State, plain: Option<Zeroizing<Vec<u8>>>);
}

/// Feed the answer to the outstanding request. A reply when none is awaited
/// (a late answer, a background request's) is ignored.
pub(crate) fn dispatch<M: Machine>(m: &mut M, reply: Reply) {
    if !m.core().wire.take_reply() {
        return;
    }
    // A sealed body is the wire's own business: its POST goes out, and the
    // state waits on as it was. A body that could not be sealed never left.
    if let Reply::Crypto(Cipher(out)) = &reply {
        match m.core().wire.sealed(out.as_deref().map(|v| v.as_slice())) {
            Some(Ok(())) => return,
            Some(Err(())) => {
                let state = m.take_state();
                return m.on_server(state, Answer::Transient);
            }
            None => {}
        }
    }
    let state = m.take_state();
    match reply {
        Reply::Card(bytes) => match Response::parse(&bytes) {
            Ok(r) => m.on_card(state, r),
            Err(_) => m.card_gone(state, M::UNREADABLE),
        },
        Reply::CardLost => m.card_gone(state, M::REMOVED),
        Reply::Refused(r) => m.on_refused(state, r),
        Reply::Server(status, body) => m.on_server(state, Answer::new(status, body)),
        Reply::ServerUnreachable => m.on_server(state, Answer::Transient),
        Reply::Crypto(Cipher(plain)) => m.on_opened(state, plain),
    }
}

/// Sealing under TSK, and the request envelopes
/// `{"session":…,"session_mac":…,"etsk":…,"<field>":"<sealed>"}`.
pub(crate) struct Sealer {
    tsk: Key32,
    txn_id: String,
    /// The envelope up to the sealed field, serialised once.
    head: String,
    rng: Box<dyn Entropy>,
}

impl Sealer {
    pub fn new<S: crate::json::lite::Encode>(
        session: &S,
        txn_id: &str,
        session_mac: &Hex,
        etsk: &Hex,
        tsk: Key32,
        rng: Box<dyn Entropy>,
    ) -> Self {
        // Appended, not `format!`ed: core::fmt's code per call is download for the wasm.
        let head = [
            "{\"session\":",
            &json(session),
            ",\"session_mac\":",
            &json(session_mac),
            ",\"etsk\":",
            &json(etsk),
        ]
        .concat();
        Self {
            tsk,
            txn_id: txn_id.to_string(),
            head,
            rng,
        }
    }

    /// The seal of `m` under TSK with a fresh nonce, for the driver: its
    /// plaintext written by the message's [`crate::json::lite::Encode`] (one
    /// writer natively and in the browser; a test holds its bytes to serde_json's,
    /// which the servers seal with).
    pub fn seal<T: Sealed + crate::json::lite::Encode>(&mut self, m: &T) -> Crypto {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce);
        Crypto::Seal {
            key: self.tsk.clone(),
            nonce,
            aad: session::aad(T::LABEL, m.txn_id()),
            plain: Zeroizing::new(crate::json::lite::encode(m).into_bytes()),
        }
    }

    /// The opening of a `T` the server sealed under TSK for this transaction.
    pub fn open<T: Sealed>(&self, sealed: &Hex) -> Crypto {
        Crypto::Open {
            key: self.tsk.clone(),
            aad: session::aad(T::LABEL, &self.txn_id),
            sealed: sealed.0.clone(),
        }
    }

    /// The `T` the driver opened: read, and naming this transaction.
    pub fn read<T: Sealed + crate::json::lite::Decode>(
        &self,
        plain: Option<Zeroizing<Vec<u8>>>,
    ) -> Option<T> {
        crate::wire::read_opened(&self.txn_id, &plain?, crate::json::lite::decode).ok()
    }

    /// The request body: the bundle's session, MAC and ETSK, and `m` sealed
    /// under TSK as `field` (by the driver: [`Wire::post`]).
    pub fn envelope<T: Sealed + crate::json::lite::Encode>(
        &mut self,
        field: &str,
        m: &T,
    ) -> Envelope {
        Envelope {
            head: [&self.head, ",\"", field, "\":"].concat(),
            seal: self.seal(m),
        }
    }
}

/// A request body but for its one sealed field, and that field's seal:
/// `head` then the sealed bytes as a JSON hex string, then `}`. A retry seals
/// it again with the same nonce: the same bytes go out.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    head: String,
    seal: Crypto,
}

impl core::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Envelope")
    }
}

/// An origin without its trailing `/`s, as bytes (no `str` slicing, nor a
/// char searcher, in the wasm: an origin is ASCII).
fn origin_bytes(s: &str) -> &[u8] {
    let mut b = s.as_bytes();
    while let [rest @ .., b'/'] = b {
        b = rest;
    }
    b
}

/// A receipt's `when`: the sealed result's date and time, with a space between.
pub(crate) fn stamp(date: &str, time: &str) -> String {
    [date, " ", time].concat()
}

pub(crate) fn json<T: crate::json::lite::Encode + ?Sized>(v: &T) -> String {
    crate::json::lite::encode(v)
}

/// The request's clock: an optional warning, then expiry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    timeout_ms: u64,
    /// Warn before expiry (and offer more time).
    warns: bool,
    warn_at: Option<u64>,
    expire_at: Option<u64>,
    warning: bool,
    extensions: u8,
}

impl Deadlines {
    pub fn new(warns: bool) -> Self {
        Self {
            timeout_ms: DEFAULT_TIMEOUT_MS,
            warns,
            warn_at: None,
            expire_at: None,
            warning: false,
            extensions: 0,
        }
    }

    pub fn set_timeout(&mut self, ms: u64) {
        self.timeout_ms = ms;
    }

    pub fn start(&mut self, now: u64) {
        let lead = WARN_BEFORE_MS.min(self.timeout_ms / 4);
        self.expire_at = Some(now + self.timeout_ms);
        self.warn_at = self.warns.then(|| now + self.timeout_ms - lead);
        self.warning = false;
    }

    pub fn next(&self) -> Option<u64> {
        if self.warning {
            self.expire_at
        } else {
            [self.warn_at, self.expire_at].into_iter().flatten().min()
        }
    }

    /// Time moved to `now`: true when the request expired (else it may warn).
    pub fn expired(&mut self, now: u64) -> bool {
        if self.expire_at.is_some_and(|t| t <= now) {
            return true;
        }
        if self.warn_at.is_some_and(|t| t <= now) {
            self.warning = true;
        }
        false
    }

    pub fn warning(&self) -> bool {
        self.warning
    }

    /// "More time": restart the clock (at most [`MAX_EXTENSIONS`] times).
    pub fn extend(&mut self, now: u64) -> bool {
        if !self.warning || self.extensions >= MAX_EXTENSIONS {
            return false;
        }
        self.extensions += 1;
        self.start(now);
        true
    }
}

/// What the card told us in this selection.
#[derive(Debug, Clone)]
pub(crate) struct CardRead {
    pub select: SelectResponse,
    /// SELECT's answer as the card gave it (the server reads it again).
    pub select_data: Vec<u8>,
    /// READ LOG records, newest first.
    pub log: Vec<LogRecord>,
    /// VERIFY succeeded in this selection (purchases).
    pub pin_verified: bool,
}

impl CardRead {
    /// The log as it travels in draw and recover requests.
    pub fn log_hex(&self) -> Vec<Hex> {
        log_hex(&self.log)
    }
}

pub(crate) fn log_hex(log: &[LogRecord]) -> Vec<Hex> {
    log.iter().map(|r| Hex(r.encode())).collect()
}

/// What the card said, as a draw request carries it (purchase and load alike).
pub(crate) struct CardEvidence {
    pub txn_id: String,
    pub page_origin: String,
    pub amount: u32,
    pub purse: PurseId,
    pub select: Hex,
    pub initialize: Hex,
    pub log: Vec<Hex>,
}

impl Core {
    /// The evidence of `card` and its INITIALIZE answer for a draw request.
    pub fn evidence(
        &self,
        card: &CardRead,
        txn_id: &str,
        amount: u32,
        purse: PurseId,
        initialize: Vec<u8>,
    ) -> CardEvidence {
        CardEvidence {
            txn_id: txn_id.to_string(),
            page_origin: self.page_origin.clone(),
            amount,
            purse,
            select: Hex(card.select_data.clone()),
            initialize: Hex(initialize),
            log: card.log_hex(),
        }
    }
}

/// What a card must be for this session.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect {
    /// A new transaction: not expired today, the session's currency.
    Fresh {
        today: Option<BcdDate>,
        purse: PurseId,
        currency: u16,
        exponent: u8,
    },
    /// Recovery: the log is read back to `atc`; the card is `card_id` when known.
    Recovering { atc: u16, card_id: Option<CardId> },
}

/// Why a card read stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadStop {
    Unreadable,
    Expired,
    WrongCurrency,
    OtherCard,
}

/// The next step of a card read.
pub(crate) enum ReadStep {
    /// The next command is out: keep reading.
    Reading(CardReader),
    Done(CardRead),
    Stopped(ReadStop),
}

/// SELECT, then READ LOG 1, 2, … until the log ends, is full, or (in
/// recovery) reaches back to the transaction's ATC.
#[derive(Debug, Clone)]
pub(crate) struct CardReader {
    expect: Expect,
    card: Option<CardRead>,
}

impl CardReader {
    /// A read and its first command (SELECT).
    pub fn start(expect: Expect) -> (Self, Request) {
        let select = Request::Select(Select { aid: AID.to_vec() });
        (Self { expect, card: None }, select)
    }

    /// The card's SELECT answer, once read.
    pub fn select(&self) -> Option<&SelectResponse> {
        self.card.as_ref().map(|c| &c.select)
    }

    /// Take the card's answer to the last command; the next one goes on `wire`.
    pub fn step(mut self, r: Response, wire: &mut Wire) -> ReadStep {
        let Some(mut card) = self.card.take() else {
            let sel = match (r.sw.is_ok(), SelectResponse::decode(&r.data)) {
                (true, Ok(sel)) => sel,
                _ => return ReadStep::Stopped(ReadStop::Unreadable),
            };
            if let Some(stop) = self.refuses(&sel) {
                return ReadStep::Stopped(stop);
            }
            let card = CardRead {
                select: sel,
                select_data: r.data,
                log: Vec::new(),
                pin_verified: false,
            };
            return self.next(card, wire);
        };
        // 6A83: the log holds no more records. A record that does not decode ends the read too.
        match r
            .sw
            .is_ok()
            .then(|| LogRecord::decode(&r.data).ok())
            .flatten()
        {
            Some(rec) => {
                card.log.push(rec);
                self.next(card, wire)
            }
            None => ReadStep::Done(card),
        }
    }

    fn refuses(&self, sel: &SelectResponse) -> Option<ReadStop> {
        match self.expect {
            Expect::Fresh {
                today,
                purse,
                currency,
                exponent,
            } => {
                if today.is_some_and(|d| sel.expiry.is_expired_on(&d)) {
                    return Some(ReadStop::Expired);
                }
                let p = sel.purse(purse);
                (p.currency != currency || p.exponent != exponent)
                    .then_some(ReadStop::WrongCurrency)
            }
            Expect::Recovering {
                card_id: Some(id), ..
            } if id != sel.card_id => Some(ReadStop::OtherCard),
            Expect::Recovering { .. } => None,
        }
    }

    fn next(mut self, card: CardRead, wire: &mut Wire) -> ReadStep {
        let n = card.log.len() + 1;
        let passed = match self.expect {
            Expect::Recovering { atc, .. } => card.log.last().is_some_and(|r| r.atc <= atc),
            Expect::Fresh { .. } => false,
        };
        if n > crate::command::LOG_SIZE as usize || passed {
            return ReadStep::Done(card);
        }
        self.card = Some(card);
        wire.card(&Request::ReadLog(ReadLog { record: n as u8 }));
        ReadStep::Reading(self)
    }
}

/// The payment server's answer to a POST, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// No answer, or a 5xx: the same request may be sent again.
    Transient,
    /// 200 with its body.
    Ok(String),
    /// Refused with the server's stable code.
    Refused(ApiCode),
}

impl Answer {
    pub fn new(status: u16, body: String) -> Self {
        match status {
            200 => Self::Ok(body),
            s if s >= 500 => Self::Transient,
            _ => Self::Refused(
                crate::json::lite::decode::<ErrorBody>(body.as_bytes())
                    .map(|b| b.error.code)
                    .unwrap_or(ApiCode::Other),
            ),
        }
    }

    /// The 200 body as `T`, or the code it was refused with (`other` for an
    /// answer that does not parse).
    pub fn parse<T: crate::json::lite::Decode>(self) -> Result<T, ApiCode> {
        match self {
            Self::Ok(body) => {
                crate::json::lite::decode(body.as_bytes()).map_err(|_| ApiCode::Other)
            }
            Self::Refused(code) => Err(code),
            Self::Transient => Err(ApiCode::Other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nonce a test asks for, the same every time.
    struct Fixed;
    impl Entropy for Fixed {
        fn fill(&mut self, buf: &mut [u8]) {
            buf.fill(7);
        }
    }

    /// A whole request body the client writes (the head built once, the sealed
    /// request appended) is, byte for byte, serde_json's of the server's envelope
    /// with the plaintext sealed by serde (`Sealed::seal`): same JSON, same
    /// plaintext under the same key and nonce, so the same ciphertext.
    #[test]
    fn envelopes_are_serde_jsons_to_the_byte() {
        use crate::purchase::{DrawEnvelope, DrawRequest};
        let mut session = crate::purchase::draw::tests::session();
        session.merchant_name = "Caf\u{e9} \"Q\\\u{1}\u{2028}".into();
        let (mac, etsk) = (Hex(vec![0xab; 32]), Hex(vec![0x01, 0xfe]));
        let tsk = || Key32::new([9; 32]);
        let mut sealer = Sealer::new(&session, "T-1", &mac, &etsk, tsk(), Box::new(Fixed));
        let req = DrawRequest {
            txn_id: "T-1".into(),
            page_origin: "http://m\u{7f}".into(),
            amount: 250,
            purse: crate::types::PurseId::Money,
            select: Hex(vec![1, 2]),
            initialize_load: Hex(vec![0xc3; 20]),
            initialize: Hex(vec![]),
            pin_verified: true,
            log: vec![Hex(vec![0; 37])],
        };
        let envelope = sealer.envelope("draw_request", &req);
        let theirs = DrawEnvelope {
            session,
            session_mac: mac,
            etsk,
            draw_request: req.seal(&tsk(), [7; NONCE_LEN]),
        };
        let theirs = serde_json::to_string(&theirs).unwrap();
        // The wire asks its driver to seal, then posts; twice (a retry) the same bytes.
        let mut wire = Wire::default();
        for _ in 0..2 {
            wire.post("/v1/purchases/draw", &envelope);
            assert_eq!(sealed_post(&mut wire), Some(theirs.clone()));
        }
    }

    /// What the wire posts once its driver sealed the outstanding body natively.
    fn sealed_post(wire: &mut Wire) -> Option<String> {
        let Some(Outgoing::Crypto(job @ Crypto::Seal { .. })) = wire.poll() else {
            return None;
        };
        let Cipher(out) = job.perform();
        assert!(wire.take_reply());
        assert_eq!(
            wire.sealed(out.as_deref().map(|v| v.as_slice())),
            Some(Ok(()))
        );
        match wire.poll() {
            Some(Outgoing::Server { body, .. }) => Some(body),
            _ => None,
        }
    }

    /// A body the driver could not seal is never posted; a background POST
    /// goes out unawaited once sealed; a stop forgets the body being sealed.
    #[test]
    fn a_body_goes_out_only_sealed() {
        let session = crate::purchase::draw::tests::session();
        let (mac, etsk) = (Hex(vec![0xab; 32]), Hex(vec![0x01, 0xfe]));
        let mut sealer = Sealer::new(
            &session,
            "T-1",
            &mac,
            &etsk,
            Key32::new([9; 32]),
            Box::new(Fixed),
        );
        let report = crate::purchase::SuspiciousReport {
            txn_id: "T-1".into(),
            page_origin: "https://shop.example".into(),
            reason: "test".into(),
        };
        let envelope = sealer.envelope("report", &report);

        let mut wire = Wire::default();
        wire.post("/v1/purchases/suspicious", &envelope);
        assert!(matches!(
            wire.poll(),
            Some(Outgoing::Crypto(Crypto::Seal { .. }))
        ));
        assert!(wire.take_reply());
        assert_eq!(wire.sealed(None), Some(Err(())));
        assert_eq!(wire.poll(), None);

        wire.post_in_background("/v1/purchases/suspicious", &envelope);
        let Some(Outgoing::Crypto(job)) = wire.poll() else {
            panic!("the seal first");
        };
        assert!(wire.is_awaiting());
        let Cipher(out) = job.perform();
        assert!(wire.take_reply());
        assert_eq!(
            wire.sealed(out.as_deref().map(|v| v.as_slice())),
            Some(Ok(()))
        );
        assert!(matches!(wire.poll(), Some(Outgoing::Server { .. })));
        assert!(!wire.is_awaiting());

        wire.post("/v1/purchases/suspicious", &envelope);
        wire.stop();
        assert_eq!(wire.sealed(Some(&[1, 2, 3])), None);
        assert_eq!(wire.poll(), None);
    }

    #[test]
    fn deadlines_warn_then_expire_and_extend_a_bounded_number_of_times() {
        let mut d = Deadlines::new(true);
        d.start(0);
        assert_eq!(d.next(), Some(100_000));
        assert!(!d.expired(99_999));
        assert!(!d.warning());
        assert!(!d.expired(100_000));
        assert!(d.warning());
        assert_eq!(d.next(), Some(120_000));
        for i in 0..MAX_EXTENSIONS as u64 {
            assert!(d.extend(200_000 * i));
            assert!(!d.warning());
            assert!(!d.expired(200_000 * i + 100_000));
        }
        assert!(!d.extend(0));
        let mut quiet = Deadlines::new(false);
        quiet.set_timeout(1_000);
        quiet.start(5);
        assert_eq!(quiet.next(), Some(1_005));
        assert!(!quiet.expired(1_004) && !quiet.warning());
        assert!(quiet.expired(1_005));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
        /// Every server answer and sealed result the clients read (`json::lite::Decode`,
        /// natively and in the browser) reads as the servers' serde derive reads it,
        /// for hostile variants of each: same value, or both refuse.
        #[test]
        fn client_decoders_agree_with_serde(seed: u64) {
            use crate::json::lite::testing::differential;
            use crate::load::*;
            use crate::purchase::*;
            use crate::wire::{ErrorDetail, Hex};
            let h = |b: &[u8]| Hex(b.to_vec());
            let names = ["txn_id", "status", "result_c", "check_value", "card_sw", "kind"];
            let mut n = 0;
            let mut go = |accepted: u32| n += accepted;
            go(differential(&DrawResponse {
                txn_id: "T-1".into(),
                verify_mode: crate::session::VerifyMode::Client,
                debit_command: h(&[1, 2]),
                expected_s3_m: Some(h(&[3])),
            }, &names, 20, seed));
            go(differential(&DebitCommand {
                txn_id: "T-1".into(),
                apdu: h(&[0x80, 0x54]),
                amount: 250,
                balance_after: 4_294_967_295,
                check_value: Some(h(&[9; 8])),
            }, &names, 20, seed));
            go(differential(&CompleteResponse {
                txn_id: "T-1".into(),
                status: PurchaseStatus::Debited,
                result_c: h(&[1]),
                result_m: h(&[2]),
            }, &names, 20, seed));
            go(differential(&ResultC {
                txn_id: "T-1".into(),
                status: PurchaseStatus::Failed,
                merchant_name: "M \u{e9}".into(),
                amount: 1,
                currency: 978,
                exponent: 2,
                balance_after: Some(7),
                card_sw: Some("6985".into()),
                date: "2026-11-30".into(),
                time: "08:00:00".into(),
            }, &names, 20, seed));
            go(differential(&RecoverResponse {
                txn_id: "T-1".into(),
                status: RecoverStatus::Debited,
                result_c: Some(h(&[1])),
                result_m: None,
            }, &names, 20, seed));
            go(differential(&LoadDrawResponse { txn_id: "L-1".into(), credit_command: h(&[5]) }, &names, 20, seed));
            go(differential(&CreditCommand {
                txn_id: "L-1".into(),
                apdu: h(&[0x80, 0x52]),
                amount: 5_000,
                balance_after: 6_000,
            }, &names, 20, seed));
            go(differential(&LoadCompleteResponse {
                txn_id: "L-1".into(),
                status: LoadStatus::NotCredited,
                result_c: h(&[1]),
                result_b: h(&[2]),
            }, &names, 20, seed));
            go(differential(&LoadResultC {
                txn_id: "L-1".into(),
                status: LoadStatus::Credited,
                bank_name: "B".into(),
                amount: 5_000,
                currency: 999,
                exponent: 0,
                purse: crate::types::PurseId::Points,
                balance_before: 0,
                balance_after: None,
                date: "2026-11-30".into(),
                time: "08:00:00".into(),
            }, &names, 20, seed));
            go(differential(&LoadRecoverResponse {
                txn_id: "L-1".into(),
                status: LoadRecoverStatus::Unknown,
                result_c: None,
                result_b: Some(h(&[4])),
            }, &names, 20, seed));
            go(differential(&ErrorBody {
                error: ErrorDetail { code: ApiCode::InsufficientFunds, message: "no".into() },
            }, &names, 20, seed));
            proptest::prop_assert!(n > 20, "only {} of 220 accepted", n);
        }
    }

    #[test]
    fn answers_are_read_by_status_and_code() {
        assert_eq!(Answer::new(503, String::new()), Answer::Transient);
        assert_eq!(
            Answer::new(
                402,
                r#"{"error":{"code":"insufficient_funds","message":"x"}}"#.into()
            ),
            Answer::Refused(ApiCode::InsufficientFunds)
        );
        assert_eq!(
            Answer::new(400, "not json".into()),
            Answer::Refused(ApiCode::Other)
        );
        assert_eq!(
            Answer::Ok("{".into()).parse::<ErrorBody>().unwrap_err(),
            ApiCode::Other
        );
    }
}

/// `impl Bundle` for a `{session, session_mac, etsk, tsk}` struct.
macro_rules! bundle {
    ($t:ty, $s:ty) => {
        impl Bundle for $t {
            type Session = $s;
            fn session(&self) -> &$s {
                &self.session
            }
            fn txn_id(&self) -> &str {
                &self.session.txn_id
            }
            fn origin(&self) -> &str {
                &self.session.origin
            }
            fn session_mac(&self) -> &Hex {
                &self.session_mac
            }
            fn etsk(&self) -> &Hex {
                &self.etsk
            }
            fn tsk(&self) -> Option<Key32> {
                <$t>::tsk(self)
            }
        }
    };
}
bundle!(crate::purchase::WidgetSession, crate::session::Session);
bundle!(crate::load::LoadWidgetSession, crate::load::LoadSession);
