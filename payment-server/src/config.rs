//! Configuration: a TOML file (merchants and their keys, security module key
//! versions), with secrets optionally taken from the environment.
//!
//! Secrets are parsed into zeroizing key types at once and never printed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use purse::crypto::DesKey;
use purse::session::{Key32, VerifyMode};
use purse::types::Terminal;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Tls(#[from] cardpay_tls::TlsError),
}

/// The file as written (secrets as hex strings, or names of env variables).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The SQLite file; or a `postgres://…` URL (the same as `database_url`).
    #[serde(default)]
    pub db_path: Option<PathBuf>,
    /// PostgreSQL: `postgres://user[:password]@host:port/database[?options]`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// The name of an env variable holding the PostgreSQL URL (keeps its
    /// password out of the file).
    #[serde(default)]
    pub database_url_env: Option<String>,
    /// Connections each instance keeps to PostgreSQL (default 16).
    #[serde(default)]
    pub database_pool_size: Option<usize>,
    /// Static files of the payment origin (widget iframe page, checkout.js).
    #[serde(default)]
    pub www_dir: Option<PathBuf>,
    /// Origins allowed to call the API cross-origin (CORS); empty = same origin only.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// A `drawn` transaction this long past its session's expiry becomes
    /// `unknown` (only the card's log can decide it then).
    #[serde(default = "default_grace")]
    pub recovery_grace_secs: u64,
    /// How often the recovery sweeper runs.
    #[serde(default = "default_sweep")]
    pub sweep_interval_secs: u64,
    /// Longest wait between two deliveries of an unacknowledged webhook.
    #[serde(default = "default_backoff")]
    pub webhook_max_backoff_secs: u64,
    /// Maximum request body in bytes.
    #[serde(default = "default_body_limit")]
    pub body_limit: usize,
    /// Bearer token of the operator (recovery API); or `operator_token_env`.
    #[serde(default)]
    pub operator_token: Option<String>,
    #[serde(default)]
    pub operator_token_env: Option<String>,
    /// The server's certificate and key. Without it the server refuses to
    /// start, unless `--insecure-http` is given (local development only).
    #[serde(default)]
    pub tls: Option<TlsFile>,
    /// Extra CA certificate(s) (PEM) to trust for outgoing calls (webhooks),
    /// besides the system's roots: e.g. the local test CA of scripts/certs.sh.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    pub security_module: SecurityModuleFile,
    #[serde(default)]
    pub merchants: Vec<MerchantFile>,
    /// Banks that load cards through this server (the load server).
    #[serde(default)]
    pub banks: Vec<BankFile>,
    /// Batches for clearing (docs/clearing.md); absent: no batches are closed.
    #[serde(default)]
    pub clearing: Option<ClearingFile>,
}

/// `[clearing]`: how this server closes batches for the concentration point.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearingFile {
    /// The id clearing knows the signing key by.
    pub key_id: String,
    /// Ed25519 signing key (64 hex digits, the seed), or `signing_key_env`.
    #[serde(default)]
    pub signing_key: Option<String>,
    #[serde(default)]
    pub signing_key_env: Option<String>,
    /// The spool batch files are written to (clearing's inbox).
    pub spool: PathBuf,
    /// Close batches every this many seconds; 0: only on demand.
    #[serde(default)]
    pub batch_interval_secs: u64,
    /// The clearing database, read for the merchants' settlement pages.
    #[serde(default)]
    pub clearing_db: Option<PathBuf>,
}

/// `[clearing]` resolved.
pub struct ClearingProducer {
    pub key_id: String,
    pub key: ed25519_dalek::SigningKey,
    pub spool: PathBuf,
    pub batch_interval_secs: u64,
    pub clearing_db: Option<PathBuf>,
}

impl core::fmt::Debug for ClearingProducer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClearingProducer")
            .field("key_id", &self.key_id)
            .field("spool", &self.spool)
            .field("batch_interval_secs", &self.batch_interval_secs)
            .field(
                "clearing_db",
                &self.clearing_db.as_deref().map(crate::clearing::db::shown),
            )
            .finish_non_exhaustive()
    }
}

/// `[tls]`: PEM files.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// The server certificate, then any intermediate CA certificates.
    pub cert_file: PathBuf,
    /// Its private key.
    pub key_file: PathBuf,
}

fn default_listen() -> String {
    "127.0.0.1:8440".into()
}
fn default_grace() -> u64 {
    300
}
fn default_sweep() -> u64 {
    30
}
fn default_backoff() -> u64 {
    300
}
fn default_body_limit() -> usize {
    64 * 1024
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityModuleFile {
    /// Terminal id (12 hex digits).
    pub terminal: String,
    /// Key versions. Each key is hex in the file, or read from the env variable
    /// `CARDPAY_SM_MKP_<version>` / `CARDPAY_SM_MKL_<version>` when absent here.
    #[serde(default)]
    pub keys: Vec<KeyVersionFile>,
    /// Extra key versions taken only from the environment.
    #[serde(default)]
    pub env_key_versions: Vec<u8>,
    /// The master keys in a PKCS#11 token instead (docs/pkcs11.md): then no
    /// key may be in this file or the environment.
    #[serde(default)]
    pub pkcs11: Option<cardpay_pkcs11::Pkcs11Config>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyVersionFile {
    pub version: u8,
    #[serde(default)]
    pub mkp: Option<String>,
    #[serde(default)]
    pub mkl: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantFile {
    pub id: String,
    pub name: String,
    /// K_mp as 64 hex digits, or `key_env` naming an env variable holding it.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub key_env: Option<String>,
    /// Page origins the merchant's sessions may name (required, at least one).
    #[serde(default)]
    pub origins: Vec<String>,
    /// Verify modes this merchant may use (required, at least one).
    #[serde(default)]
    pub verify_modes: Vec<VerifyMode>,
    /// Where signed webhooks go (every state change of its transactions).
    #[serde(default)]
    pub webhook_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankFile {
    pub id: String,
    pub name: String,
    /// K_bl as 64 hex digits, or `key_env` naming an env variable holding it.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub key_env: Option<String>,
    /// Page origins of the bank that embed the widget (required, at least one).
    #[serde(default)]
    pub origins: Vec<String>,
    /// Purses the bank may load (default: money only; a loyalty program: points).
    #[serde(default = "default_purses")]
    pub purses: Vec<purse::types::PurseId>,
    /// Where signed load webhooks go.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// A merchant's own loyalty program: the merchant id whose card
    /// references this bank gets (so the points it loads and the merchant's
    /// purchases name a card alike). Default: the bank's own references.
    #[serde(default)]
    pub card_refs_of: Option<String>,
}

fn default_purses() -> Vec<purse::types::PurseId> {
    vec![purse::types::PurseId::Money]
}

/// A bank as the load server uses it.
#[derive(Clone)]
pub struct BankEntry {
    pub id: String,
    pub name: String,
    /// `K_bl`, shared with the bank.
    pub key: Key32,
    /// `K_wh`, derived from K_bl: signs the bank's webhooks.
    pub webhook_key: Key32,
    pub origins: Vec<String>,
    pub purses: Vec<purse::types::PurseId>,
    pub webhook_url: Option<String>,
    /// The merchant whose card references this bank gets (its own if None).
    pub card_refs_of: Option<String>,
}

impl core::fmt::Debug for BankEntry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BankEntry")
            .field("id", &self.id)
            .field("origins", &self.origins)
            .field("purses", &self.purses)
            .field("webhook_url", &self.webhook_url)
            .field("card_refs_of", &self.card_refs_of)
            .finish_non_exhaustive()
    }
}

/// A merchant as the service uses it.
#[derive(Clone)]
pub struct MerchantEntry {
    pub id: String,
    pub name: String,
    pub key: Key32,
    /// `K_wh`, derived from the merchant key: signs its webhooks.
    pub webhook_key: Key32,
    pub origins: Vec<String>,
    pub verify_modes: Vec<VerifyMode>,
    pub webhook_url: Option<String>,
}

impl core::fmt::Debug for MerchantEntry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MerchantEntry")
            .field("id", &self.id)
            .field("origins", &self.origins)
            .field("verify_modes", &self.verify_modes)
            .field("webhook_url", &self.webhook_url)
            .finish_non_exhaustive()
    }
}

/// Security module key material of one version.
pub struct KeyVersion {
    pub version: u8,
    pub mkp: DesKey,
    pub mkl: DesKey,
}

/// Where the master keys are.
pub enum KeyStore {
    /// In process memory (TOML or environment).
    Software(Vec<KeyVersion>),
    /// Non-extractable objects in a PKCS#11 token; loaded by `payment-server hsm import`.
    Pkcs11(cardpay_pkcs11::Pkcs11Config),
}

/// Where the transactions, loads and webhooks are kept.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (one server process).
    Sqlite(PathBuf),
    /// A PostgreSQL database (any number of server processes).
    Postgres(PgDatabase),
}

/// A PostgreSQL database and how many connections an instance keeps to it.
#[derive(Clone, PartialEq, Eq)]
pub struct PgDatabase {
    /// `postgres://…` (may hold a password: never printed, see `Debug`).
    pub url: String,
    pub pool_size: usize,
}

/// Connections per instance unless `database_pool_size` says otherwise.
pub const DEFAULT_PG_POOL: usize = 16;

impl Database {
    /// A `postgres://` or `postgresql://` URL is PostgreSQL; anything else a SQLite path.
    pub fn from_path_or_url(s: &str) -> Self {
        if is_pg_url(s) {
            Self::Postgres(PgDatabase {
                url: s.to_string(),
                pool_size: DEFAULT_PG_POOL,
            })
        } else {
            Self::Sqlite(PathBuf::from(s))
        }
    }
}

fn is_pg_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

impl core::fmt::Debug for Database {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "sqlite {}", p.display()),
            Self::Postgres(pg) => write!(
                f,
                "postgres {} (pool {})",
                redact_password(&pg.url),
                pg.pool_size
            ),
        }
    }
}

/// The URL with its password (between `user:` and `@`) replaced by `***`, and
/// any `password=` parameter too.
pub fn redact_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    // The credentials end where the driver (tokio-postgres) ends them: at the
    // first '@', so a password may hold '/', '?' or ':' unencoded.
    let (userinfo, rest) = match rest.split_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, rest),
    };
    let (host, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match userinfo {
        Some(u) => {
            let (user, password) = u.split_once(':').map_or((u, None), |(u, p)| (u, Some(p)));
            if user.contains(['/', '?', '=']) {
                // An '@' inside the path or query (`h/db?password=a@b`) also ends
                // "credentials" for the driver: that part is hidden whole.
                format!("***@{host}")
            } else if password.is_some() {
                format!("{user}:***@{host}")
            } else {
                format!("{user}@{host}")
            }
        }
        None => host.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", q.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Everything the service needs, resolved and validated.
pub struct Config {
    pub listen: String,
    pub database: Database,
    pub www_dir: Option<PathBuf>,
    /// The widget build's version in `www_dir` (`pkg/manifest.json`), read at start.
    pub www_version: Option<String>,
    pub cors_origins: Vec<String>,
    pub recovery_grace_secs: u64,
    pub sweep_interval_secs: u64,
    pub webhook_max_backoff_secs: u64,
    pub body_limit: usize,
    pub operator_token: Option<String>,
    pub terminal: Terminal,
    pub keys: KeyStore,
    pub merchants: BTreeMap<String, MerchantEntry>,
    pub clearing: Option<ClearingProducer>,
    pub banks: BTreeMap<String, BankEntry>,
    /// `[tls]`, if configured (see [`crate::transport`]).
    pub tls: Option<cardpay_tls::TlsFiles>,
    pub ca_file: Option<PathBuf>,
    /// The client of outgoing calls (webhooks): rustls, the system's roots
    /// plus `ca_file`; it verifies every certificate.
    pub webhook_client: reqwest::Client,
}

impl core::fmt::Debug for Config {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database", &self.database)
            .field("www_dir", &self.www_dir)
            .field("terminal", &self.terminal)
            .field(
                "keys",
                &match &self.keys {
                    KeyStore::Software(v) => {
                        format!(
                            "software {:?}",
                            v.iter().map(|k| k.version).collect::<Vec<_>>()
                        )
                    }
                    KeyStore::Pkcs11(c) => format!("pkcs11 token {:?}", c.token_label),
                },
            )
            .field("merchants", &self.merchants.keys().collect::<Vec<_>>())
            .field("clearing", &self.clearing)
            .field("banks", &self.banks.keys().collect::<Vec<_>>())
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

fn inv(s: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(s.into())
}

impl Config {
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
        Self::from_toml(&text, |k| std::env::var(k).ok())
    }

    /// Parse TOML; `env` looks up environment variables (injected for tests).
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let f: ConfigFile = toml::from_str(text)?;
        Self::resolve(f, env)
    }

    pub fn resolve(
        f: ConfigFile,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let terminal = Terminal::parse_hex(&f.security_module.terminal)
            .map_err(|_| inv("security_module.terminal must be 12 hex digits"))?;
        let des = |v: u8, which: &str, inline: &Option<String>| -> Result<DesKey, ConfigError> {
            let var = format!("CARDPAY_SM_{}_{v}", which.to_uppercase());
            let hex = inline.clone().or_else(|| env(&var)).ok_or_else(|| {
                inv(format!(
                    "key version {v}: {which} missing (config or ${var})"
                ))
            })?;
            DesKey::from_hex(hex.trim())
                .map_err(|_| inv(format!("key version {v}: {which} must be 32 hex digits")))
        };
        let sm = &f.security_module;
        if sm.pkcs11.is_some() && (!sm.keys.is_empty() || !sm.env_key_versions.is_empty()) {
            return Err(inv(
                "security_module: with [security_module.pkcs11] the master keys live in the token; \
                 remove `keys` and `env_key_versions` (load them with `payment-server hsm import`)",
            ));
        }
        let mut key_versions = Vec::new();
        for k in &f.security_module.keys {
            key_versions.push(KeyVersion {
                version: k.version,
                mkp: des(k.version, "mkp", &k.mkp)?,
                mkl: des(k.version, "mkl", &k.mkl)?,
            });
        }
        for &v in &f.security_module.env_key_versions {
            key_versions.push(KeyVersion {
                version: v,
                mkp: des(v, "mkp", &None)?,
                mkl: des(v, "mkl", &None)?,
            });
        }
        let keys = match f.security_module.pkcs11 {
            Some(p) => KeyStore::Pkcs11(p),
            None if key_versions.is_empty() => {
                return Err(inv("security_module needs at least one key version"))
            }
            None => KeyStore::Software(key_versions),
        };
        let mut merchants = BTreeMap::new();
        for m in f.merchants {
            if m.id.is_empty() || m.id.len() > 64 {
                return Err(inv("merchant id must be 1..64 characters"));
            }
            let hex = match (&m.key, &m.key_env) {
                (Some(k), _) => k.clone(),
                (None, Some(var)) => {
                    env(var).ok_or_else(|| inv(format!("merchant {}: ${var} not set", m.id)))?
                }
                (None, None) => {
                    return Err(inv(format!("merchant {}: key or key_env required", m.id)))
                }
            };
            let key = Key32::from_hex(&hex)
                .map_err(|_| inv(format!("merchant {}: key must be 64 hex digits", m.id)))?;
            // Safe defaults: nothing is allowed that the operator did not write.
            if m.origins.is_empty() {
                return Err(inv(format!(
                    "merchant {}: `origins` is empty; list the page origins that embed the widget, \
                     e.g. origins = [\"https://shop.example\"]",
                    m.id
                )));
            }
            if m.verify_modes.is_empty() {
                return Err(inv(format!(
                    "merchant {}: `verify_modes` is empty; name the modes it may use, \
                     e.g. verify_modes = [\"payment_server\"] (others: security_module, client, merchant)",
                    m.id
                )));
            }
            if let Some(u) = &m.webhook_url {
                if !(u.starts_with("https://") || u.starts_with("http://")) {
                    return Err(inv(format!(
                        "merchant {}: webhook_url must be an http(s) URL",
                        m.id
                    )));
                }
            }
            let webhook_key = purse::webhook::webhook_key(&key, &m.id);
            let entry = MerchantEntry {
                id: m.id.clone(),
                name: m.name,
                key,
                webhook_key,
                origins: m.origins,
                verify_modes: m.verify_modes,
                webhook_url: m.webhook_url,
            };
            if merchants.insert(m.id.clone(), entry).is_some() {
                return Err(inv(format!("merchant {} listed twice", m.id)));
            }
        }
        let banks = resolve_banks(f.banks, &env)?;
        if let Some((b, m)) = banks
            .values()
            .filter_map(|b| Some((&b.id, b.card_refs_of.as_ref()?)))
            .find(|(_, m)| !merchants.contains_key(*m))
        {
            return Err(inv(format!(
                "bank {b}: card_refs_of = \"{m}\" names no merchant"
            )));
        }
        let operator_token = match (f.operator_token, f.operator_token_env) {
            (Some(t), _) => Some(t),
            (None, Some(var)) => env(&var),
            _ => None,
        };
        let database = resolve_database(
            f.db_path,
            f.database_url,
            f.database_url_env,
            f.database_pool_size,
            &env,
        )?;
        let clearing = match f.clearing {
            None => None,
            Some(c) => {
                let hex = match (&c.signing_key, &c.signing_key_env) {
                    (Some(k), _) => k.clone(),
                    (None, Some(var)) => {
                        env(var).ok_or_else(|| inv(format!("clearing: ${var} not set")))?
                    }
                    (None, None) => {
                        return Err(inv("clearing: signing_key or signing_key_env required"))
                    }
                };
                let key = crate::clearing::batch::signing_key_from_hex(&hex)
                    .ok_or_else(|| inv("clearing: signing_key must be 64 hex digits"))?;
                if !crate::ids::ok(&c.key_id) {
                    return Err(inv(format!(
                        "clearing: key_id must be {}",
                        crate::ids::RULE
                    )));
                }
                Some(ClearingProducer {
                    key_id: c.key_id,
                    key,
                    spool: c.spool,
                    batch_interval_secs: c.batch_interval_secs,
                    clearing_db: c.clearing_db,
                })
            }
        };
        let webhook_client = cardpay_tls::http_client(f.ca_file.as_deref())?;
        let www_version = match &f.www_dir {
            Some(dir) => {
                crate::http::www::check_precompressed(dir).map_err(inv)?;
                crate::http::www::build_version(dir).map_err(inv)?
            }
            None => None,
        };
        Ok(Self {
            listen: f.listen,
            database,
            www_dir: f.www_dir,
            www_version,
            cors_origins: f.cors_origins,
            recovery_grace_secs: f.recovery_grace_secs,
            sweep_interval_secs: f.sweep_interval_secs.max(1),
            webhook_max_backoff_secs: f.webhook_max_backoff_secs.max(1),
            body_limit: f.body_limit,
            operator_token,
            terminal,
            keys,
            merchants,
            clearing,
            banks,
            tls: f.tls.map(|t| cardpay_tls::TlsFiles {
                cert_file: t.cert_file,
                key_file: t.key_file,
            }),
            ca_file: f.ca_file,
            webhook_client,
        })
    }
}

/// `db_path`, `database_url` or `database_url_env`: exactly one.
fn resolve_database(
    db_path: Option<PathBuf>,
    url: Option<String>,
    url_env: Option<String>,
    pool_size: Option<usize>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Database, ConfigError> {
    let url = match (url, url_env) {
        (Some(_), Some(_)) => {
            return Err(inv("database_url and database_url_env: write one of them"))
        }
        (Some(u), None) => Some(u),
        (None, Some(var)) => Some(
            env(&var)
                .ok_or_else(|| inv(format!("${var} not set")))
                .map(|u| u.trim().to_string())?,
        ),
        (None, None) => None,
    };
    let db = match (db_path, url) {
        (Some(_), Some(_)) => return Err(inv(
            "db_path and database_url both given: write one (a SQLite path, or a postgres:// URL)",
        )),
        (Some(p), None) => Database::from_path_or_url(&p.to_string_lossy()),
        (None, Some(u)) if is_pg_url(&u) => Database::from_path_or_url(&u),
        (None, Some(_)) => {
            return Err(inv(
                "database_url must be a postgres:// URL (a SQLite file goes in db_path)",
            ))
        }
        (None, None) => return Err(inv(
            "no database: write db_path = \"payments.sqlite\" or database_url = \"postgres://…\"",
        )),
    };
    Ok(match (db, pool_size) {
        (Database::Postgres(mut pg), Some(n)) => {
            if n == 0 {
                return Err(inv("database_pool_size must be at least 1"));
            }
            pg.pool_size = n;
            Database::Postgres(pg)
        }
        (Database::Sqlite(_), Some(_)) => {
            return Err(inv(
                "database_pool_size is for PostgreSQL (SQLite has one writer)",
            ))
        }
        (db, None) => db,
    })
}

/// The `[[banks]]` section: the same safe defaults as merchants.
fn resolve_banks(
    files: Vec<BankFile>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, BankEntry>, ConfigError> {
    let mut banks = BTreeMap::new();
    for b in files {
        if b.id.is_empty() || b.id.len() > 64 {
            return Err(inv("bank id must be 1..64 characters"));
        }
        let hex = match (&b.key, &b.key_env) {
            (Some(k), _) => k.clone(),
            (None, Some(var)) => {
                env(var).ok_or_else(|| inv(format!("bank {}: ${var} not set", b.id)))?
            }
            (None, None) => return Err(inv(format!("bank {}: key or key_env required", b.id))),
        };
        let key = Key32::from_hex(&hex)
            .map_err(|_| inv(format!("bank {}: key must be 64 hex digits", b.id)))?;
        if b.origins.is_empty() {
            return Err(inv(format!(
                "bank {}: `origins` is empty; list the page origins that embed the widget, \
                 e.g. origins = [\"https://bank.example\"]",
                b.id
            )));
        }
        if b.purses.is_empty() {
            return Err(inv(format!(
                "bank {}: `purses` is empty; name the purses it may load, e.g. purses = [\"money\"]",
                b.id
            )));
        }
        if let Some(u) = &b.webhook_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(inv(format!(
                    "bank {}: webhook_url must be an http(s) URL",
                    b.id
                )));
            }
        }
        let entry = BankEntry {
            id: b.id.clone(),
            name: b.name,
            webhook_key: purse::webhook::webhook_key(&key, &b.id),
            key,
            origins: b.origins,
            purses: b.purses,
            webhook_url: b.webhook_url,
            card_refs_of: b.card_refs_of,
        };
        if banks.insert(b.id.clone(), entry).is_some() {
            return Err(inv(format!("bank {} listed twice", b.id)));
        }
    }
    Ok(banks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
db_path = "/tmp/x.sqlite"
[security_module]
terminal = "000000000001"
[[security_module.keys]]
version = 1
mkp = "404142434445464748494A4B4C4D4E4F"
[[merchants]]
id = "demo"
name = "Demo"
key_env = "DEMO_KEY"
origins = ["https://shop.example"]
verify_modes = ["merchant"]
"#;

    #[test]
    fn keys_from_file_and_env() {
        let env = |k: &str| match k {
            "CARDPAY_SM_MKL_1" => Some("505152535455565758595A5B5C5D5E5F".to_string()),
            "DEMO_KEY" => Some("11".repeat(32)),
            _ => None,
        };
        let c = Config::from_toml(TOML, env).unwrap();
        let KeyStore::Software(kv) = &c.keys else {
            panic!("software keys")
        };
        assert_eq!(kv[0].version, 1);
        assert_eq!(c.merchants["demo"].verify_modes, vec![VerifyMode::Merchant]);
        assert_eq!(c.listen, "127.0.0.1:8440");
        let dbg = format!("{c:?} {:?}", c.merchants["demo"]);
        assert!(
            !dbg.contains("1111") && !dbg.contains("5051"),
            "no key in Debug: {dbg}"
        );
        // missing env key is an error naming the variable
        let e = Config::from_toml(TOML, |_| None).err().unwrap().to_string();
        assert!(e.contains("CARDPAY_SM_MKL_1"), "{e}");
    }

    #[test]
    fn banks_section_with_safe_defaults() {
        let env = |k: &str| match k {
            "CARDPAY_SM_MKL_1" => Some("505152535455565758595A5B5C5D5E5F".to_string()),
            "DEMO_KEY" => Some("11".repeat(32)),
            "BANK_KEY" => Some("22".repeat(32)),
            _ => None,
        };
        let with = |bank: &str| format!("{TOML}[[banks]]\nid = \"bank\"\nname = \"Bank\"\n{bank}");
        let c = Config::from_toml(
            &with("key_env = \"BANK_KEY\"\norigins = [\"https://bank.example\"]\n"),
            env,
        )
        .unwrap();
        assert_eq!(c.banks["bank"].purses, vec![purse::types::PurseId::Money]);
        assert!(!format!("{c:?} {:?}", c.banks["bank"]).contains("2222"));
        let e = Config::from_toml(&with("key_env = \"BANK_KEY\"\n"), env)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`origins` is empty"), "{e}");
        let e = Config::from_toml(&with("origins = [\"https://b\"]\n"), env)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("key or key_env"), "{e}");
        let points = Config::from_toml(
            &with("key_env = \"BANK_KEY\"\norigins = [\"https://b\"]\npurses = [\"points\"]\n"),
            env,
        )
        .unwrap();
        assert_eq!(
            points.banks["bank"].purses,
            vec![purse::types::PurseId::Points]
        );
        assert_eq!(points.banks["bank"].card_refs_of, None);
        // A merchant's own loyalty program gets the merchant's card
        // references; only a configured merchant's.
        let own = |m: &str| {
            with(&format!(
                "key_env = \"BANK_KEY\"\norigins = [\"https://b\"]\ncard_refs_of = \"{m}\"\n"
            ))
        };
        let c = Config::from_toml(&own("demo"), env).unwrap();
        assert_eq!(c.banks["bank"].card_refs_of.as_deref(), Some("demo"));
        let e = Config::from_toml(&own("nobody"), env)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("names no merchant"), "{e}");
    }

    #[test]
    fn unsafe_merchant_defaults_are_refused_with_what_to_write() {
        let env = |k: &str| match k {
            "CARDPAY_SM_MKL_1" => Some("505152535455565758595A5B5C5D5E5F".to_string()),
            "DEMO_KEY" => Some("11".repeat(32)),
            _ => None,
        };
        let no_origins = TOML.replace("origins = [\"https://shop.example\"]\n", "");
        let e = Config::from_toml(&no_origins, env)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("`origins` is empty") && e.contains("origins = ["),
            "{e}"
        );
        let no_modes = TOML.replace("verify_modes = [\"merchant\"]\n", "");
        let e = Config::from_toml(&no_modes, env).err().unwrap().to_string();
        assert!(
            e.contains("`verify_modes` is empty") && e.contains("payment_server"),
            "{e}"
        );
    }

    #[test]
    fn database_by_path_or_url_and_the_password_never_printed() {
        let env = |k: &str| match k {
            "CARDPAY_SM_MKL_1" => Some("505152535455565758595A5B5C5D5E5F".to_string()),
            "DEMO_KEY" => Some("11".repeat(32)),
            "PG_URL" => Some("postgres://pay:s3cret@db.internal:5432/pay\n".to_string()),
            _ => None,
        };
        let body = TOML.replace("db_path = \"/tmp/x.sqlite\"\n", "");
        let with = |db: &str| Config::from_toml(&format!("{db}\n{body}"), env);
        assert_eq!(
            with("db_path = \"/tmp/x.sqlite\"").unwrap().database,
            Database::Sqlite("/tmp/x.sqlite".into())
        );
        let c = with("db_path = \"postgres://pay:s3cret@db/pay\"").unwrap();
        assert!(matches!(&c.database, Database::Postgres(pg) if pg.pool_size == DEFAULT_PG_POOL));
        let c = with("database_url_env = \"PG_URL\"\ndatabase_pool_size = 4").unwrap();
        let Database::Postgres(pg) = &c.database else {
            panic!("postgres")
        };
        assert_eq!(
            (pg.url.as_str(), pg.pool_size),
            ("postgres://pay:s3cret@db.internal:5432/pay", 4)
        );
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(
            dbg.contains("postgres://pay:***@db.internal:5432/pay"),
            "{dbg}"
        );
        assert_eq!(
            redact_password("postgresql://h/db?user=u&password=x&sslmode=disable"),
            "postgresql://h/db?user=u&password=***&sslmode=disable"
        );
        // The driver (tokio-postgres) takes the credentials up to the first
        // '@', so a password may hold '/', '?' or ':' unencoded (generated
        // base64 passwords do): hidden all the same.
        for (url, shown) in [
            (
                "postgres://pay:ab/cd+ef@db:5432/pay",
                "postgres://pay:***@db:5432/pay",
            ),
            ("postgres://pay:x?y@db/pay", "postgres://pay:***@db/pay"),
            ("postgres://pay:a:b@db/pay", "postgres://pay:***@db/pay"),
            ("postgresql://h/db?password=a@b", "postgresql://***@b"),
        ] {
            assert_eq!(redact_password(url), shown);
        }
        // Refused, with what to write.
        for (db, says) in [
            ("", "no database"),
            (
                "db_path = \"a.sqlite\"\ndatabase_url = \"postgres://h/d\"",
                "both",
            ),
            ("database_url = \"/tmp/a.sqlite\"", "postgres:// URL"),
            (
                "db_path = \"a.sqlite\"\ndatabase_pool_size = 3",
                "PostgreSQL",
            ),
            (
                "database_url = \"postgres://h/d\"\ndatabase_pool_size = 0",
                "at least 1",
            ),
            ("database_url_env = \"NOPE\"", "$NOPE not set"),
        ] {
            let e = with(db).err().unwrap().to_string();
            assert!(e.contains(says), "{db}: {e}");
        }
    }
}

#[cfg(test)]
mod pkcs11_config_tests {
    use super::*;

    #[test]
    fn a_token_and_keys_in_the_file_are_refused_together() {
        let base = r#"
db_path = "/tmp/x.sqlite"
[security_module]
terminal = "000000000001"
[security_module.pkcs11]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "cardpay"
pin = { env = "CARDPAY_HSM_PIN" }
"#;
        let c = Config::from_toml(base, |_| None).unwrap();
        assert!(matches!(c.keys, KeyStore::Pkcs11(_)));
        let both = base.replace(
            "[security_module.pkcs11]",
            "env_key_versions = [1]\n[security_module.pkcs11]",
        );
        let e = Config::from_toml(&both, |_| None)
            .map(|_| ())
            .expect_err("refused");
        assert!(e.to_string().contains("hsm import"), "{e}");
        // A PIN written into the file is refused by the token config itself.
        let pin_inline = base.replace("pin = { env = \"CARDPAY_HSM_PIN\" }", "pin = \"1234\"");
        assert!(Config::from_toml(&pin_inline, |_| None).is_err());
    }
}
