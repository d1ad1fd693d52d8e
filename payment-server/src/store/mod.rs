//! The transaction store: SQLite (one file, the default) or PostgreSQL
//! (several server instances on one database), chosen by the config
//! ([`crate::config::Database`]). [`Store`] is the one API the service uses:
//! named operations, the same on both backends.
//!
//! Only SQL runs here: the security module's crypto, sealing and JSON happen
//! on the request's task before or after.
//!
//! - [`txn`]: the `transactions` table's rows and state changes (and their SQLite SQL);
//! - [`load`]: the `loads` table, likewise;
//! - [`outbox`]: webhooks waiting for delivery;
//! - [`clearing`]: captured transactions waiting for a batch, closed batches;
//! - [`sqlite`]: the SQLite backend (one writer thread with group commit, [`writer`]),
//!   migrations in `migrations/sqlite/`;
//! - [`pg`]: the PostgreSQL backend (a connection pool; constraints, row locks and
//!   `SKIP LOCKED` make several instances one), migrations in `migrations/postgres/`.

pub mod clearing;
pub mod load;
pub mod outbox;
pub mod pg;
pub mod sqlite;
pub mod txn;
pub mod writer;

use std::collections::BTreeMap;

use purse::load::bank_api::LoadView;
use purse::merchant_api::{
    RecoveryItem, ReportsPage, SuspiciousList, SuspiciousListEntry, TxnState, TxnView,
};
use purse::types::CardId;
use purse::webhook::WebhookEvent;

use crate::config::Database;
use crate::error::PaymentError;
pub use clearing::{CapturedTxn, ClosedBatch, LoadCandidate};
pub use load::{LoadConflict, LoadDrawn, LoadRow, LoadTransition, Movement};
pub use outbox::Due;
pub use pg::PgStore;
pub use sqlite::SqliteStore;
pub use txn::{InsertConflict, Transition, TxnRow};

/// Handle to the store, on one backend. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Open the configured database: create or migrate the schema, start the
    /// SQLite writer thread or the PostgreSQL pool.
    pub async fn open(db: &Database) -> Result<Self, PaymentError> {
        Ok(match db {
            Database::Sqlite(path) => Self::Sqlite(SqliteStore::open(path)?),
            Database::Postgres(pg) => Self::Postgres(PgStore::connect(pg).await?),
        })
    }

    /// K_ref of the card references, loaded (or made) at open.
    pub fn card_ref_key(&self) -> &crate::card_ref::CardRefKey {
        match self {
            Self::Sqlite(s) => s.card_ref_key(),
            Self::Postgres(s) => s.card_ref_key(),
        }
    }

    /// Banks (by id) that get a merchant's card references (by merchant id):
    /// a merchant's own loyalty program (`card_refs_of`).
    pub fn with_bank_card_refs(mut self, banks: BTreeMap<String, String>) -> Self {
        let key = self.card_ref_key().clone().with_bank_parties(banks);
        match &mut self {
            Self::Sqlite(s) => s.set_card_ref_key(key),
            Self::Postgres(s) => s.set_card_ref_key(key),
        }
        self
    }

    /// Which backend, for logs and benchmarks.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// Every operation of the store, forwarded to the backend. Both backends
/// implement exactly this list (a missing one does not compile).
macro_rules! operations {
    ($(
        $(#[$doc:meta])*
        fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;
    )*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, PaymentError> {
                    match self {
                        Self::Sqlite(s) => s.$name($($arg),*).await,
                        Self::Postgres(s) => s.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

operations! {
    fn get_txn(&self, merchant_id: &str, txn_id: &str) -> Option<TxnRow>;
    /// A card's transactions its log can still decide (drawn, unknown, failed).
    fn card_undecided(&self, card: &CardId) -> Vec<TxnRow>;
    /// The attempts at one order and their states.
    fn order_attempts(&self, merchant_id: &str, order_ref: &str) -> Vec<(String, TxnState)>;
    /// Insert a drawn transaction; a unique constraint (or an attempt at the
    /// same order captured meanwhile) says why not.
    fn insert_drawn(&self, row: TxnRow) -> Result<(), InsertConflict>;
    /// Apply state changes in one database transaction; which applied. Each is
    /// a compare-and-set: it applies only if the row is still in a state the
    /// change may leave, with its history entry and webhook.
    fn apply(&self, changes: Vec<Transition>) -> Vec<bool>;
    /// `drawn` past expiry + grace → `unknown`; how many.
    fn sweep_expired(&self, now: u64, grace: u64) -> usize;
    fn view(&self, merchant_id: &str, txn_id: &str) -> TxnView;
    fn recovery_list(&self, cutoff: u64, merchant: Option<&str>) -> Vec<RecoveryItem>;
    /// Keep a shopper's report, and queue its webhook in the same transaction;
    /// the same report of the same transaction again is kept once (false).
    fn record_suspicious(
        &self,
        merchant_id: String,
        txn_id: String,
        page_origin: String,
        reason: String,
        at: u64,
        webhook: Option<WebhookEvent>,
    ) -> bool;
    /// A page of shopper reports, newest first, and the cursor of the next
    /// (older) page if there is one.
    fn suspicious_list(&self, merchant: Option<&str>, page: ReportsPage) -> SuspiciousList;
    fn captured_total(&self, merchant_id: &str) -> u64;
    /// Reserve `n` security module sequence numbers; the first.
    fn reserve_seq(&self, terminal: String, n: u32) -> u32;
    /// Lease due webhooks for delivery (no other deliverer gets them meanwhile).
    fn lease_webhooks(&self, now: u64, lease_secs: u64, limit: u32) -> Vec<Due>;
    fn webhook_delivered(&self, id: i64, now: u64) -> ();
    fn webhook_failed(&self, id: i64, next_at: u64, error: String) -> ();
    /// A round trip to the database: it (and the SQLite writer) are alive.
    fn health(&self) -> ();

    /// Merchants with captured transactions waiting for a batch.
    fn unbatched_merchants(&self) -> Vec<String>;
    /// A merchant's captured transactions waiting for a batch (oldest first).
    fn unbatched(&self, merchant_id: &str, limit: u32) -> Vec<TxnRow>;
    /// Record a closed batch and mark its transactions, all or nothing.
    fn record_batch(&self, batch: ClosedBatch, sha256: Vec<u8>, txn_ids: Vec<String>) -> ();
    /// Closed batches whose file is not in the spool yet.
    fn unexported_batches(&self) -> Vec<ClosedBatch>;
    fn batch_exported(&self, batch_id: String, now: u64) -> ();
    fn closed_batch(&self, batch_id: &str) -> Option<ClosedBatch>;
    /// Newest purchase batch close time per merchant.
    fn last_batch_close(&self) -> Vec<(String, u64)>;
    /// Newest load batch close time per bank.
    fn last_load_batch_close(&self) -> Vec<(String, u64)>;
    /// Banks with credited loads waiting for a batch.
    fn unbatched_banks(&self) -> Vec<String>;
    /// A bank's credited loads waiting for a batch (oldest first).
    fn unbatched_loads(&self, bank_id: &str, limit: u32) -> Vec<LoadCandidate>;
    /// Every credited money-purse load, for reconciliation.
    fn credited_loads(&self) -> Vec<CapturedTxn>;
    /// Every captured money-purse transaction, for reconciliation.
    fn captured_transactions(&self) -> Vec<CapturedTxn>;
    /// A merchant's captured takings per UTC day since `since`: (day, sum, count).
    fn daily_takings(&self, merchant_id: &str, since: u64) -> Vec<(u64, u64, u64)>;

    fn get_load(&self, bank_id: &str, txn_id: &str) -> Option<LoadRow>;
    /// A card's loads its proofs can still decide (drawn, unknown, failed).
    fn card_open_loads(&self, card: &CardId) -> Vec<LoadRow>;
    /// A card's loads and purchases with an ATC strictly between `from` and `to`.
    fn card_movements(&self, card: &CardId, from: u16, to: u16) -> Vec<Movement>;
    /// Insert a drawn load; a unique constraint says why not.
    fn insert_load_drawn(&self, row: LoadRow) -> Result<(), LoadConflict>;
    /// Void a load never drawn (so it never can be); the row as it stands.
    fn void_load(&self, bank_id: String, txn_id: String, now: u64, webhook: bool) -> LoadRow;
    /// Apply load state changes in one database transaction; which applied.
    fn apply_loads(&self, changes: Vec<LoadTransition>) -> Vec<bool>;
    /// `drawn` loads past expiry + grace → `unknown`; how many.
    fn sweep_loads(&self, now: u64, grace: u64) -> usize;
    fn load_view(&self, bank_id: &str, txn_id: &str) -> LoadView;
    /// Sum of credited amounts of a bank.
    fn bank_credited_total(&self, bank_id: &str) -> u64;
}

/// A page of shopper reports from the rows a backend read (its `id` and the
/// entry, newest first, at most `page.limit + 1` of them: the extra one only
/// says an older page exists). Both backends page through this one function.
pub(crate) fn reports_page(
    mut rows: Vec<(i64, SuspiciousListEntry)>,
    page: ReportsPage,
) -> SuspiciousList {
    let more = rows.len() > page.limit as usize;
    rows.truncate(page.limit as usize);
    let next = if more {
        rows.last().map(|(id, _)| *id)
    } else {
        None
    };
    SuspiciousList {
        reports: rows.into_iter().map(|(_, e)| e).collect(),
        next,
    }
}
