//! The database under test, and the security module under test, chosen by
//! the environment so the same tests run on every backend:
//!
//! - `CARDPAY_TEST_DB=postgres` (with `CARDPAY_PG_URL=postgres://…`, as
//!   `eval "$(scripts/pg.sh env)"` sets): each [`TestDb`] is a fresh schema on
//!   that PostgreSQL (tests run in parallel, each in its own schema);
//!   otherwise a SQLite file in the test's temp dir.
//! - `CARDPAY_TEST_SM=pkcs11`: the security module is the process's SoftHSM2
//!   test token ([`cardpay_pkcs11::softhsm::TestToken`]) holding the TEST
//!   master keys; otherwise the software module with the TEST keys in the TOML.
//!
//! Tests read the database straight (captures, states) with [`TestDb::int`]
//! and [`TestDb::text`]: SQL both backends run (`?1` parameters, written as
//! `$1` for PostgreSQL; cast sums `AS BIGINT`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::{TEST_MKL, TEST_MKP};

/// The database of one test server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestDb {
    Sqlite(PathBuf),
    /// A schema of its own on a shared PostgreSQL.
    Postgres {
        /// The server's URL (no schema).
        base: String,
        schema: String,
    },
}

/// Which backend the tests of this process use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// From `CARDPAY_TEST_DB` (`sqlite`, the default, or `postgres`).
    pub fn from_env() -> Self {
        match std::env::var("CARDPAY_TEST_DB").as_deref() {
            Ok("postgres") | Ok("pg") => Self::Postgres,
            Ok(u) if u.starts_with("postgres://") => Self::Postgres,
            Ok("") | Ok("sqlite") | Err(_) => Self::Sqlite,
            Ok(other) => panic!("CARDPAY_TEST_DB={other}: want sqlite or postgres"),
        }
    }
}

/// The PostgreSQL the tests use: `CARDPAY_TEST_DB` if it is a URL, else
/// `CARDPAY_PG_URL` (scripts/pg.sh).
pub fn pg_url_from_env() -> String {
    match std::env::var("CARDPAY_TEST_DB") {
        Ok(u) if u.starts_with("postgres://") => u,
        _ => std::env::var("CARDPAY_PG_URL").unwrap_or_else(|_| {
            panic!(
                "CARDPAY_TEST_DB=postgres needs CARDPAY_PG_URL: \
                 scripts/pg.sh up && eval \"$(scripts/pg.sh env)\""
            )
        }),
    }
}

fn random_hex() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("OS random source");
    hex::encode(b)
}

impl TestDb {
    /// The backend of `CARDPAY_TEST_DB`: a SQLite file in `dir`, or a fresh
    /// PostgreSQL schema.
    pub fn in_dir(dir: &Path) -> Self {
        match Backend::from_env() {
            Backend::Sqlite => Self::Sqlite(dir.join("payments.sqlite")),
            Backend::Postgres => Self::fresh_schema(&pg_url_from_env()),
        }
    }

    /// A new, empty schema on the PostgreSQL at `base`.
    pub fn fresh_schema(base: &str) -> Self {
        let schema = format!("t_{}", random_hex());
        let db = Self::Postgres {
            base: base.to_string(),
            schema: schema.clone(),
        };
        pg_blocking(base, move |c| {
            c.batch_execute(&format!("CREATE SCHEMA {schema}"))
        })
        .unwrap_or_else(|e| panic!("creating a test schema on {base}: {e}"));
        db
    }

    /// What the server's config names: a SQLite path, or a URL whose
    /// `search_path` is the schema.
    pub fn url_or_path(&self) -> String {
        match self {
            Self::Sqlite(p) => p.display().to_string(),
            Self::Postgres { base, schema } => {
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}options=-c%20search_path%3D{schema}")
            }
        }
    }

    /// The config line.
    pub fn toml(&self) -> String {
        format!("db_path = {:?}\n", self.url_or_path())
    }

    /// The SQLite file (for tests that read or copy it as a file).
    pub fn sqlite_path(&self) -> &Path {
        match self {
            Self::Sqlite(p) => p,
            Self::Postgres { .. } => panic!("this test reads the SQLite file itself"),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }

    /// The first row's columns as integers (NULL as 0), or `None` without a row.
    pub fn ints(&self, sql: &str, args: &[&str]) -> Option<Vec<i64>> {
        match self {
            Self::Sqlite(p) => {
                let c = rusqlite::Connection::open(p).expect("open the test database");
                let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let n = st.column_count();
                let mut rows = st
                    .query(rusqlite::params_from_iter(args))
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let row = rows.next().unwrap_or_else(|e| panic!("{sql}: {e}"))?;
                Some(
                    (0..n)
                        .map(|i| {
                            row.get::<_, Option<i64>>(i)
                                .expect("an integer")
                                .unwrap_or(0)
                        })
                        .collect(),
                )
            }
            Self::Postgres { .. } => {
                let sql = dollar_params(sql);
                let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
                self.pg(move |c| {
                    let p: Vec<&(dyn postgres::types::ToSql + Sync)> = args
                        .iter()
                        .map(|a| a as &(dyn postgres::types::ToSql + Sync))
                        .collect();
                    let row = c.query_opt(&sql, &p)?;
                    Ok(row.map(|r| {
                        (0..r.len())
                            .map(|i| {
                                r.try_get::<_, Option<i64>>(i)
                                    .unwrap_or_else(|e| {
                                        panic!("{sql}: column {i}: {e} (cast sums AS BIGINT)")
                                    })
                                    .unwrap_or(0)
                            })
                            .collect()
                    }))
                })
            }
        }
    }

    /// One integer (the first column of the first row; 0 without a row).
    pub fn int(&self, sql: &str, args: &[&str]) -> i64 {
        self.ints(sql, args).map(|v| v[0]).unwrap_or(0)
    }

    /// The first column of the first row as text, if there is a row.
    pub fn text(&self, sql: &str, args: &[&str]) -> Option<String> {
        match self {
            Self::Sqlite(p) => {
                let c = rusqlite::Connection::open(p).expect("open the test database");
                use rusqlite::OptionalExtension;
                c.query_row(sql, rusqlite::params_from_iter(args), |r| r.get(0))
                    .optional()
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            Self::Postgres { .. } => {
                let sql = dollar_params(sql);
                let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
                self.pg(move |c| {
                    let p: Vec<&(dyn postgres::types::ToSql + Sync)> = args
                        .iter()
                        .map(|a| a as &(dyn postgres::types::ToSql + Sync))
                        .collect();
                    Ok(c.query_opt(&sql, &p)?.map(|r| r.get(0)))
                })
            }
        }
    }

    /// Run `f` on a connection to this schema (from a thread of its own, so
    /// it works inside the tests' async runtime).
    fn pg<T: Send>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send,
    ) -> T {
        let url = self.url_or_path();
        pg_blocking(&url, f).unwrap_or_else(|e| panic!("test query on {url}: {e}"))
    }
}

/// `?1` → `$1`: the tests' SQL written once for both backends (as the
/// clearing code's).
fn dollar_params(sql: &str) -> String {
    payment_server::clearing::db::dollar_params(sql)
}

/// A synchronous PostgreSQL call on a thread of its own.
pub fn pg_blocking<T: Send>(
    url: &str,
    f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send,
) -> Result<T, postgres::Error> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut c = postgres::Client::connect(url, postgres::NoTls)?;
            f(&mut c)
        })
        .join()
        .expect("test database thread")
    })
}

/// Which security module the tests use, from `CARDPAY_TEST_SM`.
pub fn pkcs11_from_env() -> bool {
    match std::env::var("CARDPAY_TEST_SM").as_deref() {
        Ok("pkcs11") => true,
        Ok("") | Ok("software") | Err(_) => false,
        Ok(other) => panic!("CARDPAY_TEST_SM={other}: want software or pkcs11"),
    }
}

/// The `[security_module]` section of the test configs: the TEST keys in the
/// file, or (`pkcs11`) the process's SoftHSM2 token holding them.
pub fn security_module_toml(pkcs11: bool) -> String {
    let mut t = String::from("[security_module]\nterminal = \"000000000001\"\n");
    if pkcs11 {
        let token = test_token();
        let cfg = token.config();
        t.push_str(&format!(
            "[security_module.pkcs11]\nmodule = {:?}\ntoken_label = {:?}\npin = {{ file = {:?} }}\n",
            cfg.module.display().to_string(),
            cfg.token_label,
            token.pin_file().display().to_string(),
        ));
    } else {
        t.push_str(&format!(
            "[[security_module.keys]]\nversion = 1\nmkp = \"{TEST_MKP}\"\nmkl = \"{TEST_MKL}\"\n"
        ));
    }
    t
}

/// The process's SoftHSM2 token with the TEST master keys of version 1
/// imported (once).
pub fn test_token() -> &'static cardpay_pkcs11::softhsm::TestToken {
    static READY: OnceLock<()> = OnceLock::new();
    let token = cardpay_pkcs11::softhsm::TestToken::shared();
    READY.get_or_init(|| {
        let key = |h: &str| purse::crypto::DesKey::from_hex(h).expect("hex");
        cardpay_pkcs11::import_master_keys(&token.config(), 1, &key(TEST_MKP), &key(TEST_MKL))
            .expect("import the TEST master keys into the test token");
    });
    token
}

/// A PostgreSQL for a test that needs one whatever `CARDPAY_TEST_DB` says
/// (several instances on one database): `CARDPAY_PG_URL` when set
/// (scripts/test.sh sets it), else a private throw-away server started with
/// `scripts/pg.sh` in its own directory and port, stopped when dropped.
pub struct TestPg {
    pub url: String,
    private: Option<(PathBuf, u16)>,
}

impl TestPg {
    pub fn get() -> Self {
        if let Ok(url) = std::env::var("CARDPAY_PG_URL") {
            return Self { url, private: None };
        }
        Self::private(None)
    }

    /// A private throw-away server whatever the environment says; with
    /// `tls_dir` (server.pem, server.key) it also accepts TLS
    /// (`CARDPAY_PG_TLS_DIR` of scripts/pg.sh).
    pub fn private(tls_dir: Option<&Path>) -> Self {
        let dir = std::env::temp_dir().join(format!("cardpay-pg-test-{}", random_hex()));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut up = std::process::Command::new("bash");
        up.arg(pg_script())
            .arg("up")
            .env("CARDPAY_PG_DIR", &dir)
            .env("CARDPAY_PG_PORT", port.to_string());
        if let Some(tls) = tls_dir {
            up.env("CARDPAY_PG_TLS_DIR", tls);
        }
        let out = up.output().expect("run scripts/pg.sh");
        assert!(
            out.status.success(),
            "scripts/pg.sh up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Self {
            url,
            private: Some((dir, port)),
        }
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        if let Some((dir, port)) = &self.private {
            let _ = std::process::Command::new("bash")
                .arg(pg_script())
                .arg("down")
                .env("CARDPAY_PG_DIR", dir)
                .env("CARDPAY_PG_PORT", port.to_string())
                .output();
        }
    }
}

/// `scripts/pg.sh` of this checkout.
pub fn pg_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg.sh")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_parameters_become_postgres_ones() {
        assert_eq!(
            dollar_params("SELECT a FROM t WHERE b = ?1 AND c = ?12 AND d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c = $12 AND d = '?'"
        );
    }
}
