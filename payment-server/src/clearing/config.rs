//! The clearing process's TOML: its database, the spool it reads, where
//! settlement files go, who may sign batches, fees and bank details. The
//! security module's keys and the merchants' webhook URLs come from the
//! payment server's own config (`payment_config`), so both sides use one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::batch::{verifying_key_from_hex, BatchKind, Signer};
use crate::config::{Config, ConfigError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    db_path: PathBuf,
    payment_config: PathBuf,
    /// The concentration point's spool: `*.batch` files to clear.
    inbox: PathBuf,
    /// Payout files (CSV, pain.001) and bank float statements.
    out_dir: PathBuf,
    /// Seconds between two passes of `clearing run`.
    #[serde(default = "default_interval")]
    interval_secs: u64,
    issuer: Party,
    #[serde(default)]
    signers: Vec<SignerFile>,
    #[serde(default)]
    merchants: Vec<MerchantFile>,
    #[serde(default)]
    banks: Vec<Party>,
}

fn default_interval() -> u64 {
    60
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Party {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub iban: String,
    #[serde(default)]
    pub bic: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignerFile {
    key_id: String,
    /// Ed25519 public key, 64 hex digits.
    public_key: String,
    /// `["purchases"]`, `["loads"]` or both.
    kinds: Vec<BatchKind>,
    #[serde(default)]
    parties: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MerchantFile {
    id: String,
    #[serde(default)]
    name: Option<String>,
    iban: String,
    #[serde(default)]
    bic: String,
    /// Fee per purchase: fixed part in cents plus basis points of the amount.
    #[serde(default)]
    fee_fixed: u32,
    #[serde(default)]
    fee_bps: u32,
}

/// A merchant's settlement terms.
#[derive(Debug, Clone)]
pub struct MerchantTerms {
    pub id: String,
    pub name: String,
    pub iban: String,
    pub bic: String,
    pub fee: Fee,
}

/// A fee per purchase: `fixed + amount × bps / 10 000` (rounded half up),
/// never more than the amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fee {
    pub fixed: u32,
    pub bps: u32,
}

impl Fee {
    pub fn of(&self, amount: u32) -> u32 {
        let pct = (u64::from(amount) * u64::from(self.bps) + 5_000) / 10_000;
        (u64::from(self.fixed) + pct).min(u64::from(amount)) as u32
    }
}

/// The resolved clearing config.
pub struct ClearingConfig {
    /// The SQLite file, or a `postgres://…` URL.
    pub db_path: PathBuf,
    pub inbox: PathBuf,
    pub out_dir: PathBuf,
    pub interval_secs: u64,
    pub issuer: Party,
    pub signers: Vec<Signer>,
    pub merchants: BTreeMap<String, MerchantTerms>,
    pub banks: BTreeMap<String, Party>,
    /// The payment server's config (keys, merchants, payment DB).
    pub payment: Config,
}

impl core::fmt::Debug for ClearingConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClearingConfig")
            .field("db_path", &super::db::shown(&self.db_path))
            .field("inbox", &self.inbox)
            .field("out_dir", &self.out_dir)
            .field(
                "signers",
                &self.signers.iter().map(|s| &s.key_id).collect::<Vec<_>>(),
            )
            .field("merchants", &self.merchants.keys().collect::<Vec<_>>())
            .field("banks", &self.banks.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn inv(s: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(s.into())
}

/// ISO 13616 IBAN check: 15..34 characters, country letters, mod 97 = 1.
pub fn iban_ok(iban: &str) -> bool {
    let s: String = iban.chars().filter(|c| *c != ' ').collect();
    if !(15..=34).contains(&s.len())
        || !s[..2].chars().all(|c| c.is_ascii_uppercase())
        || !s[2..4].chars().all(|c| c.is_ascii_digit())
        || !s
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return false;
    }
    let rotated = format!("{}{}", &s[4..], &s[..4]);
    let mut rem: u32 = 0;
    for c in rotated.chars() {
        let v = c.to_digit(36).expect("alphanumeric");
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

impl ClearingConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base, |k| std::env::var(k).ok())
    }

    /// Parse; relative `payment_config` is taken from `base`.
    pub fn from_toml(
        text: &str,
        base: &Path,
        env: impl Fn(&str) -> Option<String> + Copy,
    ) -> Result<Self, ConfigError> {
        let f: File = toml::from_str(text)?;
        let pc = base.join(&f.payment_config);
        let ptext = std::fs::read_to_string(&pc).map_err(|e| ConfigError::Read(pc.clone(), e))?;
        let payment = Config::from_toml(&ptext, env)?;
        if !f.issuer.iban.is_empty() && !iban_ok(&f.issuer.iban) {
            return Err(inv("issuer.iban is not a valid IBAN"));
        }
        let mut signers = Vec::new();
        for s in f.signers {
            let key = verifying_key_from_hex(&s.public_key).ok_or_else(|| {
                inv(format!(
                    "signer {}: public_key must be 64 hex digits of an Ed25519 key",
                    s.key_id
                ))
            })?;
            signers.push(Signer {
                key_id: s.key_id,
                key,
                kinds: s.kinds,
                parties: s.parties,
            });
        }
        let mut merchants = BTreeMap::new();
        for m in f.merchants {
            if !iban_ok(&m.iban) {
                return Err(inv(format!("merchant {}: iban is not a valid IBAN", m.id)));
            }
            if m.fee_bps > 10_000 {
                return Err(inv(format!("merchant {}: fee_bps above 10000", m.id)));
            }
            let name = m
                .name
                .or_else(|| payment.merchants.get(&m.id).map(|p| p.name.clone()))
                .unwrap_or_else(|| m.id.clone());
            merchants.insert(
                m.id.clone(),
                MerchantTerms {
                    id: m.id,
                    name,
                    iban: m.iban.replace(' ', ""),
                    bic: m.bic,
                    fee: Fee {
                        fixed: m.fee_fixed,
                        bps: m.fee_bps,
                    },
                },
            );
        }
        let banks = f.banks.into_iter().map(|b| (b.id.clone(), b)).collect();
        Ok(Self {
            // A `postgres://…` URL stays as written; a SQLite path is
            // relative to the config file.
            db_path: if f.db_path.to_str().is_some_and(super::db::is_pg_url) {
                f.db_path
            } else {
                base.join(f.db_path)
            },
            inbox: base.join(f.inbox),
            out_dir: base.join(f.out_dir),
            interval_secs: f.interval_secs.max(1),
            issuer: f.issuer,
            signers,
            merchants,
            banks,
            payment,
        })
    }

    /// A merchant's fee (none if it has no terms).
    pub fn fee(&self, merchant: &str) -> Fee {
        self.merchants
            .get(merchant)
            .map(|m| m.fee)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configs_load() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR"));
        // The payment server's example, without its CA file (made by
        // scripts/certs.sh, not in the repo).
        let example = std::fs::read_to_string(base.join("payment-server.example.toml"))
            .unwrap()
            .replace("ca_file = \"certs/ca.pem\"\n", "");
        let dir = tempfile::tempdir().unwrap();
        let pay = dir.path().join("payment-server.toml");
        std::fs::write(&pay, &example).unwrap();
        let text = std::fs::read_to_string(base.join("clearing.example.toml"))
            .unwrap()
            .replace("\"payment-server.toml\"", &format!("{pay:?}"));
        let c = ClearingConfig::from_toml(&text, base, |_| None).unwrap();
        assert_eq!(c.signers[0].key_id, "payments-1");
        assert_eq!(c.merchants["demo-store"].fee, Fee { fixed: 5, bps: 150 });
        assert_eq!(c.merchants["demo-store"].name, "Cardpay Demo Store");
        // The payment server's commented [clearing] section, switched on.
        let (head, tail) = example.split_once("# Clearing (docs/clearing.md)").unwrap();
        let on: Vec<&str> = tail
            .lines()
            .skip(1)
            .filter_map(|l| l.strip_prefix("# ").filter(|l| !l.starts_with('#')))
            .collect();
        let p = format!("{head}\n{}\n", on.join("\n"));
        let pc = Config::from_toml(&p, |_| None).unwrap();
        let producer = pc.clearing.unwrap();
        assert_eq!(
            hex::encode(producer.key.verifying_key().to_bytes()),
            hex::encode(c.signers[0].key.to_bytes()),
            "the example's signing key pairs with the example signer"
        );
    }

    #[test]
    fn a_postgres_url_is_kept_as_written_and_its_password_hidden() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR"));
        let example = std::fs::read_to_string(base.join("payment-server.example.toml"))
            .unwrap()
            .replace("ca_file = \"certs/ca.pem\"\n", "");
        let dir = tempfile::tempdir().unwrap();
        let pay = dir.path().join("payment-server.toml");
        std::fs::write(&pay, &example).unwrap();
        let text = std::fs::read_to_string(base.join("clearing.example.toml"))
            .unwrap()
            .replace("\"payment-server.toml\"", &format!("{pay:?}"));
        let sqlite = ClearingConfig::from_toml(&text, base, |_| None).unwrap();
        assert_eq!(sqlite.db_path, base.join("clearing/clearing.sqlite"));
        let url = "postgres://clearing:s3cret@db:5432/clearing";
        let text = text.replace(
            "db_path = \"clearing/clearing.sqlite\"",
            &format!("db_path = {url:?}"),
        );
        let c = ClearingConfig::from_toml(&text, base, |_| None).unwrap();
        assert_eq!(c.db_path, Path::new(url), "not made relative to the config");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("clearing:***@db:5432/clearing"), "{shown}");
    }

    #[test]
    fn iban_checksum() {
        assert!(iban_ok("DE89370400440532013000"));
        assert!(iban_ok("GB82 WEST 1234 5698 7654 32"));
        assert!(!iban_ok("DE89370400440532013001"));
        assert!(!iban_ok("DE8937"));
        assert!(!iban_ok("de89370400440532013000"));
    }

    #[test]
    fn fees_round_half_up_and_never_exceed_the_amount() {
        let f = Fee { fixed: 5, bps: 150 };
        assert_eq!(f.of(1000), 5 + 15);
        assert_eq!(f.of(1), 1);
        assert_eq!(f.of(0), 0);
        assert_eq!(Fee { fixed: 0, bps: 150 }.of(33), 0); // 0.495 → 0
        assert_eq!(Fee { fixed: 0, bps: 150 }.of(34), 1); // 0.51 → 1
        assert_eq!(Fee::default().of(12345), 0);
    }
}
