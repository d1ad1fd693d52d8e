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

use crate::prelude::*;
#[cfg(feature = "load")]
mod load;
#[cfg(feature = "purchase")]
mod pay;

use purse::client::{Cipher, Crypto, Driven, Entropy, Outgoing, Reply};
use purse::command::SelectResponse;
use purse::json::lite::{Encode, Writer};
#[cfg(feature = "load")]
use purse::load::BankResult;
#[cfg(feature = "purchase")]
use purse::purchase::MerchantResult;
use purse::session::VerifyMode;
use serde::Serialize;

use crate::bridge::{Bridge, Capability, Heard};
use crate::i18n::Lang;
#[cfg(feature = "purchase")]
use crate::keypad::Layout;
use crate::problem::Problem;
use crate::view::{Screen, Step, View};

/// Tunables (the tests shorten the timeouts).
#[derive(Debug, Clone)]
pub struct Config {
    pub lang: Lang,
    /// The request cancels itself after this long without an answer (120 s).
    pub timeout_ms: u32,
    /// How long to wait for the extension to answer the first request (`readers`)
    /// before deciding it is absent (the URL's `hello_timeout`, named for the request
    /// that used to come first).
    pub hello_timeout_ms: u32,
    /// Where the "install" link points.
    pub install_url: String,
    /// Today's date (the glue's clock), to refuse an expired card at once.
    pub today: Option<purse::BcdDate>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            lang: Lang::default(),
            timeout_ms: 120_000,
            hello_timeout_ms: 1_500,
            install_url: "/install.html".into(),
            today: None,
        }
    }
}

/// What the page mounted: a purchase (default) or a load (`mode: 'load'`). A wasm
/// built without a mode's feature does not know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    #[cfg(feature = "purchase")]
    Purchase,
    #[cfg(feature = "load")]
    Load,
}

impl Mode {
    /// The frame URL's `mode`: `load` for a load, anything else a purchase; `None`
    /// when this build does not do that mode.
    pub fn from_query(mode: Option<&str>) -> Option<Self> {
        if mode == Some("load") {
            #[cfg(feature = "load")]
            return Some(Mode::Load);
        } else {
            #[cfg(feature = "purchase")]
            return Some(Mode::Purchase);
        }
        #[allow(unreachable_code)]
        None
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
    /// A key in the frame: only the shopper makes one (the page around a
    /// cross-origin frame cannot). A purchase asks the card's proof at the
    /// first, so Approve finds it in, and not before.
    Gesture,
    /// A press on Approve (mouse button, finger, pen), a press's length before
    /// its click: a purchase sends the card's proof and then its INITIALIZE FOR
    /// PURCHASE, so the click goes straight to the draw.
    Press,
}

/// Everything that can happen to the checkout.
#[derive(Debug, Clone)]
pub enum Input {
    /// Begin: detect the card.
    Start,
    /// A message from the extension (its JSON text: a reply or an event).
    Extension(String),
    /// The payment origin answered request `id` (status, body), or the network failed
    /// (`None`: why does not matter, the request's fate is unknown either way).
    Http {
        id: u64,
        result: Option<(u16, String)>,
    },
    /// What [`Effect::Crypto`] `id` gave.
    Crypto {
        id: u64,
        out: Cipher,
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
    #[cfg(feature = "purchase")]
    Purchase(MerchantResult),
    #[cfg(feature = "load")]
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
        /// The words the frame shows the shopper for it, in the shopper's language.
        message: String,
        txn_id: String,
        /// Loads: whether the shopper's account is charged (`no` | `maybe` | `yes`).
        #[serde(skip_serializing_if = "Option::is_none")]
        charged: Option<&'static str>,
        /// Loads: what the bank's page posts to the bank, once decided.
        #[cfg(feature = "load")]
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<BankResult>,
    },
}

impl Encode for Outcome {
    fn encode(&self, w: &mut Writer) {
        match self {
            #[cfg(feature = "purchase")]
            Outcome::Purchase(r) => r.encode(w),
            #[cfg(feature = "load")]
            Outcome::Load(r) => r.encode(w),
        }
    }
}

/// serde's derive of `ParentEvent` (`tag = "event"`), written without serde.
impl Encode for ParentEvent {
    fn encode(&self, w: &mut Writer) {
        let mut o = w.object();
        match self {
            ParentEvent::Ready { capability } => {
                o.field("event", "ready");
                o.field("capability", capability);
            }
            ParentEvent::Capability { capability } => {
                o.field("event", "capability");
                o.field("capability", capability);
            }
            ParentEvent::Result {
                txn_id,
                verify_mode,
                result,
            } => {
                o.field("event", "result");
                o.field("txn_id", txn_id);
                o.some("verify_mode", verify_mode);
                o.field("result", result);
            }
            ParentEvent::Cancel { reason, txn_id } => {
                o.field("event", "cancel");
                o.field("reason", reason);
                o.field("txn_id", txn_id);
            }
            ParentEvent::Error {
                code,
                message,
                txn_id,
                charged,
                #[cfg(feature = "load")]
                result,
            } => {
                o.field("event", "error");
                o.field("code", code);
                o.field("message", message);
                o.field("txn_id", txn_id);
                o.some("charged", charged);
                #[cfg(feature = "load")]
                o.some("result", result);
            }
        }
        o.end();
    }
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
    /// Seal or open with AES-256-GCM, or hash with SHA-256 (WebCrypto); the answer is
    /// [`Input::Crypto`].
    Crypto {
        id: u64,
        job: Crypto,
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
            Effect::Crypto { id, .. } => write!(f, "Crypto#{id}"),
            Effect::Render(v) => write!(f, "Render({})", crate::view::screen_name(&v.screen)),
            Effect::Parent(e) => write!(f, "Parent({e:?})"),
        }
    }
}

/// The client inside, whichever the mode (`pay.rs`, `load.rs`): what the checkout
/// needs of it besides driving it.
trait Flow {
    fn driver(&mut self) -> &mut dyn Driven;
    fn driven(&self) -> &dyn Driven;
    fn mode(&self) -> Mode;
    /// This transaction's keypad layout (a purchase's).
    #[cfg(feature = "purchase")]
    fn layout(&self) -> Option<&Layout> {
        None
    }
    /// A shopper's action beyond approve, cancel and retry (the checkout's own).
    fn on_user(&mut self, _a: Action, _now: u64) {}
    /// The card left the reader while no command was out.
    fn card_removed(&mut self);
    /// The outcome the page is told about, with a key that changes when it does.
    fn outcome(&self, ck: &Checkout) -> Option<(String, ParentEvent)>;
    /// The screen; `waiting`: the one while the client waits for the card.
    fn screen(&self, waiting: Screen, recovering: bool) -> Screen;
    /// What the card said when selected.
    fn card(&self) -> Option<SelectResponse>;
    fn expiry_warning(&self) -> bool {
        false
    }
    /// The balance on the receipt, once done.
    fn balance_after(&self) -> Option<u32>;
}

/// Transaction id, payee, amount, currency, exponent and purse of a session.
type Head = (String, String, u32, u16, u8, purse::PurseId);

/// A session's [`Head`]: its transaction id, `payee` and what `s` says of the money.
macro_rules! head {
    ($s:expr, $payee:ident) => {
        (
            $s.txn_id.clone(),
            $s.$payee.clone(),
            $s.amount,
            $s.currency,
            $s.exponent,
            $s.purse,
        )
    };
}
use head;

/// The checkout for one transaction.
pub struct Checkout {
    cfg: Config,
    txn: Box<dyn Flow>,
    bridge: Bridge,
    txn_id: String,
    payee: String,
    amount: u32,
    currency: u16,
    exponent: u8,
    purse: purse::PurseId,
    started: bool,
    first_answer_at: Option<u64>,
    /// The request (a POST, a seal or an opening) whose answer the client waits for.
    awaited: Option<u64>,
    next_id: u64,
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
    /// The page asked for a mode this wasm is not built for.
    Mode,
}

impl SessionError {
    fn json(e: purse::json::Error) -> Self {
        SessionError::Json(e.as_str().into())
    }
    /// What the page's `error` event says (`Display` writes the same), built without
    /// `core::fmt`, which the wasm leaves out (docs/widget.md, "no_std").
    pub fn message(&self) -> String {
        match self {
            SessionError::Json(e) => ["session is not valid: ", e].concat(),
            SessionError::Tsk => "TSK must be 32 bytes of hex".into(),
            SessionError::Origin => "the session is for another origin".into(),
            SessionError::Mode => "this widget does not do that mode".into(),
        }
    }
    /// A client refused the session: its TSK (`tsk`) or its origin.
    fn bundle(tsk: bool) -> Self {
        if tsk {
            SessionError::Tsk
        } else {
            SessionError::Origin
        }
    }
}

impl core::fmt::Display for SessionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message())
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
        rng: Box<dyn Entropy>,
    ) -> Result<Self, SessionError> {
        let (txn, head) = match mode {
            #[cfg(feature = "purchase")]
            Mode::Purchase => pay::start(&cfg, session, parent_origin, rng)?,
            #[cfg(feature = "load")]
            Mode::Load => load::start(&cfg, session, parent_origin, rng)?,
        };
        let (txn_id, payee, amount, currency, exponent, purse) = head;
        let mut c = Self {
            cfg,
            txn,
            bridge: Bridge::new(),
            txn_id,
            payee,
            amount,
            currency,
            exponent,
            purse,
            started: false,
            first_answer_at: None,
            awaited: None,
            next_id: 1,
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
        self.txn.mode()
    }

    /// The reader in use (or last seen).
    pub fn reader(&self) -> Option<&str> {
        self.bridge.reader()
    }

    pub fn capability(&self) -> Option<Capability> {
        self.bridge.capability()
    }

    /// This transaction's keypad layout (a purchase's).
    #[cfg(feature = "purchase")]
    pub fn layout(&self) -> Option<&Layout> {
        self.txn.layout()
    }

    pub fn is_finished(&self) -> bool {
        self.txn.driven().is_finished()
    }

    /// When the glue must call back with [`Input::Tick`] (ms, the clock of `handle`).
    pub fn poll_timeout(&self) -> Option<u64> {
        let first = self
            .first_answer_at
            .filter(|_| self.bridge.awaiting_first_answer());
        [first, self.card_poll_at, self.txn.driven().poll_timeout()]
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
                self.first_answer_at = Some(now + self.cfg.hello_timeout_ms as u64);
                out.push(self.bridge.start());
            }
            Input::Start => {}
            Input::Tick => {
                if self.first_answer_at.is_some_and(|t| t <= now) {
                    self.first_answer_at = None;
                    self.bridge.first_answer_timed_out();
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
                Some(Heard::Removed) => self.txn.card_removed(),
                Some(Heard::Inserted) if self.txn.driven().wants_card() => {
                    self.bridge.wants_card(&mut out)
                }
                _ => {}
            },
            Input::Http { id, result } => self.answered(
                id,
                match result {
                    Some((status, body)) => Reply::Server(status, body),
                    None => Reply::ServerUnreachable,
                },
            ),
            Input::Crypto { id, out } => self.answered(id, Reply::Crypto(out)),
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

    /// The answer to request `id`, fed to the client if it is the one awaited
    /// (a late or a background request's answer is dropped).
    fn answered(&mut self, id: u64, reply: Reply) {
        if self.awaited == Some(id) {
            self.awaited = None;
            self.txn.driver().handle(reply);
        }
    }

    /// An id for the next POST or cipher request.
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    fn on_user(&mut self, a: Action, now: u64, out: &mut Vec<(u64, String)>) {
        match a {
            Action::Approve => self.txn.driver().approve(now),
            Action::Cancel => {
                self.txn.driver().cancel();
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
        self.txn.on_user(a, now);
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
                        let id = self.next_id();
                        if self.txn.driven().is_awaiting() {
                            self.awaited = Some(id);
                        }
                        fx.push(Effect::Http { id, path, body });
                    }
                    Outgoing::Crypto(job) => {
                        let id = self.next_id();
                        self.awaited = Some(id);
                        fx.push(Effect::Crypto { id, job });
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
        self.txn.outcome(self)
    }

    fn error(&self, p: Problem) -> (String, ParentEvent) {
        (
            ["failed:", p.code()].concat(),
            ParentEvent::Error {
                code: p.code(),
                message: p.text(self.cfg.lang),
                txn_id: self.txn_id.clone(),
                charged: p.charged().map(|c| c.as_str()),
                #[cfg(feature = "load")]
                result: None,
            },
        )
    }

    fn cancelled(&self, reason: &'static str) -> (String, ParentEvent) {
        (
            ["cancel:", reason].concat(),
            ParentEvent::Cancel {
                reason,
                txn_id: self.txn_id.clone(),
            },
        )
    }

    /// The screen while the client waits for the card.
    fn waiting_screen(&self) -> Screen {
        match self.bridge.capability() {
            Some(Capability::Ready) | None if self.bridge.awaiting_first_answer() => {
                Screen::Progress(Step::Detecting)
            }
            Some(Capability::Ready) => Screen::Progress(Step::Connecting),
            Some(c) => Screen::Unavailable(c),
            None => Screen::Progress(Step::Connecting),
        }
    }

    /// The current view (also for re-renders on a width change).
    pub fn view(&self) -> View {
        let screen = self.txn.screen(self.waiting_screen(), self.recovering);
        let card = self.txn.card();
        let expiry_warning = self.txn.expiry_warning();
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
        if let Some(c) = self.txn.card() {
            self.seen = Some((c.purse(self.purse).balance, c.card_id.masked()));
        }
        let after = self.txn.balance_after();
        if let (Some(b), Some(seen)) = (after, self.seen.as_mut()) {
            seen.0 = b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Mode;

    #[cfg(not(target_arch = "wasm32"))]
    mod parent_event {
        use proptest::prelude::*;
        use purse::session::VerifyMode;
        use purse::wire::Hex;

        use super::super::{Capability, Outcome, ParentEvent};

        /// Text with everything JSON escapes (or might): quotes, backslash,
        /// control characters, DEL, non-ASCII, U+2028.
        const TEXT: &str = "[a-z\"\\\\/\x00-\x1f\x7f\u{e9}\u{2028}\u{1f600}]{0,10}";

        fn outcomes(t: String, h: Vec<u8>, n: u32) -> Vec<Outcome> {
            let mut v = Vec::new();
            let _ = (&t, &h, n);
            #[cfg(feature = "purchase")]
            {
                use purse::purchase::MerchantResult;
                v.push(Outcome::Purchase(MerchantResult::ResultM {
                    txn_id: t.clone(),
                    result_m: Hex(h.clone()),
                }));
                v.push(Outcome::Purchase(MerchantResult::S3 {
                    txn_id: t.clone(),
                    balance_after: n,
                    s3: Hex(h.clone()),
                    expected_s3_m: Hex(h.clone()),
                }));
            }
            #[cfg(feature = "load")]
            {
                use purse::load::BankResult;
                v.push(Outcome::Load(BankResult::ResultB {
                    txn_id: t.clone(),
                    result_b: Hex(h.clone()),
                }));
                v.push(Outcome::Load(BankResult::NotLoaded {
                    txn_id: t.clone(),
                    reason: t.clone(),
                }));
            }
            v
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            /// Every event the page hears, generated: the widget's writer gives
            /// serde_json's bytes for serde's derive (`tag = "event"`, optional
            /// fields present and absent).
            #[test]
            fn parent_event_encoder_agrees_with_serde(
                txn_id in TEXT, message in TEXT, h in proptest::collection::vec(any::<u8>(), 0..12),
                n in any::<u32>(), cap in 0..5usize,
                vm in proptest::option::of(prop::sample::select(VerifyMode::ALL.to_vec())),
                charged in proptest::option::of(prop::sample::select(vec!["no", "maybe", "yes"])),
                pick in any::<prop::sample::Index>(),
            ) {
                let capability = [
                    Capability::NoExtension,
                    Capability::NoBridge,
                    Capability::NoReader,
                    Capability::NoCard,
                    Capability::Ready,
                ][cap];
                let outcomes = outcomes(txn_id.clone(), h, n);
                let result = outcomes[pick.index(outcomes.len())].clone();
                #[cfg(feature = "load")]
                let bank = match &result {
                    Outcome::Load(r) if charged.is_some() => Some(r.clone()),
                    _ => None,
                };
                let events = [
                    ParentEvent::Ready { capability },
                    ParentEvent::Capability { capability },
                    ParentEvent::Result { txn_id: txn_id.clone(), verify_mode: vm, result },
                    ParentEvent::Cancel { reason: "shopper", txn_id: txn_id.clone() },
                    ParentEvent::Error {
                        code: "bridge",
                        message,
                        txn_id,
                        charged,
                        #[cfg(feature = "load")]
                        result: bank,
                    },
                ];
                for ev in &events {
                    prop_assert_eq!(
                        purse::json::lite::encode(ev),
                        serde_json::to_string(ev).unwrap()
                    );
                }
            }
        }
    }

    #[test]
    fn the_frame_url_names_a_mode_this_build_does_or_none() {
        #[cfg(feature = "load")]
        assert_eq!(Mode::from_query(Some("load")), Some(Mode::Load));
        #[cfg(not(feature = "load"))]
        assert_eq!(Mode::from_query(Some("load")), None);
        for q in [None, Some("purchase"), Some("loads"), Some("")] {
            #[cfg(feature = "purchase")]
            assert_eq!(Mode::from_query(q), Some(Mode::Purchase), "{q:?}");
            #[cfg(not(feature = "purchase"))]
            assert_eq!(Mode::from_query(q), None, "{q:?}");
        }
    }
}
