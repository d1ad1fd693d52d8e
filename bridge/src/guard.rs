//! The guard: what a web origin may send to the card. Sans-IO: the card's
//! answers are passed in, so every rule is unit tested without a card.
//!
//! Rules (DESIGN §2):
//! - requests only from origins on the allowlist ([`Allowlist`]);
//! - a connection belongs to the origin that opened it;
//! - the only SELECT allowed is SELECT by name of the Cardpay AID; every other
//!   command needs a successful Cardpay SELECT on that connection first;
//! - only the CLA/INS pairs of the purse command set (`purse::command::COMMAND_SET`),
//!   short APDUs, at most [`GuardConfig::max_apdu_len`] bytes;
//! - VERIFY with a PIN: P1=P2=00, and the card is asked first (VERIFY
//!   without data, which spends nothing) how many tries are left; a VERIFY
//!   that could spend the last try is refused (`last_pin_try`), and so is one
//!   on a blocked PIN (`pin_blocked`).
//!
//! The guard classifies each APDU ([`Kind`]) so the caller can apply the
//! budgets ([`crate::budget`]: APDUs and PIN attempts per origin, card
//! transactions per card) and the exclusive session ([`crate::exclusive`]).
//! Refusals by the guard itself are `forbidden_apdu` (do not retry).

use std::collections::HashMap;
use std::time::Duration;

use purse::apdu::{Command, StatusWord};
use purse::bridge_msg::{BridgeError, ErrorCode};
use purse::command::{
    SelectResponse, CLA_ISO, CLA_PURSE, COMMAND_SET, INS_INITIALIZE, INS_SELECT, INS_VERIFY,
};
use sha2::{Digest as _, Sha256};

/// An origin pattern: `scheme://host[:port]`, where the port may be `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    host: String,
    /// `None` = any port (pattern `:*`).
    port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Split `scheme://host[:port]` (trailing `/` allowed) into parts; the port
/// is returned as text so a pattern can use `*`.
fn split_origin(s: &str) -> Option<(String, String, Option<String>)> {
    let s = s.trim();
    let s = s.strip_suffix('/').unwrap_or(s);
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(
        scheme.as_str(),
        "http" | "https" | "chrome-extension" | "moz-extension"
    ) {
        return None;
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let (host, port) = if rest.starts_with('[') {
        // IPv6 literal
        let end = rest.find(']')?;
        let host = &rest[..=end];
        match &rest[end + 1..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?.to_owned())),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.to_owned())),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((scheme, host.to_ascii_lowercase(), port))
}

impl OriginPattern {
    pub fn parse(s: &str) -> Option<Self> {
        let (scheme, host, port) = split_origin(s)?;
        let port = match port.as_deref() {
            Some("*") => None,
            Some(p) => Some(p.parse().ok()?),
            None => Some(default_port(&scheme).unwrap_or(0)),
        };
        Some(Self { scheme, host, port })
    }

    pub fn matches(&self, origin: &str) -> bool {
        let Some((scheme, host, port)) = split_origin(origin) else {
            return false;
        };
        let port = match port.as_deref() {
            None => default_port(&scheme).unwrap_or(0),
            Some(p) => match p.parse::<u16>() {
                Ok(p) => p,
                Err(_) => return false,
            },
        };
        scheme == self.scheme && host == self.host && self.port.is_none_or(|p| p == port)
    }
}

impl std::fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            None => write!(f, "{}://{}:*", self.scheme, self.host),
            Some(p) if Some(p) == default_port(&self.scheme) || p == 0 => {
                write!(f, "{}://{}", self.scheme, self.host)
            }
            Some(p) => write!(f, "{}://{}:{}", self.scheme, self.host, p),
        }
    }
}

/// The payment origins this bridge serves.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    patterns: Vec<OriginPattern>,
}

impl Allowlist {
    /// Parse patterns; returns the ones that do not parse as the error.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, Vec<String>> {
        let mut ok = vec![];
        let mut bad = vec![];
        for p in patterns {
            match OriginPattern::parse(p.as_ref()) {
                Some(o) => ok.push(o),
                None => bad.push(p.as_ref().to_owned()),
            }
        }
        if bad.is_empty() {
            Ok(Self { patterns: ok })
        } else {
            Err(bad)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn patterns(&self) -> &[OriginPattern] {
        &self.patterns
    }

    pub fn allows(&self, origin: Option<&str>) -> bool {
        origin.is_some_and(|o| self.patterns.iter().any(|p| p.matches(o)))
    }

    /// `Ok(origin)` or `forbidden_origin`.
    pub fn check<'a>(&self, origin: Option<&'a str>) -> Result<&'a str, BridgeError> {
        match origin {
            Some(o) if self.allows(Some(o)) => Ok(o),
            Some(o) => Err(BridgeError::new(
                ErrorCode::ForbiddenOrigin,
                format!(
                    "{} is not a payment origin this bridge was installed for",
                    o.chars().take(100).collect::<String>()
                ),
            )),
            None => Err(BridgeError::new(
                ErrorCode::ForbiddenOrigin,
                "request carries no sender origin",
            )),
        }
    }
}

/// Limits; defaults suit a shopper and the tests.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Longest command APDU forwarded (the purse set needs at most 5+23+1).
    pub max_apdu_len: usize,
    /// APDUs per origin: burst and sustained rate per second.
    pub apdu_burst: f64,
    pub apdu_per_sec: f64,
    /// VERIFY-with-PIN per origin: burst, then one more every `verify_refill`.
    pub verify_burst: f64,
    pub verify_refill: Duration,
    /// INITIALIZE per card: burst, then this many per hour.
    pub initialize_burst: f64,
    pub initialize_per_hour: f64,
    /// An exclusive session ends after this long without an APDU.
    pub transaction_idle: Duration,
    /// Open connections per origin.
    pub max_connections: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            max_apdu_len: 64,
            apdu_burst: 200.0,
            apdu_per_sec: 50.0,
            verify_burst: 3.0,
            verify_refill: Duration::from_secs(20),
            // A purchase takes two (the card's proof, an INITIALIZE FOR LOAD
            // of 0, then its own): 30 purchases, then 30 an hour.
            initialize_burst: 60.0,
            initialize_per_hour: 60.0,
            transaction_idle: Duration::from_secs(15),
            max_connections: 4,
        }
    }
}

#[derive(Debug)]
struct Conn {
    origin: String,
    /// The page selected the Cardpay application on this connection (its
    /// last SELECT succeeded): purse commands may follow.
    selected: bool,
    /// The card that answered that SELECT ([`card_tag`]).
    card: Option<String>,
}

/// What an APDU the guard let through is, for the budgets and the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SELECT of the Cardpay application.
    Select,
    /// VERIFY with a PIN: send [`PIN_PROBE`] first, hand its status word to
    /// [`Guard::check_pin_probe`], and take one PIN attempt of the origin's budget.
    VerifyPin,
    /// INITIALIZE (purchase or load): spends one of the card's transaction
    /// numbers; take one of the card's budget.
    Initialize,
    /// Anything else of the purse set.
    Other,
}

/// VERIFY without data: reports the PIN state, spends no try.
pub const PIN_PROBE: [u8; 4] = [0x00, 0x20, 0x00, 0x00];

/// The SELECT of the Cardpay application, as the purse command set builds it.
pub fn select_cardpay() -> Vec<u8> {
    purse::command::Request::Select(purse::command::Select {
        aid: purse::AID.to_vec(),
    })
    .to_bytes()
}

/// A short, stable name of a card for per-card budgets, from its id (never
/// the id itself: the state file does not hold card numbers).
pub fn card_tag(card_id: &[u8]) -> String {
    let h = Sha256::new()
        .chain_update(b"cardpay/bridge/card-budget")
        .chain_update(card_id)
        .finalize();
    hex::encode(&h[..8])
}

fn forbidden(msg: impl Into<String>) -> BridgeError {
    BridgeError::forbidden_apdu(msg)
}

fn is_ok(rapdu: &[u8]) -> bool {
    rapdu.len() >= 2 && rapdu[rapdu.len() - 2..] == [0x90, 0x00]
}

/// Per-connection guard state.
#[derive(Debug)]
pub struct Guard {
    cfg: GuardConfig,
    conns: HashMap<u32, Conn>,
}

impl Guard {
    pub fn new(cfg: GuardConfig) -> Self {
        Self {
            cfg,
            conns: HashMap::new(),
        }
    }

    pub fn config(&self) -> &GuardConfig {
        &self.cfg
    }

    /// May `origin` open one more connection?
    pub fn may_open(&self, origin: &str) -> Result<(), BridgeError> {
        let n = self.conns.values().filter(|c| c.origin == origin).count();
        if n >= self.cfg.max_connections {
            return Err(BridgeError::bad_request(format!(
                "at most {} open connections per origin",
                self.cfg.max_connections
            )));
        }
        Ok(())
    }

    pub fn opened(&mut self, handle: u32, origin: &str) {
        self.conns.insert(
            handle,
            Conn {
                origin: origin.to_owned(),
                selected: false,
                card: None,
            },
        );
    }

    pub fn closed(&mut self, handle: u32) {
        self.conns.remove(&handle);
    }

    /// Forget every connection (pcscd went away).
    pub fn clear(&mut self) {
        self.conns.clear();
    }

    /// Has the page selected the Cardpay application on this connection?
    pub fn is_selected(&self, handle: u32) -> bool {
        self.conns.get(&handle).is_some_and(|c| c.selected)
    }

    /// The card the connection's SELECT found ([`card_tag`]).
    pub fn card(&self, handle: u32) -> Option<&str> {
        self.conns.get(&handle).and_then(|c| c.card.as_deref())
    }

    /// The origin that owns the handle, if it is open.
    pub fn owner(&self, handle: u32) -> Option<&str> {
        self.conns.get(&handle).map(|c| c.origin.as_str())
    }

    /// `Ok` if `origin` owns `handle`.
    pub fn check_owner(&self, handle: u32, origin: &str) -> Result<(), BridgeError> {
        match self.owner(handle) {
            None => Err(BridgeError::bad_request("unknown or closed handle")),
            Some(o) if o != origin => Err(BridgeError::new(
                ErrorCode::ForbiddenOrigin,
                "this connection belongs to another origin",
            )),
            Some(_) => Ok(()),
        }
    }

    /// Check a command APDU from `origin` on `handle`.
    pub fn check(&self, handle: u32, origin: &str, apdu: &[u8]) -> Result<Kind, BridgeError> {
        self.check_owner(handle, origin)?;
        let selected = self.is_selected(handle);
        if apdu.len() > self.cfg.max_apdu_len {
            return Err(forbidden(format!(
                "APDU of {} bytes exceeds the {}-byte limit",
                apdu.len(),
                self.cfg.max_apdu_len
            )));
        }
        let cmd = Command::parse(apdu).map_err(|e| forbidden(format!("malformed APDU: {e}")))?;
        if !COMMAND_SET.contains(&(cmd.cla, cmd.ins)) {
            return Err(forbidden(format!(
                "CLA {:02X} INS {:02X} is not a purse command",
                cmd.cla, cmd.ins
            )));
        }
        if (cmd.cla, cmd.ins) == (CLA_ISO, INS_SELECT) {
            if cmd.p1 == 0x04 && cmd.p2 == 0x00 && cmd.data == purse::AID {
                return Ok(Kind::Select);
            }
            return Err(forbidden("only the Cardpay application may be selected"));
        }
        if !selected {
            return Err(forbidden(
                "SELECT the Cardpay application on this connection first",
            ));
        }
        if (cmd.cla, cmd.ins) == (CLA_ISO, INS_VERIFY) && !cmd.data.is_empty() {
            if cmd.p1 != 0 || cmd.p2 != 0 {
                return Err(forbidden("VERIFY must use P1=00 P2=00"));
            }
            return Ok(Kind::VerifyPin);
        }
        if (cmd.cla, cmd.ins) == (CLA_PURSE, INS_INITIALIZE) {
            return Ok(Kind::Initialize);
        }
        Ok(Kind::Other)
    }

    /// Decide on a VERIFY after the card answered [`PIN_PROBE`] with `sw`.
    pub fn check_pin_probe(&self, sw: StatusWord) -> Result<(), BridgeError> {
        if sw == StatusWord::OK {
            return Ok(()); // already verified in this selection; the counter is full
        }
        if sw == StatusWord::PIN_BLOCKED || sw.pin_tries_left() == Some(0) {
            return Err(BridgeError::new(
                ErrorCode::PinBlocked,
                "the card's PIN is blocked; only the card issuer can unblock it",
            ));
        }
        match sw.pin_tries_left() {
            Some(n) if n >= 2 => Ok(()),
            Some(_) => Err(BridgeError::last_pin_try()),
            None => Err(forbidden(format!(
                "the card did not report its PIN tries (SW {:04X})",
                sw.0
            ))),
        }
    }

    /// Tell the guard what the card answered, so it tracks the page's
    /// selection and which card it is.
    pub fn observe(&mut self, handle: u32, apdu: &[u8], rapdu: &[u8]) {
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        let Ok(cmd) = Command::parse(apdu) else {
            return;
        };
        if (cmd.cla, cmd.ins) == (CLA_ISO, INS_SELECT) {
            conn.selected = is_ok(rapdu) && cmd.data == purse::AID && cmd.p1 == 0x04;
            conn.card = conn
                .selected
                .then(|| SelectResponse::decode(&rapdu[..rapdu.len() - 2]).ok())
                .flatten()
                .map(|s| card_tag(&s.card_id.bytes()));
            if conn.selected && conn.card.is_none() {
                // not a Cardpay SELECT response: nothing may follow
                conn.selected = false;
            }
        }
    }

    /// The page's selection is gone (another card, or the card was reset and
    /// could not be selected again).
    pub fn deselect(&mut self, handle: u32) {
        if let Some(c) = self.conns.get_mut(&handle) {
            c.selected = false;
            c.card = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const O: &str = "https://pay.example";
    const SELECT: [u8; 14] = [
        0x00, 0xA4, 0x04, 0x00, 0x08, 0xF0, 0x43, 0x41, 0x52, 0x44, 0x50, 0x41, 0x59, 0x00,
    ];
    const BALANCE: [u8; 5] = [0x80, 0x5C, 0x00, 0x00, 0x04];
    const VERIFY_1234: [u8; 9] = [0x00, 0x20, 0x00, 0x00, 0x04, b'1', b'2', b'3', b'4'];

    /// A Cardpay SELECT answer (the demo card), with 9000.
    fn select_ok() -> Vec<u8> {
        let mut r =
            hex::decode("6280000000000001301231010103D20200002710000186A003E700000001F4000F4240")
                .unwrap();
        r.extend([0x90, 0x00]);
        r
    }

    fn selected_guard(cfg: GuardConfig) -> Guard {
        let mut g = Guard::new(cfg);
        g.opened(1, O);
        assert_eq!(g.check(1, O, &SELECT).unwrap(), Kind::Select);
        g.observe(1, &SELECT, &select_ok());
        assert!(g.is_selected(1));
        g
    }

    #[test]
    fn allowlist_matching() {
        let a = Allowlist::new(&[
            "https://pay.example",
            "http://127.0.0.1:*",
            "http://localhost:8080/",
        ])
        .unwrap();
        assert!(a.allows(Some("https://pay.example")));
        assert!(a.allows(Some("https://pay.example:443")));
        assert!(a.allows(Some("https://PAY.example/")));
        assert!(!a.allows(Some("http://pay.example")));
        assert!(!a.allows(Some("https://pay.example.evil.com")));
        assert!(!a.allows(Some("https://evil.com/https://pay.example")));
        assert!(!a.allows(Some("https://pay.example:444")));
        assert!(a.allows(Some("http://127.0.0.1:5555")));
        assert!(a.allows(Some("http://127.0.0.1")));
        assert!(!a.allows(Some("http://127.0.0.2:5555")));
        assert!(a.allows(Some("http://localhost:8080")));
        assert!(!a.allows(Some("http://localhost:8081")));
        assert!(!a.allows(Some("null")));
        assert!(!a.allows(Some("")));
        assert!(!a.allows(None));
        assert!(!a.allows(Some("http://user@127.0.0.1:1")));
        assert_eq!(
            a.check(Some("http://x.org")).unwrap_err().code,
            ErrorCode::ForbiddenOrigin
        );
        assert_eq!(a.check(None).unwrap_err().code, ErrorCode::ForbiddenOrigin);
        assert!(Allowlist::new(&["ftp://x", "nonsense", "https://a.b/path"]).is_err());
        assert_eq!(
            OriginPattern::parse("http://127.0.0.1:*")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:*"
        );
        assert_eq!(
            OriginPattern::parse("https://a.b:443/")
                .unwrap()
                .to_string(),
            "https://a.b"
        );
        let v6 = Allowlist::new(&["http://[::1]:8000"]).unwrap();
        assert!(v6.allows(Some("http://[::1]:8000")));
        assert!(!v6.allows(Some("http://[::1]:8001")));
    }

    #[test]
    fn nothing_before_select() {
        let mut g = Guard::new(GuardConfig::default());
        g.opened(1, O);
        let e = g.check(1, O, &BALANCE).unwrap_err();
        assert_eq!(e.code, ErrorCode::ForbiddenApdu);
        // a failed SELECT does not unlock
        g.observe(1, &SELECT, &[0x6A, 0x82]);
        assert!(g.check(1, O, &BALANCE).is_err());
        g.observe(1, &SELECT, &select_ok());
        assert_eq!(g.check(1, O, &BALANCE).unwrap(), Kind::Other);
        g.deselect(1);
        assert!(g.check(1, O, &BALANCE).is_err());
    }

    #[test]
    fn only_the_cardpay_aid_may_be_selected() {
        let mut g = selected_guard(GuardConfig::default());
        // EMV PSE, PIV, another AID, SELECT by path, SELECT with P1=04 but P2 "next"
        let emv = hex::decode("00A404000E315041592E5359532E444446303100").unwrap();
        let piv = hex::decode("00A4040009A0000003080000100000").unwrap();
        let by_file = hex::decode("00A4000C023F00").unwrap();
        let next = hex::decode("00A4040208F04341524450415900").unwrap();
        let prefix = hex::decode("00A4040007F043415244504100").unwrap();
        for apdu in [emv, piv, by_file, next, prefix] {
            let e = g.check(1, O, &apdu).unwrap_err();
            assert_eq!(e.code, ErrorCode::ForbiddenApdu, "{apdu:02X?}");
        }
        // and SELECT of something else (if a card answered 9000) would deselect
        g.observe(
            1,
            &hex::decode("00A4040007A000000003101000").unwrap(),
            &[0x90, 0],
        );
        assert!(!g.is_selected(1));
    }

    #[test]
    fn only_purse_cla_ins() {
        let g = selected_guard(GuardConfig::default());
        let ok = ["805C000004", "805C000104", "00200000", "805A01001D"];
        for h in ok {
            let apdu = hex::decode(h).unwrap();
            assert_eq!(g.check(1, O, &apdu).unwrap(), Kind::Other, "{h}");
        }
        let init = hex::decode("8050010C0A000001F40000000000010C").unwrap();
        assert!(g.check(1, O, &init).is_ok());
        for bad in [
            "00B0000000", // READ BINARY
            "00CA9F1700", // GET DATA
            "84240000",   // CHANGE / UNBLOCK
            "002C000000", // RESET RETRY COUNTER
            "0070000001", // MANAGE CHANNEL
            "015C000004", // purse INS on a logical channel CLA
            "8020000004", // VERIFY with proprietary CLA
            "00C0000010", // GET RESPONSE
            "80CA000000",
        ] {
            let apdu = hex::decode(bad).unwrap();
            let e = g.check(1, O, &apdu).unwrap_err();
            assert_eq!(e.code, ErrorCode::ForbiddenApdu, "{bad}");
        }
    }

    #[test]
    fn malformed_and_oversize_apdus() {
        let g = selected_guard(GuardConfig::default());
        for bad in [
            &[][..],
            &[0x80],
            &[0x80, 0x5C, 0],
            &[0x80, 0x5C, 0, 0, 5, 1],
        ] {
            assert_eq!(
                g.check(1, O, bad).unwrap_err().code,
                ErrorCode::ForbiddenApdu
            );
        }
        let mut long = vec![0x80, 0x54, 0x01, 0x00, 100];
        long.extend([0u8; 100]);
        assert_eq!(
            g.check(1, O, &long).unwrap_err().code,
            ErrorCode::ForbiddenApdu
        );
        // extended length is refused by the codec
        let ext = [0x80, 0x54, 0x01, 0x00, 0x00, 0x00, 0x01, 0xAA];
        assert_eq!(
            g.check(1, O, &ext).unwrap_err().code,
            ErrorCode::ForbiddenApdu
        );
    }

    #[test]
    fn connection_belongs_to_its_origin() {
        let mut g = selected_guard(GuardConfig::default());
        let e = g.check(1, "https://evil.example", &BALANCE).unwrap_err();
        assert_eq!(e.code, ErrorCode::ForbiddenOrigin);
        assert_eq!(
            g.check(2, O, &BALANCE).unwrap_err().code,
            ErrorCode::BadRequest
        );
        g.closed(1);
        assert_eq!(
            g.check(1, O, &BALANCE).unwrap_err().code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn connection_limit_per_origin() {
        let mut g = Guard::new(GuardConfig {
            max_connections: 2,
            ..Default::default()
        });
        g.opened(1, O);
        g.may_open(O).unwrap();
        g.opened(2, O);
        assert!(g.may_open(O).is_err());
        g.may_open("https://other.example").unwrap();
        g.closed(1);
        g.may_open(O).unwrap();
    }

    #[test]
    fn apdus_are_classified_for_budgets_and_sessions() {
        let g = selected_guard(GuardConfig::default());
        assert_eq!(g.check(1, O, &VERIFY_1234).unwrap(), Kind::VerifyPin);
        assert_eq!(g.check(1, O, &PIN_PROBE).unwrap(), Kind::Other);
        let init_purchase = hex::decode("8050010C0A000001F40000000000010C").unwrap();
        let init_load = hex::decode("8050020C0A000001F400000000000114").unwrap();
        assert_eq!(g.check(1, O, &init_purchase).unwrap(), Kind::Initialize);
        assert_eq!(g.check(1, O, &init_load).unwrap(), Kind::Initialize);
        assert_eq!(g.check(1, O, &BALANCE).unwrap(), Kind::Other);
        assert_eq!(g.check(1, O, &SELECT).unwrap(), Kind::Select);
        // VERIFY with odd P1/P2 is refused
        let odd = [0x00, 0x20, 0x00, 0x81, 0x04, b'1', b'2', b'3', b'4'];
        assert_eq!(
            g.check(1, O, &odd).unwrap_err().code,
            ErrorCode::ForbiddenApdu
        );
    }

    #[test]
    fn the_select_answer_names_the_card() {
        let mut g = selected_guard(GuardConfig::default());
        let tag = g.card(1).unwrap().to_owned();
        assert_eq!(tag.len(), 16);
        assert!(!tag.contains("6280"), "the tag is not the card number");
        // another card in the same connection gets another tag
        let mut other = select_ok();
        other[7] = 0x99;
        g.observe(1, &SELECT, &other);
        assert!(g.is_selected(1));
        assert_ne!(g.card(1).unwrap(), tag);
        // a 9000 without a Cardpay SELECT response selects nothing
        g.observe(1, &SELECT, &[0x90, 0x00]);
        assert!(!g.is_selected(1));
        assert_eq!(g.card(1), None);
        // the SELECT the bridge sends itself is the one the purse set builds
        assert_eq!(select_cardpay(), SELECT.to_vec());
    }

    #[test]
    fn never_the_last_pin_try() {
        let g = Guard::new(GuardConfig::default());
        g.check_pin_probe(StatusWord::OK).unwrap();
        g.check_pin_probe(StatusWord::pin_tries(3)).unwrap();
        g.check_pin_probe(StatusWord::pin_tries(2)).unwrap();
        let e = g.check_pin_probe(StatusWord::pin_tries(1)).unwrap_err();
        assert_eq!(e.code, ErrorCode::LastPinTry);
        assert!(e.message.contains("bridge pin"), "{}", e.message);
        for sw in [StatusWord::pin_tries(0), StatusWord::PIN_BLOCKED] {
            assert_eq!(
                g.check_pin_probe(sw).unwrap_err().code,
                ErrorCode::PinBlocked
            );
        }
        for sw in [StatusWord::INS_NOT_SUPPORTED, StatusWord(0x6F00)] {
            let e = g.check_pin_probe(sw).unwrap_err();
            assert_eq!(e.code, ErrorCode::ForbiddenApdu, "{sw:?}");
        }
    }
}
