//! The `transactions` table: rows read by column name, one insert for a draw,
//! and state changes as compare-and-set updates (the row changes only if it
//! is still in a state the change may leave), each with its history entry and
//! its webhook written in the same database transaction.

use purse::merchant_api::{
    LogEntry, RecoveryItem, ReportsPage, SuspiciousEntry, SuspiciousList, SuspiciousListEntry,
    TxnState, TxnView,
};
use purse::security_module::{PurchaseAuthorization, PurchaseDraw, S3Verified};
use purse::session::VerifyMode;
use purse::types::{BcdDate, BcdTime, CardId, Expiry, PurseId};
use purse::webhook::WebhookEvent;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::outbox;
use super::sqlite::{exec, qrow, unique_violation};
use crate::card_ref::CardRefKey;
use crate::error::PaymentError;

/// One transaction as stored.
#[derive(Debug, Clone)]
pub struct TxnRow {
    pub merchant_id: String,
    pub txn_id: String,
    pub order_ref: String,
    pub state: TxnState,
    pub verify_mode: VerifyMode,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    pub origin: String,
    pub card_id: CardId,
    pub card_expiry: Expiry,
    pub key_version: u8,
    pub atc: u16,
    pub card_random: [u8; 4],
    pub balance_before: u32,
    pub balance_after: u32,
    pub seq: u32,
    pub date: BcdDate,
    pub time: BcdTime,
    /// The S3 the security module expects (kept server-side, never sent to the client).
    pub expected_s3: [u8; 8],
    pub draw_hash: Vec<u8>,
    pub draw_response: String,
    pub complete_hash: Option<Vec<u8>>,
    pub complete_response: Option<String>,
    pub card_s3: Option<Vec<u8>>,
    pub card_sw: Option<u16>,
    pub resolution: Option<String>,
    pub expires_at: u64,
    pub created_at: u64,
    pub drawn_at: u64,
    pub debited_at: Option<u64>,
    pub confirmed_at: Option<u64>,
    pub updated_at: u64,
}

fn bad(what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("stored {what} invalid").into(),
    )
}

/// The columns a [`TxnRow`] is read from, named once: the SELECT list is
/// built from these names and each field is read at its name's position (no
/// name lookup per row).
macro_rules! txn_columns {
    ($($name:ident),+ $(,)?) => {
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Clone, Copy)]
        pub(super) enum Col { $($name),+ }
        pub(super) const COLUMN_NAMES: &[&str] = &[$(stringify!($name)),+];
    };
}

txn_columns!(
    merchant_id,
    txn_id,
    order_ref,
    state,
    verify_mode,
    amount,
    currency,
    exponent,
    purse,
    origin,
    card_id,
    card_expiry,
    key_version,
    atc,
    card_random,
    balance_before,
    balance_after,
    seq,
    date,
    time,
    expected_s3,
    draw_hash,
    draw_response,
    complete_hash,
    complete_response,
    card_s3,
    card_sw,
    resolution,
    expires_at,
    created_at,
    drawn_at,
    debited_at,
    confirmed_at,
    updated_at,
);

/// The SELECT list of a [`TxnRow`] (in [`Col`] order).
pub(crate) fn columns() -> &'static str {
    static LIST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LIST.get_or_init(|| COLUMN_NAMES.join(", "))
}

/// `SELECT <columns> FROM transactions WHERE <cond>`, built once per query.
fn select(cell: &'static std::sync::OnceLock<String>, cond: &str) -> &'static str {
    cell.get_or_init(|| {
        format!(
            "SELECT {} FROM transactions WHERE {cond}",
            COLUMN_NAMES.join(", ")
        )
    })
}

impl TxnRow {
    pub(crate) fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        let get = |c: Col| c as usize;
        let state: String = r.get(get(Col::state))?;
        let mode: String = r.get(get(Col::verify_mode))?;
        let card: String = r.get(get(Col::card_id))?;
        let expiry: String = r.get(get(Col::card_expiry))?;
        let random: Vec<u8> = r.get(get(Col::card_random))?;
        let expected: Vec<u8> = r.get(get(Col::expected_s3))?;
        let date: String = r.get(get(Col::date))?;
        let time: String = r.get(get(Col::time))?;
        Ok(Self {
            merchant_id: r.get(get(Col::merchant_id))?,
            txn_id: r.get(get(Col::txn_id))?,
            order_ref: r.get(get(Col::order_ref))?,
            state: TxnState::parse(&state).ok_or_else(|| bad("state"))?,
            verify_mode: VerifyMode::parse(&mode).ok_or_else(|| bad("verify mode"))?,
            amount: r.get(get(Col::amount))?,
            currency: r.get(get(Col::currency))?,
            exponent: r.get(get(Col::exponent))?,
            purse: PurseId::from_p2(r.get(get(Col::purse))?).map_err(|_| bad("purse"))?,
            origin: r.get(get(Col::origin))?,
            card_id: CardId::parse(&card).map_err(|_| bad("card"))?,
            card_expiry: Expiry::parse(&expiry).map_err(|_| bad("expiry"))?,
            key_version: r.get(get(Col::key_version))?,
            atc: r.get(get(Col::atc))?,
            card_random: random.try_into().map_err(|_| bad("random"))?,
            balance_before: r.get(get(Col::balance_before))?,
            balance_after: r.get(get(Col::balance_after))?,
            seq: r.get(get(Col::seq))?,
            date: BcdDate::parse(&date).map_err(|_| bad("date"))?,
            time: BcdTime::parse(&time).map_err(|_| bad("time"))?,
            expected_s3: expected.try_into().map_err(|_| bad("expected S3"))?,
            draw_hash: r.get(get(Col::draw_hash))?,
            draw_response: r.get(get(Col::draw_response))?,
            complete_hash: r.get(get(Col::complete_hash))?,
            complete_response: r.get(get(Col::complete_response))?,
            card_s3: r.get(get(Col::card_s3))?,
            card_sw: r.get(get(Col::card_sw))?,
            resolution: r.get(get(Col::resolution))?,
            expires_at: r.get(get(Col::expires_at))?,
            created_at: r.get(get(Col::created_at))?,
            drawn_at: r.get(get(Col::drawn_at))?,
            debited_at: r.get(get(Col::debited_at))?,
            confirmed_at: r.get(get(Col::confirmed_at))?,
            updated_at: r.get(get(Col::updated_at))?,
        })
    }

    /// What the security module drew on: it recomputes S2/S3 from this.
    pub fn draw(&self) -> PurchaseDraw {
        PurchaseDraw {
            card_id: self.card_id,
            expiry: self.card_expiry,
            key_version: self.key_version,
            purse: self.purse,
            balance: self.balance_before,
            atc: self.atc,
            random: self.card_random,
            amount: self.amount,
            seq: self.seq,
            date: self.date,
            time: self.time,
        }
    }

    /// The authorisation as drawn (its `verify_s3` compares with the stored
    /// expected S3 in constant time).
    pub fn authorization(&self) -> PurchaseAuthorization {
        PurchaseAuthorization {
            debit: purse::command::DebitPurchase {
                purse: self.purse,
                amount: self.amount,
                seq: self.seq,
                date: self.date,
                time: self.time,
                s2: [0; 8],
            },
            balance_after: self.balance_after,
            expected_s3: self.expected_s3,
        }
    }

    pub fn into_view(
        self,
        key: &CardRefKey,
        log: Vec<LogEntry>,
        reports: Vec<SuspiciousEntry>,
    ) -> TxnView {
        TxnView {
            card: self.card_id.masked(),
            card_ref: key.card_ref(&self.merchant_id, &self.card_id),
            merchant_id: self.merchant_id,
            txn_id: self.txn_id,
            order_ref: self.order_ref,
            state: self.state,
            verify_mode: self.verify_mode,
            amount: self.amount,
            currency: self.currency,
            exponent: self.exponent,
            purse: self.purse,
            origin: self.origin,
            atc: self.atc,
            seq: self.seq,
            created_at: self.created_at,
            drawn_at: self.drawn_at,
            debited_at: self.debited_at,
            confirmed_at: self.confirmed_at,
            updated_at: self.updated_at,
            resolution: self.resolution,
            log,
            suspicious_reports: reports,
        }
    }

    /// The webhook body for a change of this row to `state`.
    pub fn event(
        &self,
        key: &CardRefKey,
        kind: purse::webhook::EventKind,
        state: TxnState,
        detail: &str,
        now: u64,
    ) -> WebhookEvent {
        WebhookEvent {
            event_id: outbox::new_event_id(),
            kind,
            created_at: now,
            merchant_id: self.merchant_id.clone(),
            txn_id: self.txn_id.clone(),
            order_ref: self.order_ref.clone(),
            state,
            amount: self.amount,
            currency: self.currency,
            exponent: self.exponent,
            purse: self.purse,
            card: self.card_id.masked(),
            card_ref: key.card_ref(&self.merchant_id, &self.card_id),
            atc: self.atc,
            detail: detail.into(),
        }
    }
}

pub fn get(
    c: &Connection,
    merchant_id: &str,
    txn_id: &str,
) -> Result<Option<TxnRow>, PaymentError> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = select(&SQL, "merchant_id = ?1 AND txn_id = ?2");
    Ok(qrow(c, sql, params![merchant_id, txn_id], TxnRow::from_row).optional()?)
}

/// A card's transactions its log can still decide: undecided ones, and
/// failed ones (a later record proving a debit overrides a decision made
/// from the log's silence).
pub fn card_undecided(c: &Connection, card_id: &CardId) -> Result<Vec<TxnRow>, PaymentError> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = select(
        &SQL,
        // The condition of the partial index transactions_card_undecided, as written there.
        "card_id = ?1 AND (state = 'drawn' OR state = 'unknown' OR state = 'failed') ORDER BY atc",
    );
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt.query_map(params![card_id.full()], TxnRow::from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The other attempts at one order, with their states.
pub fn order_attempts(
    c: &Connection,
    merchant_id: &str,
    order_ref: &str,
) -> Result<Vec<(String, TxnState)>, PaymentError> {
    let mut stmt = c.prepare_cached(
        // `order_ref <> ''`: the index holds only rows with an order (an
        // empty order_ref has no attempts to look up).
        "SELECT txn_id, state FROM transactions WHERE merchant_id = ?1 AND order_ref = ?2 AND order_ref <> ''",
    )?;
    let rows = stmt.query_map(params![merchant_id, order_ref], |r| {
        let s: String = r.get(1)?;
        Ok((r.get(0)?, TxnState::parse(&s).ok_or_else(|| bad("state"))?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Why a draw's insert was refused by a unique constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertConflict {
    /// (merchant, txn id) exists.
    TxnId,
    /// (card, ATC) was drawn before.
    CardAtc,
    /// Another attempt at the order is undecided.
    OpenOrder,
    /// Another attempt at the order was captured (after the service's check,
    /// before this insert): the insert is rolled back.
    OrderPaid,
}

/// Insert a freshly drawn transaction (state `drawn`) with its history entry.
pub fn insert_drawn(
    c: &Connection,
    row: &TxnRow,
) -> Result<Result<(), InsertConflict>, PaymentError> {
    let r = exec(
        c,
        "INSERT INTO transactions (merchant_id, txn_id, order_ref, state, verify_mode, amount, currency,
            exponent, purse, origin, card_id, card_expiry, key_version, atc, card_random,
            balance_before, balance_after, seq, date, time, expected_s3, draw_hash, draw_response,
            expires_at, created_at, drawn_at, updated_at)
         VALUES (?1, ?2, ?3, 'drawn', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
            ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?24, ?24)",
        params![
            row.merchant_id,
            row.txn_id,
            row.order_ref,
            row.verify_mode.as_str(),
            row.amount,
            row.currency,
            row.exponent,
            row.purse.p2(),
            row.origin,
            row.card_id.full(),
            String::from(row.card_expiry),
            row.key_version,
            row.atc,
            row.card_random.to_vec(),
            row.balance_before,
            row.balance_after,
            row.seq,
            String::from(row.date),
            String::from(row.time),
            row.expected_s3.to_vec(),
            row.draw_hash,
            row.draw_response,
            row.expires_at,
            row.drawn_at,
        ],
    );
    match r {
        Ok(_) => {}
        Err(e) => {
            return match unique_violation(&e) {
                Some(m) if m.contains("card_id") => Ok(Err(InsertConflict::CardAtc)),
                Some(m) if m.contains("order_ref") => Ok(Err(InsertConflict::OpenOrder)),
                Some(m) if m.contains("txn_id") => Ok(Err(InsertConflict::TxnId)),
                _ => Err(e.into()),
            }
        }
    }
    // The service checked the order before the security module drew; an
    // attempt captured since must stop this one. Checked after the insert, in
    // the same transaction (the insert waited out any capture in flight: the
    // open-order index), so no capture can slip between check and insert.
    if !row.order_ref.is_empty() {
        let paid = qrow(
            c,
            concat!(
                "SELECT EXISTS (SELECT 1 FROM transactions WHERE merchant_id = ?1 AND order_ref = ?2 AND order_ref <> '' ",
                "AND txn_id <> ?3 AND state IN ('debited', 'confirmed', 'settled'))"
            ),
            params![row.merchant_id, row.order_ref, row.txn_id],
            |r| r.get::<_, bool>(0),
        )?;
        if paid {
            // An error rolls this job's savepoint back: the row is not kept.
            return Err(PaymentError::OrderPaid);
        }
    }
    log_event(
        c,
        &row.merchant_id,
        &row.txn_id,
        "draw",
        TxnState::Drawn,
        &format!("card {} atc {}", row.card_id, row.atc),
        row.drawn_at,
    )?;
    Ok(Ok(()))
}

pub fn log_event(
    c: &Connection,
    merchant_id: &str,
    txn_id: &str,
    event: &str,
    state: TxnState,
    detail: &str,
    at: u64,
) -> Result<(), PaymentError> {
    exec(
        c,
        "INSERT INTO txn_log (merchant_id, txn_id, event, state, detail, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![merchant_id, txn_id, event, state.as_str(), detail, at],
    )?;
    Ok(())
}

/// A state change of one transaction. The target state is set only by the
/// constructors, and a capture only with the card's proof ([`S3Verified`]).
#[derive(Debug, Clone)]
pub struct Transition {
    pub merchant_id: String,
    pub txn_id: String,
    /// Which change: the states it may leave and the moment it stamps.
    kind: TransitionKind,
    to: TxnState,
    /// Request fingerprint and stored answer of `complete` (idempotent replay).
    pub complete: Option<(Vec<u8>, String)>,
    pub card_s3: Option<[u8; 8]>,
    pub card_sw: Option<u16>,
    pub resolution: Option<String>,
    /// History entry: event name and detail.
    pub event: &'static str,
    pub detail: String,
    /// The webhook to deliver, when the merchant has a webhook URL.
    pub webhook: Option<WebhookEvent>,
    pub now: u64,
}

/// The kinds of state change, each a compare-and-set UPDATE in every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransitionKind {
    Capture,
    Fail,
    Confirm,
    Record,
    Settle,
}

impl TransitionKind {
    pub(crate) const ALL: [Self; 5] = [
        Self::Capture,
        Self::Fail,
        Self::Confirm,
        Self::Record,
        Self::Settle,
    ];

    /// The states this change may leave.
    pub(crate) fn leaves(self) -> &'static [TxnState] {
        match self {
            Self::Capture => &[TxnState::Drawn, TxnState::Unknown, TxnState::Failed],
            Self::Fail => &[TxnState::Drawn, TxnState::Unknown],
            Self::Confirm => &[TxnState::Debited],
            Self::Record => &[TxnState::Debited, TxnState::Confirmed, TxnState::Settled],
            Self::Settle => &[TxnState::Debited, TxnState::Confirmed],
        }
    }

    /// The column stamped with the moment of the change, if any.
    pub(crate) fn stamp(self) -> Option<&'static str> {
        match self {
            Self::Capture => Some("debited_at"),
            Self::Confirm => Some("confirmed_at"),
            Self::Settle => Some("settled_at"),
            Self::Fail | Self::Record => None,
        }
    }

    /// `(state = 'a' OR state = 'b')`: the states this change may leave,
    /// for SQLite (which evaluates an `IN` list of three or more values with
    /// a temporary b-tree per statement).
    fn leaves_or_sql(self) -> String {
        let any = self
            .leaves()
            .iter()
            .map(|s| format!("state = '{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(" OR ");
        format!("({any})")
    }

    /// `'a', 'b'`: the states this change may leave, for `state IN (…)`.
    pub(crate) fn leaves_sql(self) -> String {
        self.leaves()
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// SQLite's `UPDATE … SET state = ?4 …` of each kind, built once.
fn transition_sql(kind: TransitionKind) -> &'static str {
    static SQL: std::sync::OnceLock<[String; 5]> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        TransitionKind::ALL.map(|k| {
            let stamp = k.stamp().map(|c| format!(", {c} = ?3")).unwrap_or_default();
            format!(
                "UPDATE transactions SET state = ?4, updated_at = ?3{stamp},
                    complete_hash = COALESCE(?5, complete_hash),
                    complete_response = COALESCE(?6, complete_response),
                    card_s3 = COALESCE(?7, card_s3), card_sw = COALESCE(?8, card_sw),
                    resolution = COALESCE(?9, resolution)
                 WHERE merchant_id = ?1 AND txn_id = ?2 AND {}",
                k.leaves_or_sql()
            )
        })
    });
    &all[kind as usize]
}

impl Transition {
    fn new(
        row: &TxnRow,
        kind: TransitionKind,
        to: TxnState,
        event: &'static str,
        now: u64,
    ) -> Self {
        Self {
            merchant_id: row.merchant_id.clone(),
            txn_id: row.txn_id.clone(),
            kind,
            to,
            complete: None,
            card_s3: None,
            card_sw: None,
            resolution: None,
            event,
            detail: String::new(),
            webhook: None,
            now,
        }
    }

    /// The card's debit is proven: captured (`debited`). From any undecided
    /// state, `failed` included: a proof beats a decision from silence.
    pub fn capture(
        row: &TxnRow,
        _proof: S3Verified,
        s3: [u8; 8],
        event: &'static str,
        now: u64,
    ) -> Self {
        let mut t = Self::new(row, TransitionKind::Capture, TxnState::Debited, event, now);
        t.card_s3 = Some(s3);
        t.card_sw = Some(0x9000);
        t
    }

    /// The card refused, or its log proves no debit came.
    pub fn fail(row: &TxnRow, event: &'static str, now: u64) -> Self {
        Self::new(row, TransitionKind::Fail, TxnState::Failed, event, now)
    }

    /// The merchant released the goods of a captured transaction.
    pub fn confirm(row: &TxnRow, now: u64) -> Self {
        Self::new(
            row,
            TransitionKind::Confirm,
            TxnState::Confirmed,
            "confirm",
            now,
        )
    }

    /// Clearing has checked the card's proof again and posted the purchase:
    /// it is `settled` (only a captured transaction can be).
    pub fn settle(row: &TxnRow, now: u64) -> Self {
        Self::new(
            row,
            TransitionKind::Settle,
            TxnState::Settled,
            "settle",
            now,
        )
    }

    /// Record a late `complete` answer on an already captured transaction,
    /// without changing its state.
    pub fn record_complete(row: &TxnRow, now: u64) -> Self {
        Self::new(row, TransitionKind::Record, row.state, "complete", now)
    }

    pub(crate) fn kind(&self) -> TransitionKind {
        self.kind
    }

    pub fn to(&self) -> TxnState {
        self.to
    }

    /// Apply if the row is still in a state this change may leave. Returns
    /// whether it was applied; history and webhook only if it was.
    pub fn apply(&self, c: &Connection) -> Result<bool, PaymentError> {
        let (hash, resp) = match &self.complete {
            Some((h, r)) => (Some(h.as_slice()), Some(r.as_str())),
            None => (None, None),
        };
        let n = exec(
            c,
            transition_sql(self.kind),
            params![
                self.merchant_id,
                self.txn_id,
                self.now,
                self.to.as_str(),
                hash,
                resp,
                self.card_s3.map(|s| s.to_vec()),
                self.card_sw,
                self.resolution,
            ],
        )?;
        if n == 0 {
            return Ok(false);
        }
        log_event(
            c,
            &self.merchant_id,
            &self.txn_id,
            self.event,
            self.to,
            &self.detail,
            self.now,
        )?;
        if let Some(ev) = &self.webhook {
            outbox::enqueue(c, ev, self.now)?;
        }
        Ok(true)
    }
}

/// `drawn` transactions whose session expired more than `grace` seconds ago
/// become `unknown`: only the card's log can decide them now.
pub fn sweep_expired(c: &Connection, now: u64, grace: u64) -> Result<usize, PaymentError> {
    let cutoff = now.saturating_sub(grace);
    let mut stmt = c.prepare_cached(
        "UPDATE transactions SET state = 'unknown', updated_at = ?1
         WHERE state = 'drawn' AND expires_at < ?2 RETURNING merchant_id, txn_id",
    )?;
    let moved: Vec<(String, String)> = stmt
        .query_map(params![now, cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (m, t) in &moved {
        log_event(
            c,
            m,
            t,
            "sweep",
            TxnState::Unknown,
            "session expired without an answer from the card: waiting for its log",
            now,
        )?;
    }
    Ok(moved.len())
}

/// A transaction with its history and the shopper's reports.
pub fn view(
    c: &Connection,
    key: &CardRefKey,
    merchant_id: &str,
    txn_id: &str,
) -> Result<TxnView, PaymentError> {
    let row = get(c, merchant_id, txn_id)?.ok_or(PaymentError::NotFound)?;
    let mut stmt = c.prepare_cached(
        "SELECT event, state, detail, at FROM txn_log WHERE merchant_id = ?1 AND txn_id = ?2 ORDER BY id",
    )?;
    let log = stmt
        .query_map(params![merchant_id, txn_id], super::sqlite::log_entry)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = c.prepare_cached(
        "SELECT page_origin, reason, at FROM suspicious_reports WHERE merchant_id = ?1 AND txn_id = ?2 ORDER BY id",
    )?;
    let reports = stmt
        .query_map(params![merchant_id, txn_id], |r| {
            Ok(SuspiciousEntry {
                page_origin: r.get("page_origin")?,
                reason: r.get("reason")?,
                at: r.get("at")?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(row.into_view(key, log, reports))
}

/// Transactions waiting for the card's log: drawn before `cutoff`, or unknown.
pub fn recovery_list(
    c: &Connection,
    key: &CardRefKey,
    cutoff: u64,
    merchant: Option<&str>,
) -> Result<Vec<RecoveryItem>, PaymentError> {
    let mut stmt = c.prepare_cached(
        "SELECT merchant_id, txn_id, state, amount, currency, card_id, atc, seq, drawn_at
         FROM transactions WHERE (state = 'unknown' OR (state = 'drawn' AND drawn_at <= ?1))
           AND (state = 'drawn' OR state = 'unknown' OR state = 'failed')
           AND (?2 IS NULL OR merchant_id = ?2) ORDER BY drawn_at",
    )?;
    let rows = stmt.query_map(params![cutoff, merchant], |r| {
        let state: String = r.get("state")?;
        let merchant_id: String = r.get("merchant_id")?;
        let card = CardId::parse(&r.get::<_, String>("card_id")?).map_err(|_| bad("card"))?;
        Ok(RecoveryItem {
            card_ref: key.card_ref(&merchant_id, &card),
            merchant_id,
            txn_id: r.get("txn_id")?,
            state: TxnState::parse(&state).ok_or_else(|| bad("state"))?,
            amount: r.get("amount")?,
            currency: r.get("currency")?,
            card: card.masked(),
            atc: r.get("atc")?,
            seq: r.get("seq")?,
            drawn_at: r.get("drawn_at")?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Keep a shopper's report; the same report of the same transaction again
/// (a replayed request) is kept once. Whether it was new.
pub fn insert_suspicious(
    c: &Connection,
    merchant_id: &str,
    txn_id: &str,
    page_origin: &str,
    reason: &str,
    at: u64,
) -> Result<bool, PaymentError> {
    let n = exec(
        c,
        "INSERT INTO suspicious_reports (merchant_id, txn_id, page_origin, reason, at)
         SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM suspicious_reports
            WHERE merchant_id = ?1 AND txn_id = ?2 AND page_origin = ?3 AND reason = ?4)",
        params![merchant_id, txn_id, page_origin, reason, at],
    )?;
    Ok(n == 1)
}

/// Shopper reports, newest first, with the card of the transaction if it was drawn.
pub fn suspicious_list(
    c: &Connection,
    key: &CardRefKey,
    merchant: Option<&str>,
    page: ReportsPage,
) -> Result<SuspiciousList, PaymentError> {
    let mut stmt = c.prepare_cached(
        "SELECT s.id, s.merchant_id, s.txn_id, s.page_origin, s.reason, s.at, t.card_id
         FROM suspicious_reports s
         LEFT JOIN transactions t ON t.merchant_id = s.merchant_id AND t.txn_id = s.txn_id
         WHERE (?1 IS NULL OR s.merchant_id = ?1) AND (?2 IS NULL OR s.id < ?2)
         ORDER BY s.id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![merchant, page.before, page.limit + 1], |r| {
        let merchant_id: String = r.get("merchant_id")?;
        let card = match r.get::<_, Option<String>>("card_id")? {
            Some(id) => Some(CardId::parse(&id).map_err(|_| bad("card"))?),
            None => None,
        };
        let entry = SuspiciousListEntry {
            card: card.as_ref().map(CardId::masked).unwrap_or_default(),
            card_ref: card
                .map(|c| key.card_ref(&merchant_id, &c))
                .unwrap_or_default(),
            merchant_id,
            txn_id: r.get("txn_id")?,
            page_origin: r.get("page_origin")?,
            reason: r.get("reason")?,
            at: r.get("at")?,
        };
        Ok((r.get("id")?, entry))
    })?;
    Ok(super::reports_page(rows.collect::<Result<_, _>>()?, page))
}

/// Sum of captured amounts (debited, confirmed, settled) of a merchant.
pub fn captured_total(c: &Connection, merchant_id: &str) -> Result<u64, PaymentError> {
    let v: i64 = qrow(
        c,
        "SELECT COALESCE(SUM(amount), 0) FROM transactions
         WHERE merchant_id = ?1 AND state IN ('debited', 'confirmed', 'settled')",
        params![merchant_id],
        |r| r.get(0),
    )?;
    Ok(v as u64)
}

/// Reserve `n` security module sequence numbers; returns the first.
pub fn reserve_seq(c: &Connection, terminal: &str, n: u32) -> Result<u32, PaymentError> {
    exec(
        c,
        "INSERT INTO sm_counter (terminal, seq) VALUES (?1, 0) ON CONFLICT (terminal) DO NOTHING",
        params![terminal],
    )?;
    let end: i64 = qrow(
        c,
        "UPDATE sm_counter SET seq = seq + ?2 WHERE terminal = ?1 RETURNING seq",
        params![terminal, n],
        |r| r.get(0),
    )?;
    let end = u32::try_from(end)
        .map_err(|_| PaymentError::Internal("security module sequence exhausted".into()))?;
    Ok(end - n + 1)
}
