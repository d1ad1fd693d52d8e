//! A throw-away SoftHSM2 token, for tests, benchmarks and the demo: a private
//! `SOFTHSM2_CONF` and token directory under the temp dir, a token initialised
//! with `softhsm2-util`, and its PIN in a 0600 file. Needs Debian's `softhsm2`.
//!
//! SoftHSM reads `SOFTHSM2_CONF` once, at `C_Initialize`, so a process has one
//! token directory: [`TestToken::shared`] makes it on first use and sets the
//! variable before any PKCS#11 call.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::config::{KeyLabels, PinSource, Pkcs11Config};

/// Debian's SoftHSM2 module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A SoftHSM2 token in a private directory.
#[derive(Debug)]
pub struct TestToken {
    /// The directory holding `softhsm2.conf`, `tokens/` and `pin`.
    pub dir: PathBuf,
    /// The token's label.
    pub label: String,
    pin_file: PathBuf,
}

impl TestToken {
    /// The process's test token, made on first use. Panics with the reason if
    /// SoftHSM2 is missing (tests need it: `scripts/setup.sh` installs it).
    pub fn shared() -> &'static TestToken {
        static TOKEN: OnceLock<TestToken> = OnceLock::new();
        TOKEN.get_or_init(|| Self::create("cardpay-test").unwrap_or_else(|e| panic!("{e}")))
    }

    fn create(label: &str) -> Result<Self, String> {
        remove_stale_dirs();
        let dir = std::env::temp_dir().join(format!(
            "cardpay-softhsm-{}-{:x}",
            std::process::id(),
            random_u64()
        ));
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
        // Before any C_Initialize in this process (see the module docs).
        std::env::set_var("SOFTHSM2_CONF", &conf);
        let pin = format!("{:016x}", random_u64());
        let pin_file = dir.join("pin");
        write_private(&pin_file, &pin).map_err(|e| format!("{}: {e}", pin_file.display()))?;
        let token = Self {
            dir,
            label: label.into(),
            pin_file,
        };
        token.init_token(label)?;
        Ok(token)
    }

    /// Initialise one more token in this directory, with the same user PIN.
    /// SoftHSM sees it only if no PKCS#11 call has been made in this process yet.
    pub fn init_token(&self, label: &str) -> Result<(), String> {
        let pin = std::fs::read_to_string(&self.pin_file).map_err(|e| e.to_string())?;
        let so_pin = format!("{:016x}", random_u64());
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", self.dir.join("softhsm2.conf"))
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", &so_pin, "--pin", &pin])
            .output()
            .map_err(|e| {
                format!(
                    "cannot run softhsm2-util ({e}); install Debian's softhsm2 (scripts/setup.sh)"
                )
            })?;
        if !out.status.success() {
            return Err(format!(
                "softhsm2-util --init-token failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// A configuration for this token, the PIN read from its file.
    pub fn config(&self) -> Pkcs11Config {
        Pkcs11Config {
            module: SOFTHSM_MODULE.into(),
            token_label: self.label.clone(),
            pin: PinSource::File(self.pin_file.clone()),
            key_labels: KeyLabels::default(),
            max_sessions: crate::config::default_max_sessions(),
        }
    }

    /// Where the PIN file is (tests that need a wrong PIN write their own).
    pub fn pin_file(&self) -> &Path {
        &self.pin_file
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)?.write_all(text.as_bytes())
}

/// Not for keys: names and throw-away PINs of a test token.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Token directories of test processes that have exited.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix("cardpay-softhsm-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
