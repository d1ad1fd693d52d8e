//! Capability detection and the card connection, through the extension and
//! the bridge, with the typed messages of [`purse::bridge_msg`] (no
//! hand-written JSON): `readers` → `connect` → `transmit`…, and the card
//! events. The first request is `readers`, not `hello`: its answer says all
//! that `hello`'s would (the extension is there: an answer; the bridge is:
//! not `no_bridge`; PC/SC: not `no_service`) and names the readers, so the
//! card's connection is one round trip through the frame, the extension and
//! the bridge nearer. Sans-IO: it writes request texts and reads message texts;
//! the glue carries them (`window.postMessage` in the browser, a test's
//! stand-in extension natively).
//!
//! What it hands the checkout: the capability for the merchant page, "a card
//! is connected in a fresh selection" and the card's answer to a command as a
//! [`purse::client::Reply`] (a bridge error becomes `CardLost` — the command's
//! fate is unknown — or a `Refused` — nothing reached the card).

use crate::prelude::*;
use purse::bridge_msg::{
    BridgeError, BridgeRequest, Connected, ErrorCode, Event, Id, Readers, Request, Transmitted,
};
use purse::client::{Refusal, Reply};
use purse::json::lite::{decode, set, Decode, Reader, Span};
use serde::Serialize;

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

impl purse::json::lite::Encode for Capability {
    fn encode(&self, w: &mut purse::json::lite::Writer) {
        w.str(self.as_str());
    }
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

/// What a request was for (its reply is read as that type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Readers,
    Connect,
    /// A command APDU; `verify`: a VERIFY (for the last-try refusal of older bridges).
    Transmit {
        verify: bool,
    },
}

/// What the checkout hears from the bridge side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A card is connected in a fresh selection.
    Connected,
    /// The answer to the last [`Bridge::transmit`].
    Card(Reply),
    /// The card left the reader (or the bridge went away) with no command out.
    Removed,
    /// A card went into a reader.
    Inserted,
}

/// The extension/bridge side of one checkout.
#[derive(Debug, Default)]
pub struct Bridge {
    next_id: u64,
    pending: Option<(u64, Asked)>,
    /// The reader in use (or the one last seen).
    reader: Option<String>,
    handle: Option<u32>,
    /// The connection is new: no command was sent on it yet.
    fresh: bool,
    capability: Option<Capability>,
    /// The extension answered something (the first request's deadline is off).
    answered: bool,
    /// A connection the card left: closed at the next message out, so it
    /// holds nothing at the bridge (and is not left for the page's unload).
    stale: Option<u32>,
}

/// A message from the extension: a reply (`id`, then `result` or `error`) or
/// an event (`event`, `reader`): the shape of `purse::bridge_msg::Reply` and
/// `Event`, read without serde's buffering of tagged and flattened enums (a
/// few kilobytes of the download). Read once, by `purse::json::lite`'s
/// [`Decode`], with `result` left as text ([`Span`]) until the request it
/// answers says its type ([`read`]): one decoder for every reply (serde's
/// derive, in the tests only, is held to the same result).
struct Incoming {
    id: Option<u64>,
    result: Option<Span>,
    error: Option<BridgeError>,
    event: Option<String>,
    reader: Option<String>,
}

impl Decode for Incoming {
    fn decode(r: &mut Reader<'_>) -> Result<Self, purse::json::Error> {
        let (mut id, mut result, mut error, mut event, mut reader) = (None, None, None, None, None);
        const NAMES: &[&str] = &["id", "result", "error", "event", "reader"];
        r.object(false, NAMES, &mut |i, r| match i {
            0 => set(&mut id, r),
            1 => set(&mut result, r),
            2 => set(&mut error, r),
            3 => set(&mut event, r),
            _ => set(&mut reader, r),
        })?;
        Ok(Self {
            id: id.flatten(),
            result: result.flatten(),
            error: error.flatten(),
            event: event.flatten(),
            reader: reader.flatten(),
        })
    }
}

impl Bridge {
    pub fn new() -> Self {
        Self {
            next_id: 1,
            ..Self::default()
        }
    }

    pub fn capability(&self) -> Option<Capability> {
        self.capability
    }

    pub fn reader(&self) -> Option<&str> {
        self.reader.as_deref()
    }

    /// Connected, and nothing sent on this connection yet.
    pub fn is_fresh(&self) -> bool {
        self.handle.is_some() && self.fresh
    }

    /// Waiting for the extension's first answer.
    pub fn awaiting_first_answer(&self) -> bool {
        !self.answered && self.pending.is_some()
    }

    fn send(&mut self, asked: Option<Asked>, body: BridgeRequest) -> (u64, String) {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(a) = asked {
            self.pending = Some((id, a));
        }
        let msg = Request {
            id: Id::Num(id),
            origin: None,
            body,
        };
        (id, purse::json::lite::encode(&msg))
    }

    /// The first request: is the extension there, the bridge behind it, and
    /// which readers have a card? (`readers`; see the module's doc.)
    pub fn start(&mut self) -> (u64, String) {
        self.send(Some(Asked::Readers), BridgeRequest::Readers)
    }

    /// The extension did not answer the first request in time: it is not
    /// installed (a late answer still counts).
    pub fn first_answer_timed_out(&mut self) {
        if self.awaiting_first_answer() && self.capability.is_none() {
            self.capability = Some(Capability::NoExtension);
        }
    }

    /// Connect the reader in use again (a new selection), or look for one.
    pub fn reconnect(&mut self) -> (u64, String) {
        match self.reader.clone() {
            Some(reader) => self.connect(reader),
            None => self.send(Some(Asked::Readers), BridgeRequest::Readers),
        }
    }

    fn connect(&mut self, reader: String) -> (u64, String) {
        self.forget_handle();
        self.reader = Some(reader.clone());
        self.send(Some(Asked::Connect), BridgeRequest::Connect { reader })
    }

    /// Send a command APDU to the card; `None` when no card is connected
    /// (the caller treats it as lost).
    pub fn transmit(&mut self, apdu: Vec<u8>) -> Option<(u64, String)> {
        let handle = self.handle?;
        self.fresh = false;
        let verify = apdu.get(1) == Some(&purse::command::INS_VERIFY);
        let apdu = purse::bridge_msg::ApduHex(apdu);
        Some(self.send(
            Some(Asked::Transmit { verify }),
            BridgeRequest::Transmit { handle, apdu },
        ))
    }

    /// Let go of the card (nobody waits for the answer).
    pub fn release(&mut self) -> Option<(u64, String)> {
        let handle = self.handle.take()?;
        self.fresh = false;
        Some(self.send(None, BridgeRequest::Disconnect { handle }))
    }

    /// Read one message from the extension. Besides what it tells the
    /// checkout, it may ask for the next bridge request (`out`).
    pub fn on_message(&mut self, text: &str, out: &mut Vec<(u64, String)>) -> Option<Heard> {
        let head: Incoming = decode(text.as_bytes()).ok()?;
        match head.id {
            Some(id) => {
                let (pid, asked) = self.pending?;
                if pid != id {
                    return None; // a stale answer (to a request before a card swap)
                }
                self.pending = None;
                self.answered = true;
                let heard = self.on_reply(asked, text, head, out);
                self.close_stale(out);
                heard
            }
            None => {
                let ev = match (head.event?.as_str(), head.reader) {
                    ("card_inserted", Some(reader)) => Event::CardInserted { reader },
                    ("card_removed", Some(reader)) => Event::CardRemoved { reader },
                    ("bridge_disconnected", _) => Event::BridgeDisconnected {
                        message: String::new(),
                    },
                    ("extension_disconnected", _) => {
                        Event::ExtensionDisconnected { reload_page: false }
                    }
                    _ => return None,
                };
                let heard = self.on_event(ev, out);
                self.close_stale(out);
                heard
            }
        }
    }

    fn close_stale(&mut self, out: &mut Vec<(u64, String)>) {
        if let Some(handle) = self.stale.take() {
            out.push(self.send(None, BridgeRequest::Disconnect { handle }));
        }
    }

    fn on_reply(
        &mut self,
        asked: Asked,
        text: &str,
        reply: Incoming,
        out: &mut Vec<(u64, String)>,
    ) -> Option<Heard> {
        match asked {
            Asked::Readers => {
                match read::<Readers>(text, reply) {
                    Ok(r) => {
                        if let Some(with_card) = r.readers.iter().find(|r| r.card_present) {
                            out.push(self.connect(with_card.name.clone()));
                        } else if let Some(first) = r.readers.first() {
                            self.reader = Some(first.name.clone());
                            self.unavailable(Capability::NoCard);
                        } else {
                            self.unavailable(Capability::NoReader);
                        }
                    }
                    Err(e) => self.unavailable(match e.code {
                        ErrorCode::NoService | ErrorCode::NoReader => Capability::NoReader,
                        _ => Capability::NoBridge,
                    }),
                }
                None
            }
            Asked::Connect => match read::<Connected>(text, reply) {
                Ok(c) => {
                    self.handle = Some(c.handle);
                    self.fresh = true;
                    self.capability = Some(Capability::Ready);
                    Some(Heard::Connected)
                }
                Err(e) => {
                    self.unavailable(match e.code {
                        ErrorCode::NoReader | ErrorCode::NoService => Capability::NoReader,
                        _ => Capability::NoCard,
                    });
                    None
                }
            },
            Asked::Transmit { verify } => {
                Some(Heard::Card(match read::<Transmitted>(text, reply) {
                    Ok(t) => Reply::Card(t.rapdu.0),
                    Err(e) => self.card_error(e, verify),
                }))
            }
        }
    }

    /// A bridge error on a command: refused (nothing reached the card) or lost.
    fn card_error(&mut self, e: BridgeError, verify: bool) -> Reply {
        let refused = match e.code {
            ErrorCode::RateLimited => Refusal::RateLimited {
                retry_after_ms: e.retry_after_ms.unwrap_or(60_000),
                limit: e.limit.unwrap_or(purse::bridge_msg::Limit::Unknown),
            },
            ErrorCode::LastPinTry => Refusal::LastPinTry,
            // An older bridge refused the last PIN try as a forbidden APDU.
            ErrorCode::ForbiddenApdu if verify => Refusal::LastPinTry,
            ErrorCode::PinBlocked => Refusal::PinBlocked,
            ErrorCode::ForbiddenApdu | ErrorCode::ForbiddenOrigin | ErrorCode::Busy => {
                Refusal::Other
            }
            // The command may or may not have reached the card; the connection is gone.
            _ => {
                self.forget_handle();
                return Reply::CardLost;
            }
        };
        Reply::Refused(refused)
    }

    fn unavailable(&mut self, c: Capability) {
        self.forget_handle();
        self.capability = Some(c);
    }

    /// The connection is gone (card pulled, bridge error): close it at the bridge too.
    fn forget_handle(&mut self) {
        if let Some(h) = self.handle.take() {
            self.stale = Some(h);
        }
        self.fresh = false;
    }

    fn on_event(&mut self, ev: Event, out: &mut Vec<(u64, String)>) -> Option<Heard> {
        let gone = match ev {
            Event::CardRemoved { reader } => self.reader.as_deref() == Some(reader.as_str()),
            // Open handles are gone: as if the card left the reader.
            Event::BridgeDisconnected { .. } | Event::ExtensionDisconnected { .. } => true,
            Event::CardInserted { reader } => {
                let ours = self.reader.as_ref().is_none_or(|r| *r == reader);
                if !ours || self.handle.is_some() {
                    return None;
                }
                self.reader = Some(reader);
                if self.capability == Some(Capability::NoReader) {
                    self.capability = Some(Capability::NoCard);
                }
                return Some(Heard::Inserted);
            }
            _ => return None,
        };
        if !gone {
            return None;
        }
        let _ = out;
        self.unavailable(Capability::NoCard);
        // An outstanding command gets its own (error) answer from the bridge.
        match self.pending {
            Some((_, Asked::Transmit { .. })) => None,
            _ => Some(Heard::Removed),
        }
    }

    /// The checkout wants the card (after an insertion or a retry).
    pub fn wants_card(&mut self, out: &mut Vec<(u64, String)>) {
        if self.handle.is_none() && !matches!(self.pending, Some((_, Asked::Connect))) {
            out.push(self.reconnect());
        }
    }
}

/// A reply's result as `T`, or its error (a reply that does not parse is a
/// card error). `text` is the reply `reply` was read from.
fn read<T: Decode>(text: &str, reply: Incoming) -> Result<T, BridgeError> {
    match reply {
        Incoming {
            result: Some(r), ..
        } => decode::<T>(r.of(text.as_bytes())).ok(),
        Incoming { error: Some(e), .. } => return Err(e),
        _ => None,
    }
    .ok_or_else(|| BridgeError::new(ErrorCode::CardError, "unreadable reply"))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use purse::bridge_msg::{ApduHex, Limit, ReaderInfo};
    use purse::json::lite::testing::differential;

    /// A message with its `result` typed: serde's derive of it is what the widget's
    /// reading must agree with ([`Incoming`], then the result's span as `T`, as
    /// [`read`] does).
    #[derive(serde::Deserialize, Serialize, Debug, PartialEq)]
    struct Typed<T> {
        id: Option<u64>,
        result: Option<T>,
        error: Option<BridgeError>,
        event: Option<String>,
        reader: Option<String>,
    }

    impl<T: Decode> Decode for Typed<T> {
        fn decode(r: &mut Reader<'_>) -> Result<Self, purse::json::Error> {
            let input = r.input();
            let m = Incoming::decode(r)?;
            let result = match m.result {
                Some(span) => Some(decode::<T>(span.of(input))?),
                None => None,
            };
            Ok(Typed {
                id: m.id,
                result,
                error: m.error,
                event: m.event,
                reader: m.reader,
            })
        }
    }

    fn incoming<T>(result: Option<T>, error: Option<BridgeError>) -> Typed<T> {
        Typed {
            id: Some(3),
            result,
            error,
            event: None,
            reader: None,
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Each reply and event the widget reads, and hostile variants of it: the
        /// widget's decoder takes what serde's derive would, as the same value.
        #[test]
        fn incoming_decoder_agrees_with_serde(seed: u64) {
            let names = ["id", "result", "error", "event", "reader", "type"];
            let err = BridgeError::rate_limited(Limit::Apdu, "x", 10);
            let readers = Readers {
                readers: vec![ReaderInfo { name: "R".into(), card_present: true }],
            };
            let mut n = differential(&incoming(Some(readers), None), &names, 40, seed);
            n += differential(&incoming::<Readers>(None, Some(err.clone())), &names, 40, seed);
            let t = Transmitted { rapdu: ApduHex(vec![0x6a, 0x82]) };
            n += differential(&incoming(Some(t), None), &names, 40, seed);
            let c = Connected { handle: 1, atr: ApduHex(vec![0x3b]) };
            n += differential(&incoming(Some(c), None), &names, 40, seed);
            let ev = Typed::<Connected> {
                id: None,
                result: None,
                error: None,
                event: Some("card_inserted".into()),
                reader: Some("R".into()),
            };
            n += differential(&ev, &names, 40, seed);
            proptest::prop_assert!(n > 20, "only {} of 200 accepted", n);
        }
    }
}
