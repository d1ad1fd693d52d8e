//! The bridge's configuration file (JSON), written by `bridge install`.
//!
//! ```json
//! { "origins": ["https://pay.cardpay.example"], "request_timeout_ms": 15000 }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

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
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let cfg: Config = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{} is not a valid bridge config: {e}", path.display()))?;
        cfg.allowlist()?;
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

    pub fn allowlist(&self) -> anyhow::Result<Allowlist> {
        Allowlist::new(&self.origins).map_err(|bad| {
            anyhow::anyhow!("not an origin (scheme://host[:port]): {}", bad.join(", "))
        })
    }

    pub fn guard(&self) -> GuardConfig {
        GuardConfig {
            verify_burst: self.verify_burst.max(1) as f64,
            verify_refill: Duration::from_secs(self.verify_refill_secs),
            apdu_burst: self.apdu_burst.max(1) as f64,
            apdu_per_sec: self.apdu_per_sec.max(1) as f64,
            ..GuardConfig::default()
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(100))
    }
}

/// `$XDG_CONFIG_HOME/cardpay/bridge.json` (default `~/.config/cardpay/bridge.json`).
pub fn default_config_path() -> PathBuf {
    config_home().join("cardpay").join("bridge.json")
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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
