//! The `loads` table: rows read by column name, one insert per draw (or per
//! void of a load never drawn), and state changes as compare-and-set updates
//! with their history entry and webhook in the same database transaction.

use purse::load::bank_api::{LoadEvent, LoadEventKind, LoadState, LoadView};
use purse::merchant_api::{LogEntry, TxnState};
use purse::security_module::LoadAuthorization;
use purse::types::{BcdDate, BcdTime, CardId, Expiry, PurseId};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::outbox;
use super::sqlite::{exec, qrow, unique_violation};
use crate::card_ref::CardRefKey;
use crate::error::PaymentError;
use crate::load::proof::{CreditProven, NoCreditProven};

/// What the HSM drew on (absent for a voided load).
#[derive(Debug, Clone)]
pub struct LoadDrawn {
    pub card_id: CardId,
    pub card_expiry: Expiry,
    pub key_version: u8,
    pub atc: u16,
    pub card_random: [u8; 4],
    pub balance_before: u32,
    pub balance_after: u32,
    pub max_balance: u32,
    pub date: BcdDate,
    pub time: BcdTime,
    /// The S3 the HSM expects for result 00 (never sent to the client).
    pub expected_s3: [u8; 8],
    pub draw_hash: Vec<u8>,
    pub draw_response: String,
}

impl LoadDrawn {
    /// The authorisation as drawn (its `verify_s3` is constant time).
    pub fn authorization(&self, purse: PurseId) -> LoadAuthorization {
        LoadAuthorization {
            credit: purse::command::CreditLoad {
                purse,
                date: self.date,
                time: self.time,
                s2: [0; 8],
            },
            balance_after: self.balance_after,
            expected_s3: self.expected_s3,
        }
    }
}

/// One load as stored.
#[derive(Debug, Clone)]
pub struct LoadRow {
    pub bank_id: String,
    pub txn_id: String,
    pub account_ref: String,
    pub state: LoadState,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    pub origin: String,
    pub drawn: Option<LoadDrawn>,
    pub complete_hash: Option<Vec<u8>>,
    pub complete_response: Option<String>,
    pub proof: Option<String>,
    pub resolution: Option<String>,
    pub expires_at: u64,
    pub created_at: u64,
    pub decided_at: Option<u64>,
    pub updated_at: u64,
}

fn bad(what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("stored {what} invalid").into(),
    )
}

impl LoadRow {
    pub(crate) const COLUMNS: &'static str =
        "bank_id, txn_id, account_ref, state, amount, currency, exponent, \
        purse, origin, card_id, card_expiry, key_version, atc, card_random, balance_before, \
        balance_after, max_balance, date, time, expected_s3, draw_hash, draw_response, \
        complete_hash, complete_response, proof, resolution, expires_at, created_at, decided_at, \
        updated_at";

    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        let state: String = r.get("state")?;
        let card: Option<String> = r.get("card_id")?;
        let drawn = match card {
            None => None,
            Some(card) => {
                let expiry: String = r.get("card_expiry")?;
                let random: Vec<u8> = r.get("card_random")?;
                let expected: Vec<u8> = r.get("expected_s3")?;
                let date: String = r.get("date")?;
                let time: String = r.get("time")?;
                Some(LoadDrawn {
                    card_id: CardId::parse(&card).map_err(|_| bad("card"))?,
                    card_expiry: Expiry::parse(&expiry).map_err(|_| bad("expiry"))?,
                    key_version: r.get("key_version")?,
                    atc: r.get("atc")?,
                    card_random: random.try_into().map_err(|_| bad("random"))?,
                    balance_before: r.get("balance_before")?,
                    balance_after: r.get("balance_after")?,
                    max_balance: r.get("max_balance")?,
                    date: BcdDate::parse(&date).map_err(|_| bad("date"))?,
                    time: BcdTime::parse(&time).map_err(|_| bad("time"))?,
                    expected_s3: expected.try_into().map_err(|_| bad("expected S3"))?,
                    draw_hash: r.get("draw_hash")?,
                    draw_response: r.get("draw_response")?,
                })
            }
        };
        Ok(Self {
            bank_id: r.get("bank_id")?,
            txn_id: r.get("txn_id")?,
            account_ref: r.get("account_ref")?,
            state: LoadState::parse(&state).ok_or_else(|| bad("state"))?,
            amount: r.get("amount")?,
            currency: r.get("currency")?,
            exponent: r.get("exponent")?,
            purse: PurseId::from_p2(r.get("purse")?).map_err(|_| bad("purse"))?,
            origin: r.get("origin")?,
            drawn,
            complete_hash: r.get("complete_hash")?,
            complete_response: r.get("complete_response")?,
            proof: r.get("proof")?,
            resolution: r.get("resolution")?,
            expires_at: r.get("expires_at")?,
            created_at: r.get("created_at")?,
            decided_at: r.get("decided_at")?,
            updated_at: r.get("updated_at")?,
        })
    }

    /// The webhook body for a change of this row to `state`.
    pub fn event(
        &self,
        key: &CardRefKey,
        kind: LoadEventKind,
        state: LoadState,
        detail: &str,
        now: u64,
    ) -> LoadEvent {
        LoadEvent {
            event_id: outbox::new_event_id(),
            kind,
            created_at: now,
            bank_id: self.bank_id.clone(),
            txn_id: self.txn_id.clone(),
            account_ref: self.account_ref.clone(),
            state,
            amount: self.amount,
            currency: self.currency,
            exponent: self.exponent,
            purse: self.purse,
            card: self
                .drawn
                .as_ref()
                .map(|d| d.card_id.masked())
                .unwrap_or_default(),
            card_ref: self.card_ref(key),
            atc: self.drawn.as_ref().map(|d| d.atc).unwrap_or(0),
            detail: detail.into(),
        }
    }

    /// The card's reference for the bank (empty before a draw).
    pub fn card_ref(&self, key: &CardRefKey) -> String {
        self.drawn
            .as_ref()
            .map(|d| key.bank_card_ref(&self.bank_id, &d.card_id))
            .unwrap_or_default()
    }

    pub fn into_view(self, key: &CardRefKey, log: Vec<LogEntry>) -> LoadView {
        LoadView {
            card: self
                .drawn
                .as_ref()
                .map(|d| d.card_id.masked())
                .unwrap_or_default(),
            card_ref: self.card_ref(key),
            atc: self.drawn.as_ref().map(|d| d.atc).unwrap_or(0),
            bank_id: self.bank_id,
            txn_id: self.txn_id,
            account_ref: self.account_ref,
            state: self.state,
            amount: self.amount,
            currency: self.currency,
            exponent: self.exponent,
            purse: self.purse,
            created_at: self.created_at,
            updated_at: self.updated_at,
            resolution: self.resolution,
            log,
        }
    }
}

pub fn get(c: &Connection, bank_id: &str, txn_id: &str) -> Result<Option<LoadRow>, PaymentError> {
    let sql = format!(
        "SELECT {} FROM loads WHERE bank_id = ?1 AND txn_id = ?2",
        LoadRow::COLUMNS
    );
    Ok(qrow(c, &sql, params![bank_id, txn_id], LoadRow::from_row).optional()?)
}

/// A card's loads its proofs can still decide (drawn, unknown, and failed:
/// the card's S3 beats a decision made without it), oldest ATC first.
pub fn card_open(c: &Connection, card: &CardId) -> Result<Vec<LoadRow>, PaymentError> {
    let sql = format!(
        // The condition of the partial index loads_card_open, as written there.
        "SELECT {} FROM loads WHERE card_id = ?1 AND (state = 'drawn' OR state = 'unknown' OR state = 'failed') ORDER BY atc",
        LoadRow::COLUMNS
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![card.full()], LoadRow::from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A card's movements with an ATC in `(from, to)` (exclusive), loads and
/// purchases, for the balance account between two of its proofs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Movement {
    Load {
        atc: u16,
        purse: PurseId,
        amount: u32,
        state: LoadState,
    },
    Purchase {
        atc: u16,
        purse: PurseId,
        amount: u32,
        state: TxnState,
    },
}

pub fn card_movements(
    c: &Connection,
    card: &CardId,
    from: u16,
    to: u16,
) -> Result<Vec<Movement>, PaymentError> {
    let mut out = Vec::new();
    let mut stmt = c.prepare_cached(
        "SELECT atc, purse, amount, state FROM loads WHERE card_id = ?1 AND atc > ?2 AND atc < ?3",
    )?;
    let rows = stmt.query_map(params![card.full(), from, to], |r| {
        let state: String = r.get("state")?;
        Ok(Movement::Load {
            atc: r.get("atc")?,
            purse: PurseId::from_p2(r.get("purse")?).map_err(|_| bad("purse"))?,
            amount: r.get("amount")?,
            state: LoadState::parse(&state).ok_or_else(|| bad("state"))?,
        })
    })?;
    for m in rows {
        out.push(m?);
    }
    let mut stmt = c.prepare_cached(
        "SELECT atc, purse, amount, state FROM transactions WHERE card_id = ?1 AND atc > ?2 AND atc < ?3",
    )?;
    let rows = stmt.query_map(params![card.full(), from, to], |r| {
        let state: String = r.get("state")?;
        Ok(Movement::Purchase {
            atc: r.get("atc")?,
            purse: PurseId::from_p2(r.get("purse")?).map_err(|_| bad("purse"))?,
            amount: r.get("amount")?,
            state: TxnState::parse(&state).ok_or_else(|| bad("state"))?,
        })
    })?;
    for m in rows {
        out.push(m?);
    }
    Ok(out)
}

/// Why a load's insert was refused by a unique constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadConflict {
    /// (bank, txn id) exists (drawn before, or voided).
    TxnId,
    /// (card, ATC) was drawn before: a replayed load request.
    CardAtc,
}

/// Insert a freshly drawn load (state `drawn`) with its history entry.
pub fn insert_drawn(
    c: &Connection,
    row: &LoadRow,
) -> Result<Result<(), LoadConflict>, PaymentError> {
    let d = row
        .drawn
        .as_ref()
        .ok_or_else(|| PaymentError::Internal("a drawn load needs its draw".into()))?;
    let r = exec(
        c,
        "INSERT INTO loads (bank_id, txn_id, account_ref, state, amount, currency, exponent, purse,
            origin, card_id, card_expiry, key_version, atc, card_random, balance_before,
            balance_after, max_balance, date, time, expected_s3, draw_hash, draw_response,
            expires_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, 'drawn', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
            ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?23)",
        params![
            row.bank_id,
            row.txn_id,
            row.account_ref,
            row.amount,
            row.currency,
            row.exponent,
            row.purse.p2(),
            row.origin,
            d.card_id.full(),
            String::from(d.card_expiry),
            d.key_version,
            d.atc,
            d.card_random.to_vec(),
            d.balance_before,
            d.balance_after,
            d.max_balance,
            String::from(d.date),
            String::from(d.time),
            d.expected_s3.to_vec(),
            d.draw_hash,
            d.draw_response,
            row.expires_at,
            row.created_at,
        ],
    );
    if let Err(e) = r {
        return match unique_violation(&e) {
            Some(m) if m.contains("card_id") => Ok(Err(LoadConflict::CardAtc)),
            Some(m) if m.contains("txn_id") => Ok(Err(LoadConflict::TxnId)),
            _ => Err(e.into()),
        };
    }
    log_event(
        c,
        &row.bank_id,
        &row.txn_id,
        "draw",
        LoadState::Drawn,
        &format!("card {} atc {}", d.card_id, d.atc),
        row.created_at,
    )?;
    Ok(Ok(()))
}

/// The bank voids a load: a row `voided` is inserted if the txn id was never
/// drawn (so it can never be), with its webhook. Returns the row as it stands.
pub fn void(
    c: &Connection,
    key: &CardRefKey,
    bank_id: &str,
    txn_id: &str,
    now: u64,
    webhook: bool,
) -> Result<LoadRow, PaymentError> {
    let n = exec(
        c,
        "INSERT INTO loads (bank_id, txn_id, state, amount, currency, exponent, purse, created_at, decided_at, updated_at, resolution)
         VALUES (?1, ?2, 'voided', 0, 0, 0, 0, ?3, ?3, ?3, 'voided by the bank before any draw')
         ON CONFLICT (bank_id, txn_id) DO NOTHING",
        params![bank_id, txn_id, now],
    )?;
    let row = get(c, bank_id, txn_id)?.ok_or(PaymentError::NotFound)?;
    if n == 1 {
        log_event(
            c,
            bank_id,
            txn_id,
            "void",
            LoadState::Voided,
            "voided by the bank",
            now,
        )?;
        if webhook {
            let ev = row.event(
                key,
                LoadEventKind::Voided,
                LoadState::Voided,
                "voided by the bank",
                now,
            );
            outbox::enqueue_to(
                c,
                outbox::Audience::Bank,
                &ev.event_id,
                &ev.bank_id,
                &ev.txn_id,
                ev.kind.as_str(),
                &ev,
                now,
            )?;
        }
    }
    Ok(row)
}

pub fn log_event(
    c: &Connection,
    bank_id: &str,
    txn_id: &str,
    event: &str,
    state: LoadState,
    detail: &str,
    at: u64,
) -> Result<(), PaymentError> {
    exec(
        c,
        "INSERT INTO load_log (bank_id, txn_id, event, state, detail, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![bank_id, txn_id, event, state.as_str(), detail, at],
    )?;
    Ok(())
}

/// A state change of one load. The target state is set only by the
/// constructors, each of which takes the card's proof.
#[derive(Debug, Clone)]
pub struct LoadTransition {
    pub bank_id: String,
    pub txn_id: String,
    from: &'static [LoadState],
    to: LoadState,
    /// Request fingerprint and stored answer of `complete` (idempotent replay).
    pub complete: Option<(Vec<u8>, String)>,
    pub card_s3: Option<[u8; 8]>,
    pub card_answer: Option<Vec<u8>>,
    proof: Option<&'static str>,
    /// A decision (credited, not credited), not a late record.
    decides: bool,
    pub resolution: Option<String>,
    pub event: &'static str,
    pub detail: String,
    pub webhook: Option<LoadEvent>,
    pub now: u64,
}

const CREDITABLE: &[LoadState] = &[LoadState::Drawn, LoadState::Unknown, LoadState::Failed];
const OPEN: &[LoadState] = &[LoadState::Drawn, LoadState::Unknown];

impl LoadTransition {
    fn new(
        row: &LoadRow,
        from: &'static [LoadState],
        to: LoadState,
        event: &'static str,
        now: u64,
    ) -> Self {
        Self {
            bank_id: row.bank_id.clone(),
            txn_id: row.txn_id.clone(),
            from,
            to,
            complete: None,
            card_s3: None,
            card_answer: None,
            proof: None,
            decides: false,
            resolution: None,
            event,
            detail: String::new(),
            webhook: None,
            now,
        }
    }

    /// The card was credited (proven): from any undecided state, `failed`
    /// included (the card's S3 beats anything decided without it).
    pub fn credit(row: &LoadRow, proof: CreditProven, event: &'static str, now: u64) -> Self {
        let mut t = Self::new(row, CREDITABLE, LoadState::Credited, event, now);
        t.proof = Some(proof.how().as_str());
        t.decides = true;
        t
    }

    /// The card proved it was not credited.
    pub fn not_credited(
        row: &LoadRow,
        _proof: NoCreditProven,
        event: &'static str,
        now: u64,
    ) -> Self {
        let mut t = Self::new(row, OPEN, LoadState::Failed, event, now);
        t.proof = Some("s1");
        t.decides = true;
        t
    }

    /// Clearing has checked the card's receipt again and posted the load:
    /// it is `settled` (only a credited load can be).
    pub fn settle(row: &LoadRow, now: u64) -> Self {
        Self::new(
            row,
            &[LoadState::Credited],
            LoadState::Settled,
            "settle",
            now,
        )
    }

    /// Record a late `complete` answer on a credited load, state unchanged.
    pub fn record_complete(row: &LoadRow, now: u64) -> Self {
        Self::new(
            row,
            &[LoadState::Credited, LoadState::Settled],
            row.state,
            "complete",
            now,
        )
    }

    pub fn to(&self) -> LoadState {
        self.to
    }

    /// The states this change may leave.
    pub(crate) fn leaves(&self) -> &'static [LoadState] {
        self.from
    }

    /// How the decision was proven (`s1`, `s3`, …), if this is one.
    pub(crate) fn proof(&self) -> Option<&'static str> {
        self.proof
    }

    /// A decision (stamps `decided_at`), not a late record.
    pub(crate) fn decides(&self) -> bool {
        self.decides
    }

    /// Apply if the row is still in a state this change may leave.
    pub fn apply(&self, c: &Connection) -> Result<bool, PaymentError> {
        let states: Vec<String> = self
            .from
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        let decided = if self.decides {
            ", decided_at = ?3"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE loads SET state = ?4, updated_at = ?3{decided},
                complete_hash = COALESCE(?5, complete_hash),
                complete_response = COALESCE(?6, complete_response),
                card_s3 = COALESCE(?7, card_s3), card_answer = COALESCE(?8, card_answer),
                proof = COALESCE(?9, proof), resolution = COALESCE(?10, resolution)
             WHERE bank_id = ?1 AND txn_id = ?2 AND state IN ({})",
            states.join(", ")
        );
        let (hash, resp) = match &self.complete {
            Some((h, r)) => (Some(h.clone()), Some(r.clone())),
            None => (None, None),
        };
        let n = exec(
            c,
            &sql,
            params![
                self.bank_id,
                self.txn_id,
                self.now,
                self.to.as_str(),
                hash,
                resp,
                self.card_s3.map(|s| s.to_vec()),
                self.card_answer,
                self.proof,
                self.resolution,
            ],
        )?;
        if n == 0 {
            return Ok(false);
        }
        log_event(
            c,
            &self.bank_id,
            &self.txn_id,
            self.event,
            self.to,
            &self.detail,
            self.now,
        )?;
        if let Some(ev) = &self.webhook {
            outbox::enqueue_to(
                c,
                outbox::Audience::Bank,
                &ev.event_id,
                &ev.bank_id,
                &ev.txn_id,
                ev.kind.as_str(),
                ev,
                self.now,
            )?;
        }
        Ok(true)
    }
}

/// `drawn` loads whose session expired more than `grace` seconds ago become
/// `unknown`: only the card's proof can decide them now.
pub fn sweep_expired(c: &Connection, now: u64, grace: u64) -> Result<usize, PaymentError> {
    let cutoff = now.saturating_sub(grace);
    let mut stmt = c.prepare_cached(
        "UPDATE loads SET state = 'unknown', updated_at = ?1
         WHERE state = 'drawn' AND expires_at < ?2 RETURNING bank_id, txn_id",
    )?;
    let moved: Vec<(String, String)> = stmt
        .query_map(params![now, cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (b, t) in &moved {
        log_event(
            c,
            b,
            t,
            "sweep",
            LoadState::Unknown,
            "session expired without the card's answer: waiting for its proof",
            now,
        )?;
    }
    Ok(moved.len())
}

/// A load with its history.
pub fn view(
    c: &Connection,
    key: &CardRefKey,
    bank_id: &str,
    txn_id: &str,
) -> Result<LoadView, PaymentError> {
    let row = get(c, bank_id, txn_id)?.ok_or(PaymentError::NotFound)?;
    let mut stmt = c.prepare_cached(
        "SELECT event, state, detail, at FROM load_log WHERE bank_id = ?1 AND txn_id = ?2 ORDER BY id",
    )?;
    let log = stmt
        .query_map(params![bank_id, txn_id], super::sqlite::log_entry)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(row.into_view(key, log))
}

/// Sum of credited amounts (credited, settled) of a bank.
pub fn credited_total(c: &Connection, bank_id: &str) -> Result<u64, PaymentError> {
    let v: i64 = qrow(
        c,
        "SELECT COALESCE(SUM(amount), 0) FROM loads WHERE bank_id = ?1 AND state IN ('credited', 'settled')",
        params![bank_id],
        |r| r.get(0),
    )?;
    Ok(v as u64)
}
