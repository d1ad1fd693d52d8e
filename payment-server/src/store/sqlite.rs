//! The SQLite backend (the default): one file, WAL, `synchronous = FULL`.
//!
//! Writes go to one writer thread that commits queued jobs in groups
//! ([`writer`]); reads run on a second connection on a thread of its own
//! (committed data only, never waiting for the writer's fsync). Schema changes are the
//! files in `migrations/sqlite/`, applied in order at start and recorded in
//! `schema_migrations`.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use purse::load::bank_api::LoadView;
use purse::merchant_api::{RecoveryItem, ReportsPage, SuspiciousList, TxnState, TxnView};
use purse::types::CardId;
use purse::webhook::WebhookEvent;

use super::{clearing, load, outbox, txn, writer};
use super::{
    CapturedTxn, ClosedBatch, Due, InsertConflict, LoadCandidate, LoadConflict, LoadRow,
    LoadTransition, Movement, Transition, TxnRow,
};
use crate::card_ref::{self, CardRefKey};
use crate::error::PaymentError;
use writer::Writer;

/// The migrations, in order. Never edit one that has shipped: add another.
const MIGRATIONS: [(&str, &str); 6] = [
    (
        "0001_initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        "0002_recovery_webhooks",
        include_str!("../../migrations/sqlite/0002_recovery_webhooks.sql"),
    ),
    (
        "0003_loads",
        include_str!("../../migrations/sqlite/0003_loads.sql"),
    ),
    (
        "0004_clearing",
        include_str!("../../migrations/sqlite/0004_clearing.sql"),
    ),
    (
        "0005_server_secrets",
        include_str!("../../migrations/sqlite/0005_server_secrets.sql"),
    ),
    (
        "0006_cheaper_writes",
        include_str!("../../migrations/sqlite/0006_cheaper_writes.sql"),
    ),
];

pub fn open_connection(path: &Path) -> Result<Connection, PaymentError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), PaymentError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    for (name, sql) in MIGRATIONS {
        let done: Option<String> = conn
            .query_row(
                "SELECT name FROM schema_migrations WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        if done.is_some() {
            continue;
        }
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| PaymentError::Internal(format!("migration {name}: {e}")))?;
        tx.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES (?1, strftime('%s','now'))",
            params![name],
        )?;
        tx.commit()?;
        tracing::info!(migration = name, "applied");
    }
    Ok(())
}

/// K_ref: made once (insert if absent), then the stored one.
fn card_ref_key(conn: &Connection) -> Result<CardRefKey, PaymentError> {
    conn.execute(
        "INSERT OR IGNORE INTO server_secrets (name, value) VALUES (?1, ?2)",
        params![card_ref::SECRET_NAME, &CardRefKey::random().bytes()[..]],
    )?;
    let v: Vec<u8> = conn.query_row(
        "SELECT value FROM server_secrets WHERE name = ?1",
        params![card_ref::SECRET_NAME],
        |r| r.get(0),
    )?;
    CardRefKey::from_stored(&v)
        .ok_or_else(|| PaymentError::Internal("stored card_ref_key is not 32 bytes".into()))
}

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Writer,
    card_ref: CardRefKey,
}

impl core::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Store(sqlite)")
    }
}

impl SqliteStore {
    /// Open (creating and migrating) the database and start the writer thread.
    pub fn open(path: &Path) -> Result<Self, PaymentError> {
        let conn = open_connection(path)?;
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(PaymentError::Internal(format!(
                "journal_mode is {mode}, want wal"
            )));
        }
        migrate(&conn)?;
        let card_ref = card_ref_key(&conn)?;
        let reader = open_connection(path)?;
        Ok(Self {
            writer: Writer::start_with_reader(conn, reader)?,
            card_ref,
        })
    }

    /// K_ref of the card references (see [`crate::card_ref`]).
    pub fn card_ref_key(&self) -> &CardRefKey {
        &self.card_ref
    }

    pub(crate) fn set_card_ref_key(&mut self, key: CardRefKey) {
        self.card_ref = key;
    }

    /// Run `f` on the writer connection inside its own savepoint; an `Err`
    /// rolls back only this job. Resolves after the group's commit.
    pub(crate) async fn write<R, F>(&self, f: F) -> Result<R, PaymentError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, PaymentError> + Send + 'static,
    {
        self.writer.run(f).await
    }

    /// Run a read-only query (committed data; no commit to wait for).
    pub(crate) async fn read<R, F>(&self, f: F) -> Result<R, PaymentError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, PaymentError> + Send + 'static,
    {
        self.writer.read(f).await
    }
}

/// The store's operations on SQLite (see [`super::Store`]).
impl SqliteStore {
    pub async fn get_txn(
        &self,
        merchant_id: &str,
        txn_id: &str,
    ) -> Result<Option<TxnRow>, PaymentError> {
        let (m, t) = (merchant_id.to_string(), txn_id.to_string());
        self.read(move |c| txn::get(c, &m, &t)).await
    }

    /// A card's transactions its log can still decide (drawn, unknown, failed).
    pub async fn card_undecided(&self, card: &CardId) -> Result<Vec<TxnRow>, PaymentError> {
        let card = *card;
        self.read(move |c| txn::card_undecided(c, &card)).await
    }

    /// The attempts at one order and their states.
    pub async fn order_attempts(
        &self,
        merchant_id: &str,
        order_ref: &str,
    ) -> Result<Vec<(String, TxnState)>, PaymentError> {
        let (m, o) = (merchant_id.to_string(), order_ref.to_string());
        self.read(move |c| txn::order_attempts(c, &m, &o)).await
    }

    /// Insert a drawn transaction; a unique constraint says why not.
    pub async fn insert_drawn(
        &self,
        row: TxnRow,
    ) -> Result<Result<(), InsertConflict>, PaymentError> {
        match self.write(move |c| txn::insert_drawn(c, &row)).await {
            // Rolled back: an attempt at the order was captured meanwhile.
            Err(PaymentError::OrderPaid) => Ok(Err(InsertConflict::OrderPaid)),
            other => other,
        }
    }

    /// Apply state changes in one database transaction; which applied.
    pub async fn apply(&self, changes: Vec<Transition>) -> Result<Vec<bool>, PaymentError> {
        self.write(move |c| changes.iter().map(|t| t.apply(c)).collect())
            .await
    }

    /// `drawn` past expiry + grace → `unknown`; how many.
    pub async fn sweep_expired(&self, now: u64, grace: u64) -> Result<usize, PaymentError> {
        self.write(move |c| txn::sweep_expired(c, now, grace)).await
    }

    pub async fn view(&self, merchant_id: &str, txn_id: &str) -> Result<TxnView, PaymentError> {
        let (m, t) = (merchant_id.to_string(), txn_id.to_string());
        let key = self.card_ref.clone();
        self.read(move |c| txn::view(c, &key, &m, &t)).await
    }

    pub async fn recovery_list(
        &self,
        cutoff: u64,
        merchant: Option<&str>,
    ) -> Result<Vec<RecoveryItem>, PaymentError> {
        let m = merchant.map(str::to_string);
        let key = self.card_ref.clone();
        self.read(move |c| txn::recovery_list(c, &key, cutoff, m.as_deref()))
            .await
    }

    /// Keep a shopper's report, and queue its webhook in the same transaction.
    pub async fn record_suspicious(
        &self,
        merchant_id: String,
        txn_id: String,
        page_origin: String,
        reason: String,
        at: u64,
        webhook: Option<WebhookEvent>,
    ) -> Result<bool, PaymentError> {
        self.write(move |c| {
            let new = txn::insert_suspicious(c, &merchant_id, &txn_id, &page_origin, &reason, at)?;
            if let (true, Some(ev)) = (new, &webhook) {
                outbox::enqueue(c, ev, at)?;
            }
            Ok(new)
        })
        .await
    }

    pub async fn suspicious_list(
        &self,
        merchant: Option<&str>,
        page: ReportsPage,
    ) -> Result<SuspiciousList, PaymentError> {
        let m = merchant.map(str::to_string);
        let key = self.card_ref.clone();
        self.read(move |c| txn::suspicious_list(c, &key, m.as_deref(), page))
            .await
    }

    pub async fn captured_total(&self, merchant_id: &str) -> Result<u64, PaymentError> {
        let m = merchant_id.to_string();
        self.read(move |c| txn::captured_total(c, &m)).await
    }

    /// Reserve `n` security module sequence numbers; the first.
    pub async fn reserve_seq(&self, terminal: String, n: u32) -> Result<u32, PaymentError> {
        self.write(move |c| txn::reserve_seq(c, &terminal, n)).await
    }

    /// Lease due webhooks for delivery.
    pub async fn lease_webhooks(
        &self,
        now: u64,
        lease_secs: u64,
        limit: u32,
    ) -> Result<Vec<Due>, PaymentError> {
        self.write(move |c| outbox::lease_due(c, now, lease_secs, limit))
            .await
    }

    pub async fn webhook_delivered(&self, id: i64, now: u64) -> Result<(), PaymentError> {
        self.write(move |c| outbox::mark_delivered(c, id, now))
            .await
    }

    pub async fn webhook_failed(
        &self,
        id: i64,
        next_at: u64,
        error: String,
    ) -> Result<(), PaymentError> {
        self.write(move |c| outbox::reschedule(c, id, next_at, &error))
            .await
    }

    /// A round trip through the writer: it and the database are alive.
    pub async fn health(&self) -> Result<(), PaymentError> {
        self.write(|_| Ok(())).await
    }

    /// Merchants with captured transactions waiting for a batch.
    pub async fn unbatched_merchants(&self) -> Result<Vec<String>, PaymentError> {
        self.read(clearing::unbatched_merchants).await
    }

    /// A merchant's captured transactions waiting for a batch (oldest first).
    pub async fn unbatched(
        &self,
        merchant_id: &str,
        limit: u32,
    ) -> Result<Vec<TxnRow>, PaymentError> {
        let m = merchant_id.to_string();
        self.read(move |c| clearing::unbatched(c, &m, limit)).await
    }

    /// Record a closed batch and mark its transactions, all or nothing.
    pub async fn record_batch(
        &self,
        batch: ClosedBatch,
        sha256: Vec<u8>,
        txn_ids: Vec<String>,
    ) -> Result<(), PaymentError> {
        self.write(move |c| clearing::record_batch(c, &batch, &sha256, &txn_ids))
            .await
    }

    /// Closed batches whose file is not in the spool yet.
    pub async fn unexported_batches(&self) -> Result<Vec<ClosedBatch>, PaymentError> {
        self.read(clearing::unexported).await
    }

    pub async fn batch_exported(&self, batch_id: String, now: u64) -> Result<(), PaymentError> {
        self.write(move |c| clearing::mark_exported(c, &batch_id, now))
            .await
    }

    pub async fn closed_batch(&self, batch_id: &str) -> Result<Option<ClosedBatch>, PaymentError> {
        let b = batch_id.to_string();
        self.read(move |c| clearing::batch(c, &b)).await
    }

    /// Newest purchase batch close time per merchant.
    pub async fn last_batch_close(&self) -> Result<Vec<(String, u64)>, PaymentError> {
        self.read(|c| clearing::last_close(c, "purchases")).await
    }

    /// Newest load batch close time per bank.
    pub async fn last_load_batch_close(&self) -> Result<Vec<(String, u64)>, PaymentError> {
        self.read(|c| clearing::last_close(c, "loads")).await
    }

    /// Banks with credited loads waiting for a batch.
    pub async fn unbatched_banks(&self) -> Result<Vec<String>, PaymentError> {
        self.read(clearing::unbatched_banks).await
    }

    /// A bank's credited loads waiting for a batch (oldest first).
    pub async fn unbatched_loads(
        &self,
        bank_id: &str,
        limit: u32,
    ) -> Result<Vec<LoadCandidate>, PaymentError> {
        let b = bank_id.to_string();
        self.read(move |c| clearing::unbatched_loads(c, &b, limit))
            .await
    }

    /// Every credited money-purse load, for reconciliation.
    pub async fn credited_loads(&self) -> Result<Vec<CapturedTxn>, PaymentError> {
        self.read(clearing::credited_loads).await
    }

    /// Every captured money-purse transaction, for reconciliation.
    pub async fn captured_transactions(&self) -> Result<Vec<CapturedTxn>, PaymentError> {
        self.read(clearing::captured).await
    }

    /// A merchant's captured takings per UTC day since `since`: (day, sum, count).
    pub async fn daily_takings(
        &self,
        merchant_id: &str,
        since: u64,
    ) -> Result<Vec<(u64, u64, u64)>, PaymentError> {
        let m = merchant_id.to_string();
        self.read(move |c| clearing::daily_takings(c, &m, since))
            .await
    }

    // ---- loads ------------------------------------------------------------

    pub async fn get_load(
        &self,
        bank_id: &str,
        txn_id: &str,
    ) -> Result<Option<LoadRow>, PaymentError> {
        let (b, t) = (bank_id.to_string(), txn_id.to_string());
        self.read(move |c| load::get(c, &b, &t)).await
    }

    /// A card's loads its proofs can still decide (drawn, unknown, failed).
    pub async fn card_open_loads(&self, card: &CardId) -> Result<Vec<LoadRow>, PaymentError> {
        let card = *card;
        self.read(move |c| load::card_open(c, &card)).await
    }

    /// A card's loads and purchases with an ATC strictly between `from` and `to`.
    pub async fn card_movements(
        &self,
        card: &CardId,
        from: u16,
        to: u16,
    ) -> Result<Vec<Movement>, PaymentError> {
        let card = *card;
        self.read(move |c| load::card_movements(c, &card, from, to))
            .await
    }

    /// Insert a drawn load; a unique constraint says why not.
    pub async fn insert_load_drawn(
        &self,
        row: LoadRow,
    ) -> Result<Result<(), LoadConflict>, PaymentError> {
        self.write(move |c| load::insert_drawn(c, &row)).await
    }

    /// Void a load never drawn (so it never can be); the row as it stands.
    pub async fn void_load(
        &self,
        bank_id: String,
        txn_id: String,
        now: u64,
        webhook: bool,
    ) -> Result<LoadRow, PaymentError> {
        let key = self.card_ref.clone();
        self.write(move |c| load::void(c, &key, &bank_id, &txn_id, now, webhook))
            .await
    }

    /// Apply load state changes in one database transaction; which applied.
    pub async fn apply_loads(
        &self,
        changes: Vec<LoadTransition>,
    ) -> Result<Vec<bool>, PaymentError> {
        self.write(move |c| changes.iter().map(|t| t.apply(c)).collect())
            .await
    }

    /// `drawn` loads past expiry + grace → `unknown`; how many.
    pub async fn sweep_loads(&self, now: u64, grace: u64) -> Result<usize, PaymentError> {
        self.write(move |c| load::sweep_expired(c, now, grace))
            .await
    }

    pub async fn load_view(&self, bank_id: &str, txn_id: &str) -> Result<LoadView, PaymentError> {
        let (b, t) = (bank_id.to_string(), txn_id.to_string());
        let key = self.card_ref.clone();
        self.read(move |c| load::view(c, &key, &b, &t)).await
    }

    /// Sum of credited amounts of a bank.
    pub async fn bank_credited_total(&self, bank_id: &str) -> Result<u64, PaymentError> {
        let b = bank_id.to_string();
        self.read(move |c| load::credited_total(c, &b)).await
    }
}

/// Statements run through SQLite's prepared-statement cache: the hot path
/// parses no SQL after warm-up.
/// One history row (`txn_log` or `load_log`: event, state, detail, at).
pub(crate) fn log_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<purse::merchant_api::LogEntry> {
    Ok(purse::merchant_api::LogEntry {
        event: r.get("event")?,
        state: r.get("state")?,
        detail: r.get("detail")?,
        at: r.get("at")?,
    })
}

pub(crate) fn exec<P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    p: P,
) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(p)
}

pub(crate) fn qrow<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(
    c: &Connection,
    sql: &str,
    p: P,
    f: F,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(p, f)
}

/// Which unique constraint an insert hit.
pub(crate) fn unique_violation(e: &rusqlite::Error) -> Option<&str> {
    match e {
        rusqlite::Error::SqliteFailure(f, Some(msg))
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Some(msg.as_str())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrations_upgrade_a_first_release_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            let c = open_connection(&path).unwrap();
            c.execute_batch(MIGRATIONS[0].1).unwrap();
            c.execute(
                "INSERT INTO sm_counter (terminal, seq) VALUES ('000000000001', 41)",
                [],
            )
            .unwrap();
            c.execute(
                "INSERT INTO txn_log (id, merchant_id, txn_id, event, state, at)
                 VALUES (7, 'M', 'T', 'draw', 'drawn', 1)",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let (seq, applied): (i64, i64) = store
            .read(|c| {
                Ok((
                    c.query_row("SELECT seq FROM sm_counter", [], |r| r.get(0))?,
                    c.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(seq, 41, "data kept");
        assert_eq!(applied, MIGRATIONS.len() as i64);
        // The history kept its rows and ids (0006 rebuilt it without
        // AUTOINCREMENT); a new entry comes after them.
        store
            .write(|c| txn::log_event(c, "M", "T", "complete", TxnState::Debited, "", 2))
            .await
            .unwrap();
        let log: Vec<(i64, String)> = store
            .read(|c| {
                let mut st = c.prepare("SELECT id, event FROM txn_log ORDER BY id")?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
            .unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0], (7, "draw".to_string()));
        assert!(log[1].0 > 7 && log[1].1 == "complete", "{log:?}");
        // Opening again applies nothing twice.
        drop(store);
        SqliteStore::open(&path).unwrap();
    }
}
