//! Reservations: a card transaction (one token of the card's INITIALIZE
//! budget) taken ahead of the INITIALIZE, so that the durable write is not on
//! the Approve path. Sans-IO bookkeeping: it says which writes to do
//! ([`Job`]), the [`crate::store::Keeper`] does them on its writer thread and
//! reports back ([`Reservations::written`]).
//!
//! - A connection whose SELECT found a Cardpay card (the guard's tag) gets one
//!   reservation for that card, written durably off the request path.
//! - The next INITIALIZE on that connection, for that same card, uses it with
//!   no write of its own (waiting for it if it is still being written); a
//!   reservation that could not be taken (empty budget, unwritable file) is no
//!   reservation: the INITIALIZE takes its token itself, as without any.
//! - An INITIALIZE the card answered `6982` (PIN required) spent no ATC and is
//!   sent again after the VERIFY: the token it spent is kept as the
//!   connection's reservation for that one, with no write ([`Reservations::kept`];
//!   given back like any other if it goes unused).
//! - An INITIALIZE FOR LOAD of amount 0 (the card proving itself, right before
//!   a purchase's INITIALIZE) gets a new reservation as it is sent, written
//!   while the card answers it, for the INITIALIZE that follows.
//! - An unused reservation is given back when the connection's selection ends
//!   (release, disconnect, card removed or swapped, bridge exit); one still being
//!   written is given back by the writer if it took it (the jobs run in order); a
//!   crash before that leaves the token spent.
//! - A reservation belongs to one connection and one card: it is never used on
//!   another connection nor for another card.

use std::collections::HashMap;

use crate::store::{Job, Reserved};

/// What an INITIALIZE on a connection finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A token taken for this connection and card: spent now, nothing to write.
    Reserved,
    /// The reservation is still being written: wait for the outcome of `id`.
    Wait(u64),
    /// No reservation: take a token as without reservations.
    None,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    card: String,
    /// Written and taken (else still being written).
    held: bool,
}

/// Every connection's reservation.
#[derive(Debug, Default)]
pub struct Reservations {
    slots: HashMap<u32, Slot>,
    next_id: u64,
}

impl Reservations {
    pub fn new() -> Self {
        Self::default()
    }

    /// `handle` selected `card`: reserve for it, unless it holds a
    /// reservation for that card already (one for another card is given back).
    pub fn selected(&mut self, handle: u32, card: &str) -> Vec<Job> {
        if self.slots.get(&handle).is_some_and(|s| s.card == card) {
            return vec![];
        }
        let (id, mut jobs) = self.replace(handle, card, false);
        jobs.push(Job::Reserve {
            id,
            card: card.to_owned(),
        });
        jobs
    }

    /// The selection of `handle` ended: its reservation, if any, goes back
    /// (one still being written: if the writer took it, which it knows).
    pub fn ended(&mut self, handle: u32) -> Option<Job> {
        let s = self.slots.remove(&handle)?;
        Some(Job::GiveBack {
            card: s.card,
            if_taken: (!s.held).then_some(s.id),
        })
    }

    /// Every connection's selection ended (the bridge exits, pcscd went away).
    pub fn end_all(&mut self) -> Vec<Job> {
        let handles: Vec<u32> = self.slots.keys().copied().collect();
        handles.into_iter().filter_map(|h| self.ended(h)).collect()
    }

    /// The writer's outcome of reservation `id` (one whose selection ended
    /// meanwhile is the writer's to give back: nothing to do).
    pub fn written(&mut self, id: u64, r: Reserved) {
        let Some(handle) = self.slots.iter().find(|(_, s)| s.id == id).map(|(h, _)| *h) else {
            return;
        };
        if r == Reserved::Taken {
            if let Some(s) = self.slots.get_mut(&handle) {
                s.held = true;
            }
        } else {
            self.slots.remove(&handle);
        }
    }

    /// An INITIALIZE on `handle` for `card` spent a token but no ATC (the card
    /// answered `6982`): hold that token as the connection's reservation for
    /// the INITIALIZE to come, with no write. A connection holding one for
    /// this card already keeps it, and the spent token goes back (never held
    /// twice); one for another card goes back.
    pub fn kept(&mut self, handle: u32, card: &str) -> Vec<Job> {
        if self.slots.get(&handle).is_some_and(|s| s.card == card) {
            return vec![Job::GiveBack {
                card: card.to_owned(),
                if_taken: None,
            }];
        }
        self.replace(handle, card, true).1
    }

    /// `handle`'s reservation is now a new one for `card` (`held`: its token
    /// taken already, else still to be written): its id, and the give-back of
    /// the one it replaces, if any.
    fn replace(&mut self, handle: u32, card: &str, held: bool) -> (u64, Vec<Job>) {
        let back = self.ended(handle).into_iter().collect();
        self.next_id += 1;
        self.slots.insert(
            handle,
            Slot {
                id: self.next_id,
                card: card.to_owned(),
                held,
            },
        );
        (self.next_id, back)
    }

    /// An INITIALIZE on `handle` for `card`.
    pub fn take(&mut self, handle: u32, card: &str) -> Use {
        match self.slots.get(&handle) {
            Some(s) if s.card != card => Use::None,
            Some(s) if s.held => {
                self.slots.remove(&handle);
                Use::Reserved
            }
            Some(s) => Use::Wait(s.id),
            None => Use::None,
        }
    }

    /// Are outcomes still to come (so the caller should collect them soon)?
    pub fn pending(&self) -> bool {
        self.slots.values().any(|s| !s.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn give_back(card: &str) -> Job {
        Job::GiveBack {
            card: card.into(),
            if_taken: None,
        }
    }

    fn reserve_id(jobs: &[Job]) -> u64 {
        match jobs.last() {
            Some(Job::Reserve { id, .. }) => *id,
            other => panic!("no reservation: {other:?}"),
        }
    }

    /// `handle` selected `card`, and its reservation was written and taken.
    fn reserved(r: &mut Reservations, handle: u32, card: &str) {
        let id = reserve_id(&r.selected(handle, card));
        r.written(id, Reserved::Taken);
    }

    #[test]
    fn a_select_reserves_once_and_initialize_uses_it_once() {
        let mut r = Reservations::new();
        let jobs = r.selected(1, "a");
        assert_eq!(jobs.len(), 1);
        let id = reserve_id(&jobs);
        // SELECT again, same card: nothing more is reserved
        assert!(r.selected(1, "a").is_empty());
        // INITIALIZE before the write is done: wait for it
        assert_eq!(r.take(1, "a"), Use::Wait(id));
        assert!(r.pending());
        r.written(id, Reserved::Taken);
        assert!(!r.pending());
        assert_eq!(r.take(1, "a"), Use::Reserved);
        // the second INITIALIZE (PIN retry) takes its own token
        assert_eq!(r.take(1, "a"), Use::None);
        // nothing is left to give back
        assert_eq!(r.ended(1), None);
    }

    #[test]
    fn a_pin_required_initialize_keeps_its_token_for_the_one_after_the_verify() {
        let mut r = Reservations::new();
        reserved(&mut r, 1, "a");
        assert_eq!(r.take(1, "a"), Use::Reserved);
        // 6982: that token is held again, nothing to write
        assert_eq!(r.kept(1, "a"), vec![]);
        assert!(!r.pending());
        assert_eq!(r.take(1, "a"), Use::Reserved);
        // unused: given back like any other
        assert_eq!(r.kept(1, "a"), vec![]);
        assert_eq!(r.ended(1), Some(give_back("a")));
        // one for this card held already: the spent token goes back, never
        // held twice
        reserved(&mut r, 2, "a");
        assert_eq!(r.kept(2, "a"), vec![give_back("a")]);
        assert_eq!(r.take(2, "a"), Use::Reserved);
        assert_eq!(r.kept(2, "a"), vec![]);
        // one for another card goes back
        assert_eq!(r.kept(2, "b"), vec![give_back("a")]);
        assert_eq!(r.take(2, "b"), Use::Reserved);
    }

    #[test]
    fn an_unused_reservation_is_given_back_when_the_selection_ends() {
        let mut r = Reservations::new();
        reserved(&mut r, 1, "a");
        assert_eq!(r.ended(1), Some(give_back("a")));
        assert_eq!(r.ended(1), None, "given back once");
        // a connection that ends while its reservation is being written: the
        // writer gives it back if it took it
        let id = reserve_id(&r.selected(2, "a"));
        assert_eq!(
            r.ended(2),
            Some(Job::GiveBack {
                card: "a".into(),
                if_taken: Some(id)
            })
        );
        assert!(!r.pending());
        r.written(id, Reserved::Taken); // late: changes nothing
        assert_eq!(r.take(2, "a"), Use::None);
        // bridge exit: every held one goes back
        let a = reserve_id(&r.selected(4, "a"));
        let b = reserve_id(&r.selected(5, "b"));
        r.written(a, Reserved::Taken);
        r.written(b, Reserved::Taken);
        let mut back = r.end_all();
        back.sort_by_key(|j| format!("{j:?}"));
        assert_eq!(back, vec![give_back("a"), give_back("b")]);
    }

    #[test]
    fn a_reservation_is_for_its_card_and_its_connection_only() {
        let mut r = Reservations::new();
        reserved(&mut r, 1, "a");
        // another connection, or another card on this one: not usable
        assert_eq!(r.take(2, "a"), Use::None);
        assert_eq!(r.take(1, "b"), Use::None);
        // the card is swapped: A's reservation goes back, B's is taken
        let jobs = r.selected(1, "b");
        assert_eq!(jobs[0], give_back("a"));
        let idb = reserve_id(&jobs);
        r.written(idb, Reserved::Taken);
        assert_eq!(r.take(1, "a"), Use::None);
        assert_eq!(r.take(1, "b"), Use::Reserved);
    }

    #[test]
    fn a_reservation_that_failed_is_none() {
        let mut r = Reservations::new();
        for out in [Reserved::Empty, Reserved::Failed] {
            let id = reserve_id(&r.selected(1, "a"));
            r.written(id, out);
            assert_eq!(r.take(1, "a"), Use::None, "{out:?}");
            assert_eq!(r.ended(1), None);
        }
        // an outcome for nothing known changes nothing
        r.written(999, Reserved::Taken);
        assert_eq!(r.take(1, "a"), Use::None);
    }
}
