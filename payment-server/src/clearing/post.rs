//! Posting a batch, in steps that each commit, so a crash anywhere resumes
//! where it stopped and ends with the same ledger:
//!
//! 1. **receive**: the file opens (signature, totals; else refused whole and
//!    noted) and the batch is stored `received` with its file. The same batch
//!    again is recognised by id and digest and changes nothing; the same id
//!    with other content is refused.
//! 2. **records**, a chunk at a time: each record's proof checked again by the
//!    security module, and one already posted by another batch refused; each
//!    stored `posted` (with its fee) or `rejected` (with the reason), and the
//!    batch's `next_record` advanced in the same commit.
//! 3. **post**: the batch's totals of posted records go to the ledger and the
//!    batch becomes `posted`, in one commit.
//! 4. **ack**: the payment server moves the posted purchases to `settled`
//!    (idempotent: a settled transaction stays so); then the batch is `acked`.

use std::collections::BTreeMap;
use std::sync::Arc;

use purse::security_module::SecurityModule;

use super::batch::{Batch, BatchError, BatchFile, BatchKind, Record, Signer};
use super::config::Fee;
use super::db::{iso_date, vals, Db, DbError, Row};
use super::ledger;
use super::proof::{self, Rejection};

/// Records per commit.
pub const DEFAULT_CHUNK: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum ClearingError {
    #[error("batch refused: {0}")]
    Refused(#[from] BatchError),
    #[error("batch {0} was received before with other content: refused")]
    IdReused(String),
    #[error("clearing database: {0}")]
    Db(#[from] DbError),
    #[error("{0}")]
    Other(String),
}

/// Fault injection for the crash tests: with `CARDPAY_CLEARING_KILL_AT=<n>`
/// in the environment, the process SIGKILLs itself at the n-th step (each
/// commit of posting counts one). Inert otherwise.
#[derive(Debug, Default)]
pub struct CrashPoints {
    kill_at: Option<u64>,
    seen: u64,
}

impl CrashPoints {
    pub fn from_env() -> Self {
        Self {
            kill_at: std::env::var("CARDPAY_CLEARING_KILL_AT")
                .ok()
                .and_then(|v| v.parse().ok()),
            seen: 0,
        }
    }

    fn step(&mut self, what: &str) {
        self.seen += 1;
        if self.kill_at == Some(self.seen) {
            eprintln!("fault injection: SIGKILL after step {} ({what})", self.seen);
            let _ = std::process::Command::new("kill")
                .arg("-KILL")
                .arg(std::process::id().to_string())
                .status();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

/// A batch as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub batch_id: String,
    pub kind: BatchKind,
    pub party: String,
    pub state: String,
    pub record_count: u64,
    pub total: u64,
    pub accepted_count: u64,
    pub accepted_total: u64,
    pub fee_total: u64,
    pub rejected_count: u64,
    pub closed_at: u64,
    pub received_at: u64,
}

/// A posted batch waiting for its source's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unacked {
    pub batch_id: String,
    pub kind: BatchKind,
    /// (party, txn id) of its posted records.
    pub items: Vec<(String, String)>,
}

/// What clearing a file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleared {
    pub batch_id: String,
    /// The batch was known already (a resubmission): nothing new posted.
    pub again: bool,
    pub accepted: u64,
    pub rejected: u64,
}

/// The clearing engine over its database.
pub struct Clearing {
    pub(crate) conn: Db,
    sm: Arc<SecurityModule>,
    signers: Vec<Signer>,
    fees: BTreeMap<String, Fee>,
    pub chunk: usize,
    crash: CrashPoints,
    clock: crate::purchase::Clock,
    /// Rows of `records` when this process last had PostgreSQL analyse it.
    analyzed_rows: i64,
}

impl Clearing {
    pub fn new(
        conn: Db,
        sm: Arc<SecurityModule>,
        signers: Vec<Signer>,
        fees: BTreeMap<String, Fee>,
        clock: crate::purchase::Clock,
    ) -> Self {
        Self {
            conn,
            sm,
            signers,
            fees,
            chunk: DEFAULT_CHUNK,
            crash: CrashPoints::from_env(),
            clock,
            analyzed_rows: 0,
        }
    }

    /// The clearing database.
    pub fn db(&self) -> &Db {
        &self.conn
    }

    /// The SQLite connection, for tests and tools that read or edit the
    /// file with SQL of their own.
    ///
    /// # Panics
    /// When the clearing database is on PostgreSQL.
    pub fn conn(&self) -> &rusqlite::Connection {
        match &self.conn {
            Db::Sqlite(c) => c,
            Db::Pg(_) => panic!("the clearing database is on PostgreSQL, not SQLite"),
        }
    }

    pub fn security_module(&self) -> &SecurityModule {
        &self.sm
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Step 1: open and store the file (or recognise it). Returns the batch
    /// and whether it was known before.
    pub fn receive(&mut self, name: &str, bytes: &[u8]) -> Result<(Batch, bool), ClearingError> {
        let (file, batch) = match BatchFile::open(bytes, &self.signers) {
            Ok(x) => x,
            Err(e) => {
                self.note_refused(name, bytes, &e.to_string())?;
                return Err(e.into());
            }
        };
        let digest = file.digest();
        let known: Option<Vec<u8>> = self
            .conn
            .query_opt(
                "SELECT sha256 FROM batches WHERE batch_id = ?1",
                vals![&batch.batch_id],
            )?
            .map(|r| r.get(0))
            .transpose()?;
        match known {
            Some(d) if d == digest => return Ok((batch, true)),
            Some(_) => {
                let e = ClearingError::IdReused(batch.batch_id.clone());
                self.note_refused(name, bytes, &e.to_string())?;
                return Err(e);
            }
            None => {}
        }
        self.conn.execute(
            "INSERT INTO batches (batch_id, kind, party, source, key_id, closed_at, record_count, total,
                sha256, file, state, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'received', ?11)",
            vals![
                &batch.batch_id,
                batch.kind.as_str(),
                &batch.party,
                &batch.source,
                &file.key_id,
                batch.closed_at,
                batch.totals.count,
                batch.totals.amount,
                digest.to_vec(),
                String::from_utf8_lossy(&file.to_bytes()),
                self.now(),
            ],
        )?;
        self.crash.step("received");
        Ok((batch, false))
    }

    fn note_refused(&self, name: &str, bytes: &[u8], reason: &str) -> Result<(), ClearingError> {
        use sha2::{Digest, Sha256};
        tracing::warn!(file = name, reason, "batch refused whole");
        self.conn.execute(
            "INSERT INTO refused_files (name, sha256, reason, at) VALUES (?1, ?2, ?3, ?4)",
            vals![name, Sha256::digest(bytes).to_vec(), reason, self.now()],
        )?;
        Ok(())
    }

    /// A stored batch's state.
    pub fn batch(&self, batch_id: &str) -> Result<Option<StoredBatch>, ClearingError> {
        Ok(self
            .conn
            .query_opt(
                "SELECT batch_id, kind, party, state, record_count, total, COALESCE(accepted_count, 0),
                    COALESCE(accepted_total, 0), COALESCE(fee_total, 0), COALESCE(rejected_count, 0),
                    closed_at, received_at
                 FROM batches WHERE batch_id = ?1",
                vals![batch_id],
            )?
            .map(|r| stored_batch(&r))
            .transpose()?)
    }

    /// Steps 2 and 3 for a received batch (resuming after the last committed chunk).
    pub fn post(&mut self, batch: &Batch) -> Result<StoredBatch, ClearingError> {
        let row = self.conn.query_one(
            "SELECT state, next_record FROM batches WHERE batch_id = ?1",
            vals![&batch.batch_id],
        )?;
        let state: String = row.get(0)?;
        let mut next = row.get::<u64>(1)? as usize;
        if state == "received" {
            // PostgreSQL plans the chunk's lookups from statistics; a records
            // table that doubled since they were taken gets new ones (on a
            // young table: after 5k, 10k, 20k… records; on an old one almost
            // never — autovacuum keeps up), so a plan made when it was empty
            // does not scan every posted record for each lookup.
            let mut planned = self.conn.planned_rows("records")?;
            if let Some(p) = planned {
                // −1: never analysed; else the statistics are for about p rows
                self.analyzed_rows = self.analyzed_rows.max(p);
            }
            while next < batch.records.len() {
                let end = (next + self.chunk).min(batch.records.len());
                self.post_chunk(batch, next, end)?;
                if let Some(p) = planned.as_mut() {
                    *p += (end - next) as i64;
                    if *p >= 2 * self.analyzed_rows.max(1) {
                        self.conn.analyze("records")?;
                        self.analyzed_rows = *p;
                    }
                }
                next = end;
                self.crash.step("records");
            }
            self.post_totals(batch)?;
            self.crash.step("posted");
        }
        self.batch(&batch.batch_id)?
            .ok_or_else(|| ClearingError::Other("batch vanished".into()))
    }

    /// One chunk in one commit: every record's proof checked by the security
    /// module first (CPU, no database), then one query per few hundred records
    /// for those already posted (by an earlier batch, an earlier chunk, or
    /// earlier in this chunk), then the records written a few hundred per
    /// statement: a handful of round trips per chunk instead of two per
    /// record, which is what PostgreSQL pays for.
    fn post_chunk(&mut self, batch: &Batch, from: usize, to: usize) -> Result<(), ClearingError> {
        let fee = match batch.kind {
            BatchKind::Purchases => self.fees.get(&batch.party).copied().unwrap_or_default(),
            BatchKind::Loads => Fee::default(),
        };
        let records = &batch.records[from..to];
        let proofs: Vec<Result<(), Rejection>> =
            records.iter().map(|r| proof::verify(&self.sm, r)).collect();
        let proof_keys: Vec<String> = records.iter().map(proof_key).collect();
        self.conn.transaction(|tx| {
            let mut posted = posted_before(tx, records, &proofs, &proof_keys)?;
            let mut rows = Vec::with_capacity(records.len());
            for (i, ((r, proof), pk)) in records.iter().zip(proofs).zip(&proof_keys).enumerate() {
                let key = (record_kind(r), r.party().to_owned(), r.txn_id().to_owned());
                let card = (record_kind(r), pk.clone());
                let check = proof.and_then(|()| {
                    if let Some(b) = posted.txns.get(&key) {
                        return Err(Rejection::AlreadyCleared(b.clone()));
                    }
                    match posted.proofs.get(&card) {
                        Some((txn, batch)) => Err(Rejection::ProofReused {
                            txn: txn.clone(),
                            batch: batch.clone(),
                        }),
                        None => Ok(()),
                    }
                });
                let (status, code, reason, fee) = match &check {
                    Ok(()) => {
                        posted.txns.insert(key, batch.batch_id.clone());
                        posted
                            .proofs
                            .insert(card.clone(), (r.txn_id().to_owned(), batch.batch_id.clone()));
                        ("posted", None, None, fee.of(r.amount()))
                    }
                    Err(rej) => {
                        tracing::warn!(batch = %batch.batch_id, txn = r.txn_id(), reason = %rej, "record rejected");
                        ("rejected", Some(rej.code()), Some(rej.to_string()), 0)
                    }
                };
                rows.push(vals![
                    &batch.batch_id,
                    from + i,
                    record_kind(r),
                    r.party(),
                    r.txn_id(),
                    r.atc(),
                    r.amount(),
                    fee,
                    iso_date(r.at()),
                    status,
                    code,
                    reason,
                    serde_json::to_string(r).expect("record serialises"),
                    card.1,
                ]);
            }
            for group in rows.chunks(ROWS_PER_STATEMENT) {
                tx.execute(&insert_records_sql(group.len()), group.concat())?;
            }
            tx.execute(
                "UPDATE batches SET next_record = ?2 WHERE batch_id = ?1",
                vals![&batch.batch_id, to],
            )?;
            Ok::<_, ClearingError>(())
        })
    }

    fn post_totals(&mut self, batch: &Batch) -> Result<(), ClearingError> {
        let now = self.now();
        self.conn.transaction(|tx| {
        let row = tx.query_one(
            "SELECT CAST(COALESCE(SUM(CASE WHEN status = 'posted' THEN 1 ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN status = 'posted' THEN amount END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN status = 'posted' THEN fee END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END), 0) AS BIGINT)
             FROM records WHERE batch_id = ?1",
            vals![&batch.batch_id],
        )?;
        let (n, gross, fees, rejected): (i64, i64, i64, i64) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        let memo = format!("{n} records of batch {}", batch.batch_id);
        if gross > 0 {
            match batch.kind {
                BatchKind::Purchases => {
                    let payable = ledger::payable(&batch.party);
                    ledger::post(
                        tx,
                        "purchases",
                        &batch.batch_id,
                        &memo,
                        now,
                        &[(ledger::FLOAT, gross), (&payable, -gross)],
                    )?;
                    if fees > 0 {
                        ledger::post(
                            tx,
                            "fees",
                            &batch.batch_id,
                            &memo,
                            now,
                            &[(&payable, fees), (ledger::FEES, -fees)],
                        )?;
                    }
                }
                BatchKind::Loads => {
                    let due = ledger::bank_due(&batch.party);
                    ledger::post(
                        tx,
                        "loads",
                        &batch.batch_id,
                        &memo,
                        now,
                        &[(&due, gross), (ledger::FLOAT, -gross)],
                    )?;
                }
            }
        }
        tx.execute(
            "UPDATE batches SET state = 'posted', posted_at = ?2, accepted_count = ?3,
                accepted_total = ?4, fee_total = ?5, rejected_count = ?6
             WHERE batch_id = ?1 AND state = 'received'",
            vals![&batch.batch_id, now, n, gross, fees, rejected],
        )?;
        Ok(())
        })
    }

    /// Batches received but not yet posted (a crash stopped them): their files.
    pub fn unposted(&self) -> Result<Vec<(String, Vec<u8>)>, ClearingError> {
        let rows = self.conn.query(
            "SELECT batch_id, file FROM batches WHERE state = 'received' ORDER BY received_at, batch_id",
            vec![],
        )?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.get(0)?, r.get::<String>(1)?.into_bytes())))
            .collect::<Result<_, DbError>>()?)
    }

    /// Posted batches whose source has not acknowledged yet, with the
    /// (party, txn id) of their posted records.
    pub fn unacked(&self) -> Result<Vec<Unacked>, ClearingError> {
        let batches: Vec<(String, String)> = self
            .conn
            .query(
                "SELECT batch_id, kind FROM batches WHERE state = 'posted' ORDER BY posted_at, batch_id",
                vec![],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect::<Result<_, DbError>>()?;
        let mut out = Vec::new();
        for (id, kind) in batches {
            let v = self
                .conn
                .query(
                    "SELECT party, txn_id FROM records WHERE batch_id = ?1 AND status = 'posted' ORDER BY idx",
                    vals![&id],
                )?
                .iter()
                .map(|r| Ok((r.get(0)?, r.get(1)?)))
                .collect::<Result<_, DbError>>()?;
            let kind = BatchKind::parse(&kind)
                .ok_or_else(|| ClearingError::Other(format!("batch {id}: kind {kind}")))?;
            out.push(Unacked {
                batch_id: id,
                kind,
                items: v,
            });
        }
        Ok(out)
    }

    /// Step 4's end: the source acknowledged.
    pub fn mark_acked(&mut self, batch_id: &str) -> Result<(), ClearingError> {
        self.conn.execute(
            "UPDATE batches SET state = 'acked', acked_at = ?2 WHERE batch_id = ?1 AND state = 'posted'",
            vals![batch_id, self.now()],
        )?;
        self.crash.step("acked");
        Ok(())
    }

    /// Count one step of the acknowledgement (for fault injection).
    pub fn ack_step(&mut self) {
        self.crash.step("ack");
    }
}

pub(crate) fn record_kind(r: &Record) -> &'static str {
    match r {
        Record::Purchase(_) => "purchase",
        Record::Load(_) => "load",
    }
}

/// Records written per `INSERT` (14 parameters each; far below SQLite's and
/// PostgreSQL's limits on parameters per statement).
const ROWS_PER_STATEMENT: usize = 200;

/// `INSERT INTO records … VALUES (?1, …, ?14), (?15, …), …` for `n` rows.
fn insert_records_sql(n: usize) -> String {
    const COLS: usize = 14;
    let mut sql = String::from(
        "INSERT INTO records (batch_id, idx, kind, party, txn_id, atc, amount, fee, business_date,
            status, reason_code, reason, body, proof_key) VALUES ",
    );
    for row in 0..n {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..COLS {
            if col > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("?{}", row * COLS + col + 1));
        }
        sql.push(')');
    }
    sql
}

/// The card's proof behind a record, as stored in `proof_key`: the first 16
/// bytes, hex, of SHA-256("cardpay/clearing-proof" || 0 || card id || ATC).
/// A digest, so the index does not hold card numbers.
pub(crate) fn proof_key(r: &Record) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"cardpay/clearing-proof\0");
    h.update(r.card_id().bytes());
    h.update(r.atc().to_be_bytes());
    hex::encode(&h.finalize()[..16])
}

/// What a chunk's records may collide with: posted records by
/// (kind, party, txn id) → batch, and by (kind, proof key) → (txn id, batch).
#[derive(Default)]
struct Posted {
    txns: std::collections::HashMap<(&'static str, String, String), String>,
    proofs: std::collections::HashMap<(&'static str, String), (String, String)>,
}

/// The posted records a chunk's records (those whose proof held) may collide
/// with, read a few hundred keys per query through the
/// `records_posted_once_by_txn` and `records_proof_once` indexes.
fn posted_before(
    tx: &Db,
    records: &[Record],
    proofs: &[Result<(), Rejection>],
    proof_keys: &[String],
) -> Result<Posted, ClearingError> {
    let mut by_party: BTreeMap<(&'static str, &str), Vec<String>> = BTreeMap::new();
    let mut by_kind: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for ((r, p), pk) in records.iter().zip(proofs).zip(proof_keys) {
        if p.is_ok() {
            by_party
                .entry((record_kind(r), r.party()))
                .or_default()
                .push(r.txn_id().to_owned());
            by_kind.entry(record_kind(r)).or_default().push(pk.clone());
        }
    }
    let mut out = Posted::default();
    for ((kind, party), txns) in by_party {
        for rows in in_groups(
            tx,
            "SELECT txn_id, batch_id FROM records
             WHERE kind = ?1 AND party = ?2 AND status = 'posted' AND txn_id IN",
            vals![kind, party],
            &txns,
        )? {
            out.txns
                .insert((kind, party.to_owned(), rows.get(0)?), rows.get(1)?);
        }
    }
    for (kind, keys) in by_kind {
        for rows in in_groups(
            tx,
            "SELECT proof_key, txn_id, batch_id FROM records
             WHERE kind = ?1 AND status = 'posted' AND proof_key IN",
            vals![kind],
            &keys,
        )? {
            out.proofs
                .insert((kind, rows.get(0)?), (rows.get(1)?, rows.get(2)?));
        }
    }
    Ok(out)
}

/// Run `sql` (ending in `IN`; its `?1`… bound to `first`) for `keys` a few
/// hundred at a time; all rows.
fn in_groups(
    tx: &Db,
    sql: &str,
    first: Vec<super::db::Val>,
    keys: &[String],
) -> Result<Vec<super::db::Row>, ClearingError> {
    let mut out = Vec::new();
    for group in keys.chunks(ROWS_PER_STATEMENT) {
        let list: Vec<String> = (0..group.len())
            .map(|i| format!("?{}", first.len() + i + 1))
            .collect();
        let mut params = first.clone();
        params.extend(group.iter().map(|k| super::db::Val::from(k.as_str())));
        out.extend(tx.query(&format!("{sql} ({})", list.join(", ")), params)?);
    }
    Ok(out)
}

fn stored_batch(r: &Row) -> Result<StoredBatch, DbError> {
    let kind: String = r.get(1)?;
    Ok(StoredBatch {
        batch_id: r.get(0)?,
        kind: BatchKind::parse(&kind).unwrap_or(BatchKind::Purchases),
        party: r.get(2)?,
        state: r.get(3)?,
        record_count: r.get(4)?,
        total: r.get(5)?,
        accepted_count: r.get(6)?,
        accepted_total: r.get(7)?,
        fee_total: r.get(8)?,
        rejected_count: r.get(9)?,
        closed_at: r.get(10)?,
        received_at: r.get(11)?,
    })
}
