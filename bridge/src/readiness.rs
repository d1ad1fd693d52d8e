//! Decisions about readers and cards, sans-IO: what a card's answers mean for
//! the shopper ([`card_readiness`]) and which events a change of readers and
//! cards makes ([`ReaderTracker`]). The I/O that feeds them is in
//! [`crate::pcsc`] (status) and [`crate::monitor`] (events).

use purse::apdu::StatusWord;
use purse::bridge_msg::{CardInfo, Event, Readiness, ServiceState, Status};
use purse::command::SelectResponse;
use purse::BcdDate;

/// The status word at the end of a response APDU (`0000` if there is none).
pub fn sw_of(r: &[u8]) -> StatusWord {
    match r {
        [.., a, b] => StatusWord(u16::from_be_bytes([*a, *b])),
        _ => StatusWord(0),
    }
}

/// What `bridge pin` is, in the words the shopper reads when one try is left.
pub const ONE_TRY_LEFT: &str = "The card is ready, but only one PIN try is left: payments that need the PIN are refused to protect the card. Run `bridge pin` on this computer and type your PIN there to restore the tries.";

/// Readiness of a card from its answers: the SELECT response APDU, the status
/// word of VERIFY-without-data (sent only after a good SELECT) and today's
/// date. The reader fields of the answer are left for the caller.
pub fn card_readiness(select: &[u8], probe: Option<StatusWord>, today: BcdDate) -> Status {
    let not_cardpay = || {
        Status::new(
            Readiness::NotCardpay,
            "The card in the reader is not a Cardpay card.",
        )
    };
    if select.len() < 2 || sw_of(select) != StatusWord::OK {
        return not_cardpay();
    }
    let Ok(sel) = SelectResponse::decode(&select[..select.len() - 2]) else {
        return not_cardpay();
    };
    let mut card = CardInfo {
        expiry: hex::encode(sel.expiry.bytes()),
        app_version: sel.app_version,
        pin_tries_left: None,
    };
    let with = |state, message: &str, card: CardInfo| {
        let mut s = Status::new(state, message);
        s.card = Some(card);
        s
    };
    if sel.expiry.is_expired_on(&today) {
        return with(
            Readiness::Expired,
            "The card has expired. Ask your bank for a new one.",
            card,
        );
    }
    let Some(sw) = probe else {
        return with(
            Readiness::CardError,
            "The card did not report its PIN state.",
            card,
        );
    };
    if sw == StatusWord::PIN_BLOCKED || sw.pin_tries_left() == Some(0) {
        return with(
            Readiness::Blocked,
            "The card's PIN is blocked. Ask your bank to unblock it.",
            card,
        );
    }
    let mut msg = "The card is ready.";
    if let Some(n) = sw.pin_tries_left() {
        card.pin_tries_left = Some(n);
        if n <= 1 {
            msg = ONE_TRY_LEFT;
        }
    } else if sw != StatusWord::OK {
        return with(
            Readiness::CardError,
            &format!("The card answered the PIN status check with {:04X}.", sw.0),
            card,
        );
    }
    with(Readiness::Ready, msg, card)
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
    pub fn snapshot(&mut self, readers: &[(String, bool)]) -> Vec<Event> {
        let mut ev = vec![];
        if self.service_down {
            ev.push(Event::Service {
                state: ServiceState::Ok,
            });
            self.service_down = false;
        }
        if self.primed {
            for (name, present) in &self.known {
                if !readers.iter().any(|(n, _)| n == name) {
                    if *present {
                        ev.push(Event::CardRemoved {
                            reader: name.clone(),
                        });
                    }
                    ev.push(Event::ReaderRemoved {
                        reader: name.clone(),
                    });
                }
            }
            for (name, present) in readers {
                let reader = name.clone();
                match self.known.iter().find(|(n, _)| n == name) {
                    None => {
                        ev.push(Event::ReaderAdded {
                            reader: reader.clone(),
                        });
                        if *present {
                            ev.push(Event::CardInserted { reader });
                        }
                    }
                    Some((_, before)) if before != present => ev.push(if *present {
                        Event::CardInserted { reader }
                    } else {
                        Event::CardRemoved { reader }
                    }),
                    Some(_) => {}
                }
            }
        }
        self.known = readers.to_vec();
        self.primed = true;
        ev
    }

    /// PC/SC is gone (pcscd stopped): cards count as removed.
    pub fn service_lost(&mut self) -> Vec<Event> {
        if self.service_down {
            return vec![];
        }
        let mut ev: Vec<Event> = self
            .known
            .iter()
            .filter(|(_, p)| *p)
            .map(|(n, _)| Event::CardRemoved { reader: n.clone() })
            .collect();
        ev.push(Event::Service {
            state: ServiceState::NoService,
        });
        self.known.clear();
        self.service_down = true;
        self.primed = true;
        ev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(evs: &[Event]) -> Vec<String> {
        evs.iter()
            .map(|e| match e {
                Event::CardInserted { reader } => format!("card_inserted {reader}"),
                Event::CardRemoved { reader } => format!("card_removed {reader}"),
                Event::ReaderAdded { reader } => format!("reader_added {reader}"),
                Event::ReaderRemoved { reader } => format!("reader_removed {reader}"),
                Event::Service { state } => format!("service {state:?}"),
                other => format!("{other:?}"),
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
            ["card_removed C", "service NoService"]
        );
        assert!(t.service_lost().is_empty());
        // pcscd back
        assert_eq!(
            names(&t.snapshot(&[r("A", true), r("C", false)])),
            [
                "service Ok",
                "reader_added A",
                "card_inserted A",
                "reader_added C"
            ]
        );
        // no service from the start: reported, then recovery
        let mut t = ReaderTracker::new();
        assert_eq!(names(&t.service_lost()), ["service NoService"]);
        assert_eq!(
            names(&t.snapshot(&[r("A", true)])),
            ["service Ok", "reader_added A", "card_inserted A"]
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
        let today = BcdDate::from_ymd(2026, 11, 23).unwrap();
        let good = select("301231");
        let st =
            |sel: &[u8], probe: Option<StatusWord>, today| card_readiness(sel, probe, today).state;
        assert_eq!(
            st(&good, Some(StatusWord::pin_tries(3)), today),
            Readiness::Ready
        );
        assert_eq!(st(&good, Some(StatusWord::OK), today), Readiness::Ready);
        let s = card_readiness(&good, Some(StatusWord::pin_tries(1)), today);
        assert!(s.message.contains("one PIN try") && s.message.contains("bridge pin"));
        let card = s.card.unwrap();
        assert_eq!(
            (card.pin_tries_left, card.expiry.as_str()),
            (Some(1), "301231")
        );
        assert_eq!(
            st(&good, Some(StatusWord::pin_tries(0)), today),
            Readiness::Blocked
        );
        assert_eq!(
            st(&good, Some(StatusWord::PIN_BLOCKED), today),
            Readiness::Blocked
        );
        assert_eq!(
            st(&good, Some(StatusWord::INS_NOT_SUPPORTED), today),
            Readiness::CardError
        );
        assert_eq!(st(&good, None, today), Readiness::CardError);
        // expiry is the last valid day
        assert_eq!(
            st(&select("261123"), Some(StatusWord::pin_tries(3)), today),
            Readiness::Ready
        );
        assert_eq!(
            st(&select("261122"), Some(StatusWord::pin_tries(3)), today),
            Readiness::Expired
        );
        // today from the clock, through purse's date code: the demo card is valid
        let now = BcdDate::from_unix(crate::budget::wall_clock() / 1000);
        assert_eq!(
            st(&good, Some(StatusWord::pin_tries(3)), now),
            Readiness::Ready
        );
        // not our application, or garbage
        assert_eq!(st(&[0x6A, 0x82], None, today), Readiness::NotCardpay);
        assert_eq!(
            st(&[0x90, 0x00], Some(StatusWord::OK), today),
            Readiness::NotCardpay
        );
        assert_eq!(
            st(&[0x01, 0x90, 0x00], Some(StatusWord::OK), today),
            Readiness::NotCardpay
        );
        assert_eq!(st(&[], None, today), Readiness::NotCardpay);
    }
}
