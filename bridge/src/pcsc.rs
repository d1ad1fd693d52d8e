//! The PC/SC backend: runs on the host's worker thread and does every card
//! operation of the bridge, applying the guard ([`crate::guard`]), the
//! budgets ([`crate::store`]) and the exclusive sessions
//! ([`crate::exclusive`]) to each page APDU.
//!
//! Recovery: any error that means the PC/SC context is dead (pcscd stopped or
//! restarted) drops the context and every connection; the next request
//! establishes a fresh one. A card pulled mid-command closes that connection
//! with `card_removed`; the page connects again once the card is back. A card
//! reset by another program (between our sessions) is reconnected and the
//! Cardpay application selected again before the page's next command.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use pcsc::{Card, Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};
use purse::apdu::{Command, StatusWord};
use purse::bridge_msg::ApduHex;
use purse::bridge_msg::{
    BridgeError, BridgeRequest, BridgeResult, Connected, Done, ErrorCode, Limit, ReaderInfo,
    Readers, Readiness, Status, Transmitted,
};
use purse::BcdDate;

use crate::budget::{wall_clock, Ms, Rate, Rates};
use crate::exclusive::Sessions;
use crate::guard::{select_cardpay, Guard, GuardConfig, Kind, PIN_PROBE};
use crate::host::Backend;
use crate::readiness::{card_readiness, sw_of};
use crate::reserve::{Reservations, Use};
use crate::store::{BudgetFile, Keeper};

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

/// What to send after a T=0 procedure status, if anything: `61xx` → GET
/// RESPONSE for xx bytes; `6Cxx` ("wrong Le, not processed", ISO/IEC 7816-3)
/// → the same command with Le = xx: only the Le byte is replaced, or appended
/// to a command that had none; CLA, INS, P1, P2, Lc and the data never change.
/// A VERIFY is never sent again: the PIN check before it counted one try, and
/// a card that answers `6Cxx` to a PIN must not get a second attempt from us.
pub fn t0_followup(apdu: &[u8], rapdu: &[u8]) -> Option<Vec<u8>> {
    match *rapdu {
        [0x61, n] => Some(vec![0x00, 0xC0, 0x00, 0x00, n]),
        [0x6C, n] => {
            let mut cmd = Command::parse(apdu).ok()?;
            if (cmd.cla, cmd.ins) == (purse::command::CLA_ISO, purse::command::INS_VERIFY) {
                return None;
            }
            cmd.le = Some(if n == 0 { 256 } else { u16::from(n) });
            cmd.try_to_bytes().ok()
        }
        _ => None,
    }
}

/// An INITIALIZE FOR LOAD of amount 0 (`80 50 02 P2 0A 00000000 …`): the
/// card proving itself right before a purchase's INITIALIZE (or in a
/// recovery), so one more INITIALIZE is likely to follow on the connection.
pub fn is_proof(apdu: &[u8]) -> bool {
    matches!(Command::parse(apdu), Ok(c) if (c.cla, c.ins, c.p1) == (purse::command::CLA_PURSE, purse::command::INS_INITIALIZE, 0x02)
        && c.data.get(..4) == Some(&[0u8; 4][..]))
}

/// Every reader and whether a usable card is in it.
pub fn reader_states(ctx: &Context) -> Result<Vec<(String, bool)>, pcsc::Error> {
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
            let ev = s.event_state();
            (
                s.name().to_string_lossy().into_owned(),
                ev.contains(State::PRESENT) && !ev.contains(State::MUTE),
            )
        })
        .collect())
}

/// Send one APDU, completing T=0 `61xx`/`6Cxx` ([`t0_followup`]) once.
pub fn transmit_t0(card: &Card, apdu: &[u8]) -> Result<Vec<u8>, pcsc::Error> {
    let mut buf = [0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
    let first = card.transmit(apdu, &mut buf)?.to_vec();
    match t0_followup(apdu, &first) {
        Some(next) => card.transmit(&next, &mut buf).map(<[u8]>::to_vec),
        None => Ok(first),
    }
}

/// A PC/SC connection that can hold a transaction (`SCardBeginTransaction`)
/// across native messages. `pcsc::Transaction` borrows its `Card` mutably, so
/// the card lives in a box of its own that the transaction borrows for
/// `'static`; every path ends the transaction before the card is freed.
pub struct Connection {
    /// Owned: from `Box::into_raw`, freed in `Drop`/`close`.
    card: NonNull<Card>,
    tx: Option<pcsc::Transaction<'static>>,
}

// SAFETY: `Card` is `Send`; the box behind `card` is owned by this value
// alone, and the transaction borrowing it lives and dies inside it too.
unsafe impl Send for Connection {}

impl Connection {
    pub fn new(card: Card) -> Self {
        Self {
            card: NonNull::from(Box::leak(Box::new(card))),
            tx: None,
        }
    }

    fn card(&self) -> &Card {
        match &self.tx {
            Some(t) => t,
            // SAFETY: no transaction, so no `&mut` to the card exists.
            None => unsafe { self.card.as_ref() },
        }
    }

    /// Send one APDU (with the T=0 follow-up of [`transmit_t0`]).
    pub fn transmit(&self, apdu: &[u8]) -> Result<Vec<u8>, pcsc::Error> {
        transmit_t0(self.card(), apdu)
    }

    pub fn atr(&self) -> Vec<u8> {
        self.card()
            .status2_owned()
            .map(|s| s.atr().to_vec())
            .unwrap_or_default()
    }

    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// Begin a transaction (no-op while one is held).
    pub fn begin(&mut self) -> Result<(), pcsc::Error> {
        if self.tx.is_some() {
            return Ok(());
        }
        // SAFETY: `&mut self` and no transaction: this is the only reference
        // to the card; it is kept in `self.tx`, which is always cleared before
        // the box is freed.
        let card: &'static mut Card = unsafe { &mut *self.card.as_ptr() };
        self.tx = Some(card.transaction()?);
        Ok(())
    }

    /// End the transaction, if one is held.
    pub fn end(&mut self, disposition: Disposition) {
        if let Some(t) = self.tx.take() {
            if let Err((t, e)) = t.end(disposition) {
                tracing::debug!("end of transaction: {e}");
                drop(t); // ends it with LeaveCard
            }
        }
    }

    /// Reconnect (after a reset by another program); ends any transaction.
    pub fn reconnect(&mut self) -> Result<(), pcsc::Error> {
        self.end(Disposition::LeaveCard);
        // SAFETY: the transaction is gone, nothing else borrows the card.
        unsafe { self.card.as_mut() }.reconnect(
            ShareMode::Shared,
            Protocols::ANY,
            Disposition::LeaveCard,
        )
    }

    /// End the transaction and disconnect with `disposition`.
    pub fn close(mut self, disposition: Disposition) {
        self.end(disposition);
        // SAFETY: the transaction is gone; the box is ours and freed once
        // (`forget` skips `Drop`).
        let card = unsafe { Box::from_raw(self.card.as_ptr()) };
        std::mem::forget(self);
        if let Err((_, e)) = card.disconnect(disposition) {
            tracing::debug!("disconnect: {e}");
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.tx = None;
        // SAFETY: the transaction is gone; the box is ours (Card's own Drop
        // disconnects with a reset).
        drop(unsafe { Box::from_raw(self.card.as_ptr()) });
    }
}

struct Conn {
    conn: Connection,
    reader: String,
}

/// The PC/SC worker.
pub struct PcscBackend {
    ctx: Option<Context>,
    conns: HashMap<u32, Conn>,
    next_handle: u32,
    guard: Guard,
    sessions: Sessions,
    keeper: Keeper,
    /// Card transactions reserved at SELECT ([`crate::reserve`]).
    reservations: Reservations,
    clock: fn() -> Ms,
    /// Handles lost to a pulled card or a pcscd restart: answered with
    /// `card_removed` (connect again) rather than `bad_request`.
    lost: HashSet<u32>,
}

/// How often the worker looks for reservation outcomes while some are due.
const RESERVED_POLL_MS: Ms = 20;

/// The budgets' speeds for a guard config.
pub fn rates(g: &GuardConfig) -> Rates {
    Rates {
        apdu: Rate::per_sec(g.apdu_burst, g.apdu_per_sec),
        verify: Rate::every(g.verify_burst, g.verify_refill),
        initialize: Rate::per_hour(g.initialize_burst, g.initialize_per_hour),
    }
}

impl PcscBackend {
    /// A backend whose budgets live in `state` (none: in memory only).
    pub fn new(guard: GuardConfig, state: Option<BudgetFile>) -> Self {
        let idle = guard.transaction_idle.as_millis() as Ms;
        let keeper = Keeper::new(rates(&guard), state);
        Self {
            ctx: None,
            conns: HashMap::new(),
            next_handle: 1,
            guard: Guard::new(guard),
            sessions: Sessions::new(idle),
            keeper,
            reservations: Reservations::new(),
            clock: wall_clock,
            lost: HashSet::new(),
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
        let now = (self.clock)();
        for job in self.reservations.end_all() {
            self.keeper.submit(job, now);
        }
        self.conns.clear();
        self.guard.clear();
        self.sessions.clear();
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
        self.with_ctx(reader_states)
    }

    fn readers(&mut self) -> Result<Readers, BridgeError> {
        let list = self.reader_list()?;
        Ok(Readers {
            readers: list
                .into_iter()
                .map(|(name, card_present)| ReaderInfo { name, card_present })
                .collect(),
        })
    }

    fn connect(&mut self, origin: &str, reader: &str) -> Result<Connected, BridgeError> {
        self.guard.may_open(origin)?;
        let name = CString::new(reader).map_err(|_| BridgeError::bad_request("bad reader name"))?;
        // the newest page takes the card; the other one gets it back,
        // selected again, with its next APDU
        self.free_reader(reader, None);
        let card = self.with_ctx(|ctx| ctx.connect(&name, ShareMode::Shared, Protocols::ANY))?;
        let conn = Connection::new(card);
        let atr = conn.atr();
        let handle = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1).max(1);
        self.conns.insert(
            handle,
            Conn {
                conn,
                reader: reader.to_owned(),
            },
        );
        self.guard.opened(handle, origin);
        self.sessions.opened(handle, reader);
        tracing::info!("connect {reader:?} for {origin} → handle {handle}");
        Ok(Connected {
            handle,
            atr: ApduHex(atr),
        })
    }

    /// A PC/SC error on `handle`: drop what it killed, map it for the page.
    fn failed(&mut self, handle: u32, e: pcsc::Error) -> BridgeError {
        let err = map_pcsc(e);
        if context_dead(e) {
            self.drop_context();
            // pcscd gone or restarted: the connection is lost either way
            if self.context().is_ok() {
                return BridgeError::new(
                    ErrorCode::CardRemoved,
                    "the smart-card service restarted; connect again",
                );
            }
        } else if card_gone(e) {
            self.close(handle, Disposition::LeaveCard);
            self.mark_lost(handle);
        }
        err
    }

    fn close(&mut self, handle: u32, disposition: Disposition) {
        self.guard.closed(handle);
        self.end_reservation(handle);
        if let Some(c) = self.conns.remove(&handle) {
            self.free_reader(&c.reader, Some(handle));
            self.sessions.closed(handle);
            c.conn.close(disposition);
        } else {
            self.sessions.closed(handle);
        }
    }

    /// End the sessions of our connections on `reader` (but `except`'s).
    /// pcscd (pcsc-lite) makes SCardConnect and SCardDisconnect wait while
    /// any connection holds a transaction on the reader, ours included: the
    /// worker would wait on itself for ever, and pcscd would keep the lock
    /// after we exit (no other program could reach the card until pcscd
    /// restarts). The pages whose sessions end get the card back, selected
    /// again, with their next APDU.
    fn free_reader(&mut self, reader: &str, except: Option<u32>) {
        let holders: Vec<u32> = self
            .conns
            .iter()
            .filter(|(h, c)| c.reader == reader && Some(**h) != except && self.sessions.holds(**h))
            .map(|(h, _)| *h)
            .collect();
        for h in holders {
            self.end_session(h, Disposition::LeaveCard);
        }
    }

    /// Send one APDU on a connection, completing T=0 `61xx`/`6Cxx` inside the bridge.
    fn raw_transmit(&mut self, handle: u32, apdu: &[u8]) -> Result<Vec<u8>, BridgeError> {
        let conn = &self
            .conns
            .get(&handle)
            .ok_or_else(|| BridgeError::bad_request("unknown or closed handle"))?
            .conn;
        match conn.transmit(apdu) {
            // A response without a status word is no answer: the card lost power
            // mid-command (vpcd gives an empty reply when the card goes away).
            Ok(r) if r.len() < 2 => Err(BridgeError::new(
                ErrorCode::CardRemoved,
                "the card gave no status word: it was removed during the command",
            )),
            Ok(r) => Ok(r),
            Err(e) => Err(self.failed(handle, e)),
        }
    }

    /// Begin the exclusive session on `handle`; a card reset by another
    /// program since our last session is reconnected first.
    fn begin(&mut self, handle: u32, now: Ms) -> Result<(), BridgeError> {
        let c = self
            .conns
            .get_mut(&handle)
            .ok_or_else(|| BridgeError::bad_request("unknown or closed handle"))?;
        let r = match c.conn.begin() {
            Err(pcsc::Error::ResetCard) => {
                tracing::info!("handle {handle}: the card was reset; reconnecting");
                c.conn.reconnect().and_then(|()| c.conn.begin())
            }
            r => r,
        };
        r.map_err(|e| self.failed(handle, e))?;
        self.sessions.began(handle, now);
        Ok(())
    }

    fn end_session(&mut self, handle: u32, disposition: Disposition) {
        if let Some(c) = self.conns.get_mut(&handle) {
            if c.conn.in_transaction() {
                tracing::debug!("handle {handle}: exclusive session ends");
            }
            c.conn.end(disposition);
        }
        self.sessions.ended(handle);
    }

    /// SELECT Cardpay again in a new session, for a page that had selected it.
    fn reselect(&mut self, handle: u32, now: Ms) -> Result<(), BridgeError> {
        let before = self.guard.card(handle).map(str::to_owned);
        let select = select_cardpay();
        let r = self.raw_transmit(handle, &select)?;
        self.guard.observe(handle, &select, &r);
        let ok = self.guard.is_selected(handle) && self.guard.card(handle) == before.as_deref();
        self.sessions.sent(handle, now, Some(ok));
        if !ok {
            self.guard.deselect(handle);
            self.end_reservation(handle);
            return Err(BridgeError::new(
                ErrorCode::CardRemoved,
                "the card was reset or changed and the Cardpay application could not be selected again; connect and SELECT again",
            ));
        }
        self.reserve_for_selection(handle, now);
        Ok(())
    }

    /// The connection's SELECT was answered: reserve a card transaction for
    /// the card it found (off the request path), or give back what it held.
    fn reserve_for_selection(&mut self, handle: u32, now: Ms) {
        match self.selected_card(handle) {
            Some(card) => {
                for job in self.reservations.selected(handle, &card) {
                    self.keeper.submit(job, now);
                }
            }
            None => self.end_reservation(handle),
        }
    }

    /// The Cardpay card `handle`'s application is selected on, if any.
    fn selected_card(&self, handle: u32) -> Option<String> {
        self.guard
            .card(handle)
            .filter(|_| self.guard.is_selected(handle))
            .map(str::to_owned)
    }

    /// The card answered an INITIALIZE `6982`: no ATC spent, and the same
    /// INITIALIZE comes again after the VERIFY. The token it took is held as
    /// the connection's reservation for that one ([`Reservations::kept`]).
    fn keep_for_retry(&mut self, handle: u32, now: Ms) {
        let Some(card) = self.selected_card(handle) else {
            return;
        };
        for job in self.reservations.kept(handle, &card) {
            self.keeper.submit(job, now);
        }
    }

    /// The connection's selection ended: an unused reservation goes back.
    fn end_reservation(&mut self, handle: u32) {
        if let Some(job) = self.reservations.ended(handle) {
            self.keeper.submit(job, (self.clock)());
        }
    }

    /// Take in the writer's outcomes of reservations.
    fn collect_reserved(&mut self) {
        while let Some((id, r)) = self.keeper.try_reserved() {
            self.on_reserved(id, r);
        }
    }

    fn on_reserved(&mut self, id: u64, r: crate::store::Reserved) {
        self.reservations.written(id, r);
    }

    /// An INITIALIZE on `handle` for `card`: use the connection's reservation
    /// (waiting for it if it is being written), else take a token durably now.
    fn take_initialize(&mut self, handle: u32, card: &str, now: Ms) -> Result<bool, BridgeError> {
        self.collect_reserved();
        loop {
            match self.reservations.take(handle, card) {
                Use::Reserved => return Ok(true),
                Use::None => break,
                Use::Wait(_) => {
                    match self.keeper.wait_reserved(Duration::from_secs(5)) {
                        Some((id, r)) => self.on_reserved(id, r),
                        None => {
                            tracing::warn!("handle {handle}: the reservation is not written; taking a token now");
                            break;
                        }
                    }
                }
            }
        }
        self.keeper
            .take_durable(Limit::Initialize, card, now)
            .map(|()| false)
    }

    fn transmit(
        &mut self,
        origin: &str,
        handle: u32,
        apdu: &[u8],
    ) -> Result<Transmitted, BridgeError> {
        if !self.conns.contains_key(&handle) && self.lost.contains(&handle) {
            return Err(BridgeError::new(
                ErrorCode::CardRemoved,
                "the connection to the card was lost (card removed or smart-card service restarted); connect again",
            ));
        }
        let kind = self.guard.check(handle, origin, apdu)?;
        let now = (self.clock)();
        // Where a command's time goes (CARDPAY_BRIDGE_LOG=debug): the session's start,
        // the durable budget, the card.
        let t0 = Instant::now();
        self.keeper.take_apdu(origin, now)?;
        let plan = self
            .sessions
            .plan(handle, self.guard.is_selected(handle), kind == Kind::Select);
        if let Some(other) = plan.take_from {
            // the SELECT that follows in the new session ends the other page's card session
            self.end_session(other, Disposition::LeaveCard);
        }
        if plan.begin {
            self.begin(handle, now)?;
        }
        if plan.reselect {
            self.reselect(handle, now)?;
        }
        let t_session = t0.elapsed();
        let mut reserved = false;
        match kind {
            Kind::VerifyPin => {
                let probe = self.raw_transmit(handle, &PIN_PROBE)?;
                self.guard.check_pin_probe(sw_of(&probe))?;
                self.keeper.take_durable(Limit::Verify, origin, now)?;
            }
            Kind::Initialize => {
                let card = self.guard.card(handle).unwrap_or("unknown").to_owned();
                reserved = self.take_initialize(handle, &card, now)?;
                // The card proving itself: a purchase's INITIALIZE follows at
                // once. Its reservation is written while the card answers this one.
                if is_proof(apdu) {
                    self.reserve_for_selection(handle, now);
                }
            }
            Kind::Select | Kind::Other => {}
        }
        let t_budget = t0.elapsed();
        let r = self.raw_transmit(handle, apdu)?;
        tracing::debug!(
            "handle {handle}: {kind:?} INS {:02X}: session {} µs, budget {} µs{}, card {} µs",
            apdu.get(1).copied().unwrap_or(0),
            t_session.as_micros(),
            (t_budget - t_session).as_micros(),
            if reserved { " (reserved)" } else { "" },
            (t0.elapsed() - t_budget).as_micros()
        );
        self.guard.observe(handle, apdu, &r);
        // a SELECT reserves for the card it found; an INITIALIZE the card
        // answered "PIN required" spent no ATC and will be sent again after
        // the VERIFY: its token is held for that one
        if kind == Kind::Select {
            self.reserve_for_selection(handle, now);
        } else if kind == Kind::Initialize && sw_of(&r) == StatusWord::PIN_REQUIRED {
            self.keep_for_retry(handle, now);
        }
        let selected = (kind == Kind::Select).then(|| self.guard.is_selected(handle));
        self.sessions.sent(handle, now, selected);
        Ok(Transmitted { rapdu: ApduHex(r) })
    }

    fn release(&mut self, origin: &str, handle: u32) -> Result<Done, BridgeError> {
        self.guard.check_owner(handle, origin)?;
        // reset: a verified PIN must not outlive the session
        self.end_session(handle, Disposition::ResetCard);
        // the page is done with the card for now: an unused reservation goes
        // back (its next command selects again, and reserves again)
        self.end_reservation(handle);
        Ok(Done {})
    }

    fn disconnect(&mut self, origin: &str, handle: u32) -> Result<Done, BridgeError> {
        self.guard.check_owner(handle, origin)?;
        // reset: a verified PIN must not outlive the page's session
        self.close(handle, Disposition::ResetCard);
        Ok(Done {})
    }

    /// The readiness answer: one state a shopper can act on.
    pub fn status(&mut self, want: Option<&str>) -> Status {
        let list = match self.reader_list() {
            Ok(l) => l,
            Err(e) if e.code == ErrorCode::NoService => {
                return Status::new(
                    Readiness::NoService,
                    "The smart-card service (pcscd) is not running. Start it (e.g. `sudo systemctl start pcscd`).",
                )
            }
            Err(e) => return Status::new(Readiness::CardError, e.message),
        };
        let names: Vec<String> = list.iter().map(|(n, _)| n.clone()).collect();
        if list.is_empty() {
            return Status::new(
                Readiness::NoReader,
                "No card reader is connected. Plug in your reader.",
            );
        }
        let chosen = match want {
            Some(w) => list.iter().find(|(n, _)| n == w),
            None => list.iter().find(|(_, p)| *p).or(list.first()),
        };
        let Some((reader, present)) = chosen.cloned() else {
            let mut s = Status::new(
                Readiness::NoReader,
                "The requested reader is not connected.",
            );
            s.readers = Some(names);
            return s;
        };
        let out = |mut s: Status| {
            s.reader = Some(reader.clone());
            s.readers = Some(names.clone());
            s
        };
        let no_card = || {
            out(Status::new(
                Readiness::NoCard,
                "No card in the reader. Insert your Cardpay card.",
            ))
        };
        if !present {
            return no_card();
        }
        if self.conns.values().any(|c| c.reader == reader) {
            let mut s = Status::new(Readiness::Ready, "The card is in use by a payment page.");
            s.in_use = Some(true);
            return out(s);
        }
        let name = match CString::new(reader.clone()) {
            Ok(n) => n,
            Err(_) => return out(Status::new(Readiness::CardError, "bad reader name")),
        };
        let card = match self.with_ctx(|ctx| ctx.connect(&name, ShareMode::Shared, Protocols::ANY))
        {
            Ok(c) => c,
            Err(e) if e.code == ErrorCode::NoCard || e.code == ErrorCode::CardRemoved => {
                return no_card()
            }
            Err(e) => return out(Status::new(Readiness::CardError, e.message)),
        };
        let today = BcdDate::from_unix((self.clock)() / 1000);
        let s = match transmit_t0(&card, &select_cardpay()) {
            Err(e) => Status::new(Readiness::CardError, map_pcsc(e).message),
            Ok(sel) if sw_of(&sel) != StatusWord::OK => card_readiness(&sel, None, today),
            Ok(sel) => match transmit_t0(&card, &PIN_PROBE).map(|r| sw_of(&r)) {
                Err(e) => Status::new(Readiness::CardError, map_pcsc(e).message),
                Ok(probe) => card_readiness(&sel, Some(probe), today),
            },
        };
        let _ = card.disconnect(Disposition::LeaveCard);
        out(s)
    }
}

impl Backend for PcscBackend {
    fn handle(&mut self, origin: &str, req: BridgeRequest) -> Result<BridgeResult, BridgeError> {
        match req {
            BridgeRequest::Hello => Ok(BridgeResult::Hello(crate::host::hello())),
            BridgeRequest::Status { reader } => {
                Ok(BridgeResult::Status(self.status(reader.as_deref())))
            }
            BridgeRequest::Readers => self.readers().map(BridgeResult::Readers),
            BridgeRequest::Connect { reader } => {
                self.connect(origin, &reader).map(BridgeResult::Connected)
            }
            BridgeRequest::Transmit { handle, apdu } => self
                .transmit(origin, handle, &apdu.0)
                .map(BridgeResult::Transmitted),
            BridgeRequest::Release { handle } => {
                self.release(origin, handle).map(BridgeResult::Done)
            }
            BridgeRequest::Disconnect { handle } => {
                self.disconnect(origin, handle).map(BridgeResult::Done)
            }
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        // outcomes of reservations to take in (a give-back may follow)
        let reserving = self
            .reservations
            .pending()
            .then(|| (self.clock)() + RESERVED_POLL_MS);
        let due = [
            self.sessions.poll_timeout(),
            self.keeper.poll_flush(),
            reserving,
        ]
        .into_iter()
        .flatten()
        .min()?;
        Some(Duration::from_millis(due.saturating_sub((self.clock)())))
    }

    fn handle_timeout(&mut self) {
        self.collect_reserved();
        let now = (self.clock)();
        for h in self.sessions.expired(now) {
            tracing::info!("handle {h}: idle; the exclusive session ends");
            self.end_session(h, Disposition::ResetCard);
        }
        self.keeper.flush_due(now);
    }

    fn finish(&mut self) {
        for h in self.sessions.holding() {
            self.end_session(h, Disposition::ResetCard);
        }
        // unused reservations go back (best effort: a crash leaves them spent)
        let now = (self.clock)();
        for job in self.reservations.end_all() {
            self.keeper.submit(job, now);
        }
        self.keeper.flush(now);
        self.keeper.finish_writes(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_an_initialize_for_load_of_zero() {
        let t = "000000000001";
        let hex = |s: &str| hex::decode(s).unwrap();
        assert!(is_proof(&hex(&format!("805002000A00000000{t}14"))));
        assert!(is_proof(&hex(&format!("805002010A00000000{t}14"))));
        // a load of 1, a purchase's INITIALIZE of 0 (authentication), a DEBIT
        assert!(!is_proof(&hex(&format!("805002000A00000001{t}14"))));
        assert!(!is_proof(&hex(&format!("805001000A00000000{t}0C"))));
        assert!(!is_proof(&hex("8054010017")));
        assert!(!is_proof(&[0x80, 0x50]));
    }

    #[test]
    fn t0_retry_touches_only_le() {
        // case 2 (GET BALANCE, Le 00): 6C04 → same command, Le 04
        assert_eq!(
            t0_followup(&[0x80, 0x5C, 0x00, 0x00, 0x00], &[0x6C, 0x04]),
            Some(vec![0x80, 0x5C, 0x00, 0x00, 0x04])
        );
        // case 4 (INITIALIZE with a wrong Le): the data stays, Le becomes 0C
        let init = hex::decode("8050010C0A000001F4000000000001FF").unwrap();
        let again = t0_followup(&init, &[0x6C, 0x0C]).unwrap();
        assert_eq!(again[..15], init[..15]);
        assert_eq!(again[15], 0x0C);
        // case 3 (INITIALIZE without Le): the Le is appended, the terminal id
        // (the last data byte) stays as the page sent it
        let init3 = hex::decode("8050010C0A000001F4000000000001").unwrap();
        let again = t0_followup(&init3, &[0x6C, 0x0C]).unwrap();
        assert_eq!(again[..15], init3[..]);
        assert_eq!(again.len(), 16);
        assert_eq!(again[15], 0x0C);
        // case 1: Le appended
        assert_eq!(
            t0_followup(&[0x80, 0x5C, 0x00, 0x00], &[0x6C, 0x04]),
            Some(vec![0x80, 0x5C, 0x00, 0x00, 0x04])
        );
        // VERIFY with a PIN: never re-sent, so no PIN digit is ever rewritten
        let verify = [0x00, 0x20, 0x00, 0x00, 0x04, b'1', b'2', b'3', b'4'];
        assert_eq!(t0_followup(&verify, &[0x6C, 0x39]), None);
        assert_eq!(t0_followup(&verify, &[0x6C, 0x00]), None);
        assert_eq!(t0_followup(&[0x00, 0x20, 0x00, 0x00], &[0x6C, 0x02]), None);
        // 6C00 means 256
        assert_eq!(
            t0_followup(&[0x80, 0x5A, 0x01, 0x00, 0x25], &[0x6C, 0x00]),
            Some(vec![0x80, 0x5A, 0x01, 0x00, 0x00])
        );
        // 61xx: GET RESPONSE for what is left
        assert_eq!(
            t0_followup(&verify, &[0x61, 0x10]),
            Some(vec![0x00, 0xC0, 0x00, 0x00, 0x10])
        );
        assert_eq!(t0_followup(&verify, &[0x90, 0x00]), None);
        assert_eq!(t0_followup(&verify, &[0x12, 0x6C, 0x04]), None);
        assert_eq!(t0_followup(&[0x80], &[0x6C, 0x04]), None);
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
