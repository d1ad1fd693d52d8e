//! The purse application as a sans-IO state machine: APDU bytes in, APDU
//! bytes out (DESIGN §3). No I/O; randomness comes from a [`Random`] source
//! the caller provides, durability from the `commit` callback of
//! [`Card::process_with`].
//!
//! Rules beyond the command table (documented in docs/card.md):
//! - proprietary commands (CLA 80) and VERIFY need the purse selected
//!   (else 6985); SELECT of another AID deselects (6A82);
//! - a SELECT, power-on or reset clears the PIN-verified flag and any pending
//!   INITIALIZE; any INITIALIZE replaces the pending one;
//! - a pending INITIALIZE is consumed by the first DEBIT/CREDIT that parses,
//!   whatever its outcome (so a MAC can be tried only once per session key);
//! - ATC is incremented (and persisted) by every INITIALIZE that is accepted;
//!   at 0xFFFF the card refuses INITIALIZE with 6581 (ATC exhausted);
//! - the no-PIN limit applies to the money purse; INITIALIZE FOR PURCHASE above
//!   it without VERIFY in this selection gives 6982 (6983 if the PIN is blocked);
//! - funds (9401) and max balance (9402) are checked at INITIALIZE (no ATC spent)
//!   and again at DEBIT/CREDIT; expiry (9403) at DEBIT/CREDIT against their date,
//!   after the MAC check.

use purse::command::{
    BalanceResponse, CreditLoad, CreditResponse, DebitPurchase, DebitResponse, InitializeLoad,
    InitializeLoadResponse, InitializePurchase, InitializePurchaseResponse, LogKind, LogRecord,
    PurseInfo, Request, SelectResponse, ALG_RETAIL_MAC,
};
use purse::crypto::{self, DesKey, SessionKey};
use purse::{Command, PurseId, Response, StatusWord, Terminal, AID};

use crate::state::{CardState, APP_VERSION, PIN_TRIES};

/// Source of the card's 4-byte random R.
pub trait Random: Send {
    /// Four fresh random bytes.
    fn random4(&mut self) -> [u8; 4];
}

/// The operating system's random source.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl Random for OsRandom {
    fn random4(&mut self) -> [u8; 4] {
        let mut r = [0u8; 4];
        if getrandom::fill(&mut r).is_err() {
            // Never fall back silently to a constant: mix time and address.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            r = ((t ^ (&r as *const _ as u64)) as u32).to_be_bytes();
        }
        r
    }
}

/// A fixed sequence of randoms, for tests and the worked example.
#[derive(Debug, Clone)]
pub struct FixedRandom(pub [u8; 4]);

impl Random for FixedRandom {
    fn random4(&mut self) -> [u8; 4] {
        let r = self.0;
        self.0 = u32::from_be_bytes(r).wrapping_add(1).to_be_bytes();
        r
    }
}

/// `6F00`: the new state could not be made durable; nothing changed.
pub const SW_PERSIST_FAILED: StatusWord = StatusWord::PERSIST_FAILED;
/// `6A83`: READ LOG of a record the log does not hold (yet).
pub const SW_RECORD_NOT_FOUND: StatusWord = StatusWord::RECORD_NOT_FOUND;

#[derive(Clone)]
enum Pending {
    Purchase {
        purse: PurseId,
        amount: u32,
        terminal: Terminal,
        atc: u16,
        sk: SessionKey,
    },
    Load {
        purse: PurseId,
        amount: u32,
        terminal: Terminal,
        atc: u16,
        sk: SessionKey,
    },
}

/// Per-selection (RAM) state: lost on power-off, reset and SELECT.
#[derive(Clone, Default)]
struct Session {
    selected: bool,
    /// The second application of [`crate::decoy`] is selected.
    decoy: bool,
    pin_verified: bool,
    pending: Option<Pending>,
}

/// The virtual card: persistent [`CardState`] plus per-selection RAM state.
pub struct Card {
    state: CardState,
    session: Session,
    rng: Box<dyn Random>,
}

impl core::fmt::Debug for Card {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Card")
            .field("state", &self.state)
            .field("selected", &self.session.selected)
            .field("pin_verified", &self.session.pin_verified)
            .field("pending", &self.session.pending.is_some())
            .finish()
    }
}

type Outcome = Result<Vec<u8>, StatusWord>;

impl Card {
    /// A card with this state and the OS random source.
    pub fn new(state: CardState) -> Self {
        Self::with_random(state, Box::new(OsRandom))
    }

    /// A card with a given random source.
    pub fn with_random(state: CardState, rng: Box<dyn Random>) -> Self {
        Card {
            state,
            session: Session::default(),
            rng,
        }
    }

    /// The persistent state.
    pub fn state(&self) -> &CardState {
        &self.state
    }

    /// Power-on, power-off or reset: RAM state is lost.
    pub fn reset(&mut self) {
        self.session = Session::default();
    }

    /// Process one command APDU in memory; returns the response APDU.
    /// Never panics. Use [`Card::process_with`] to make state changes durable.
    pub fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        self.process_with(apdu, |_| Ok::<(), std::convert::Infallible>(()))
    }

    /// Process one command APDU. If the persistent state changed, `commit` is
    /// called with the new state *before* the response is returned; if it
    /// fails, the card rolls back (state and session) and answers 6F00.
    pub fn process_with<E>(
        &mut self,
        apdu: &[u8],
        commit: impl FnOnce(&CardState) -> Result<(), E>,
    ) -> Vec<u8> {
        let before = (self.state.clone(), self.session.clone());
        let resp = match self.dispatch(apdu) {
            Ok(data) => Response::ok(data),
            Err(sw) => Response::status(sw),
        };
        if let Some(sw) = crate::decoy::wrong_le(&before.0.decoy, apdu, &resp.to_bytes()) {
            (self.state, self.session) = before; // 6Cxx: not processed
            return Response::status(sw).to_bytes();
        }
        if self.state != before.0 && commit(&self.state).is_err() {
            self.state = before.0;
            self.session = before.1;
            return Response::status(SW_PERSIST_FAILED).to_bytes();
        }
        resp.to_bytes()
    }

    fn dispatch(&mut self, apdu: &[u8]) -> Outcome {
        let cmd = Command::parse(apdu).map_err(|_| StatusWord::WRONG_LENGTH)?;
        if let Some(out) =
            crate::decoy::intercept(&mut self.state.decoy, &mut self.session.decoy, &cmd)
        {
            self.session = Session {
                decoy: true,
                ..Session::default()
            };
            return out;
        }
        let req = Request::parse(&cmd)?;
        if !matches!(req, Request::Select(_)) && !self.session.selected {
            return Err(StatusWord::NO_INITIALIZE);
        }
        match req {
            Request::Select(s) => self.select(&s.aid),
            Request::GetBalance(g) => Ok(BalanceResponse {
                balance: self.purse(g.purse).balance,
            }
            .encode()),
            Request::Verify(v) => self.verify(v.pin.as_deref()),
            Request::InitializePurchase(i) => self.initialize_purchase(i),
            Request::DebitPurchase(d) => self.debit(d),
            Request::InitializeLoad(i) => self.initialize_load(i),
            Request::CreditLoad(c) => self.credit(c),
            Request::ReadLog(r) => {
                let n = r.record as usize;
                let log = &self.state.log;
                if n == 0 || n > log.len() {
                    return Err(SW_RECORD_NOT_FOUND);
                }
                Ok(log[log.len() - n].encode())
            }
        }
    }

    fn purse(&self, p: PurseId) -> &crate::state::PurseState {
        &self.state.purses[p.index()]
    }

    fn select(&mut self, aid: &[u8]) -> Outcome {
        self.session = Session::default();
        if aid != AID {
            return Err(StatusWord::AID_NOT_FOUND);
        }
        self.session.selected = true;
        let info = |i: usize| {
            let p = &self.state.purses[i];
            PurseInfo {
                currency: p.currency,
                exponent: p.exponent,
                balance: p.balance,
                max_balance: p.max_balance,
            }
        };
        Ok(SelectResponse {
            card_id: self.state.card_id,
            expiry: self.state.expiry,
            key_version: self.state.key_version,
            app_version: APP_VERSION,
            purses: [info(0), info(1)],
        }
        .encode())
    }

    fn verify(&mut self, pin: Option<&[u8]>) -> Outcome {
        let tries = self.state.pin_tries_left;
        if tries == 0 {
            return Err(StatusWord::PIN_BLOCKED);
        }
        let Some(pin) = pin else {
            return if self.session.pin_verified {
                Ok(Vec::new())
            } else {
                Err(StatusWord::pin_tries(tries))
            };
        };
        if crypto::mac_eq(pin, self.state.pin.as_bytes()) {
            self.state.pin_tries_left = PIN_TRIES;
            self.session.pin_verified = true;
            Ok(Vec::new())
        } else {
            self.state.pin_tries_left = tries - 1;
            self.session.pin_verified = false;
            Err(StatusWord::pin_tries(tries - 1))
        }
    }

    /// Spend the next ATC value; refuses at 0xFFFF.
    fn next_atc(&mut self) -> Result<u16, StatusWord> {
        if self.state.atc == u16::MAX {
            return Err(StatusWord::ATC_EXHAUSTED);
        }
        self.state.atc += 1;
        Ok(self.state.atc)
    }

    /// A fresh R and the session key of this INITIALIZE, bound to its purse.
    fn session_key(&mut self, load: bool, atc: u16, purse: PurseId) -> ([u8; 4], SessionKey) {
        let r = self.rng.random4();
        let k = DesKey::new(if load {
            self.state.kl.0
        } else {
            self.state.kp.0
        });
        (r, crypto::session_key(&k, r, atc, purse))
    }

    fn initialize_purchase(&mut self, i: InitializePurchase) -> Outcome {
        self.session.pending = None;
        if i.purse == PurseId::Money
            && i.amount > self.state.no_pin_limit
            && !self.session.pin_verified
        {
            return Err(if self.state.pin_tries_left == 0 {
                StatusWord::PIN_BLOCKED
            } else {
                StatusWord::PIN_REQUIRED
            });
        }
        let balance = self.purse(i.purse).balance;
        if i.amount > balance {
            return Err(StatusWord::FUNDS);
        }
        let atc = self.next_atc()?;
        let (random, sk) = self.session_key(false, atc, i.purse);
        self.session.pending = Some(Pending::Purchase {
            purse: i.purse,
            amount: i.amount,
            terminal: i.terminal,
            atc,
            sk,
        });
        Ok(InitializePurchaseResponse {
            balance,
            atc,
            key_version: self.state.key_version,
            alg: ALG_RETAIL_MAC,
            random,
        }
        .encode())
    }

    fn debit(&mut self, d: DebitPurchase) -> Outcome {
        let Some(Pending::Purchase {
            purse,
            amount,
            terminal,
            atc,
            sk,
        }) = self.session.pending.take()
        else {
            return Err(StatusWord::NO_INITIALIZE);
        };
        if purse != d.purse || amount != d.amount {
            return Err(StatusWord::NO_INITIALIZE);
        }
        let s2 = crypto::purchase_s2(&sk, amount, atc, &terminal, d.seq, &d.date, &d.time);
        if !crypto::mac_eq(&s2, &d.s2) {
            return Err(StatusWord::MAC_WRONG);
        }
        if self.state.expiry.is_expired_on(&d.date) {
            return Err(StatusWord::EXPIRED);
        }
        let p = &mut self.state.purses[purse.index()];
        let Some(after) = p.balance.checked_sub(amount) else {
            return Err(StatusWord::FUNDS);
        };
        p.balance = after;
        let s3 = crypto::purchase_s3(&sk, after, atc, amount, d.seq);
        self.state.push_log(LogRecord {
            kind: LogKind::Purchase,
            purse,
            amount,
            balance_after: after,
            atc,
            terminal,
            date: d.date,
            time: d.time,
            seq: d.seq,
            s3,
        });
        Ok(DebitResponse {
            balance_after: after,
            s3,
        }
        .encode())
    }

    fn initialize_load(&mut self, i: InitializeLoad) -> Outcome {
        self.session.pending = None;
        let p = self.purse(i.purse);
        let balance = p.balance;
        if balance
            .checked_add(i.amount)
            .is_none_or(|b| b > p.max_balance)
        {
            return Err(StatusWord::OVER_MAX_BALANCE);
        }
        let atc = self.next_atc()?;
        let (random, sk) = self.session_key(true, atc, i.purse);
        let s1 = crypto::load_s1(&sk, balance, i.amount, atc, &i.terminal);
        self.session.pending = Some(Pending::Load {
            purse: i.purse,
            amount: i.amount,
            terminal: i.terminal,
            atc,
            sk,
        });
        Ok(InitializeLoadResponse {
            balance,
            atc,
            key_version: self.state.key_version,
            alg: ALG_RETAIL_MAC,
            random,
            s1,
        }
        .encode())
    }

    fn credit(&mut self, c: CreditLoad) -> Outcome {
        let Some(Pending::Load {
            purse,
            amount,
            terminal,
            atc,
            sk,
        }) = self.session.pending.take()
        else {
            return Err(StatusWord::NO_INITIALIZE);
        };
        if purse != c.purse {
            return Err(StatusWord::NO_INITIALIZE);
        }
        let s2 = crypto::load_s2(&sk, amount, atc, &terminal, &c.date, &c.time);
        if !crypto::mac_eq(&s2, &c.s2) {
            return Err(StatusWord::MAC_WRONG);
        }
        if self.state.expiry.is_expired_on(&c.date) {
            return Err(StatusWord::EXPIRED);
        }
        let p = &mut self.state.purses[purse.index()];
        let after = match p.balance.checked_add(amount) {
            Some(a) if a <= p.max_balance => a,
            _ => return Err(StatusWord::OVER_MAX_BALANCE),
        };
        p.balance = after;
        let result = CreditResponse::LOADED;
        let s3 = crypto::load_s3(&sk, result, after, atc, amount);
        self.state.push_log(LogRecord {
            kind: LogKind::Load,
            purse,
            amount,
            balance_after: after,
            atc,
            terminal,
            date: c.date,
            time: c.time,
            seq: 0,
            s3,
        });
        Ok(CreditResponse {
            result,
            balance_after: after,
            s3,
        }
        .encode())
    }
}
