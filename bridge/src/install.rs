//! `bridge install` / `uninstall`: the native-messaging host manifest (written,
//! checked and removed by the `native_messaging` crate), a small launcher
//! script (browsers cannot pass arguments to a host) and the settings file
//! with the origin allowlist and limits.
//!
//! Where the manifest goes is the crate's browser table (`$HOME`-based on
//! Linux): Chromium `~/.config/chromium/NativeMessagingHosts`, Chrome
//! `~/.config/google-chrome/…`, Edge `~/.config/microsoft-edge/…`, Brave
//! `~/.config/BraveSoftware/Brave-Browser/…`, Firefox
//! `~/.mozilla/native-messaging-hosts`. A Chromium-family `--profile DIR` (a
//! throw-away user-data dir, as the tests use) is one more entry of that
//! table, given to the crate through its documented override
//! (`NATIVE_MESSAGING_BROWSERS_CONFIG`), so the crate writes and checks that
//! manifest too.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use native_messaging::Scope;

use crate::config::{self, Config};

/// Native-messaging host name (what the extension passes to `connectNative`).
pub const HOST_NAME: &str = "com.cardpay.bridge";
/// What the manifest says about the host.
pub const DESCRIPTION: &str =
    "Cardpay bridge: lets Cardpay payment pages use the smart card in your reader";
/// The extension's fixed ID in Chromium-family browsers (from the public key
/// in `extension/manifest.json`).
pub const EXTENSION_ID: &str = "balkbpnchocdfjmodhmppaobcgfpdlih";
/// The extension's fixed add-on ID in Firefox (`browser_specific_settings.gecko.id`).
pub const FIREFOX_EXTENSION_ID: &str = "cardpay@cardpay.example";

/// The browsers `bridge install` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Browser {
    Chromium,
    Chrome,
    Edge,
    Brave,
    Firefox,
}

impl Browser {
    /// The key in the `native_messaging` crate's browser table (also the CLI spelling).
    pub fn name(self) -> &'static str {
        match self {
            Browser::Chromium => "chromium",
            Browser::Chrome => "chrome",
            Browser::Edge => "edge",
            Browser::Brave => "brave",
            Browser::Firefox => "firefox",
        }
    }

    pub fn is_firefox(self) -> bool {
        self == Browser::Firefox
    }

    /// The extension ID this browser knows the Cardpay extension by.
    pub fn default_extension_id(self) -> &'static str {
        if self.is_firefox() {
            FIREFOX_EXTENSION_ID
        } else {
            EXTENSION_ID
        }
    }

    /// What goes into the manifest's allowlist for `extension_id`:
    /// `chrome-extension://ID/` (Chromium family) or the add-on id (Firefox).
    pub fn allowlist_entry(self, extension_id: &str) -> String {
        if self.is_firefox() {
            extension_id.to_owned()
        } else {
            format!("chrome-extension://{extension_id}/")
        }
    }

    /// The manifest field holding that allowlist.
    pub fn allowlist_field(self) -> &'static str {
        if self.is_firefox() {
            "allowed_extensions"
        } else {
            "allowed_origins"
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
    /// The extension the manifest admits.
    pub extension_id: String,
}

/// Quote a string as a TOML basic string (paths only: control characters and
/// the crate's `{VAR}` template braces are refused).
fn toml_string(s: &str) -> anyhow::Result<String> {
    if s.chars().any(|c| c.is_control() || c == '{' || c == '}') {
        bail!("the profile path must not contain control characters or braces: {s:?}");
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// Make the `native_messaging` crate resolve `browser`'s user-level manifest
/// folder to `DIR/NativeMessagingHosts` (a Chromium user-data dir) for the
/// rest of this process. The crate reads its browser table once; this must
/// run before any other use of it (the CLI calls it first thing).
fn point_crate_at_profile(browser: Browser, nm_dir: &Path) -> anyhow::Result<()> {
    let key = browser.name();
    let table = format!(
        "schema_version = 1\n[browsers.{key}]\nfamily = \"chromium\"\n[browsers.{key}.paths.linux.user]\ndir = {}\n",
        toml_string(&nm_dir.display().to_string())?
    );
    let file = std::env::temp_dir().join(format!(
        "cardpay-bridge-browsers-{}.toml",
        std::process::id()
    ));
    std::fs::write(&file, table).with_context(|| format!("writing {}", file.display()))?;
    std::env::set_var("NATIVE_MESSAGING_BROWSERS_CONFIG", &file);
    // the crate loads the table on first use: load it now, while the file exists
    let _ = native_messaging::paths::config();
    let _ = std::fs::remove_file(&file);
    let want = nm_dir.join(format!("{HOST_NAME}.json"));
    let got = native_messaging::manifest_path(key, Scope::User, HOST_NAME).ok();
    if got.as_deref() != Some(want.as_path()) {
        bail!(
            "internal error: the browser table was loaded before the profile was set (manifest would go to {got:?})"
        );
    }
    Ok(())
}

impl Target {
    /// The target for `browser`, user-level or in a Chromium-family `profile`.
    /// `extension_id` overrides the browser's default extension ID.
    pub fn new(
        browser: Browser,
        profile: Option<&Path>,
        extension_id: Option<&str>,
    ) -> anyhow::Result<Self> {
        let extension_id = extension_id
            .unwrap_or(browser.default_extension_id())
            .to_owned();
        let mut install_command = format!("bridge install --browser {}", browser.name());
        if extension_id != browser.default_extension_id() {
            install_command += &format!(" --extension-id {extension_id}");
        }
        if let Some(dir) = profile {
            if browser.is_firefox() {
                bail!(
                    "Firefox reads host manifests only from $HOME/.mozilla/native-messaging-hosts (not per profile): drop --profile and set HOME for a test browser"
                );
            }
            let dir = std::path::absolute(dir)?;
            install_command += &format!(" --profile {}", dir.display());
            let nm = dir.join("NativeMessagingHosts");
            point_crate_at_profile(browser, &nm)?;
            return Ok(Self {
                install_command,
                browser,
                manifest: nm.join(format!("{HOST_NAME}.json")),
                launcher: nm.join("cardpay-bridge-host.sh"),
                config: nm.join("cardpay-bridge.config.json"),
                extension_id,
            });
        }
        let manifest = native_messaging::manifest_path(browser.name(), Scope::User, HOST_NAME)
            .with_context(|| format!("where {} keeps host manifests", browser.name()))?;
        let ours = config::config_home().join("cardpay");
        Ok(Self {
            browser,
            manifest,
            launcher: ours.join("bridge-host.sh"),
            config: config::default_config_path(),
            install_command,
            extension_id,
        })
    }

    /// The allowlist entry the manifest must carry for our extension.
    pub fn allowlist_entry(&self) -> String {
        self.browser.allowlist_entry(&self.extension_id)
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

/// Install; `origins` empty keeps those of an existing config; `limits` not
/// given keep the existing config's values.
pub fn install(
    target: &Target,
    exe: &Path,
    origins: &[String],
    limits: &crate::config::Limits,
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
    let entry = vec![target.allowlist_entry()];
    let (chromium, firefox): (&[String], &[String]) = if target.browser.is_firefox() {
        (&[], &entry)
    } else {
        (&entry, &[])
    };
    native_messaging::install(
        HOST_NAME,
        DESCRIPTION,
        &target.launcher,
        chromium,
        firefox,
        &[target.browser.name()],
        Scope::User,
    )
    .with_context(|| format!("writing {}", target.manifest.display()))?;
    Ok(cfg)
}

/// Remove what `install` wrote (the user-level config stays unless `purge`).
pub fn uninstall(target: &Target, purge: bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut removed = vec![];
    if target.manifest.exists() {
        native_messaging::remove(HOST_NAME, &[target.browser.name()], Scope::User)
            .with_context(|| format!("removing {}", target.manifest.display()))?;
        removed.push(target.manifest.clone());
    }
    let profile_install = target.config.parent() == target.manifest.parent();
    // the user-level launcher is shared by browsers: keep it while another manifest uses it
    if profile_install || purge {
        for p in [&target.launcher, &target.config] {
            match std::fs::remove_file(p) {
                Ok(()) => removed.push(p.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlists_per_family() {
        assert_eq!(
            Browser::Brave.allowlist_entry(EXTENSION_ID),
            "chrome-extension://balkbpnchocdfjmodhmppaobcgfpdlih/"
        );
        assert_eq!(Browser::Edge.allowlist_field(), "allowed_origins");
        assert_eq!(
            Browser::Firefox.allowlist_entry(FIREFOX_EXTENSION_ID),
            "cardpay@cardpay.example"
        );
        assert_eq!(Browser::Firefox.allowlist_field(), "allowed_extensions");
        assert!(Target::new(Browser::Firefox, Some(Path::new("/tmp")), None).is_err());
    }

    #[test]
    fn toml_quoting() {
        assert_eq!(toml_string(r#"/a "b"\c"#).unwrap(), r#""/a \"b\"\\c""#);
        assert!(toml_string("/a/{HOME}").is_err());
        assert!(toml_string("/a\nb").is_err());
    }

    #[test]
    fn launcher_quotes_paths() {
        let s = launcher_script(Path::new("/opt/it's/bridge"), Path::new("/c/b.json"));
        assert!(s.contains(r"'/opt/it'\''s/bridge' host --config '/c/b.json'"));
    }
}
