//! What the card's proofs decide about an open load — pure, no I/O.
//!
//! A load at ATC `A` was drawn on the card's S1 over its balance `B` before
//! it. Its CREDIT can only ever apply before the card's next INITIALIZE
//! (ATC `A + 1`), which replaces the pending one. So any later INITIALIZE
//! FOR LOAD whose S1 the HSM verifies — a **balance fact** `(P, balance)`
//! with `P > A` — tells the truth, provided every movement of the card in
//! between (ATC strictly between `A` and `P`) is known with a proven outcome:
//!
//! ```text
//! expected = B + Σ credited loads − Σ captured purchases      (same purse, A < ATC < P)
//! fact == expected           → not credited
//! fact == expected + amount  → credited
//! anything else              → the proof does not fit (refused, nothing changes)
//! any movement undecided     → no decision yet
//! ```
//!
//! The seed's zero-value INITIALIZE right after a negative result is the case
//! `P = A + 1` (nothing in between). A purchase counts only once captured (its
//! S3 proven); a `failed` purchase may have been decided from its log's
//! silence, which a hostile client can arrange, so it leaves the load open.

use purse::load::bank_api::LoadState;
use purse::merchant_api::TxnState;
use purse::types::PurseId;

use crate::store::Movement;

/// A balance the card vouched for with a verified S1, just before ATC `atc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalanceFact {
    pub atc: u16,
    pub balance: u32,
    pub purse: PurseId,
}

/// What a fact says about one load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Credited,
    NotCredited,
    /// A movement in between is undecided, or the fact is older.
    Open,
    /// The fact fits neither outcome: the evidence is not the card's.
    Inconsistent,
}

/// The open load (`atc`, `balance_before`, `amount`, `purse`) against a fact
/// and the card's movements between the two (loads' states may already have
/// been decided in this pass: `decided` overrides them).
pub fn decide(
    atc: u16,
    balance_before: u32,
    amount: u32,
    purse: PurseId,
    fact: &BalanceFact,
    between: &[Movement],
    decided: &dyn Fn(u16) -> Option<LoadState>,
) -> Decision {
    if fact.atc <= atc || fact.purse != purse {
        return Decision::Open;
    }
    let mut expected = balance_before as i64;
    for m in between {
        match *m {
            Movement::Load {
                atc: a,
                purse: p,
                amount,
                state,
            } if p == purse && a > atc && a < fact.atc => match decided(a).unwrap_or(state) {
                s if s.is_credited() => expected += amount as i64,
                s if s.is_not_credited() => {}
                _ => return Decision::Open,
            },
            Movement::Purchase {
                atc: a,
                purse: p,
                amount,
                state,
            } if p == purse && a > atc && a < fact.atc => {
                if state.is_captured() {
                    expected -= amount as i64;
                } else if state != TxnState::Reversed {
                    return Decision::Open;
                }
            }
            _ => {}
        }
    }
    let f = fact.balance as i64;
    if f == expected {
        Decision::NotCredited
    } else if f == expected + amount as i64 {
        Decision::Credited
    } else {
        Decision::Inconsistent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: PurseId = PurseId::Money;

    fn fact(atc: u16, balance: u32) -> BalanceFact {
        BalanceFact {
            atc,
            balance,
            purse: M,
        }
    }

    fn none(_: u16) -> Option<LoadState> {
        None
    }

    #[test]
    fn the_next_initialize_decides_alone() {
        // Load of 500 at ATC 7 on a balance of 1000.
        assert_eq!(
            decide(7, 1000, 500, M, &fact(8, 1000), &[], &none),
            Decision::NotCredited
        );
        assert_eq!(
            decide(7, 1000, 500, M, &fact(8, 1500), &[], &none),
            Decision::Credited
        );
        assert_eq!(
            decide(7, 1000, 500, M, &fact(8, 1200), &[], &none),
            Decision::Inconsistent
        );
        // An older or the same INITIALIZE says nothing.
        assert_eq!(
            decide(7, 1000, 500, M, &fact(7, 1000), &[], &none),
            Decision::Open
        );
        assert_eq!(
            decide(7, 1000, 500, M, &fact(6, 1000), &[], &none),
            Decision::Open
        );
        // The other purse's INITIALIZE says nothing about this one.
        let points = BalanceFact {
            purse: PurseId::Points,
            ..fact(8, 1000)
        };
        assert_eq!(decide(7, 1000, 500, M, &points, &[], &none), Decision::Open);
    }

    #[test]
    fn movements_in_between_are_accounted_or_leave_it_open() {
        let captured = Movement::Purchase {
            atc: 9,
            purse: M,
            amount: 300,
            state: TxnState::Debited,
        };
        // Credited 500, then spent 300: 1200 at ATC 10.
        assert_eq!(
            decide(7, 1000, 500, M, &fact(10, 1200), &[captured], &none),
            Decision::Credited
        );
        assert_eq!(
            decide(7, 1000, 500, M, &fact(10, 700), &[captured], &none),
            Decision::NotCredited
        );
        // A purchase whose outcome is not proven: no decision.
        for state in [TxnState::Drawn, TxnState::Unknown, TxnState::Failed] {
            let open = Movement::Purchase {
                atc: 9,
                purse: M,
                amount: 300,
                state,
            };
            assert_eq!(
                decide(7, 1000, 500, M, &fact(10, 1200), &[open], &none),
                Decision::Open,
                "{state:?}"
            );
        }
        // Another load in between, decided earlier in this pass.
        let other = Movement::Load {
            atc: 8,
            purse: M,
            amount: 100,
            state: LoadState::Drawn,
        };
        assert_eq!(
            decide(7, 1000, 500, M, &fact(10, 1600), &[other], &none),
            Decision::Open
        );
        let credited = |a: u16| (a == 8).then_some(LoadState::Credited);
        assert_eq!(
            decide(7, 1000, 500, M, &fact(10, 1600), &[other], &credited),
            Decision::Credited
        );
        let failed = |a: u16| (a == 8).then_some(LoadState::Failed);
        assert_eq!(
            decide(7, 1000, 500, M, &fact(10, 1000), &[other], &failed),
            Decision::NotCredited
        );
        // Movements of the other purse do not count.
        let points = Movement::Purchase {
            atc: 9,
            purse: PurseId::Points,
            amount: 40,
            state: TxnState::Drawn,
        };
        assert_eq!(
            decide(7, 1000, 500, M, &fact(10, 1500), &[points], &none),
            Decision::Credited
        );
    }
}
