//! The PostgreSQL backend: any number of payment-server instances on one
//! database behave as one.
//!
//! - Idempotency and "one undecided attempt per order" are unique
//!   constraints (`transactions_txn_id`, `transactions_card_atc`,
//!   `transactions_open_order`, `loads_txn_id`, `loads_card_atc`): an insert
//!   that loses a race is refused by the database, whichever instance made it.
//! - Every state change is one compare-and-set `UPDATE … WHERE state IN (…)`
//!   with its history entry and webhook in the same statement (data-modifying
//!   CTEs); under READ COMMITTED a concurrent change to the same row waits for
//!   the first to commit and then re-checks the state, so none is lost and
//!   none applies twice. Several changes apply in one transaction.
//! - The sweepers and the webhook deliverers take rows with
//!   `FOR UPDATE SKIP LOCKED`: instances never take the same row.
//! - The security module's sequence numbers are reserved in blocks by one
//!   atomic `INSERT … ON CONFLICT DO UPDATE … RETURNING`.
//! - Migrations (`migrations/postgres/`) run at start in one transaction under
//!   an advisory lock, so instances starting together apply each once.
//!
//! Driver: `tokio-postgres` with the `deadpool-postgres` pool (statements
//! prepared once per connection and cached; queries on one connection are
//! pipelined). No TLS to the database: run it on the host or a private network.

mod clearing;
mod load;
mod outbox;
mod txn;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use purse::load::bank_api::LoadView;
use purse::merchant_api::{RecoveryItem, ReportsPage, SuspiciousList, TxnState, TxnView};
use purse::types::CardId;
use purse::webhook::WebhookEvent;

use super::{
    CapturedTxn, ClosedBatch, Due, InsertConflict, LoadCandidate, LoadConflict, LoadRow,
    LoadTransition, Movement, Transition, TxnRow,
};
use crate::card_ref::{self, CardRefKey};
use crate::config::{redact_password, PgDatabase};
use crate::error::PaymentError;

/// The migrations, in order. Never edit one that has shipped: add another.
const MIGRATIONS: [(&str, &str); 3] = [
    (
        "0001_initial",
        include_str!("../../../migrations/postgres/0001_initial.sql"),
    ),
    (
        "0002_clearing",
        include_str!("../../../migrations/postgres/0002_clearing.sql"),
    ),
    (
        "0003_server_secrets",
        include_str!("../../../migrations/postgres/0003_server_secrets.sql"),
    ),
];

/// The PostgreSQL store: a pool of connections. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// K_ref of the card references (the same for every instance).
    card_ref: CardRefKey,
    /// For logs (password redacted).
    url: String,
}

impl core::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Store(postgres {})", self.url)
    }
}

pub(crate) fn pg_error(e: tokio_postgres::Error) -> PaymentError {
    match e.as_db_error() {
        Some(db) => {
            PaymentError::Internal(format!("postgres: {} ({})", db.message(), db.code().code()))
        }
        None => PaymentError::Internal(format!("postgres: {}", crate::pg_tls::describe(&e))),
    }
}

/// The unique constraint (or index) an insert hit, if that is the error.
pub(crate) fn unique_violation(e: &tokio_postgres::Error) -> Option<&str> {
    let db = e.as_db_error()?;
    (db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
        .then(|| db.constraint())
        .flatten()
}

/// A stored integer back into its Rust type.
/// History rows (`txn_log` or `load_log`: event, state, detail, at).
pub(crate) fn log_entries(
    rows: &[tokio_postgres::Row],
) -> Result<Vec<purse::merchant_api::LogEntry>, PaymentError> {
    rows.iter()
        .map(|r| {
            Ok(purse::merchant_api::LogEntry {
                event: r.try_get("event").map_err(pg_error)?,
                state: r.try_get("state").map_err(pg_error)?,
                detail: r.try_get("detail").map_err(pg_error)?,
                at: num(r.try_get("at").map_err(pg_error)?, "time")?,
            })
        })
        .collect()
}

/// Run a sweep statement (`$1` now, `$2` the cutoff, `$3` the history
/// detail; answers the count moved): one shape for purchases and loads.
pub(crate) async fn sweep(
    c: &impl deadpool_postgres::GenericClient,
    sql: &str,
    now: u64,
    grace: u64,
    detail: &str,
) -> Result<usize, PaymentError> {
    let st = c.prepare_cached(sql).await.map_err(pg_error)?;
    let n: i64 = c
        .query_one(&st, &[&big(now), &big(now.saturating_sub(grace)), &detail])
        .await
        .map_err(pg_error)?
        .get(0);
    num(n, "count")
}

pub(crate) fn num<T: TryFrom<i64>>(v: i64, what: &str) -> Result<T, PaymentError> {
    T::try_from(v).map_err(|_| PaymentError::Internal(format!("stored {what} out of range")))
}

/// A `u64` (seconds, sums) for a BIGINT column.
pub(crate) fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Connect, and create or migrate the schema (once, whichever instance
    /// comes first).
    pub async fn connect(db: &PgDatabase) -> Result<Self, PaymentError> {
        let shown = redact_password(&db.url);
        let target =
            crate::pg_tls::target(&db.url).map_err(|e| PaymentError::Internal(e.to_string()))?;
        let recycling = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let tls = target.tls.is_some();
        let manager = match target.tls {
            Some(t) => Manager::from_config(target.config, t, recycling()),
            None => Manager::from_config(target.config, NoTls, recycling()),
        };
        let pool = Pool::builder(manager)
            .max_size(db.pool_size)
            .build()
            .map_err(|e| PaymentError::Internal(format!("database pool: {e}")))?;
        let mut c = pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => pg_error(e),
            other => PaymentError::Internal(format!("postgres pool ({shown}): {other}")),
        })?;
        migrate(&mut c).await?;
        let card_ref = card_ref_key(&c).await?;
        drop(c);
        let store = Self {
            pool,
            card_ref,
            url: shown,
        };
        tracing::info!(database = %store.url, pool = db.pool_size, tls, "postgres store ready");
        Ok(store)
    }

    /// K_ref of the card references (see [`crate::card_ref`]).
    pub fn card_ref_key(&self) -> &CardRefKey {
        &self.card_ref
    }

    pub(crate) fn set_card_ref_key(&mut self, key: CardRefKey) {
        self.card_ref = key;
    }

    pub(crate) async fn conn(&self) -> Result<Object, PaymentError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => pg_error(e),
            other => PaymentError::Internal(format!("postgres pool ({}): {other}", self.url)),
        })
    }
}

/// K_ref: the first instance's random key is kept (insert if absent), every
/// instance reads the stored one.
async fn card_ref_key(c: &Object) -> Result<CardRefKey, PaymentError> {
    c.execute(
        "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&card_ref::SECRET_NAME, &&CardRefKey::random().bytes()[..]],
    )
    .await
    .map_err(pg_error)?;
    let v: Vec<u8> = c
        .query_one(
            "SELECT value FROM server_secrets WHERE name = $1",
            &[&card_ref::SECRET_NAME],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    CardRefKey::from_stored(&v)
        .ok_or_else(|| PaymentError::Internal("stored card_ref_key is not 32 bytes".into()))
}

/// Apply the migrations not applied yet, in one transaction under an advisory
/// lock on the schema: instances starting together wait for each other, and
/// each migration runs once.
async fn migrate(c: &mut Object) -> Result<(), PaymentError> {
    let schema: Option<String> = c
        .query_one("SELECT current_schema()", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    let Some(schema) = schema else {
        return Err(PaymentError::Internal(
            "postgres: no schema to create tables in (the search_path names none that exists)"
                .into(),
        ));
    };
    let tx = c.transaction().await.map_err(pg_error)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('cardpay migrations ' || $1::text))",
        &[&schema],
    )
    .await
    .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await
    .map_err(pg_error)?;
    for (name, sql) in MIGRATIONS {
        let done = tx
            .query_opt("SELECT 1 FROM schema_migrations WHERE name = $1", &[&name])
            .await
            .map_err(pg_error)?
            .is_some();
        if done {
            continue;
        }
        tx.batch_execute(sql).await.map_err(|e| match pg_error(e) {
            PaymentError::Internal(m) => PaymentError::Internal(format!("migration {name}: {m}")),
            other => other,
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES ($1, extract(epoch from now())::bigint)",
            &[&name],
        )
        .await
        .map_err(pg_error)?;
        tracing::info!(migration = name, %schema, "applied");
    }
    tx.commit().await.map_err(pg_error)
}

/// The store's operations on PostgreSQL (see [`super::Store`]).
impl PgStore {
    pub async fn get_txn(
        &self,
        merchant_id: &str,
        txn_id: &str,
    ) -> Result<Option<TxnRow>, PaymentError> {
        txn::get(&self.conn().await?, merchant_id, txn_id).await
    }

    pub async fn card_undecided(&self, card: &CardId) -> Result<Vec<TxnRow>, PaymentError> {
        txn::card_undecided(&self.conn().await?, card).await
    }

    pub async fn order_attempts(
        &self,
        merchant_id: &str,
        order_ref: &str,
    ) -> Result<Vec<(String, TxnState)>, PaymentError> {
        txn::order_attempts(&self.conn().await?, merchant_id, order_ref).await
    }

    pub async fn insert_drawn(
        &self,
        row: TxnRow,
    ) -> Result<Result<(), InsertConflict>, PaymentError> {
        txn::insert_drawn(&mut self.conn().await?, &row).await
    }

    pub async fn apply(&self, changes: Vec<Transition>) -> Result<Vec<bool>, PaymentError> {
        txn::apply(&mut self.conn().await?, &changes).await
    }

    pub async fn sweep_expired(&self, now: u64, grace: u64) -> Result<usize, PaymentError> {
        txn::sweep_expired(&self.conn().await?, now, grace).await
    }

    pub async fn view(&self, merchant_id: &str, txn_id: &str) -> Result<TxnView, PaymentError> {
        txn::view(&self.conn().await?, &self.card_ref, merchant_id, txn_id).await
    }

    pub async fn recovery_list(
        &self,
        cutoff: u64,
        merchant: Option<&str>,
    ) -> Result<Vec<RecoveryItem>, PaymentError> {
        txn::recovery_list(&self.conn().await?, &self.card_ref, cutoff, merchant).await
    }

    pub async fn record_suspicious(
        &self,
        merchant_id: String,
        txn_id: String,
        page_origin: String,
        reason: String,
        at: u64,
        webhook: Option<WebhookEvent>,
    ) -> Result<bool, PaymentError> {
        let webhook = webhook
            .map(|ev| outbox::Queued::merchant(&ev))
            .transpose()?;
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_error)?;
        // The same report of the same transaction again (a replay) is kept once.
        let n = tx
            .execute(
                "INSERT INTO suspicious_reports (merchant_id, txn_id, page_origin, reason, at)
                 SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM suspicious_reports
                    WHERE merchant_id = $1 AND txn_id = $2 AND page_origin = $3 AND reason = $4)",
                &[&merchant_id, &txn_id, &page_origin, &reason, &big(at)],
            )
            .await
            .map_err(pg_error)?;
        if let (1, Some(q)) = (n, &webhook) {
            outbox::enqueue(&tx, q, at).await?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(n == 1)
    }

    pub async fn suspicious_list(
        &self,
        merchant: Option<&str>,
        page: ReportsPage,
    ) -> Result<SuspiciousList, PaymentError> {
        txn::suspicious_list(&self.conn().await?, &self.card_ref, merchant, page).await
    }

    pub async fn captured_total(&self, merchant_id: &str) -> Result<u64, PaymentError> {
        txn::captured_total(&self.conn().await?, merchant_id).await
    }

    pub async fn reserve_seq(&self, terminal: String, n: u32) -> Result<u32, PaymentError> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO sm_counter (terminal, seq) VALUES ($1, $2)
                 ON CONFLICT (terminal) DO UPDATE SET seq = sm_counter.seq + EXCLUDED.seq
                 RETURNING seq",
            )
            .await
            .map_err(pg_error)?;
        let end: i64 = c
            .query_one(&st, &[&terminal, &i64::from(n)])
            .await
            .map_err(pg_error)?
            .get(0);
        let end = u32::try_from(end)
            .map_err(|_| PaymentError::Internal("security module sequence exhausted".into()))?;
        Ok(end - n + 1)
    }

    pub async fn lease_webhooks(
        &self,
        now: u64,
        lease_secs: u64,
        limit: u32,
    ) -> Result<Vec<Due>, PaymentError> {
        outbox::lease_due(&self.conn().await?, now, lease_secs, limit).await
    }

    pub async fn webhook_delivered(&self, id: i64, now: u64) -> Result<(), PaymentError> {
        outbox::mark_delivered(&self.conn().await?, id, now).await
    }

    pub async fn webhook_failed(
        &self,
        id: i64,
        next_at: u64,
        error: String,
    ) -> Result<(), PaymentError> {
        outbox::reschedule(&self.conn().await?, id, next_at, &error).await
    }

    pub async fn health(&self) -> Result<(), PaymentError> {
        let c = self.conn().await?;
        c.simple_query("SELECT 1").await.map_err(pg_error)?;
        Ok(())
    }

    // ---- clearing ---------------------------------------------------------

    pub async fn unbatched_merchants(&self) -> Result<Vec<String>, PaymentError> {
        clearing::unbatched_merchants(&self.conn().await?).await
    }

    pub async fn unbatched(
        &self,
        merchant_id: &str,
        limit: u32,
    ) -> Result<Vec<TxnRow>, PaymentError> {
        clearing::unbatched(&self.conn().await?, merchant_id, limit).await
    }

    pub async fn record_batch(
        &self,
        batch: ClosedBatch,
        sha256: Vec<u8>,
        txn_ids: Vec<String>,
    ) -> Result<(), PaymentError> {
        clearing::record_batch(&mut self.conn().await?, &batch, &sha256, &txn_ids).await
    }

    pub async fn unexported_batches(&self) -> Result<Vec<ClosedBatch>, PaymentError> {
        clearing::unexported(&self.conn().await?).await
    }

    pub async fn batch_exported(&self, batch_id: String, now: u64) -> Result<(), PaymentError> {
        clearing::mark_exported(&self.conn().await?, &batch_id, now).await
    }

    pub async fn closed_batch(&self, batch_id: &str) -> Result<Option<ClosedBatch>, PaymentError> {
        clearing::batch(&self.conn().await?, batch_id).await
    }

    pub async fn last_batch_close(&self) -> Result<Vec<(String, u64)>, PaymentError> {
        clearing::last_close(&self.conn().await?, "purchases").await
    }

    pub async fn last_load_batch_close(&self) -> Result<Vec<(String, u64)>, PaymentError> {
        clearing::last_close(&self.conn().await?, "loads").await
    }

    pub async fn unbatched_banks(&self) -> Result<Vec<String>, PaymentError> {
        clearing::unbatched_banks(&self.conn().await?).await
    }

    pub async fn unbatched_loads(
        &self,
        bank_id: &str,
        limit: u32,
    ) -> Result<Vec<LoadCandidate>, PaymentError> {
        clearing::unbatched_loads(&self.conn().await?, bank_id, limit).await
    }

    pub async fn credited_loads(&self) -> Result<Vec<CapturedTxn>, PaymentError> {
        clearing::credited_loads(&self.conn().await?).await
    }

    pub async fn captured_transactions(&self) -> Result<Vec<CapturedTxn>, PaymentError> {
        clearing::captured(&self.conn().await?).await
    }

    pub async fn daily_takings(
        &self,
        merchant_id: &str,
        since: u64,
    ) -> Result<Vec<(u64, u64, u64)>, PaymentError> {
        clearing::daily_takings(&self.conn().await?, merchant_id, since).await
    }

    // ---- loads ------------------------------------------------------------

    pub async fn get_load(
        &self,
        bank_id: &str,
        txn_id: &str,
    ) -> Result<Option<LoadRow>, PaymentError> {
        load::get(&self.conn().await?, bank_id, txn_id).await
    }

    pub async fn card_open_loads(&self, card: &CardId) -> Result<Vec<LoadRow>, PaymentError> {
        load::card_open(&self.conn().await?, card).await
    }

    pub async fn card_movements(
        &self,
        card: &CardId,
        from: u16,
        to: u16,
    ) -> Result<Vec<Movement>, PaymentError> {
        load::card_movements(&self.conn().await?, card, from, to).await
    }

    pub async fn insert_load_drawn(
        &self,
        row: LoadRow,
    ) -> Result<Result<(), LoadConflict>, PaymentError> {
        load::insert_drawn(&self.conn().await?, &row).await
    }

    pub async fn void_load(
        &self,
        bank_id: String,
        txn_id: String,
        now: u64,
        webhook: bool,
    ) -> Result<LoadRow, PaymentError> {
        load::void(
            &mut self.conn().await?,
            &self.card_ref,
            &bank_id,
            &txn_id,
            now,
            webhook,
        )
        .await
    }

    pub async fn apply_loads(
        &self,
        changes: Vec<LoadTransition>,
    ) -> Result<Vec<bool>, PaymentError> {
        load::apply(&mut self.conn().await?, &changes).await
    }

    pub async fn sweep_loads(&self, now: u64, grace: u64) -> Result<usize, PaymentError> {
        load::sweep_expired(&self.conn().await?, now, grace).await
    }

    pub async fn load_view(&self, bank_id: &str, txn_id: &str) -> Result<LoadView, PaymentError> {
        load::view(&self.conn().await?, &self.card_ref, bank_id, txn_id).await
    }

    pub async fn bank_credited_total(&self, bank_id: &str) -> Result<u64, PaymentError> {
        load::credited_total(&self.conn().await?, bank_id).await
    }
}
