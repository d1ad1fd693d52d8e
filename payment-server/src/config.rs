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
    pub db_path: PathBuf,
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

/// Everything the service needs, resolved and validated.
pub struct Config {
    pub listen: String,
    pub db_path: PathBuf,
    pub www_dir: Option<PathBuf>,
    pub cors_origins: Vec<String>,
    pub recovery_grace_secs: u64,
    pub sweep_interval_secs: u64,
    pub webhook_max_backoff_secs: u64,
    pub body_limit: usize,
    pub operator_token: Option<String>,
    pub terminal: Terminal,
    pub key_versions: Vec<KeyVersion>,
    pub merchants: BTreeMap<String, MerchantEntry>,
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
            .field("db_path", &self.db_path)
            .field("www_dir", &self.www_dir)
            .field("terminal", &self.terminal)
            .field(
                "key_versions",
                &self
                    .key_versions
                    .iter()
                    .map(|k| k.version)
                    .collect::<Vec<_>>(),
            )
            .field("merchants", &self.merchants.keys().collect::<Vec<_>>())
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
        if key_versions.is_empty() {
            return Err(inv("security_module needs at least one key version"));
        }
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
        let operator_token = match (f.operator_token, f.operator_token_env) {
            (Some(t), _) => Some(t),
            (None, Some(var)) => env(&var),
            _ => None,
        };
        let webhook_client = cardpay_tls::http_client(f.ca_file.as_deref())?;
        Ok(Self {
            listen: f.listen,
            db_path: f.db_path,
            www_dir: f.www_dir,
            cors_origins: f.cors_origins,
            recovery_grace_secs: f.recovery_grace_secs,
            sweep_interval_secs: f.sweep_interval_secs.max(1),
            webhook_max_backoff_secs: f.webhook_max_backoff_secs.max(1),
            body_limit: f.body_limit,
            operator_token,
            terminal,
            key_versions,
            merchants,
            tls: f.tls.map(|t| cardpay_tls::TlsFiles {
                cert_file: t.cert_file,
                key_file: t.key_file,
            }),
            ca_file: f.ca_file,
            webhook_client,
        })
    }
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
        assert_eq!(c.key_versions[0].version, 1);
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
}
