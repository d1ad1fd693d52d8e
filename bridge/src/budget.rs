//! Budgets: token buckets per origin (APDUs, PIN attempts) and per card
//! (INITIALIZE, which spends one of the card's 65 535 transaction numbers),
//! kept as plain data stamped with wall-clock milliseconds so they can be
//! saved and survive a bridge restart ([`crate::store`]). Sans-IO: the caller
//! passes `now`.
//!
//! A clock that goes backwards refills nothing (a bucket's stamp never moves
//! back), so changing the clock can only make a limit stricter.

use std::collections::BTreeMap;
use std::time::Duration;

use purse::bridge_msg::{BridgeError, Limit};
use serde::{Deserialize, Serialize};

/// Wall-clock milliseconds since the Unix epoch.
pub type Ms = u64;

/// The wall clock, as [`Ms`].
pub fn wall_clock() -> Ms {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A bucket's size and refill speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: f64,
    /// Tokens per millisecond.
    pub per_ms: f64,
}

impl Rate {
    /// `burst`, then `n` per second.
    pub fn per_sec(burst: f64, n: f64) -> Self {
        Self {
            burst,
            per_ms: n / 1000.0,
        }
    }
    /// `burst`, then one every `every`.
    pub fn every(burst: f64, every: Duration) -> Self {
        Self {
            burst,
            per_ms: 1.0 / (every.as_secs_f64() * 1000.0).max(1.0),
        }
    }
    /// `burst`, then `n` per hour.
    pub fn per_hour(burst: f64, n: f64) -> Self {
        Self {
            burst,
            per_ms: n / 3_600_000.0,
        }
    }
}

/// Tokens left at a time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub tokens: f64,
    pub at: Ms,
}

impl Bucket {
    fn full(rate: Rate, now: Ms) -> Self {
        Self {
            tokens: rate.burst,
            at: now,
        }
    }

    /// The level at `now` (never above the burst, never below zero).
    pub fn level(&self, rate: Rate, now: Ms) -> f64 {
        let tokens = if self.tokens.is_finite() {
            self.tokens
        } else {
            0.0
        };
        let dt = now.saturating_sub(self.at) as f64;
        (tokens.max(0.0) + dt * rate.per_ms).min(rate.burst)
    }

    /// Take one token, or say in how many ms one is there.
    fn take(&mut self, rate: Rate, now: Ms) -> Result<(), u64> {
        let level = self.level(rate, now);
        self.at = self.at.max(now);
        if level >= 1.0 {
            self.tokens = level - 1.0;
            Ok(())
        } else {
            self.tokens = level;
            let wait = ((1.0 - level) / rate.per_ms.max(1e-12)).ceil();
            Err((wait.min(86_400_000.0) as u64).max(1))
        }
    }
}

/// The limits' speeds, from the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub apdu: Rate,
    pub verify: Rate,
    pub initialize: Rate,
}

impl Rates {
    pub fn of(&self, limit: Limit) -> Rate {
        match limit {
            Limit::Apdu => self.apdu,
            Limit::Verify => self.verify,
            Limit::Initialize | Limit::Unknown => self.initialize,
        }
    }
}

/// Every bucket, by limit and key (origin, or card tag for INITIALIZE). A
/// missing bucket is a full one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Budgets {
    pub apdu: BTreeMap<String, Bucket>,
    pub verify: BTreeMap<String, Bucket>,
    pub initialize: BTreeMap<String, Bucket>,
}

impl Budgets {
    fn map(&mut self, limit: Limit) -> &mut BTreeMap<String, Bucket> {
        match limit {
            Limit::Apdu => &mut self.apdu,
            Limit::Verify => &mut self.verify,
            Limit::Initialize | Limit::Unknown => &mut self.initialize,
        }
    }

    /// Take one token of `limit` for `key`; `Err(ms)` = refused, one is there in `ms`.
    pub fn take(&mut self, limit: Limit, key: &str, rates: &Rates, now: Ms) -> Result<(), u64> {
        let rate = rates.of(limit);
        self.map(limit)
            .entry(key.to_owned())
            .or_insert_with(|| Bucket::full(rate, now))
            .take(rate, now)
    }

    /// Give one token of `limit` back to `key` (a reservation that was never
    /// used): never above the burst; a missing bucket is full already.
    pub fn give_back(&mut self, limit: Limit, key: &str, rates: &Rates, now: Ms) {
        let rate = rates.of(limit);
        if let Some(b) = self.map(limit).get_mut(key) {
            let level = b.level(rate, now);
            b.tokens = (level + 1.0).min(rate.burst);
            b.at = b.at.max(now);
        }
    }

    /// The level of one bucket at `now`.
    pub fn level(&self, limit: Limit, key: &str, rates: &Rates, now: Ms) -> f64 {
        let rate = rates.of(limit);
        let map = match limit {
            Limit::Apdu => &self.apdu,
            Limit::Verify => &self.verify,
            Limit::Initialize | Limit::Unknown => &self.initialize,
        };
        map.get(key).map_or(rate.burst, |b| b.level(rate, now))
    }

    /// Fold another view in (another bridge process's, or this process's
    /// unsaved one): per key, the emptier bucket wins.
    pub fn merge(&mut self, other: &Budgets, rates: &Rates, now: Ms) {
        self.merge_limits(
            other,
            &[Limit::Apdu, Limit::Verify, Limit::Initialize],
            rates,
            now,
        );
    }

    /// [`Budgets::merge`] for some limits only.
    pub fn merge_limits(&mut self, other: &Budgets, limits: &[Limit], rates: &Rates, now: Ms) {
        for &limit in limits {
            let rate = rates.of(limit);
            let theirs = match limit {
                Limit::Apdu => &other.apdu,
                Limit::Verify => &other.verify,
                _ => &other.initialize,
            };
            let ours = self.map(limit);
            for (k, b) in theirs {
                let keep = match ours.get(k) {
                    Some(mine) => b.level(rate, now) < mine.level(rate, now),
                    None => true,
                };
                if keep {
                    ours.insert(k.clone(), *b);
                }
            }
        }
    }

    /// Drop buckets that are full again (they mean the same as none).
    pub fn prune(&mut self, rates: &Rates, now: Ms) {
        for limit in [Limit::Apdu, Limit::Verify, Limit::Initialize] {
            let rate = rates.of(limit);
            self.map(limit)
                .retain(|_, b| b.level(rate, now) < rate.burst);
        }
    }
}

/// The `rate_limited` answer for `limit`, with plain words and the wait.
pub fn refusal(limit: Limit, wait_ms: u64) -> BridgeError {
    let secs = wait_ms.div_ceil(1000).max(1);
    let message = match limit {
        Limit::Apdu => format!("too many APDUs from this origin; slow down (retry in {wait_ms} ms)"),
        Limit::Verify => {
            format!("too many PIN attempts from this origin; try again in {secs} s (no PIN try was spent)")
        }
        Limit::Initialize | Limit::Unknown => format!(
            "too many card transactions with this card in the last hour (each one uses up one of the card's transaction numbers); try again in {} min",
            secs.div_ceil(60)
        ),
    };
    BridgeError::rate_limited(limit, message, wait_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates() -> Rates {
        Rates {
            apdu: Rate::per_sec(5.0, 1.0),
            verify: Rate::every(3.0, Duration::from_secs(20)),
            initialize: Rate::per_hour(2.0, 30.0),
        }
    }

    #[test]
    fn buckets_refill_with_time_and_say_when() {
        let r = rates();
        let mut b = Budgets::default();
        let t0 = 1_000_000;
        for _ in 0..5 {
            b.take(Limit::Apdu, "o", &r, t0).unwrap();
        }
        assert_eq!(b.take(Limit::Apdu, "o", &r, t0), Err(1000));
        assert_eq!(b.take(Limit::Apdu, "o", &r, t0 + 400), Err(600));
        b.take(Limit::Apdu, "o", &r, t0 + 1000).unwrap();
        // another key is not affected
        b.take(Limit::Apdu, "p", &r, t0).unwrap();
        // VERIFY: 3, then one per 20 s
        for _ in 0..3 {
            b.take(Limit::Verify, "o", &r, t0).unwrap();
        }
        assert_eq!(b.take(Limit::Verify, "o", &r, t0 + 10_000), Err(10_000));
        b.take(Limit::Verify, "o", &r, t0 + 20_000).unwrap();
        // INITIALIZE: 2, then 30 per hour = one per 2 min
        b.take(Limit::Initialize, "card", &r, t0).unwrap();
        b.take(Limit::Initialize, "card", &r, t0).unwrap();
        assert_eq!(b.take(Limit::Initialize, "card", &r, t0), Err(120_000));
    }

    #[test]
    fn a_clock_going_back_refills_nothing() {
        let r = rates();
        let mut b = Budgets::default();
        let t0 = 10_000_000;
        for _ in 0..5 {
            b.take(Limit::Apdu, "o", &r, t0).unwrap();
        }
        // back an hour: still empty, and the stamp does not move back
        assert!(b.take(Limit::Apdu, "o", &r, t0 - 3_600_000).is_err());
        assert!(b.take(Limit::Apdu, "o", &r, t0 + 500).is_err());
        assert!(b.take(Limit::Apdu, "o", &r, t0 + 1000).is_ok());
    }

    #[test]
    fn merge_keeps_the_emptier_bucket_and_prune_drops_full_ones() {
        let r = rates();
        let t0 = 5_000_000;
        let mut a = Budgets::default();
        let mut b = Budgets::default();
        for _ in 0..3 {
            a.take(Limit::Verify, "o", &r, t0).unwrap();
        }
        b.take(Limit::Verify, "o", &r, t0).unwrap();
        b.take(Limit::Initialize, "c", &r, t0).unwrap();
        let mut m = b.clone();
        m.merge(&a, &r, t0);
        assert!(m.take(Limit::Verify, "o", &r, t0).is_err());
        assert!((m.level(Limit::Initialize, "c", &r, t0) - 1.0).abs() < 1e-9);
        // a day later everything is full again and pruned away
        m.prune(&r, t0 + 86_400_000);
        assert_eq!(m, Budgets::default());
        // garbage from a hand-edited file counts as empty, never as more
        let weird = Bucket {
            tokens: f64::NAN,
            at: t0,
        };
        assert_eq!(weird.level(r.verify, t0), 0.0);
        let neg = Bucket {
            tokens: -50.0,
            at: t0,
        };
        assert_eq!(neg.level(r.verify, t0), 0.0);
    }

    #[test]
    fn a_token_given_back_never_exceeds_the_burst() {
        let r = rates();
        let t0 = 7_000_000;
        let mut b = Budgets::default();
        b.take(Limit::Initialize, "c", &r, t0).unwrap();
        b.take(Limit::Initialize, "c", &r, t0).unwrap();
        assert!(b.take(Limit::Initialize, "c", &r, t0).is_err());
        b.give_back(Limit::Initialize, "c", &r, t0 + 10);
        assert!((b.level(Limit::Initialize, "c", &r, t0 + 10) - 1.0).abs() < 1e-3);
        b.give_back(Limit::Initialize, "c", &r, t0 + 10);
        b.give_back(Limit::Initialize, "c", &r, t0 + 10);
        assert_eq!(b.level(Limit::Initialize, "c", &r, t0 + 10), 2.0);
        // a card with no bucket is full: nothing to add
        b.give_back(Limit::Initialize, "other", &r, t0);
        assert!(!b.initialize.contains_key("other"));
    }

    #[test]
    fn refusals_name_the_limit_and_the_wait() {
        let e = refusal(Limit::Verify, 20_000);
        assert_eq!(e.retry_after_ms, Some(20_000));
        assert_eq!(e.limit, Some(Limit::Verify));
        assert!(
            e.message.contains("PIN attempts") && e.message.contains("20 s"),
            "{}",
            e.message
        );
        let e = refusal(Limit::Initialize, 120_000);
        assert!(e.message.contains("2 min"), "{}", e.message);
        assert!(refusal(Limit::Apdu, 7).message.contains("too many APDUs"));
    }
}
