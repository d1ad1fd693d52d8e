//! Where the token is and how to log in: module path, token label, PIN source,
//! key labels. Deserializes from the payment server's TOML.
//!
//! # Format
//! ```toml
//! [security_module.pkcs11]
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! token_label = "cardpay"
//! pin = { env = "CARDPAY_HSM_PIN" }        # or pin = { file = "/run/secrets/hsm-pin" }
//! key_labels = { purchase = "cardpay-mkp-v{version}", load = "cardpay-mkl-v{version}" }  # default
//! max_sessions = 8                          # default: 2 per core, at least 4
//! ```

use std::path::{Path, PathBuf};

use cryptoki::types::AuthPin;
use purse::security_module::KeyUse;
use serde::Deserialize;

use crate::error::Pkcs11Error;

/// The token the security module uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// The PKCS#11 library, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token's label (exactly one token must carry it).
    pub token_label: String,
    /// Where the user PIN comes from. Never from the TOML itself.
    pub pin: PinSource,
    /// Labels of the master key objects.
    #[serde(default)]
    pub key_labels: KeyLabels,
    /// Most sessions the pool opens (all share one login).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
}

/// Two sessions per core (a caller holds one only for one transaction's
/// derives and MACs), at least 4.
pub fn default_max_sessions() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .max(4)
}

/// Where the token's user PIN is read from. `Debug` shows the variable name or
/// path, never the PIN.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PinSource {
    /// An environment variable holding the PIN.
    Env(String),
    /// A file holding the PIN (one line; a trailing newline is ignored).
    File(PathBuf),
}

impl PinSource {
    /// Read the PIN. The value goes straight into a zeroizing secret.
    pub fn read(&self) -> Result<AuthPin, Pkcs11Error> {
        let pin = match self {
            PinSource::Env(var) => {
                std::env::var(var).map_err(|_| Pkcs11Error::PinEnvMissing(var.clone()))?
            }
            PinSource::File(path) => read_pin_file(path)?,
        };
        let trimmed = pin.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            return Err(Pkcs11Error::PinEmpty);
        }
        let secret = AuthPin::new(trimmed.into());
        zeroize::Zeroize::zeroize(&mut { pin });
        Ok(secret)
    }
}

fn read_pin_file(path: &Path) -> Result<String, Pkcs11Error> {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the token PIN file is readable by group or others; chmod 600 it");
        }
    }
    std::fs::read_to_string(path).map_err(|e| Pkcs11Error::PinFile {
        path: path.to_owned(),
        reason: e.kind().to_string(),
    })
}

/// Labels of the master key objects; `{version}` stands for the key version
/// (decimal). Default `cardpay-mkp-v{version}` and `cardpay-mkl-v{version}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLabels {
    /// MKP, the purchase master key.
    pub purchase: String,
    /// MKL, the load master key.
    pub load: String,
}

impl Default for KeyLabels {
    fn default() -> Self {
        Self {
            purchase: "cardpay-mkp-v{version}".into(),
            load: "cardpay-mkl-v{version}".into(),
        }
    }
}

const VERSION: &str = "{version}";

impl KeyLabels {
    /// Both patterns must hold `{version}` exactly once and differ.
    pub fn validate(&self) -> Result<(), Pkcs11Error> {
        for p in [&self.purchase, &self.load] {
            if p.matches(VERSION).count() != 1 {
                return Err(Pkcs11Error::Config(format!(
                    "key label {p:?} must contain {VERSION} exactly once"
                )));
            }
        }
        if self.purchase == self.load {
            return Err(Pkcs11Error::Config(
                "purchase and load key labels must differ".into(),
            ));
        }
        Ok(())
    }

    fn pattern(&self, key: KeyUse) -> &str {
        match key {
            KeyUse::Purchase => &self.purchase,
            KeyUse::Load => &self.load,
        }
    }

    /// The label of one master key.
    pub fn label(&self, key: KeyUse, version: u8) -> String {
        self.pattern(key).replace(VERSION, &version.to_string())
    }

    /// Which master key a label names, if any (`None` for other objects).
    pub fn parse(&self, label: &str) -> Option<(KeyUse, u8)> {
        [KeyUse::Purchase, KeyUse::Load].into_iter().find_map(|k| {
            let (pre, post) = self.pattern(k).split_once(VERSION)?;
            let digits = label.strip_prefix(pre)?.strip_suffix(post)?;
            // Canonical decimal only, so one version has one label.
            let v: u8 = digits.parse().ok()?;
            (v.to_string() == digits).then_some((k, v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn labels_round_trip_and_reject_lookalikes() {
        let l = KeyLabels::default();
        l.validate().unwrap();
        assert_eq!(l.label(KeyUse::Purchase, 7), "cardpay-mkp-v7");
        assert_eq!(l.parse("cardpay-mkp-v7"), Some((KeyUse::Purchase, 7)));
        assert_eq!(l.parse("cardpay-mkl-v255"), Some((KeyUse::Load, 255)));
        for bad in [
            "cardpay-mkp-v07",
            "cardpay-mkp-v256",
            "cardpay-mkp-v",
            "cardpay-mkp-v1x",
            "other",
        ] {
            assert_eq!(l.parse(bad), None, "{bad}");
        }
        let twice = KeyLabels {
            purchase: "{version}-{version}".into(),
            load: "l{version}".into(),
        };
        assert!(twice.validate().is_err());
        let same = KeyLabels {
            purchase: "k{version}".into(),
            load: "k{version}".into(),
        };
        assert!(same.validate().is_err());
    }

    #[test]
    fn pin_sources() {
        let dir = std::env::temp_dir().join(format!("cardpay-pin-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pin");
        std::fs::write(&f, "12345678\n").unwrap();
        let pin = PinSource::File(f.clone()).read().unwrap();
        assert_eq!(pin.expose_secret(), "12345678");
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(
            PinSource::File(f.clone()).read(),
            Err(Pkcs11Error::PinEmpty)
        ));
        assert!(matches!(
            PinSource::File(dir.join("absent")).read(),
            Err(Pkcs11Error::PinFile { .. })
        ));
        assert!(matches!(
            PinSource::Env("CARDPAY_PKCS11_TEST_UNSET_VAR".into()).read(),
            Err(Pkcs11Error::PinEnvMissing(v)) if v == "CARDPAY_PKCS11_TEST_UNSET_VAR"
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn toml_shape() {
        #[derive(Deserialize)]
        struct T {
            pkcs11: Pkcs11Config,
        }
        let t: T = toml::from_str(
            "[pkcs11]\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin = { env = \"P\" }\n",
        )
        .unwrap();
        assert_eq!(t.pkcs11.pin, PinSource::Env("P".into()));
        assert_eq!(t.pkcs11.key_labels, KeyLabels::default());
        assert!(t.pkcs11.max_sessions >= 4);
        let bad = toml::from_str::<T>(
            "[pkcs11]\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin = \"1234\"\n",
        );
        assert!(bad.is_err(), "a PIN written into the TOML is refused");
    }
}
