//! Exclusive card sessions, sans-IO: when the bridge must hold a PC/SC
//! transaction (`SCardBeginTransaction`) on a connection, when it must
//! select the Cardpay application again itself, and when a session ends.
//!
//! Why: on a card with several applications, the selection belongs to the
//! card, not to a connection. Without a transaction, another program could
//! SELECT another application between the page's INITIALIZE and its VERIFY,
//! and the VERIFY (a PIN!) would reach that application. So:
//!
//! - every APDU of a page goes inside a transaction on its connection; the
//!   first one begins it, and it is kept across messages (a purchase is
//!   SELECT, VERIFY, INITIALIZE, then DEBIT after a server round trip);
//! - the Cardpay selection is trusted only inside the transaction that made
//!   it: in a new transaction (after the previous one ended, or after a card
//!   reset) the bridge sends SELECT Cardpay itself before the page's command
//!   ("reselect"), so the command can only reach Cardpay;
//! - a session ends by `release`, by `disconnect`, when its connection's
//!   idle time passes (a crashed or stuck page cannot hold the card: the
//!   page must keep sending APDUs to keep it), when another connection of
//!   this bridge on the same reader begins one (the newest page wins; the
//!   older one gets the card back, reselected, with its next APDU), and when
//!   the host ends (the browser closed the port; pcscd also releases the
//!   transaction of a process that died).

use std::collections::HashMap;

use crate::budget::Ms;

/// What to do before a page's APDU goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Plan {
    /// End this other connection's session first (same reader).
    pub take_from: Option<u32>,
    /// Begin a transaction on the connection.
    pub begin: bool,
    /// Send SELECT Cardpay first: the page selected it, but not in this
    /// transaction.
    pub reselect: bool,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    /// Last APDU on the connection.
    last: Ms,
    /// The card's current selection is Cardpay, made in this transaction.
    selected: bool,
}

#[derive(Debug)]
struct Session {
    reader: String,
    held: Option<Held>,
}

/// The sessions of every open connection.
#[derive(Debug)]
pub struct Sessions {
    idle: Ms,
    by_handle: HashMap<u32, Session>,
}

impl Sessions {
    pub fn new(idle_ms: Ms) -> Self {
        Self {
            idle: idle_ms,
            by_handle: HashMap::new(),
        }
    }

    pub fn opened(&mut self, handle: u32, reader: &str) {
        self.by_handle.insert(
            handle,
            Session {
                reader: reader.to_owned(),
                held: None,
            },
        );
    }

    pub fn closed(&mut self, handle: u32) {
        self.by_handle.remove(&handle);
    }

    pub fn clear(&mut self) {
        self.by_handle.clear();
    }

    pub fn holds(&self, handle: u32) -> bool {
        self.by_handle
            .get(&handle)
            .is_some_and(|s| s.held.is_some())
    }

    /// Before a page's APDU on `handle`. `page_selected`: the page has
    /// selected Cardpay on this connection; `is_select`: this APDU is that SELECT.
    pub fn plan(&self, handle: u32, page_selected: bool, is_select: bool) -> Plan {
        let Some(me) = self.by_handle.get(&handle) else {
            return Plan::default();
        };
        let take_from = self
            .by_handle
            .iter()
            .find(|(h, s)| **h != handle && s.reader == me.reader && s.held.is_some())
            .map(|(h, _)| *h);
        let trusted = me.held.is_some_and(|h| h.selected);
        Plan {
            take_from,
            begin: me.held.is_none(),
            reselect: page_selected && !is_select && !trusted,
        }
    }

    /// A transaction began on `handle`: nothing is selected in it yet.
    pub fn began(&mut self, handle: u32, now: Ms) {
        if let Some(s) = self.by_handle.get_mut(&handle) {
            s.held = Some(Held {
                last: now,
                selected: false,
            });
        }
    }

    /// The transaction on `handle` ended (or was lost with a card reset).
    pub fn ended(&mut self, handle: u32) {
        if let Some(s) = self.by_handle.get_mut(&handle) {
            s.held = None;
        }
    }

    /// An APDU went out on `handle`; `select` is `Some(ok)` for a SELECT of
    /// Cardpay (by the page or the bridge) and whether the card took it.
    pub fn sent(&mut self, handle: u32, now: Ms, select: Option<bool>) {
        if let Some(h) = self
            .by_handle
            .get_mut(&handle)
            .and_then(|s| s.held.as_mut())
        {
            h.last = h.last.max(now);
            if let Some(ok) = select {
                h.selected = ok;
            }
        }
    }

    /// When the next session runs out of idle time.
    pub fn poll_timeout(&self) -> Option<Ms> {
        self.by_handle
            .values()
            .filter_map(|s| s.held.map(|h| h.last.saturating_add(self.idle)))
            .min()
    }

    /// The connections whose session has been idle too long at `now`.
    pub fn expired(&self, now: Ms) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .by_handle
            .iter()
            .filter(|(_, s)| {
                s.held
                    .is_some_and(|h| h.last.saturating_add(self.idle) <= now)
            })
            .map(|(h, _)| *h)
            .collect();
        v.sort_unstable();
        v
    }

    /// Every connection holding a session (to end them when the host ends).
    pub fn holding(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .by_handle
            .iter()
            .filter(|(_, s)| s.held.is_some())
            .map(|(h, _)| *h)
            .collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "Virtual PCD 00 00";

    #[test]
    fn a_purchase_is_one_session_and_selection_is_not_trusted_across_sessions() {
        let mut s = Sessions::new(15_000);
        s.opened(1, R);
        // the page's SELECT begins the session; no reselect for a SELECT
        let p = s.plan(1, false, true);
        assert_eq!(
            p,
            Plan {
                take_from: None,
                begin: true,
                reselect: false
            }
        );
        s.began(1, 0);
        s.sent(1, 0, Some(true));
        // VERIFY, INITIALIZE, DEBIT in the same session: nothing extra
        for t in [1_000, 5_000, 12_000] {
            assert_eq!(s.plan(1, true, false), Plan::default());
            s.sent(1, t, None);
        }
        assert_eq!(s.poll_timeout(), Some(27_000));
        assert!(s.expired(26_999).is_empty());
        assert_eq!(s.expired(27_000), vec![1]);
        s.ended(1);
        assert_eq!(s.poll_timeout(), None);
        // the next APDU begins a new session and selects Cardpay again first
        let p = s.plan(1, true, false);
        assert_eq!(
            p,
            Plan {
                take_from: None,
                begin: true,
                reselect: true
            }
        );
        s.began(1, 30_000);
        // ... until that SELECT succeeded
        assert!(s.plan(1, true, false).reselect);
        s.sent(1, 30_000, Some(true));
        assert_eq!(s.plan(1, true, false), Plan::default());
        // a failed SELECT in the session: not trusted any more
        s.sent(1, 30_001, Some(false));
        assert!(s.plan(1, true, false).reselect);
        // a page that never selected gets no reselect (the guard refuses it anyway)
        s.ended(1);
        assert!(!s.plan(1, false, false).reselect);
    }

    #[test]
    fn the_newest_connection_on_a_reader_takes_the_card() {
        let mut s = Sessions::new(15_000);
        s.opened(1, R);
        s.opened(2, R);
        s.opened(3, "Other Reader");
        s.began(1, 0);
        s.sent(1, 0, Some(true));
        assert_eq!(s.plan(3, false, true).take_from, None);
        let p = s.plan(2, false, true);
        assert_eq!(p.take_from, Some(1));
        s.ended(1);
        s.began(2, 1);
        // connection 1 comes back: takes it from 2, and reselects
        let p = s.plan(1, true, false);
        assert_eq!(
            p,
            Plan {
                take_from: Some(2),
                begin: true,
                reselect: true
            }
        );
        assert_eq!(s.holding(), vec![2]);
        s.closed(2);
        assert!(s.holding().is_empty());
        assert!(!s.holds(2));
    }

    #[test]
    fn idle_time_counts_from_the_last_apdu_and_the_clock_never_runs_back() {
        let mut s = Sessions::new(1_000);
        s.opened(7, R);
        s.began(7, 100);
        s.sent(7, 900, None);
        s.sent(7, 500, None); // an older clock reading does not shorten it
        assert_eq!(s.poll_timeout(), Some(1_900));
        assert_eq!(s.expired(1_900), vec![7]);
    }
}
