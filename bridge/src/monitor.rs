//! The card-event thread: watches readers and cards with
//! `SCardGetStatusChange` on a PC/SC context of its own and sends what
//! [`ReaderTracker`] makes of it. I/O only; the decisions are in
//! [`crate::readiness`].

use std::time::Duration;

use pcsc::{Context, ReaderState, Scope, State};
use purse::bridge_msg::Event;

use crate::host::EventSink;
use crate::protocol;
use crate::readiness::ReaderTracker;

/// Watch readers and cards; send `card_inserted` / `card_removed`
/// (`{"event", "reader"}`), `reader_added` / `reader_removed`, and
/// `service` (`{"event":"service","state":"no_service"|"ok"}`) events.
/// Returns when the sink is closed.
pub fn monitor(sink: EventSink) {
    let mut tracker = ReaderTracker::new();
    let pnp = pcsc::PNP_NOTIFICATION();
    let send_all = |evs: Vec<Event>| evs.into_iter().all(|e| sink.send(protocol::event(&e)));
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
