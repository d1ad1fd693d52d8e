//! The bridge's configuration file (JSON), written by `bridge install`.
//!
//! ```json
//! { "origins": ["https://pay.cardpay.example"], "request_timeout_ms": 15000,
//!   "verify_burst": 3, "verify_refill_secs": 20, "apdu_burst": 200, "apdu_per_sec": 50,
//!   "initialize_burst": 60, "initialize_per_hour": 60, "transaction_idle_ms": 15000 }
//! ```
//!
//! Every limit has a floor ([`LIMITS`]): a file or a flag below it is refused
//! with a message naming the minimum, never silently clamped, so no setting
//! can switch a limit off.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::guard::{Allowlist, GuardConfig};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Payment origins allowed to use the card (`scheme://host[:port]`, port may be `*`).
    pub origins: Vec<String>,
    /// A request PC/SC has not answered in this time gets a `timeout` error.
    pub request_timeout_ms: u64,
    /// PIN attempts per origin before the limit (then one more per `verify_refill_secs`).
    pub verify_burst: u32,
    pub verify_refill_secs: u64,
    /// APDUs per origin: burst and per second.
    pub apdu_burst: u32,
    pub apdu_per_sec: u32,
    /// INITIALIZE (each spends one of the card's 65 535 transaction numbers)
    /// per card: burst, then this many per hour.
    pub initialize_burst: u32,
    pub initialize_per_hour: u32,
    /// An exclusive card session (PC/SC transaction) ends after this long
    /// without an APDU on its connection.
    pub transaction_idle_ms: u64,
}

/// One limit: its `bridge install` flag, its key in the file, its floor.
#[derive(Debug, Clone, Copy)]
pub struct LimitSpec {
    pub flag: &'static str,
    pub key: &'static str,
    pub min: u64,
    pub what: &'static str,
}

/// Every limit and its floor.
pub const LIMITS: [LimitSpec; 7] = [
    LimitSpec {
        flag: "--verify-burst",
        key: "verify_burst",
        min: 1,
        what: "PIN attempts per origin before the limit",
    },
    LimitSpec {
        flag: "--verify-refill-secs",
        key: "verify_refill_secs",
        min: 1,
        what: "seconds per further PIN attempt",
    },
    LimitSpec {
        flag: "--apdu-burst",
        key: "apdu_burst",
        min: 1,
        what: "APDUs per origin before the limit",
    },
    LimitSpec {
        flag: "--apdu-per-sec",
        key: "apdu_per_sec",
        min: 1,
        what: "APDUs per origin per second",
    },
    LimitSpec {
        flag: "--initialize-burst",
        key: "initialize_burst",
        min: 1,
        what: "card transactions (INITIALIZE) per card before the limit",
    },
    LimitSpec {
        flag: "--initialize-per-hour",
        key: "initialize_per_hour",
        min: 1,
        what: "card transactions (INITIALIZE) per card per hour",
    },
    LimitSpec {
        flag: "--transaction-idle-ms",
        key: "transaction_idle_ms",
        min: 1000,
        what: "milliseconds an idle exclusive card session is kept",
    },
];

fn spec(key: &str) -> &'static LimitSpec {
    LIMITS
        .iter()
        .find(|s| s.key == key)
        .expect("every limit key is in LIMITS")
}

impl Default for Config {
    fn default() -> Self {
        let g = GuardConfig::default();
        Self {
            origins: vec![],
            request_timeout_ms: 15_000,
            verify_burst: g.verify_burst as u32,
            verify_refill_secs: g.verify_refill.as_secs(),
            apdu_burst: g.apdu_burst as u32,
            apdu_per_sec: g.apdu_per_sec as u32,
            initialize_burst: g.initialize_burst as u32,
            initialize_per_hour: g.initialize_per_hour as u32,
            transaction_idle_ms: g.transaction_idle.as_millis() as u64,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let cfg: Config = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{} is not a valid bridge config: {e}", path.display()))?;
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(cfg)
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)? + "\n")?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    fn values(&self) -> [(&'static str, u64); 7] {
        [
            ("verify_burst", self.verify_burst.into()),
            ("verify_refill_secs", self.verify_refill_secs),
            ("apdu_burst", self.apdu_burst.into()),
            ("apdu_per_sec", self.apdu_per_sec.into()),
            ("initialize_burst", self.initialize_burst.into()),
            ("initialize_per_hour", self.initialize_per_hour.into()),
            ("transaction_idle_ms", self.transaction_idle_ms),
        ]
    }

    /// Origins parse and every limit is at or above its floor.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.allowlist()?;
        for (key, v) in self.values() {
            let s = spec(key);
            if v < s.min {
                bail!("`{key}` is {v}, below its minimum {} ({})", s.min, s.what);
            }
        }
        Ok(())
    }

    pub fn allowlist(&self) -> anyhow::Result<Allowlist> {
        Allowlist::new(&self.origins).map_err(|bad| {
            anyhow::anyhow!("not an origin (scheme://host[:port]): {}", bad.join(", "))
        })
    }

    pub fn guard(&self) -> GuardConfig {
        GuardConfig {
            verify_burst: self.verify_burst as f64,
            verify_refill: Duration::from_secs(self.verify_refill_secs),
            apdu_burst: self.apdu_burst as f64,
            apdu_per_sec: self.apdu_per_sec as f64,
            initialize_burst: self.initialize_burst as f64,
            initialize_per_hour: self.initialize_per_hour as f64,
            transaction_idle: Duration::from_millis(self.transaction_idle_ms),
            ..GuardConfig::default()
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(100))
    }
}

/// Limits `bridge install` may set (`None` keeps the current value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub apdu_burst: Option<u32>,
    pub apdu_per_sec: Option<u32>,
    pub verify_burst: Option<u32>,
    pub verify_refill_secs: Option<u64>,
    pub initialize_burst: Option<u32>,
    pub initialize_per_hour: Option<u32>,
    pub transaction_idle_ms: Option<u64>,
}

impl Limits {
    /// Write the given limits into `cfg`; a value below its floor is refused
    /// with the flag's name and minimum, and `cfg` is left unchanged.
    pub fn apply(&self, cfg: &mut Config) -> anyhow::Result<()> {
        let given: [(&str, Option<u64>); 7] = [
            ("verify_burst", self.verify_burst.map(u64::from)),
            ("verify_refill_secs", self.verify_refill_secs),
            ("apdu_burst", self.apdu_burst.map(u64::from)),
            ("apdu_per_sec", self.apdu_per_sec.map(u64::from)),
            ("initialize_burst", self.initialize_burst.map(u64::from)),
            (
                "initialize_per_hour",
                self.initialize_per_hour.map(u64::from),
            ),
            ("transaction_idle_ms", self.transaction_idle_ms),
        ];
        for (key, v) in given {
            let s = spec(key);
            if let Some(v) = v.filter(|v| *v < s.min) {
                bail!(
                    "{} {v} is below the minimum: {} must be at least {} ({})",
                    s.flag,
                    s.flag,
                    s.min,
                    s.what
                );
            }
        }
        let mut next = cfg.clone();
        if let Some(v) = self.apdu_burst {
            next.apdu_burst = v;
        }
        if let Some(v) = self.apdu_per_sec {
            next.apdu_per_sec = v;
        }
        if let Some(v) = self.verify_burst {
            next.verify_burst = v;
        }
        if let Some(v) = self.verify_refill_secs {
            next.verify_refill_secs = v;
        }
        if let Some(v) = self.initialize_burst {
            next.initialize_burst = v;
        }
        if let Some(v) = self.initialize_per_hour {
            next.initialize_per_hour = v;
        }
        if let Some(v) = self.transaction_idle_ms {
            next.transaction_idle_ms = v;
        }
        next.validate()?;
        *cfg = next;
        Ok(())
    }
}

/// `$XDG_CONFIG_HOME/cardpay/bridge.json` (default `~/.config/cardpay/bridge.json`).
pub fn default_config_path() -> PathBuf {
    config_home().join("cardpay").join("bridge.json")
}

/// The budget state file that belongs to a config file: same folder, `.state.json`.
pub fn state_path(config: &Path) -> PathBuf {
    config.with_extension("state.json")
}

pub fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

pub fn config_home() -> PathBuf {
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => home().join(".config"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_validation() {
        let dir = std::env::temp_dir().join(format!("bridge-cfg-{}", std::process::id()));
        let p = dir.join("bridge.json");
        let cfg = Config {
            origins: vec!["http://127.0.0.1:*".into()],
            ..Default::default()
        };
        cfg.save(&p).unwrap();
        assert_eq!(Config::load(&p).unwrap(), cfg);
        std::fs::write(&p, r#"{"origins":["not an origin"]}"#).unwrap();
        assert!(Config::load(&p).is_err());
        std::fs::write(&p, r#"{"origins":[], "bogus": 1}"#).unwrap();
        assert!(Config::load(&p).is_err());
        std::fs::write(&p, r#"{"origins":["https://a.example"]}"#).unwrap();
        assert_eq!(Config::load(&p).unwrap().request_timeout_ms, 15_000);
        // a limit below its floor in the file is refused, not clamped
        std::fs::write(&p, r#"{"origins":[], "verify_refill_secs": 0}"#).unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("verify_refill_secs") && e.contains("minimum 1"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            state_path(Path::new("/x/bridge.json")),
            Path::new("/x/bridge.state.json")
        );
    }

    #[test]
    fn every_limit_flag_has_a_floor() {
        let base = Config::default();
        base.validate().unwrap();
        for s in LIMITS {
            let mut l = Limits::default();
            let below = s.min - 1;
            match s.key {
                "verify_burst" => l.verify_burst = Some(below as u32),
                "verify_refill_secs" => l.verify_refill_secs = Some(below),
                "apdu_burst" => l.apdu_burst = Some(below as u32),
                "apdu_per_sec" => l.apdu_per_sec = Some(below as u32),
                "initialize_burst" => l.initialize_burst = Some(below as u32),
                "initialize_per_hour" => l.initialize_per_hour = Some(below as u32),
                "transaction_idle_ms" => l.transaction_idle_ms = Some(below),
                other => panic!("limit {other} has no flag in this test"),
            }
            let mut cfg = base.clone();
            let e = l.apply(&mut cfg).unwrap_err().to_string();
            assert!(
                e.contains(s.flag) && e.contains(&format!("at least {}", s.min)),
                "{}: {e}",
                s.flag
            );
            assert_eq!(cfg, base, "{} changed the config", s.flag);
        }
        // at the floor is fine
        let mut cfg = base.clone();
        Limits {
            verify_refill_secs: Some(1),
            transaction_idle_ms: Some(1000),
            ..Default::default()
        }
        .apply(&mut cfg)
        .unwrap();
        assert_eq!(cfg.verify_refill_secs, 1);
    }
}
