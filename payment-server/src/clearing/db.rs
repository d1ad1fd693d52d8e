//! The clearing database: open (WAL, `synchronous = FULL`) and migrate. The
//! migrations are the files in `migrations/clearing/`.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

const MIGRATIONS: [(&str, &str); 1] = [(
    "0001_clearing",
    include_str!("../../migrations/clearing/0001_clearing.sql"),
)];

pub fn open(path: &Path) -> rusqlite::Result<Connection> {
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

/// Open read-only (the payment server's reports).
pub fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(c)
}

/// `YYYY-MM-DD` of a Unix time (UTC).
pub fn iso_date(secs: u64) -> String {
    let (y, m, d) = purse::types::BcdDate::from_unix(secs).ymd();
    format!("{y:04}-{m:02}-{d:02}")
}
