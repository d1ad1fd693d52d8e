//! The messages between a payment page (the widget), the browser extension
//! and the bridge (DESIGN §5), declared once for every end: the bridge
//! parses [`Request`]s and writes [`Reply`]s and [`Event`]s with these types;
//! the widget writes requests and reads replies with the same ones. serde
//! only (no JSON library here), so it builds for wasm32.
//!
//! # Format
//!
//! Page → extension (`window.postMessage`, `channel: "cardpay"`,
//! `dir: "to-extension"`) and extension → bridge (native messaging, with
//! `origin` added by the extension from the browser's sender information):
//!
//! ```json
//! {"id": 7, "type": "transmit", "origin": "https://pay.example", "handle": 1, "apdu": "805C000004"}
//! ```
//!
//! Replies echo `id` and carry either `result` or `error`:
//!
//! ```json
//! {"id": 7, "result": {"rapdu": "000003E89000"}}
//! {"id": 7, "error": {"code": "rate_limited", "message": "…", "retry_after_ms": 20000, "limit": "verify"}}
//! ```
//!
//! Events have no `id`: `{"event": "card_inserted", "reader": "Virtual PCD 00 00"}`.
//!
//! | request | result |
//! |---|---|
//! | [`BridgeRequest::Hello`] | [`Hello`] |
//! | [`BridgeRequest::Status`] | [`Status`] |
//! | [`BridgeRequest::Readers`] | [`Readers`] |
//! | [`BridgeRequest::Connect`] | [`Connected`] |
//! | [`BridgeRequest::Transmit`] | [`Transmitted`] |
//! | [`BridgeRequest::Release`], [`BridgeRequest::Disconnect`] | [`Done`] (`{}`) |
//!
//! Errors are [`BridgeError`]s with a stable [`ErrorCode`]; the page maps the
//! code, never the words of `message` (those are for people and logs).

use crate::prelude::*;
use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Protocol version reported by `hello`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest accepted `origin` / `reader` string.
pub const MAX_STR: usize = 512;
/// Longest accepted string `id`.
pub const MAX_ID: usize = 128;

/// Request id, echoed in the reply: a JSON number (u64) or a short string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    Num(u64),
    Str(String),
}

impl crate::json::lite::Encode for Id {
    fn encode(&self, w: &mut crate::json::lite::Writer) {
        match self {
            Id::Num(n) => w.u64(*n),
            Id::Str(s) => w.str(s),
        }
    }
}

impl Id {
    /// A string id must be 1..=[`MAX_ID`] characters.
    pub fn is_valid(&self) -> bool {
        match self {
            Id::Num(_) => true,
            Id::Str(s) => !s.is_empty() && s.len() <= MAX_ID,
        }
    }
}

/// Bytes as hex: written upper case, read in either case with spaces allowed
/// (`"00 A4 04 00"`).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ApduHex(pub Vec<u8>);

impl fmt::Debug for ApduHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApduHex({})", hex::encode_upper(&self.0))
    }
}

impl ApduHex {
    /// Decode hex, tolerating ASCII whitespace.
    pub fn parse(s: &str) -> Option<Self> {
        let compact: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
        crate::wire::hex_bytes(&compact).map(ApduHex)
    }
}

impl Serialize for ApduHex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode_upper(&self.0))
    }
}

impl<'de> Deserialize<'de> for ApduHex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ApduHex::parse(&s).ok_or_else(|| serde::de::Error::custom("`apdu` must be a hex string"))
    }
}

impl crate::json::lite::Encode for ApduHex {
    fn encode(&self, w: &mut crate::json::lite::Writer) {
        w.hex(&self.0, true);
    }
}

impl crate::json::lite::Decode for ApduHex {
    fn decode(r: &mut crate::json::lite::Reader<'_>) -> Result<Self, crate::json::Error> {
        ApduHex::parse(&r.text()?).ok_or(crate::json::Error(None))
    }
}

/// What a page asks the bridge (`type` and its fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BridgeRequest {
    /// Version and capabilities; the first request, and the extension probe.
    Hello,
    /// Readiness of the card in `reader` (or the first reader with a card).
    Status {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reader: Option<String>,
    },
    /// The readers and whether a card is in each.
    Readers,
    /// Open a connection to the card in `reader`.
    Connect { reader: String },
    /// Send one command APDU on a connection. The first one of an exclusive
    /// session (the SELECT of the Cardpay application, or any command after
    /// the session ended) starts it: no other program can use the card until
    /// `release`, `disconnect`, or the session's idle time passes.
    Transmit { handle: u32, apdu: ApduHex },
    /// End the exclusive session on a connection (the card is reset: a
    /// verified PIN does not outlive it); the connection stays open, and the
    /// next command starts a new session.
    Release { handle: u32 },
    /// Close a connection (the card is reset).
    Disconnect { handle: u32 },
}

impl BridgeRequest {
    /// `type` and the variant's fields, into an object being written (serde's
    /// internal tagging; [`Request`] flattens them into its own).
    fn encode_fields(&self, o: &mut crate::json::lite::Object<'_>) {
        o.field("type", self.name());
        match self {
            BridgeRequest::Hello | BridgeRequest::Readers => {}
            BridgeRequest::Status { reader } => o.some("reader", reader),
            BridgeRequest::Connect { reader } => o.field("reader", reader),
            BridgeRequest::Transmit { handle, apdu } => {
                o.field("handle", handle);
                o.field("apdu", apdu);
            }
            BridgeRequest::Release { handle } | BridgeRequest::Disconnect { handle } => {
                o.field("handle", handle)
            }
        }
    }
}

impl crate::json::lite::Encode for BridgeRequest {
    fn encode(&self, w: &mut crate::json::lite::Writer) {
        let mut o = w.object();
        self.encode_fields(&mut o);
        o.end();
    }
}

impl BridgeRequest {
    /// The `type` string.
    pub fn name(&self) -> &'static str {
        match self {
            BridgeRequest::Hello => "hello",
            BridgeRequest::Status { .. } => "status",
            BridgeRequest::Readers => "readers",
            BridgeRequest::Connect { .. } => "connect",
            BridgeRequest::Transmit { .. } => "transmit",
            BridgeRequest::Release { .. } => "release",
            BridgeRequest::Disconnect { .. } => "disconnect",
        }
    }

    /// May the extension's own pages (the toolbar popup) ask this?
    pub fn is_status_only(&self) -> bool {
        matches!(
            self,
            BridgeRequest::Hello | BridgeRequest::Status { .. } | BridgeRequest::Readers
        )
    }
}

/// One request: `id`, the sender's `origin` (set by the extension, never by
/// the page) and the request itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(flatten)]
    pub body: BridgeRequest,
}

impl crate::json::lite::Encode for Request {
    fn encode(&self, w: &mut crate::json::lite::Writer) {
        let mut o = w.object();
        o.field("id", &self.id);
        o.some("origin", &self.origin);
        self.body.encode_fields(&mut o);
        o.end();
    }
}

impl Request {
    /// The checks serde cannot express: id and string lengths.
    pub fn check(&self) -> Result<(), BridgeError> {
        if !self.id.is_valid() {
            return Err(BridgeError::bad_request(
                "`id` must be a non-negative integer or a string of 1 to 128 characters",
            ));
        }
        let too_long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > MAX_STR);
        if too_long(&self.origin) {
            return Err(BridgeError::bad_request("`origin` is too long"));
        }
        match &self.body {
            BridgeRequest::Status { reader } if too_long(reader) => {
                Err(BridgeError::bad_request("`reader` is too long"))
            }
            BridgeRequest::Connect { reader } if reader.len() > MAX_STR => {
                Err(BridgeError::bad_request("`reader` is too long"))
            }
            _ => Ok(()),
        }
    }
}

/// Stable error codes. The JSON spelling ([`ErrorCode::as_str`]) is the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The smart-card service (pcscd) is not running.
    NoService,
    /// No such reader, or none connected.
    NoReader,
    /// No card in the reader.
    NoCard,
    /// The card was pulled or reset, or pcscd restarted: connect and SELECT again.
    CardRemoved,
    /// The guard refused the APDU (not a purse command, nothing selected, …): do not retry.
    ForbiddenApdu,
    /// A limit refused the request before it reached the card; `retry_after_ms`
    /// says when one more passes and `limit` which limit it was.
    RateLimited,
    /// A VERIFY with a PIN was refused because the card has one PIN try left:
    /// a page may never spend the last try. Nothing reached the card. The
    /// shopper restores the tries with `bridge pin` on their computer (the PIN
    /// typed into the bridge's own prompt, not a web page) — see
    /// [`LAST_PIN_TRY_MESSAGE`].
    LastPinTry,
    /// The card's PIN is blocked (no tries left): only the issuer can unblock it.
    PinBlocked,
    /// The origin is not allowlisted, or the handle belongs to another origin.
    ForbiddenOrigin,
    /// A malformed message, unknown handle, too many connections.
    BadRequest,
    /// The card or reader did not answer in time.
    Timeout,
    /// Any other PC/SC error (e.g. another program uses the card exclusively).
    CardError,
    /// From the extension, not the bridge: the bridge is not installed, not
    /// startable, or exited.
    NoBridge,
    /// From the extension: too many requests in flight from one frame.
    Busy,
    /// A code this version does not know (a newer bridge or extension).
    Unknown,
}

crate::json::wire_strings!(ErrorCode {
    NoService => "no_service",
    NoReader => "no_reader",
    NoCard => "no_card",
    CardRemoved => "card_removed",
    ForbiddenApdu => "forbidden_apdu",
    RateLimited => "rate_limited",
    LastPinTry => "last_pin_try",
    PinBlocked => "pin_blocked",
    ForbiddenOrigin => "forbidden_origin",
    BadRequest => "bad_request",
    Timeout => "timeout",
    CardError => "card_error",
    NoBridge => "no_bridge",
    Busy => "busy",
    Unknown => "unknown",
} unknown = Unknown);

/// The words the bridge sends with [`ErrorCode::LastPinTry`]; a page may
/// show its own translation of the same advice.
pub const LAST_PIN_TRY_MESSAGE: &str = "Only one PIN try is left on this card, and a web page may not use it. To restore the tries, run `bridge pin` on this computer and type your PIN there.";

/// Which limit refused a request ([`ErrorCode::RateLimited`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// APDUs per origin.
    Apdu,
    /// PIN attempts (VERIFY with a PIN) per origin.
    Verify,
    /// Card transactions (INITIALIZE) per card and hour: each spends one of
    /// the card's 65 535 transaction numbers.
    Initialize,
    /// A limit this version does not know.
    Unknown,
}

crate::json::wire_strings!(Limit {
    Apdu => "apdu",
    Verify => "verify",
    Initialize => "initialize",
    Unknown => "unknown",
} unknown = Unknown);

/// An error answer: a stable code and plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeError {
    pub code: ErrorCode,
    pub message: String,
    /// With `rate_limited`: milliseconds until the request would pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// With `rate_limited`: which limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
}

crate::json::lite::decode_struct!(BridgeError {
    code,
    message,
    retry_after_ms: opt,
    limit: opt,
});

impl BridgeError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
            limit: None,
        }
    }

    /// `rate_limited` by `limit`, with the wait in milliseconds (at least 1).
    pub fn rate_limited(limit: Limit, message: impl Into<String>, retry_after_ms: u64) -> Self {
        Self {
            code: ErrorCode::RateLimited,
            message: message.into(),
            retry_after_ms: Some(retry_after_ms.max(1)),
            limit: Some(limit),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn forbidden_apdu(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ForbiddenApdu, message)
    }

    /// [`ErrorCode::LastPinTry`] with [`LAST_PIN_TRY_MESSAGE`].
    pub fn last_pin_try() -> Self {
        Self::new(ErrorCode::LastPinTry, LAST_PIN_TRY_MESSAGE)
    }
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl core::error::Error for BridgeError {}

/// A reply: `{"id": …, "result": …}` or `{"id": …, "error": {…}}`; `id` is
/// null when the request could not be read far enough to know it. `T` is the
/// result type of the request (the widget knows which it asked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply<T> {
    pub id: Option<Id>,
    #[serde(flatten)]
    pub outcome: Outcome<T>,
}

/// The two shapes of a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome<T> {
    Result(T),
    Error(BridgeError),
}

impl<T> Reply<T> {
    pub fn result(id: Id, result: T) -> Self {
        Self {
            id: Some(id),
            outcome: Outcome::Result(result),
        }
    }
    pub fn error(id: Option<Id>, error: BridgeError) -> Self {
        Self {
            id,
            outcome: Outcome::Error(error),
        }
    }
    /// The outcome as a `Result`.
    pub fn into_result(self) -> Result<T, BridgeError> {
        match self.outcome {
            Outcome::Result(t) => Ok(t),
            Outcome::Error(e) => Err(e),
        }
    }
}

/// Result of `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    /// The bridge's own version (`0.1.0`).
    pub bridge: String,
    /// `status`, `readers`, `connect`, `transmit`, `release`, `disconnect`, `events`.
    pub capabilities: Vec<String>,
}

/// One state a shopper can act on ([`Status::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    NoService,
    NoReader,
    NoCard,
    /// The card does not have the Cardpay application.
    NotCardpay,
    Expired,
    /// The PIN is blocked.
    Blocked,
    /// Usable; see [`CardInfo::pin_tries_left`] and [`Status::in_use`].
    Ready,
    CardError,
    #[serde(other)]
    Unknown,
}

/// What `status` reports about the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardInfo {
    /// `YYMMDD`.
    pub expiry: String,
    pub app_version: u8,
    /// `1` means PIN payments are refused until the shopper runs `bridge pin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_tries_left: Option<u8>,
}

/// Result of `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub state: Readiness,
    /// Plain words for the shopper.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<CardInfo>,
    /// A page holds a connection on this reader (the card was not touched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_use: Option<bool>,
}

impl Status {
    pub fn new(state: Readiness, message: impl Into<String>) -> Self {
        Self {
            state,
            message: message.into(),
            reader: None,
            readers: None,
            card: None,
            in_use: None,
        }
    }
}

/// One reader in [`Readers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderInfo {
    pub name: String,
    pub card_present: bool,
}

/// Result of `readers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readers {
    pub readers: Vec<ReaderInfo>,
}

crate::json::lite::decode_struct!(ReaderInfo { name, card_present });
crate::json::lite::decode_struct!(Readers { readers });
crate::json::lite::decode_struct!(Connected { handle, atr });
crate::json::lite::decode_struct!(Transmitted { rapdu });

/// Result of `connect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connected {
    pub handle: u32,
    pub atr: ApduHex,
}

/// Result of `transmit`: the response APDU (data and status word).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transmitted {
    pub rapdu: ApduHex,
}

/// Result of `release` and `disconnect`: `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Done {}

/// Any result the bridge sends (the bridge's side; a page reads the specific type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum BridgeResult {
    Hello(Hello),
    Status(Status),
    Readers(Readers),
    Connected(Connected),
    Transmitted(Transmitted),
    Done(Done),
}

/// `service` event states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    Ok,
    NoService,
    #[serde(other)]
    Unknown,
}

/// Events (no `id`). The first five come from the bridge, the last three
/// from the extension itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    CardInserted {
        reader: String,
    },
    CardRemoved {
        reader: String,
    },
    ReaderAdded {
        reader: String,
    },
    ReaderRemoved {
        reader: String,
    },
    /// pcscd stopped (`no_service`: cards count as removed) or is back (`ok`).
    Service {
        state: ServiceState,
    },
    /// The content script is loaded in this frame.
    ExtensionReady {
        version: u32,
    },
    /// The bridge process ended: open handles are gone.
    BridgeDisconnected {
        message: String,
    },
    /// The extension's service worker went away: open handles are gone;
    /// reload the page when `reload_page`.
    ExtensionDisconnected {
        reload_page: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    proptest::proptest! {
        /// An APDU's hex is read by the wire's hex reader (not the hex crate's, which
        /// is not in the wasm): what the hex crate read of the text with its ASCII
        /// whitespace dropped, the same bytes or both refusing (either case; odd
        /// lengths, non-hex letters, non-ASCII, every kind of space).
        #[test]
        fn apdu_hex_reads_as_the_hex_crate_does(s in "[0-9a-fA-F ]{0,16}|[0-9a-fA-FgG \t\n\r\x0c\u{a0}é]{0,12}") {
            let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            proptest::prop_assert_eq!(ApduHex::parse(&s).map(|a| a.0), hex::decode(compact).ok());
        }
    }

    fn req(v: Value) -> Result<Request, String> {
        serde_json::from_value::<Request>(v).map_err(|e| e.to_string())
    }

    #[test]
    fn requests_parse_from_the_wire_shape() {
        let r = req(json!({"id": 1, "type": "hello"})).unwrap();
        assert_eq!(
            (r.id, r.origin, r.body),
            (Id::Num(1), None, BridgeRequest::Hello)
        );
        let r =
            req(json!({"id": "a", "type": "readers", "origin": "http://127.0.0.1:1", "extra": 5}))
                .unwrap();
        assert_eq!(r.id, Id::Str("a".into()));
        assert_eq!(r.origin.as_deref(), Some("http://127.0.0.1:1"));
        let r = req(json!({"id": 3, "type": "transmit", "handle": 4, "apdu": "80 5c 00 00 04"}))
            .unwrap();
        assert_eq!(
            r.body,
            BridgeRequest::Transmit {
                handle: 4,
                apdu: ApduHex(vec![0x80, 0x5C, 0, 0, 4])
            }
        );
        for (v, body) in [
            (
                json!({"id":5,"type":"disconnect","handle":4}),
                BridgeRequest::Disconnect { handle: 4 },
            ),
            (
                json!({"id":5,"type":"release","handle":4}),
                BridgeRequest::Release { handle: 4 },
            ),
            (
                json!({"id":6,"type":"status"}),
                BridgeRequest::Status { reader: None },
            ),
            (
                json!({"id":6,"type":"connect","reader":"R 0"}),
                BridgeRequest::Connect {
                    reader: "R 0".into(),
                },
            ),
        ] {
            assert_eq!(req(v).unwrap().body, body);
        }
        // what the widget writes is what the bridge reads
        let out = Request {
            id: Id::Num(9),
            origin: None,
            body: BridgeRequest::Transmit {
                handle: 2,
                apdu: ApduHex(vec![0x00, 0xA4]),
            },
        };
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            json!({"id": 9, "type": "transmit", "handle": 2, "apdu": "00A4"})
        );
        assert_eq!(req(serde_json::to_value(&out).unwrap()).unwrap(), out);
    }

    #[test]
    fn bad_requests_are_refused() {
        for bad in [
            json!({"id": 1}),
            json!({"id": 1, "type": "nope"}),
            json!({"id": 1, "type": "connect"}),
            json!({"id": 1, "type": "transmit", "handle": 1, "apdu": "zz"}),
            json!({"id": 1, "type": "transmit", "handle": -1, "apdu": "00"}),
            json!({"id": 1, "type": "transmit", "handle": 4294967296u64, "apdu": "00"}),
            json!({"id": 1, "type": "disconnect", "handle": "1"}),
            json!({"id": 1, "type": "hello", "origin": 5}),
            json!({"id": 1.5, "type": "hello"}),
        ] {
            assert!(req(bad.clone()).is_err(), "{bad}");
        }
        let long = "x".repeat(MAX_STR + 1);
        for v in [
            json!({"id": "", "type": "hello"}),
            json!({"id": "y".repeat(MAX_ID + 1), "type": "hello"}),
            json!({"id": 1, "type": "hello", "origin": long}),
            json!({"id": 1, "type": "connect", "reader": long}),
            json!({"id": 1, "type": "status", "reader": long}),
        ] {
            let e = req(v.clone()).unwrap().check().unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{v}");
        }
    }

    #[test]
    fn replies_errors_and_events_have_the_documented_shape() {
        let r = Reply::result(
            Id::Num(7),
            BridgeResult::Transmitted(Transmitted {
                rapdu: ApduHex(vec![0x90, 0]),
            }),
        );
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"id": 7, "result": {"rapdu": "9000"}})
        );
        let e: Reply<BridgeResult> = Reply::error(None, BridgeError::bad_request("x"));
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"id": null, "error": {"code": "bad_request", "message": "x"}})
        );
        let e = BridgeError::rate_limited(Limit::Initialize, "slow", 1500);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"code": "rate_limited", "message": "slow", "retry_after_ms": 1500, "limit": "initialize"})
        );
        // the widget reads a reply of the type it asked for
        let got: Reply<Transmitted> =
            serde_json::from_value(json!({"id": 7, "result": {"rapdu": "6a82"}})).unwrap();
        assert_eq!(got.into_result().unwrap().rapdu.0, vec![0x6A, 0x82]);
        let got: Reply<Transmitted> = serde_json::from_value(
            json!({"id": 7, "error": {"code": "last_pin_try", "message": LAST_PIN_TRY_MESSAGE}}),
        )
        .unwrap();
        assert_eq!(got.into_result().unwrap_err().code, ErrorCode::LastPinTry);
        // codes from a newer bridge do not break an older page
        let got: BridgeError =
            serde_json::from_value(json!({"code": "brand_new", "message": "?", "limit": "other"}))
                .unwrap();
        assert_eq!(
            (got.code, got.limit),
            (ErrorCode::Unknown, Some(Limit::Unknown))
        );
        for c in [
            ErrorCode::NoService,
            ErrorCode::NoReader,
            ErrorCode::NoCard,
            ErrorCode::CardRemoved,
            ErrorCode::ForbiddenApdu,
            ErrorCode::RateLimited,
            ErrorCode::LastPinTry,
            ErrorCode::PinBlocked,
            ErrorCode::ForbiddenOrigin,
            ErrorCode::BadRequest,
            ErrorCode::Timeout,
            ErrorCode::CardError,
            ErrorCode::NoBridge,
            ErrorCode::Busy,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
            assert_eq!(
                serde_json::from_value::<ErrorCode>(json!(c.as_str())).unwrap(),
                c
            );
        }
        assert_eq!(
            serde_json::to_value(Event::CardInserted { reader: "R".into() }).unwrap(),
            json!({"event": "card_inserted", "reader": "R"})
        );
        assert_eq!(
            serde_json::to_value(Event::Service {
                state: ServiceState::NoService
            })
            .unwrap(),
            json!({"event": "service", "state": "no_service"})
        );
        let ev: Event =
            serde_json::from_value(json!({"event": "extension_disconnected", "reload_page": true}))
                .unwrap();
        assert_eq!(ev, Event::ExtensionDisconnected { reload_page: true });
        let mut st = Status::new(Readiness::Ready, "ok");
        st.card = Some(CardInfo {
            expiry: "301231".into(),
            app_version: 1,
            pin_tries_left: Some(3),
        });
        assert_eq!(
            serde_json::to_value(BridgeResult::Status(st)).unwrap(),
            json!({"state": "ready", "message": "ok", "card": {"expiry": "301231", "app_version": 1, "pin_tries_left": 3}})
        );
        assert_eq!(
            serde_json::to_value(BridgeResult::Done(Done {})).unwrap(),
            json!({})
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// The answers a page reads with `json::lite::decode` (the widget) read as the
        /// bridge's serde derive reads them, for hostile variants of each.
        #[test]
        fn page_decoders_agree_with_serde(seed: u64) {
            use crate::json::lite::testing::differential;
            let names = ["retry_after_ms", "limit", "rapdu", "atr", "handle", "readers"];
            let err = BridgeError::rate_limited(Limit::Verify, "slow", 1500);
            let mut n = differential(&err, &names, 40, seed);
            n += differential(&BridgeError::new(ErrorCode::NoCard, "x"), &names, 40, seed);
            let readers = Readers {
                readers: vec![
                    ReaderInfo { name: "A \"1\"".into(), card_present: true },
                    ReaderInfo { name: "B".into(), card_present: false },
                ],
            };
            n += differential(&readers, &names, 40, seed);
            let c = Connected { handle: 7, atr: ApduHex(vec![0x3b, 0x8f]) };
            n += differential(&c, &names, 40, seed);
            let t = Transmitted { rapdu: ApduHex(vec![0x90, 0x00]) };
            n += differential(&t, &names, 40, seed);
            proptest::prop_assert!(n > 20, "only {} of 200 accepted", n);
        }
    }
}
