//! The clearing database: SQLite (a file; WAL, `synchronous = FULL`) or
//! PostgreSQL (a `postgres://…` URL where the path goes), opened and migrated
//! here. The migrations are `migrations/clearing/*.sql` (SQLite) and
//! `migrations/clearing/postgres/*.sql`, applied in order, each once.
//!
//! The clearing code is synchronous and writes its SQL once, in `?1`-style
//! placeholders (translated to `$1` for PostgreSQL here) and in what both
//! dialects agree on (sums cast `AS BIGINT`, `INSERT … RETURNING id`).
//! [`Db`] gives it the few operations it needs: execute, query rows read by
//! column index or name, and a transaction (each posting step is one).
//!
//! PostgreSQL is reached through `tokio-postgres` on a thread of its own
//! (with its own small runtime), so the synchronous calls work from inside
//! the clearing process's async runtime too.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{mpsc, Arc};

use rusqlite::{params, Connection, OptionalExtension};
use tokio_postgres::types::{ToSql, Type};

const MIGRATIONS: [(&str, &str); 2] = [
    (
        "0001_clearing",
        include_str!("../../migrations/clearing/0001_clearing.sql"),
    ),
    (
        "0002_posted_once_by_txn",
        include_str!("../../migrations/clearing/0002_posted_once_by_txn.sql"),
    ),
];

const PG_MIGRATIONS: [(&str, &str); 2] = [
    (
        "clearing/0001_clearing",
        include_str!("../../migrations/clearing/postgres/0001_clearing.sql"),
    ),
    (
        "clearing/0002_posted_once_by_txn",
        include_str!("../../migrations/clearing/postgres/0002_posted_once_by_txn.sql"),
    ),
];

/// A clearing database error.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Pg(String),
    #[error("{0}")]
    Type(String),
}

fn pg_err(e: tokio_postgres::Error) -> DbError {
    match e.as_db_error() {
        Some(db) => DbError::Pg(format!("{} ({})", db.message(), db.code().code())),
        None => DbError::Pg(crate::pg_tls::describe(&e)),
    }
}

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<u64> for Val {
    fn from(v: u64) -> Self {
        Val::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<u32> for Val {
    fn from(v: u32) -> Self {
        Val::Int(v.into())
    }
}
impl From<u16> for Val {
    fn from(v: u16) -> Self {
        Val::Int(v.into())
    }
}
impl From<usize> for Val {
    fn from(v: usize) -> Self {
        Val::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_string())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(v.clone())
    }
}
impl From<std::borrow::Cow<'_, str>> for Val {
    fn from(v: std::borrow::Cow<'_, str>) -> Self {
        Val::Text(v.into_owned())
    }
}
impl From<Vec<u8>> for Val {
    fn from(v: Vec<u8>) -> Self {
        Val::Blob(v)
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Val::Null)
    }
}

/// `vals![a, b]`: the parameters of a statement.
macro_rules! vals {
    ($($x:expr),* $(,)?) => { vec![$($crate::clearing::db::Val::from($x)),*] };
}
pub(crate) use vals;

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Val::Null => ValueRef::Null,
            Val::Int(i) => ValueRef::Integer(*i),
            Val::Text(s) => ValueRef::Text(s.as_bytes()),
            Val::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// A row: its values by column, readable by index or column name.
#[derive(Debug, Clone)]
pub struct Row {
    names: Arc<Vec<String>>,
    vals: Vec<Val>,
}

/// A column: by index or by name.
pub trait Col: Copy + std::fmt::Debug {
    fn index(self, names: &[String]) -> Option<usize>;
}
impl Col for usize {
    fn index(self, names: &[String]) -> Option<usize> {
        (self < names.len()).then_some(self)
    }
}
impl Col for &str {
    fn index(self, names: &[String]) -> Option<usize> {
        names.iter().position(|n| n == self)
    }
}

/// A Rust value from a column.
pub trait FromVal: Sized {
    fn from_val(v: &Val) -> Option<Self>;
}
impl FromVal for i64 {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromVal for u64 {
    fn from_val(v: &Val) -> Option<Self> {
        i64::from_val(v).and_then(|i| u64::try_from(i).ok())
    }
}
impl FromVal for String {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl FromVal for Vec<u8> {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}
impl<T: FromVal> FromVal for Option<T> {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Null => Some(None),
            v => T::from_val(v).map(Some),
        }
    }
}

impl Row {
    pub fn get<T: FromVal>(&self, col: impl Col) -> Result<T, DbError> {
        let i = col
            .index(&self.names)
            .ok_or_else(|| DbError::Type(format!("no column {col:?}")))?;
        T::from_val(&self.vals[i]).ok_or_else(|| {
            DbError::Type(format!(
                "column {}: unexpected value {:?} for {}",
                self.names[i],
                self.vals[i],
                std::any::type_name::<T>()
            ))
        })
    }
}

/// The clearing database.
pub enum Db {
    Sqlite(Connection),
    Pg(PgWorker),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Db::Sqlite(_) => write!(f, "Db(sqlite)"),
            Db::Pg(w) => write!(f, "Db(postgres {})", w.shown),
        }
    }
}

/// Whether a configured clearing database is a PostgreSQL URL.
pub fn is_pg_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// The database for logs: a path as is, a URL with its password hidden.
pub fn shown(path: &Path) -> String {
    let s = path.to_string_lossy();
    if is_pg_url(&s) {
        crate::config::redact_password(&s)
    } else {
        s.into_owned()
    }
}

/// Open (and create or migrate) the clearing database: a SQLite file, or a
/// PostgreSQL `postgres://…` URL given as the path.
pub fn open(path: &Path) -> Result<Db, DbError> {
    match path.to_str() {
        Some(url) if is_pg_url(url) => Ok(Db::Pg(PgWorker::connect(url, Mode::Migrate)?)),
        _ => Ok(Db::Sqlite(open_sqlite(path)?)),
    }
}

fn open_sqlite(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    for (name, sql) in MIGRATIONS {
        let done: Option<String> = c
            .query_row(
                "SELECT name FROM schema_migrations WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        if done.is_none() {
            let tx = c.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?1, strftime('%s','now'))",
                params![name],
            )?;
            tx.commit()?;
        }
    }
    Ok(c)
}

/// Whether the reports have a clearing database to read: the SQLite file
/// exists, or it is a PostgreSQL URL.
pub fn reachable(path: &Path) -> bool {
    path.to_str().is_some_and(is_pg_url) || path.exists()
}

/// Open for reading (the payment server's reports): a SQLite file
/// read-only, or the PostgreSQL database of the URL in a read-only session
/// (nothing migrated: the clearing process creates the tables).
pub fn open_read_only(path: &Path) -> Result<Db, DbError> {
    match path.to_str() {
        Some(url) if is_pg_url(url) => Ok(Db::Pg(PgWorker::connect(url, Mode::ReadOnly)?)),
        _ => {
            let c = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            Ok(Db::Sqlite(c))
        }
    }
}

impl Db {
    /// Run a statement; the rows it changed.
    pub fn execute(&self, sql: &str, params: Vec<Val>) -> Result<u64, DbError> {
        match self {
            Db::Sqlite(c) => {
                Ok(c.prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(params.iter()))? as u64)
            }
            Db::Pg(w) => match w.call(Op::Execute(dollar_params(sql), params))? {
                Reply::Count(n) => Ok(n),
                Reply::Rows(_) => Err(DbError::Type("rows for an execute".into())),
            },
        }
    }

    /// Run a query; its rows.
    pub fn query(&self, sql: &str, params: Vec<Val>) -> Result<Vec<Row>, DbError> {
        match self {
            Db::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let names: Arc<Vec<String>> =
                    Arc::new(st.column_names().iter().map(|s| s.to_string()).collect());
                let n = names.len();
                let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut vals = Vec::with_capacity(n);
                    for i in 0..n {
                        use rusqlite::types::ValueRef;
                        vals.push(match r.get_ref(i)? {
                            ValueRef::Null => Val::Null,
                            ValueRef::Integer(i) => Val::Int(i),
                            ValueRef::Real(_) => {
                                return Err(DbError::Type(format!(
                                    "column {}: a real number",
                                    names[i]
                                )))
                            }
                            ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                            ValueRef::Blob(b) => Val::Blob(b.to_vec()),
                        });
                    }
                    out.push(Row {
                        names: names.clone(),
                        vals,
                    });
                }
                Ok(out)
            }
            Db::Pg(w) => match w.call(Op::Query(dollar_params(sql), params))? {
                Reply::Rows(r) => Ok(r),
                Reply::Count(_) => Err(DbError::Type("a count for a query".into())),
            },
        }
    }

    /// The first row, if any.
    pub fn query_opt(&self, sql: &str, params: Vec<Val>) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The one row.
    pub fn query_one(&self, sql: &str, params: Vec<Val>) -> Result<Row, DbError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| DbError::Type(format!("no row: {sql}")))
    }

    /// Fresh planner statistics for `table` on PostgreSQL (nothing on
    /// SQLite, which plans each statement on its own and has no cached
    /// generic plans to go stale). See [`super::post`]'s use: a table that
    /// grew from nothing within one run has none yet, and a plan chosen when
    /// it was empty (a scan) would stay until autovacuum's next ANALYZE.
    pub fn analyze(&self, table: &str) -> Result<(), DbError> {
        match self {
            Db::Sqlite(_) => Ok(()),
            Db::Pg(w) => w.call(Op::Batch(format!("ANALYZE {table}"))).map(|_| ()),
        }
    }

    /// The planner's idea of `table`'s rows on PostgreSQL (−1: never analysed);
    /// `None` on SQLite.
    pub fn planned_rows(&self, table: &str) -> Result<Option<i64>, DbError> {
        match self {
            Db::Sqlite(_) => Ok(None),
            Db::Pg(_) => Ok(Some(
                self.query_one(
                    "SELECT CAST(reltuples AS BIGINT) FROM pg_class WHERE oid = to_regclass(?1)",
                    vec![Val::from(table)],
                )?
                .get(0)?,
            )),
        }
    }

    fn batch(&self, sql: &str) -> Result<(), DbError> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Pg(w) => w.call(Op::Batch(sql.to_string())).map(|_| ()),
        }
    }

    /// Run `f` in one transaction: committed if it returns `Ok`, rolled back
    /// otherwise.
    pub fn transaction<T, E: From<DbError>>(
        &mut self,
        f: impl FnOnce(&Db) -> Result<T, E>,
    ) -> Result<T, E> {
        self.batch("BEGIN")?;
        match f(self) {
            Ok(v) => {
                self.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                if let Err(r) = self.batch("ROLLBACK") {
                    tracing::warn!(error = %r, "clearing database: rollback failed");
                }
                Err(e)
            }
        }
    }
}

/// `?1` → `$1`: the clearing SQL is written once for both backends.
pub fn dollar_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '?' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(ch);
        }
    }
    out
}

enum Op {
    Execute(String, Vec<Val>),
    Query(String, Vec<Val>),
    Batch(String),
}

enum Reply {
    Count(u64),
    Rows(Vec<Row>),
}

type Request = (Op, mpsc::Sender<Result<Reply, DbError>>);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Create or migrate the schema first.
    Migrate,
    /// A read-only session.
    ReadOnly,
}

/// A PostgreSQL connection served by a thread of its own.
pub struct PgWorker {
    tx: mpsc::Sender<Request>,
    shown: String,
}

impl PgWorker {
    fn connect(url: &str, mode: Mode) -> Result<Self, DbError> {
        let shown = crate::config::redact_password(url);
        let target = crate::pg_tls::target(url).map_err(|e| DbError::Pg(e.to_string()))?;
        let (tx, rx) = mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), DbError>>();
        std::thread::Builder::new()
            .name("clearing-pg".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(DbError::Pg(format!("runtime: {e}"))));
                        return;
                    }
                };
                rt.block_on(async move {
                    let client = match crate::pg_tls::connect(target).await {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = ready_tx.send(Err(pg_err(e)));
                            return;
                        }
                    };
                    let mut w = Worker {
                        client,
                        cache: HashMap::new(),
                    };
                    let ready = match mode {
                        Mode::Migrate => w.migrate().await,
                        Mode::ReadOnly => w
                            .client
                            .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                            .await
                            .map_err(pg_err),
                    };
                    let failed = ready.is_err();
                    let _ = ready_tx.send(ready);
                    if failed {
                        return;
                    }
                    // Requests until the Db is dropped.
                    while let Ok((op, reply)) = rx.recv() {
                        let _ = reply.send(w.run(op).await);
                    }
                });
            })
            .map_err(|e| DbError::Pg(format!("thread: {e}")))?;
        ready_rx
            .recv()
            .map_err(|_| DbError::Pg("the connection thread stopped".into()))??;
        tracing::info!(database = %shown, "clearing database on postgres");
        Ok(Self { tx, shown })
    }

    fn call(&self, op: Op) -> Result<Reply, DbError> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send((op, tx))
            .map_err(|_| DbError::Pg("the connection thread stopped".into()))?;
        rx.recv()
            .map_err(|_| DbError::Pg("the connection thread stopped".into()))?
    }
}

struct Worker {
    client: tokio_postgres::Client,
    cache: HashMap<String, tokio_postgres::Statement>,
}

type Param = Box<dyn ToSql + Sync + Send>;

/// A value as the type the statement's parameter has.
fn param(v: Val, ty: &Type) -> Result<Param, DbError> {
    let bad = |v: &Val| DbError::Type(format!("parameter {v:?} for a {ty} column"));
    Ok(match (v, ty) {
        (Val::Null, t) if *t == Type::INT8 => Box::new(None::<i64>),
        (Val::Null, t) if *t == Type::INT4 => Box::new(None::<i32>),
        (Val::Null, t) if *t == Type::BYTEA => Box::new(None::<Vec<u8>>),
        (Val::Null, _) => Box::new(None::<String>),
        (Val::Int(i), t) if *t == Type::INT8 => Box::new(i),
        (Val::Int(i), t) if *t == Type::INT4 => {
            Box::new(i32::try_from(i).map_err(|_| bad(&Val::Int(i)))?)
        }
        (Val::Text(s), _) => Box::new(s),
        (Val::Blob(b), t) if *t == Type::BYTEA => Box::new(b),
        (v, _) => return Err(bad(&v)),
    })
}

fn value(r: &tokio_postgres::Row, i: usize) -> Result<Val, DbError> {
    let ty = r.columns()[i].type_();
    let v = if *ty == Type::INT8 {
        r.try_get::<_, Option<i64>>(i).map(|v| v.map(Val::Int))
    } else if *ty == Type::INT4 {
        r.try_get::<_, Option<i32>>(i)
            .map(|v| v.map(|x| Val::Int(x.into())))
    } else if *ty == Type::INT2 {
        r.try_get::<_, Option<i16>>(i)
            .map(|v| v.map(|x| Val::Int(x.into())))
    } else if *ty == Type::BOOL {
        r.try_get::<_, Option<bool>>(i)
            .map(|v| v.map(|x| Val::Int(x.into())))
    } else if *ty == Type::BYTEA {
        r.try_get::<_, Option<Vec<u8>>>(i).map(|v| v.map(Val::Blob))
    } else if *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::NAME {
        r.try_get::<_, Option<String>>(i).map(|v| v.map(Val::Text))
    } else {
        return Err(DbError::Type(format!(
            "column {} has type {ty} (cast sums AS BIGINT)",
            r.columns()[i].name()
        )));
    };
    Ok(v.map_err(pg_err)?.unwrap_or(Val::Null))
}

impl Worker {
    async fn migrate(&mut self) -> Result<(), DbError> {
        let schema: Option<String> = self
            .client
            .query_one("SELECT current_schema()", &[])
            .await
            .map_err(pg_err)?
            .get(0);
        let Some(schema) = schema else {
            return Err(DbError::Pg(
                "no schema to create tables in (the search_path names none that exists)".into(),
            ));
        };
        let tx = self.client.transaction().await.map_err(pg_err)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('cardpay clearing migrations ' || $1::text))",
            &[&schema],
        )
        .await
        .map_err(pg_err)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await
        .map_err(pg_err)?;
        for (name, sql) in PG_MIGRATIONS {
            let done = tx
                .query_opt("SELECT 1 FROM schema_migrations WHERE name = $1", &[&name])
                .await
                .map_err(pg_err)?
                .is_some();
            if done {
                continue;
            }
            tx.batch_execute(sql)
                .await
                .map_err(|e| DbError::Pg(format!("migration {name}: {}", pg_err(e))))?;
            tx.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES ($1, extract(epoch from now())::bigint)",
                &[&name],
            )
            .await
            .map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)
    }

    async fn statement(&mut self, sql: &str) -> Result<tokio_postgres::Statement, DbError> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await.map_err(pg_err)?;
        self.cache.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    async fn run(&mut self, op: Op) -> Result<Reply, DbError> {
        match op {
            Op::Batch(sql) => {
                self.client.batch_execute(&sql).await.map_err(pg_err)?;
                Ok(Reply::Count(0))
            }
            Op::Execute(sql, vals) => {
                let st = self.statement(&sql).await?;
                let ps = params_for(&st, vals)?;
                let refs: Vec<&(dyn ToSql + Sync)> = ps
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                Ok(Reply::Count(
                    self.client.execute(&st, &refs).await.map_err(pg_err)?,
                ))
            }
            Op::Query(sql, vals) => {
                let st = self.statement(&sql).await?;
                let ps = params_for(&st, vals)?;
                let refs: Vec<&(dyn ToSql + Sync)> = ps
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                let rows = self.client.query(&st, &refs).await.map_err(pg_err)?;
                let names: Arc<Vec<String>> =
                    Arc::new(st.columns().iter().map(|c| c.name().to_string()).collect());
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let vals = (0..names.len())
                        .map(|i| value(r, i))
                        .collect::<Result<_, _>>()?;
                    out.push(Row {
                        names: names.clone(),
                        vals,
                    });
                }
                Ok(Reply::Rows(out))
            }
        }
    }
}

fn params_for(st: &tokio_postgres::Statement, vals: Vec<Val>) -> Result<Vec<Param>, DbError> {
    if vals.len() != st.params().len() {
        return Err(DbError::Type(format!(
            "{} parameters for {}",
            vals.len(),
            st.params().len()
        )));
    }
    vals.into_iter()
        .zip(st.params())
        .map(|(v, t)| param(v, t))
        .collect()
}

/// `YYYY-MM-DD` of a Unix time (UTC).
pub fn iso_date(secs: u64) -> String {
    let (y, m, d) = purse::types::BcdDate::from_unix(secs).ymd();
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_and_nothing_else_changes() {
        assert_eq!(
            dollar_params("SELECT a FROM t WHERE b = ?1 AND c = ?12 AND d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c = $12 AND d = '?'"
        );
    }

    #[test]
    fn a_failed_transaction_leaves_nothing_and_rows_read_by_name_and_type() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(&dir.path().join("c.sqlite")).unwrap();
        let r: Result<(), DbError> = db.transaction(|tx| {
            tx.execute(
                "INSERT INTO journal (kind, ref, memo, at) VALUES (?1, ?2, ?3, ?4)",
                vals!["payout", "PO-1", "memo", 5u64],
            )?;
            Err(DbError::Type("stop".into()))
        });
        assert!(r.is_err());
        let n: i64 = db
            .query_one("SELECT COUNT(*) AS n FROM journal", vec![])
            .unwrap()
            .get("n")
            .unwrap();
        assert_eq!(n, 0, "rolled back");
        db.transaction(|tx| {
            tx.execute(
                "INSERT INTO journal (kind, ref, memo, at) VALUES (?1, ?2, ?3, ?4)",
                vals!["payout", "PO-1", "", 5u64],
            )
        })
        .unwrap();
        let row = db
            .query_one("SELECT ref, at, memo FROM journal", vec![])
            .unwrap();
        assert_eq!(row.get::<String>("ref").unwrap(), "PO-1");
        assert_eq!(row.get::<u64>(1).unwrap(), 5);
        assert!(row.get::<i64>("ref").is_err(), "text is no integer");
        assert!(row.get::<String>("nope").is_err(), "no such column");
    }
}
