//! `bridge install` / `uninstall`: the native-messaging host manifest, a small
//! launcher script (browsers cannot pass arguments to a host) and the config
//! file with the origin allowlist.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde_json::json;

use crate::config::{self, Config};

/// Native-messaging host name (what the extension passes to `connectNative`).
pub const HOST_NAME: &str = "com.cardpay.bridge";
/// The extension's fixed ID (from the public key in `extension/manifest.json`).
pub const EXTENSION_ID: &str = "balkbpnchocdfjmodhmppaobcgfpdlih";
/// The extension's ID under Firefox (`browser_specific_settings.gecko.id`).
pub const FIREFOX_EXTENSION_ID: &str = "bridge@cardpay.example";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Browser {
    Chromium,
    Chrome,
    Firefox,
}

impl Browser {
    pub fn name(self) -> &'static str {
        match self {
            Browser::Chromium => "chromium",
            Browser::Chrome => "chrome",
            Browser::Firefox => "firefox",
        }
    }
}

/// Where one installation lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub browser: Browser,
    /// `NAME.json` host manifest.
    pub manifest: PathBuf,
    /// Launcher script the manifest points to.
    pub launcher: PathBuf,
    /// Config file with the allowlist.
    pub config: PathBuf,
    /// The `bridge install …` command line that (re)creates this target.
    pub install_command: String,
}

impl Target {
    pub fn new(browser: Browser, profile: Option<&Path>) -> anyhow::Result<Self> {
        let file = format!("{HOST_NAME}.json");
        if let Some(dir) = profile {
            if browser == Browser::Firefox {
                bail!(
                    "Firefox reads host manifests only from the user-level folder; drop --profile"
                );
            }
            let dir = std::path::absolute(dir)?;
            let install_command = format!(
                "bridge install --browser {} --profile {}",
                browser.name(),
                dir.display()
            );
            let dir = dir.join("NativeMessagingHosts");
            return Ok(Self {
                install_command,
                browser,
                manifest: dir.join(&file),
                launcher: dir.join("cardpay-bridge-host.sh"),
                config: dir.join("cardpay-bridge.config.json"),
            });
        }
        let cfg_home = config::config_home();
        let manifest_dir = match browser {
            Browser::Chromium => cfg_home.join("chromium").join("NativeMessagingHosts"),
            Browser::Chrome => cfg_home.join("google-chrome").join("NativeMessagingHosts"),
            Browser::Firefox => config::home()
                .join(".mozilla")
                .join("native-messaging-hosts"),
        };
        let ours = cfg_home.join("cardpay");
        Ok(Self {
            browser,
            manifest: manifest_dir.join(file),
            launcher: ours.join("bridge-host.sh"),
            config: config::default_config_path(),
            install_command: format!("bridge install --browser {}", browser.name()),
        })
    }

    pub fn manifest_json(&self) -> serde_json::Value {
        let mut m = json!({
            "name": HOST_NAME,
            "description": "Cardpay bridge: lets Cardpay payment pages use the smart card in your reader",
            "path": self.launcher,
            "type": "stdio",
        });
        if self.browser == Browser::Firefox {
            m["allowed_extensions"] = json!([FIREFOX_EXTENSION_ID]);
        } else {
            m["allowed_origins"] = json!([format!("chrome-extension://{EXTENSION_ID}/")]);
        }
        m
    }
}

fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

pub fn launcher_script(exe: &Path, config: &Path) -> String {
    format!(
        "#!/bin/sh\n# Cardpay bridge launcher, written by `bridge install`.\nexec {} host --config {} \"$@\"\n",
        sh_quote(exe),
        sh_quote(config)
    )
}

/// Rate limits `bridge install` may set (`None` keeps the current value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub apdu_burst: Option<u32>,
    pub apdu_per_sec: Option<u32>,
    pub verify_burst: Option<u32>,
    pub verify_refill_secs: Option<u64>,
}

impl Limits {
    /// Write the given limits into `cfg`.
    pub fn apply(&self, cfg: &mut Config) -> anyhow::Result<()> {
        for (name, v) in [
            ("--apdu-burst", self.apdu_burst),
            ("--apdu-per-sec", self.apdu_per_sec),
            ("--verify-burst", self.verify_burst),
        ] {
            if v == Some(0) {
                bail!("{name} must be at least 1");
            }
        }
        if let Some(v) = self.apdu_burst {
            cfg.apdu_burst = v;
        }
        if let Some(v) = self.apdu_per_sec {
            cfg.apdu_per_sec = v;
        }
        if let Some(v) = self.verify_burst {
            cfg.verify_burst = v;
        }
        if let Some(v) = self.verify_refill_secs {
            cfg.verify_refill_secs = v;
        }
        Ok(())
    }
}

/// Install; `origins` empty keeps those of an existing config.
pub fn install(target: &Target, exe: &Path, origins: &[String]) -> anyhow::Result<Config> {
    install_with(target, exe, origins, &Limits::default())
}

/// Install and set rate limits (those not given keep an existing config's value).
pub fn install_with(
    target: &Target,
    exe: &Path,
    origins: &[String],
    limits: &Limits,
) -> anyhow::Result<Config> {
    let mut cfg = if target.config.exists() {
        Config::load(&target.config).unwrap_or_default()
    } else {
        Config::default()
    };
    if !origins.is_empty() {
        cfg.origins = origins.to_vec();
    }
    limits.apply(&mut cfg)?;
    cfg.allowlist()?;
    cfg.save(&target.config)
        .with_context(|| format!("writing {}", target.config.display()))?;

    if let Some(d) = target.launcher.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&target.launcher, launcher_script(exe, &target.config))
        .with_context(|| format!("writing {}", target.launcher.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&target.launcher, std::fs::Permissions::from_mode(0o755))?;
    }
    if let Some(d) = target.manifest.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(
        &target.manifest,
        serde_json::to_string_pretty(&target.manifest_json())? + "\n",
    )
    .with_context(|| format!("writing {}", target.manifest.display()))?;
    Ok(cfg)
}

/// Remove what `install` wrote (the user-level config stays unless `purge`).
pub fn uninstall(target: &Target, purge: bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut removed = vec![];
    let mut paths = vec![target.manifest.clone()];
    let profile_install = target.config.parent() == target.manifest.parent();
    // the user-level launcher is shared by browsers: keep it while another manifest uses it
    if profile_install || purge {
        paths.push(target.launcher.clone());
        paths.push(target.config.clone());
    }
    for p in paths {
        match std::fs::remove_file(&p) {
            Ok(()) => removed.push(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_install_roundtrip() {
        let dir = std::env::temp_dir().join(format!("bridge-inst-{}", std::process::id()));
        let t = Target::new(Browser::Chromium, Some(&dir)).unwrap();
        assert!(t
            .manifest
            .ends_with("NativeMessagingHosts/com.cardpay.bridge.json"));
        let cfg = install(
            &t,
            Path::new("/opt/it's/bridge"),
            &["http://127.0.0.1:*".into()],
        )
        .unwrap();
        assert_eq!(cfg.origins, vec!["http://127.0.0.1:*"]);
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&t.manifest).unwrap()).unwrap();
        assert_eq!(m["name"], HOST_NAME);
        assert_eq!(m["type"], "stdio");
        assert_eq!(
            m["allowed_origins"][0],
            "chrome-extension://balkbpnchocdfjmodhmppaobcgfpdlih/"
        );
        assert_eq!(m["path"], t.launcher.display().to_string());
        let script = std::fs::read_to_string(&t.launcher).unwrap();
        assert!(script.contains(r"'/opt/it'\''s/bridge' host --config"));
        // re-install without origins keeps them
        let cfg = install(&t, Path::new("/bin/bridge"), &[]).unwrap();
        assert_eq!(cfg.origins, vec!["http://127.0.0.1:*"]);
        assert!(install(&t, Path::new("/bin/bridge"), &["bogus".into()]).is_err());
        // rate limits go into the config file; a later install keeps them
        let limits = Limits {
            verify_burst: Some(100),
            verify_refill_secs: Some(1),
            apdu_burst: Some(5000),
            ..Default::default()
        };
        install_with(&t, Path::new("/bin/bridge"), &[], &limits).unwrap();
        let saved = Config::load(&t.config).unwrap();
        assert_eq!(
            (
                saved.verify_burst,
                saved.verify_refill_secs,
                saved.apdu_burst
            ),
            (100, 1, 5000)
        );
        assert_eq!(saved.apdu_per_sec, Config::default().apdu_per_sec);
        assert_eq!(saved.origins, vec!["http://127.0.0.1:*"]);
        let g = saved.guard();
        assert_eq!(g.verify_burst, 100.0);
        assert_eq!(g.verify_refill, std::time::Duration::from_secs(1));
        install(&t, Path::new("/bin/bridge"), &[]).unwrap();
        assert_eq!(Config::load(&t.config).unwrap().verify_burst, 100);
        let zero = Limits {
            verify_burst: Some(0),
            ..Default::default()
        };
        assert!(install_with(&t, Path::new("/bin/bridge"), &[], &zero).is_err());
        assert_eq!(Config::load(&t.config).unwrap().verify_burst, 100);
        let removed = uninstall(&t, false).unwrap();
        assert_eq!(removed.len(), 3);
        assert!(!t.manifest.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn firefox_manifest() {
        let t = Target::new(Browser::Firefox, None).unwrap();
        assert!(t
            .manifest
            .ends_with(".mozilla/native-messaging-hosts/com.cardpay.bridge.json"));
        assert_eq!(
            t.manifest_json()["allowed_extensions"][0],
            FIREFOX_EXTENSION_ID
        );
        assert!(Target::new(Browser::Firefox, Some(Path::new("/tmp"))).is_err());
    }
}
