//! PC/SC side: the [`PcscBackend`] (runs on the host's worker thread) and the
//! card-event monitor (its own thread and PC/SC context).
//!
//! Recovery: any error that means the PC/SC context is dead (pcscd stopped or
//! restarted) drops the context and every connection; the next request
//! establishes a fresh one. A card pulled mid-command closes that connection
//! with `card_removed`; the page connects again once the card is back.

use std::collections::HashMap;
use std::ffi::CString;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pcsc::{Card, Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};
use purse::apdu::StatusWord;
use purse::command::SelectResponse;
use serde_json::{json, Value};

use crate::guard::{Guard, GuardConfig, Verdict, PIN_PROBE};
use crate::host::{Backend, EventSink};
use crate::protocol::{self, Body, BridgeError, ErrorCode};

/// Map a PC/SC error to a stable code and plain words.
pub fn map_pcsc(e: pcsc::Error) -> BridgeError {
    use pcsc::Error as E;
    let (code, msg) = match e {
        E::NoService | E::ServiceStopped | E::CommError | E::InvalidHandle | E::Shutdown => (
            ErrorCode::NoService,
            "the smart-card service (pcscd) is not running",
        ),
        E::NoReadersAvailable | E::UnknownReader | E::ReaderUnavailable => {
            (ErrorCode::NoReader, "no card reader is connected")
        }
        E::NoSmartcard => (ErrorCode::NoCard, "there is no card in the reader"),
        E::RemovedCard
        | E::ResetCard
        | E::NotTransacted
        | E::UnpoweredCard
        | E::UnresponsiveCard => (
            ErrorCode::CardRemoved,
            "the card was removed or reset; insert it and connect again",
        ),
        E::Timeout => (ErrorCode::Timeout, "the card did not answer in time"),
        E::SharingViolation => (
            ErrorCode::CardError,
            "another program is using the card exclusively",
        ),
        other => {
            return BridgeError::new(
                ErrorCode::CardError,
                format!("card or reader error: {other}"),
            )
        }
    };
    BridgeError::new(code, msg)
}

/// Errors after which the context must be re-established.
fn context_dead(e: pcsc::Error) -> bool {
    use pcsc::Error as E;
    matches!(
        e,
        E::NoService
            | E::ServiceStopped
            | E::CommError
            | E::InvalidHandle
            | E::Shutdown
            | E::UnknownError
    )
}

fn card_gone(e: pcsc::Error) -> bool {
    use pcsc::Error as E;
    matches!(
        e,
        E::RemovedCard
            | E::ResetCard
            | E::NotTransacted
            | E::UnpoweredCard
            | E::UnresponsiveCard
            | E::NoSmartcard
    )
}

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's civil_from_days).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn bcd(n: u32) -> u8 {
    (((n / 10) % 10) << 4 | (n % 10)) as u8
}

/// Today (UTC) as BCD `YYMMDD`, comparable bytewise with a card's expiry.
pub fn today_yymmdd() -> [u8; 3] {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    [bcd((y % 100) as u32), bcd(m), bcd(d)]
}

struct Conn {
    card: Card,
    reader: String,
}

/// Readiness of a card from its answers (sans-IO): the SELECT response APDU,
/// the status word of VERIFY-without-data (sent only after a good SELECT) and
/// today's date as BCD YYMMDD. Returns (state, plain words, extra fields).
pub fn card_readiness(
    select: &[u8],
    probe: Option<StatusWord>,
    today: [u8; 3],
) -> (&'static str, String, Value) {
    let not_cardpay = || {
        (
            "not_cardpay",
            "The card in the reader is not a Cardpay card.".to_owned(),
            json!({}),
        )
    };
    if select.len() < 2 || sw_of(select) != StatusWord::OK {
        return not_cardpay();
    }
    let Ok(sel) = SelectResponse::decode(&select[..select.len() - 2]) else {
        return not_cardpay();
    };
    let exp = sel.expiry.bytes();
    let mut extra = json!({"card": {"expiry": hex::encode(exp), "app_version": sel.app_version}});
    if exp < today {
        return (
            "expired",
            "The card has expired. Ask your bank for a new one.".into(),
            extra,
        );
    }
    let Some(sw) = probe else {
        return (
            "card_error",
            "The card did not report its PIN state.".into(),
            extra,
        );
    };
    if sw == StatusWord::PIN_BLOCKED || sw.pin_tries_left() == Some(0) {
        return (
            "blocked",
            "The card's PIN is blocked. Ask your bank to unblock it.".into(),
            extra,
        );
    }
    let mut msg = "The card is ready.".to_owned();
    if let Some(n) = sw.pin_tries_left() {
        extra["card"]["pin_tries_left"] = json!(n);
        if n <= 1 {
            msg = "The card is ready, but only one PIN try is left: payments that need the PIN are refused to protect the card.".into();
        }
    } else if sw != StatusWord::OK {
        return (
            "card_error",
            format!("The card answered the PIN status check with {:04X}.", sw.0),
            extra,
        );
    }
    ("ready", msg, extra)
}

/// The PC/SC worker.
pub struct PcscBackend {
    ctx: Option<Context>,
    conns: HashMap<u32, Conn>,
    next_handle: u32,
    guard: Guard,
    /// Handles lost to a pulled card or a pcscd restart: answered with
    /// `card_removed` (connect again) rather than `bad_request`.
    lost: std::collections::HashSet<u32>,
}

fn sw_of(r: &[u8]) -> StatusWord {
    match r {
        [.., a, b] => StatusWord(u16::from_be_bytes([*a, *b])),
        _ => StatusWord(0),
    }
}

impl PcscBackend {
    pub fn new(guard: GuardConfig) -> Self {
        Self {
            ctx: None,
            conns: HashMap::new(),
            next_handle: 1,
            guard: Guard::new(guard),
            lost: Default::default(),
        }
    }

    fn drop_context(&mut self) {
        if !self.conns.is_empty() || self.ctx.is_some() {
            tracing::warn!(
                "PC/SC context lost; dropping {} connection(s)",
                self.conns.len()
            );
        }
        let handles: Vec<u32> = self.conns.keys().copied().collect();
        for h in handles {
            self.mark_lost(h);
        }
        self.conns.clear();
        self.guard.clear();
        self.ctx = None;
    }

    fn mark_lost(&mut self, handle: u32) {
        if self.lost.len() >= 1024 {
            self.lost.clear();
        }
        self.lost.insert(handle);
    }

    fn context(&mut self) -> Result<Context, BridgeError> {
        if let Some(c) = &self.ctx {
            return Ok(c.clone());
        }
        let c = Context::establish(Scope::User).map_err(map_pcsc)?;
        self.ctx = Some(c.clone());
        Ok(c)
    }

    /// Run a context-level operation; if the context turns out dead (pcscd
    /// restarted), re-establish once and retry.
    fn with_ctx<T>(
        &mut self,
        f: impl Fn(&Context) -> Result<T, pcsc::Error>,
    ) -> Result<T, BridgeError> {
        let ctx = self.context()?;
        match f(&ctx) {
            Ok(v) => Ok(v),
            Err(e) if context_dead(e) => {
                self.drop_context();
                let ctx = self.context()?;
                f(&ctx).map_err(|e| {
                    if context_dead(e) {
                        self.drop_context();
                    }
                    map_pcsc(e)
                })
            }
            Err(e) => Err(map_pcsc(e)),
        }
    }

    fn reader_list(&mut self) -> Result<Vec<(String, bool)>, BridgeError> {
        self.with_ctx(|ctx| {
            let names = match ctx.list_readers_owned() {
                Ok(n) => n,
                Err(pcsc::Error::NoReadersAvailable) => return Ok(vec![]),
                Err(e) => return Err(e),
            };
            if names.is_empty() {
                return Ok(vec![]);
            }
            let mut states: Vec<ReaderState> = names
                .iter()
                .map(|n| ReaderState::new(n.clone(), State::UNAWARE))
                .collect();
            match ctx.get_status_change(Duration::ZERO, &mut states) {
                Ok(()) | Err(pcsc::Error::Timeout) => {}
                Err(e) => return Err(e),
            }
            Ok(states
                .iter()
                .map(|s| {
                    (
                        s.name().to_string_lossy().into_owned(),
                        s.event_state().contains(State::PRESENT)
                            && !s.event_state().contains(State::MUTE),
                    )
                })
                .collect())
        })
    }

    fn readers(&mut self) -> Result<Value, BridgeError> {
        let list = self.reader_list()?;
        Ok(json!({
            "readers": list.iter().map(|(n, p)| json!({"name": n, "card_present": p})).collect::<Vec<_>>()
        }))
    }

    fn connect(&mut self, origin: &str, reader: &str) -> Result<Value, BridgeError> {
        self.guard.may_open(origin)?;
        let name = CString::new(reader).map_err(|_| BridgeError::bad_request("bad reader name"))?;
        let card = self.with_ctx(|ctx| ctx.connect(&name, ShareMode::Shared, Protocols::ANY))?;
        let atr = card
            .status2_owned()
            .map(|s| s.atr().to_vec())
            .unwrap_or_default();
        let handle = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1).max(1);
        self.conns.insert(
            handle,
            Conn {
                card,
                reader: reader.to_owned(),
            },
        );
        self.guard.opened(handle, origin);
        tracing::info!("connect {reader:?} for {origin} → handle {handle}");
        Ok(json!({"handle": handle, "atr": hex::encode_upper(atr)}))
    }

    /// Send one APDU on a connection, handling T=0 `61xx`/`6Cxx` inside the bridge.
    fn raw_transmit(&mut self, handle: u32, apdu: &[u8]) -> Result<Vec<u8>, BridgeError> {
        let conn = self
            .conns
            .get(&handle)
            .ok_or_else(|| BridgeError::bad_request("unknown or closed handle"))?;
        let mut buf = [0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        let mut result = conn.card.transmit(apdu, &mut buf).map(|r| r.to_vec());
        if let Ok(r) = &result {
            match r.as_slice() {
                [0x6C, n] if apdu.len() >= 5 => {
                    let mut again = apdu.to_vec();
                    *again.last_mut().unwrap_or(&mut 0) = *n;
                    result = conn.card.transmit(&again, &mut buf).map(|r| r.to_vec());
                }
                [0x61, n] => {
                    let get = [0x00, 0xC0, 0x00, 0x00, *n];
                    result = conn.card.transmit(&get, &mut buf).map(|r| r.to_vec());
                }
                _ => {}
            }
        }
        match result {
            // A response without a status word is no answer: the card lost power
            // mid-command (vpcd gives an empty reply when the card goes away).
            Ok(r) if r.len() < 2 => Err(BridgeError::new(
                ErrorCode::CardRemoved,
                "the card gave no status word: it was removed during the command",
            )),
            Ok(r) => Ok(r),
            Err(e) => {
                let err = map_pcsc(e);
                if context_dead(e) {
                    self.drop_context();
                    // pcscd gone or restarted: the connection is lost either way
                    if self.context().is_ok() {
                        return Err(BridgeError::new(
                            ErrorCode::CardRemoved,
                            "the smart-card service restarted; connect again",
                        ));
                    }
                } else if card_gone(e) {
                    if let Some(c) = self.conns.remove(&handle) {
                        let _ = c.card.disconnect(Disposition::LeaveCard);
                    }
                    self.guard.closed(handle);
                    self.mark_lost(handle);
                }
                Err(err)
            }
        }
    }

    fn transmit(&mut self, origin: &str, handle: u32, apdu: &[u8]) -> Result<Value, BridgeError> {
        if !self.conns.contains_key(&handle) && self.lost.contains(&handle) {
            return Err(BridgeError::new(
                ErrorCode::CardRemoved,
                "the connection to the card was lost (card removed or smart-card service restarted); connect again",
            ));
        }
        let verdict = self.guard.check(handle, origin, apdu, Instant::now())?;
        if verdict == Verdict::ProbePinFirst {
            let probe = self.raw_transmit(handle, &PIN_PROBE)?;
            self.guard.check_pin_probe(sw_of(&probe))?;
        }
        let r = self.raw_transmit(handle, apdu)?;
        self.guard.observe(handle, apdu, &r);
        Ok(json!({"rapdu": hex::encode_upper(r)}))
    }

    fn disconnect(&mut self, origin: &str, handle: u32) -> Result<Value, BridgeError> {
        match self.guard.owner(handle) {
            None => return Err(BridgeError::bad_request("unknown or closed handle")),
            Some(o) if o != origin => {
                return Err(BridgeError::new(
                    ErrorCode::ForbiddenOrigin,
                    "this connection belongs to another origin",
                ))
            }
            Some(_) => {}
        }
        self.guard.closed(handle);
        if let Some(c) = self.conns.remove(&handle) {
            // reset: a verified PIN must not outlive the page's session
            let _ = c.card.disconnect(Disposition::ResetCard);
        }
        Ok(json!({}))
    }

    /// The readiness answer: one state a shopper can act on.
    pub fn status(&mut self, want: Option<&str>) -> Value {
        let st = |state: &str, message: &str| json!({"state": state, "message": message});
        let list = match self.reader_list() {
            Ok(l) => l,
            Err(e) if e.code == ErrorCode::NoService => {
                return st(
                    "no_service",
                    "The smart-card service (pcscd) is not running. Start it (e.g. `sudo systemctl start pcscd`).",
                )
            }
            Err(e) => return st("card_error", &e.message),
        };
        let names: Vec<&String> = list.iter().map(|(n, _)| n).collect();
        if list.is_empty() {
            return st(
                "no_reader",
                "No card reader is connected. Plug in your reader.",
            );
        }
        let chosen = match want {
            Some(w) => list.iter().find(|(n, _)| n == w),
            None => list.iter().find(|(_, p)| *p).or(list.first()),
        };
        let Some((reader, present)) = chosen.cloned() else {
            let mut v = st("no_reader", "The requested reader is not connected.");
            v["readers"] = json!(names);
            return v;
        };
        let out = |state: &str, message: &str, extra: Value| {
            let mut v = st(state, message);
            v["reader"] = json!(reader);
            v["readers"] = json!(names);
            if let Value::Object(m) = extra {
                for (k, x) in m {
                    v[k] = x;
                }
            }
            v
        };
        if !present {
            return out(
                "no_card",
                "No card in the reader. Insert your Cardpay card.",
                json!({}),
            );
        }
        if self.conns.values().any(|c| c.reader == reader) {
            return out(
                "ready",
                "The card is in use by a payment page.",
                json!({"in_use": true}),
            );
        }
        let name = match CString::new(reader.clone()) {
            Ok(n) => n,
            Err(_) => return out("card_error", "bad reader name", json!({})),
        };
        let card = match self.with_ctx(|ctx| ctx.connect(&name, ShareMode::Shared, Protocols::ANY))
        {
            Ok(c) => c,
            Err(e) if e.code == ErrorCode::NoCard || e.code == ErrorCode::CardRemoved => {
                return out(
                    "no_card",
                    "No card in the reader. Insert your Cardpay card.",
                    json!({}),
                )
            }
            Err(e) => return out("card_error", &e.message, json!({})),
        };
        let mut buf = [0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        let mut select = vec![0x00, 0xA4, 0x04, 0x00, 0x08];
        select.extend_from_slice(&purse::AID);
        select.push(0x00);
        let v = match card.transmit(&select, &mut buf).map(|r| r.to_vec()) {
            Err(e) => out("card_error", &map_pcsc(e).message, json!({})),
            Ok(sel) if sw_of(&sel) != StatusWord::OK => {
                let (state, msg, extra) = card_readiness(&sel, None, today_yymmdd());
                out(state, &msg, extra)
            }
            Ok(sel) => match card.transmit(&PIN_PROBE, &mut buf).map(sw_of) {
                Err(e) => out("card_error", &map_pcsc(e).message, json!({})),
                Ok(probe) => {
                    let (state, msg, extra) = card_readiness(&sel, Some(probe), today_yymmdd());
                    out(state, &msg, extra)
                }
            },
        };
        let _ = card.disconnect(Disposition::LeaveCard);
        v
    }
}

impl Backend for PcscBackend {
    fn handle(&mut self, origin: &str, body: Body) -> Result<Value, BridgeError> {
        match body {
            Body::Hello => Ok(crate::host::hello()),
            Body::Status { reader } => Ok(self.status(reader.as_deref())),
            Body::Readers => self.readers(),
            Body::Connect { reader } => self.connect(origin, &reader),
            Body::Transmit { handle, apdu } => self.transmit(origin, handle, &apdu),
            Body::Disconnect { handle } => self.disconnect(origin, handle),
        }
    }
}

/// Sans-IO view of readers and cards: feed it what PC/SC reports, get the
/// events to send. The first snapshot only records the state (no events).
#[derive(Debug, Default)]
pub struct ReaderTracker {
    known: Vec<(String, bool)>,
    primed: bool,
    service_down: bool,
}

impl ReaderTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The complete reader list with card presence, as just observed.
    pub fn snapshot(&mut self, readers: &[(String, bool)]) -> Vec<Value> {
        let mut ev = vec![];
        if self.service_down {
            ev.push(json!({"event": "service", "state": "ok"}));
            self.service_down = false;
        }
        if self.primed {
            for (name, present) in &self.known {
                if !readers.iter().any(|(n, _)| n == name) {
                    if *present {
                        ev.push(protocol::event("card_removed", name));
                    }
                    ev.push(protocol::event("reader_removed", name));
                }
            }
            for (name, present) in readers {
                match self.known.iter().find(|(n, _)| n == name) {
                    None => {
                        ev.push(protocol::event("reader_added", name));
                        if *present {
                            ev.push(protocol::event("card_inserted", name));
                        }
                    }
                    Some((_, before)) if before != present => {
                        let kind = if *present {
                            "card_inserted"
                        } else {
                            "card_removed"
                        };
                        ev.push(protocol::event(kind, name));
                    }
                    Some(_) => {}
                }
            }
        }
        self.known = readers.to_vec();
        self.primed = true;
        ev
    }

    /// PC/SC is gone (pcscd stopped): cards count as removed.
    pub fn service_lost(&mut self) -> Vec<Value> {
        if self.service_down {
            return vec![];
        }
        let mut ev: Vec<Value> = self
            .known
            .iter()
            .filter(|(_, p)| *p)
            .map(|(n, _)| protocol::event("card_removed", n))
            .collect();
        ev.push(json!({"event": "service", "state": "no_service"}));
        self.known.clear();
        self.service_down = true;
        self.primed = true;
        ev
    }
}

/// Watch readers and cards; send `card_inserted` / `card_removed`
/// (`{"event", "reader"}`), `reader_added` / `reader_removed`, and
/// `service` (`{"event":"service","state":"no_service"|"ok"}`) events.
/// Returns when the sink is closed.
pub fn monitor(sink: EventSink) {
    let mut tracker = ReaderTracker::new();
    let pnp = pcsc::PNP_NOTIFICATION();
    let send_all = |evs: Vec<Value>| evs.into_iter().all(|e| sink.send(e));
    loop {
        let ctx = match Context::establish(Scope::User) {
            Ok(c) => c,
            Err(_) => {
                if !send_all(tracker.service_lost()) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        let mut states: Vec<ReaderState> = vec![];
        let mut timeout = Duration::ZERO;
        loop {
            let names = match ctx.list_readers_owned() {
                Ok(n) => n,
                Err(pcsc::Error::NoReadersAvailable) => vec![],
                Err(_) => break,
            };
            // rebuild the watch list when readers come or go
            let same = states.len() == names.len() + 1
                && names
                    .iter()
                    .zip(&states)
                    .all(|(n, s)| n.as_c_str() == s.name());
            if !same {
                states = names
                    .iter()
                    .map(|n| ReaderState::new(n.clone(), State::UNAWARE))
                    .collect();
                states.push(ReaderState::new(pnp, State::UNAWARE));
                timeout = Duration::ZERO;
            }
            match ctx.get_status_change(timeout, &mut states) {
                Ok(()) | Err(pcsc::Error::Timeout) => {}
                Err(pcsc::Error::UnknownReader) | Err(pcsc::Error::ReaderUnavailable) => {
                    states.clear();
                    continue;
                }
                Err(e) => {
                    tracing::warn!("card monitor: {e}");
                    break;
                }
            }
            let snapshot: Vec<(String, bool)> = states
                .iter()
                .filter(|s| s.name() != pnp)
                .map(|s| {
                    let ev = s.event_state();
                    (
                        s.name().to_string_lossy().into_owned(),
                        ev.contains(State::PRESENT) && !ev.contains(State::MUTE),
                    )
                })
                .collect();
            if !send_all(tracker.snapshot(&snapshot)) {
                return;
            }
            for s in states.iter_mut() {
                s.sync_current_state();
            }
            timeout = Duration::from_millis(1000);
        }
        // context died (pcscd stopped): report and retry
        if !send_all(tracker.service_lost()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(bcd(26), 0x26);
        let t = today_yymmdd();
        assert!(t[1] >= 0x01 && t[1] <= 0x12);
        // the demo card (expiry 301231) is valid today, 200101 has expired
        assert!([0x30, 0x12, 0x31] >= t);
        assert!([0x20, 0x01, 0x01] < t);
    }

    fn names(evs: &[Value]) -> Vec<String> {
        evs.iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["event"].as_str().unwrap(),
                    e.get("reader")
                        .or(e.get("state"))
                        .unwrap()
                        .as_str()
                        .unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn tracker_events() {
        let r = |n: &str, p: bool| (n.to_owned(), p);
        let mut t = ReaderTracker::new();
        // the first snapshot is silent
        assert!(t.snapshot(&[r("A", true), r("B", false)]).is_empty());
        assert!(t.snapshot(&[r("A", true), r("B", false)]).is_empty());
        assert_eq!(
            names(&t.snapshot(&[r("A", false), r("B", true)])),
            ["card_removed A", "card_inserted B"]
        );
        // reader unplugged with its card in: card_removed then reader_removed
        assert_eq!(
            names(&t.snapshot(&[r("A", false)])),
            ["card_removed B", "reader_removed B"]
        );
        // reader plugged in with a card
        assert_eq!(
            names(&t.snapshot(&[r("A", false), r("C", true)])),
            ["reader_added C", "card_inserted C"]
        );
        // pcscd stopped: cards removed once, service event once
        assert_eq!(
            names(&t.service_lost()),
            ["card_removed C", "service no_service"]
        );
        assert!(t.service_lost().is_empty());
        // pcscd back
        assert_eq!(
            names(&t.snapshot(&[r("A", true), r("C", false)])),
            [
                "service ok",
                "reader_added A",
                "card_inserted A",
                "reader_added C"
            ]
        );
        // no service from the start: reported, then recovery
        let mut t = ReaderTracker::new();
        assert_eq!(names(&t.service_lost()), ["service no_service"]);
        assert_eq!(
            names(&t.snapshot(&[r("A", true)])),
            ["service ok", "reader_added A", "card_inserted A"]
        );
    }

    #[test]
    fn readiness_from_card_answers() {
        use purse::command::PurseInfo;
        use purse::types::{CardId, Expiry};
        let purse = PurseInfo {
            currency: 978,
            exponent: 2,
            balance: 100,
            max_balance: 1000,
        };
        let select = |expiry: &str| {
            let mut r = SelectResponse {
                card_id: CardId::parse("6280000000000001").unwrap(),
                expiry: Expiry::parse(expiry).unwrap(),
                key_version: 1,
                app_version: 1,
                purses: [purse, purse],
            }
            .encode();
            r.extend([0x90, 0x00]);
            r
        };
        let today = [0x26, 0x11, 0x23];
        let good = select("301231");
        let st = |sel: &[u8], probe: Option<StatusWord>, today| card_readiness(sel, probe, today).0;
        assert_eq!(st(&good, Some(StatusWord::pin_tries(3)), today), "ready");
        assert_eq!(st(&good, Some(StatusWord::OK), today), "ready");
        let (_, msg, extra) = card_readiness(&good, Some(StatusWord::pin_tries(1)), today);
        assert!(msg.contains("one PIN try"));
        assert_eq!(extra["card"]["pin_tries_left"], 1);
        assert_eq!(extra["card"]["expiry"], "301231");
        assert_eq!(st(&good, Some(StatusWord::pin_tries(0)), today), "blocked");
        assert_eq!(st(&good, Some(StatusWord::PIN_BLOCKED), today), "blocked");
        assert_eq!(
            st(&good, Some(StatusWord::INS_NOT_SUPPORTED), today),
            "card_error"
        );
        assert_eq!(st(&good, None, today), "card_error");
        // expiry is the last valid day
        assert_eq!(
            st(&select("261123"), Some(StatusWord::pin_tries(3)), today),
            "ready"
        );
        assert_eq!(
            st(&select("261122"), Some(StatusWord::pin_tries(3)), today),
            "expired"
        );
        // not our application, or garbage
        assert_eq!(st(&[0x6A, 0x82], None, today), "not_cardpay");
        assert_eq!(
            st(&[0x90, 0x00], Some(StatusWord::OK), today),
            "not_cardpay"
        );
        assert_eq!(
            st(&[0x01, 0x90, 0x00], Some(StatusWord::OK), today),
            "not_cardpay"
        );
        assert_eq!(st(&[], None, today), "not_cardpay");
    }

    #[test]
    fn error_mapping() {
        assert_eq!(map_pcsc(pcsc::Error::NoService).code, ErrorCode::NoService);
        assert_eq!(
            map_pcsc(pcsc::Error::NoReadersAvailable).code,
            ErrorCode::NoReader
        );
        assert_eq!(map_pcsc(pcsc::Error::NoSmartcard).code, ErrorCode::NoCard);
        assert_eq!(
            map_pcsc(pcsc::Error::RemovedCard).code,
            ErrorCode::CardRemoved
        );
        assert_eq!(
            map_pcsc(pcsc::Error::NotTransacted).code,
            ErrorCode::CardRemoved
        );
        assert_eq!(map_pcsc(pcsc::Error::Timeout).code, ErrorCode::Timeout);
        assert_eq!(
            map_pcsc(pcsc::Error::InsufficientBuffer).code,
            ErrorCode::CardError
        );
        assert!(context_dead(pcsc::Error::CommError));
        assert!(!context_dead(pcsc::Error::RemovedCard));
    }
}
