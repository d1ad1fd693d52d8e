//! `bridge doctor`: tells a shopper in plain words what is missing.

use std::fmt::Write as _;

use crate::config::Config;
use crate::guard::GuardConfig;
use crate::install::{Target, HOST_NAME};
use crate::pcsc::PcscBackend;
use purse::bridge_msg::{Readiness, Status};

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    pub what: String,
    /// What to do about it (empty when ok).
    pub fix: String,
}

fn check(ok: bool, what: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        ok,
        what: what.into(),
        fix: if ok { String::new() } else { fix.into() },
    }
}

/// The installation checks (no card access): the manifest as the
/// `native_messaging` crate checks it (name, `stdio`, absolute path, the
/// right allowlist field for the browser family), then that it admits the
/// Cardpay extension, that the program it starts is there, and the settings.
pub fn install_checks(target: &Target) -> Vec<Check> {
    let mut out = vec![];
    let browser = target.browser.name();
    let cmd = &target.install_command;
    let reinstall = format!("Run `{cmd}` again.");
    if !target.manifest.exists() {
        let mut fix = format!(
            "The bridge is not registered with {browser} ({} is missing). Run `{cmd} --origin https://<payment site>`.",
            target.manifest.display()
        );
        if target.browser.is_firefox() {
            fix += " (Firefox looks only in $HOME/.mozilla/native-messaging-hosts.)";
        }
        out.push(check(
            false,
            format!("The bridge is registered with {browser}."),
            fix,
        ));
        return out; // the install step also writes the settings
    }
    let valid = native_messaging::verify_installed(
        HOST_NAME,
        Some(&[target.browser.name()]),
        native_messaging::Scope::User,
    );
    let manifest = std::fs::read_to_string(&target.manifest)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let (Ok(true), Some(m)) = (valid, manifest) else {
        out.push(check(
            false,
            format!("The bridge is registered with {browser}."),
            format!(
                "{} is not a valid {browser} host manifest. {reinstall}",
                target.manifest.display()
            ),
        ));
        return out;
    };
    let entry = target.allowlist_entry();
    let admits = m[target.browser.allowlist_field()]
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v == entry.as_str()));
    out.push(check(
        admits,
        format!("The bridge is registered with {browser} for the Cardpay extension ({entry})."),
        format!(
            "{} does not admit the Cardpay extension ({entry}). {reinstall}",
            target.manifest.display()
        ),
    ));
    let path = m["path"].as_str().unwrap_or_default();
    let launcher_ok = std::fs::metadata(path).is_ok_and(|md| {
        use std::os::unix::fs::PermissionsExt;
        md.is_file() && md.permissions().mode() & 0o111 != 0
    });
    out.push(check(
        launcher_ok,
        "The bridge program the browser starts is in place.",
        format!("The browser would start {path}, which is missing or not executable. {reinstall}"),
    ));
    match Config::load(&target.config) {
        Err(e) => out.push(check(
            false,
            "The bridge's settings are readable.",
            format!("The bridge's settings are missing or broken ({e}). {reinstall}"),
        )),
        Ok(cfg) if cfg.origins.is_empty() => out.push(check(
            false,
            "The bridge knows which payment sites may use the card.",
            format!("No payment site is allowed yet. Run `{cmd} --origin https://<payment site>`."),
        )),
        Ok(cfg) => out.push(check(
            true,
            format!(
                "Payment sites allowed to use the card: {}.",
                cfg.origins.join(", ")
            ),
            "",
        )),
    }
    out
}

/// The card checks, through the same readiness answer the extension shows.
pub fn card_checks() -> Vec<Check> {
    let mut backend = PcscBackend::new(GuardConfig::default(), None);
    card_checks_from(&backend.status(None))
}

/// The card checks for a readiness answer (sans-IO).
pub fn card_checks_from(status: &Status) -> Vec<Check> {
    let state = status.state;
    let message = status.message.clone();
    let mut out = vec![];
    out.push(check(
        state != Readiness::NoService,
        "The smart-card service (pcscd) is running.",
        "The smart-card service (pcscd) is not running. Install it with `sudo apt install pcscd` and start it with `sudo systemctl start pcscd`.",
    ));
    if state == Readiness::NoService {
        return out;
    }
    out.push(check(
        state != Readiness::NoReader,
        format!("A card reader is connected{}.", status.reader.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()),
        "No card reader is connected. Plug in your reader (and install its driver, e.g. `sudo apt install libccid`).",
    ));
    if state == Readiness::NoReader {
        return out;
    }
    out.push(check(
        state != Readiness::NoCard,
        "A card is in the reader.",
        "No card in the reader. Insert your Cardpay card.",
    ));
    if state == Readiness::NoCard {
        return out;
    }
    let one_try = status
        .card
        .as_ref()
        .is_some_and(|c| c.pin_tries_left == Some(1));
    out.push(check(
        state == Readiness::Ready && !one_try,
        format!("The card is a usable Cardpay card. {message}"),
        message,
    ));
    out
}

/// Render checks; returns the text and whether everything is fine.
pub fn render(checks: &[Check]) -> (String, bool) {
    let mut s = String::new();
    let mut all = true;
    for c in checks {
        all &= c.ok;
        if c.ok {
            let _ = writeln!(s, "  ok   {}", c.what);
        } else {
            let _ = writeln!(s, "  FIX  {}", c.fix);
        }
    }
    if all {
        s.push_str("Everything is in place: you can pay with your card.\n");
    } else {
        s.push_str("Cardpay cannot use your card until the items marked FIX are done.\n");
    }
    (s, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pin_try_left_is_a_fix_that_names_bridge_pin() {
        let mut st = Status::new(Readiness::Ready, crate::readiness::ONE_TRY_LEFT);
        st.card = Some(purse::bridge_msg::CardInfo {
            expiry: "301231".into(),
            app_version: 1,
            pin_tries_left: Some(1),
        });
        let (text, ok) = render(&card_checks_from(&st));
        assert!(!ok);
        assert!(
            text.contains("FIX") && text.contains("bridge pin"),
            "{text}"
        );
        st.card.as_mut().unwrap().pin_tries_left = Some(3);
        st.message = "The card is ready.".into();
        assert!(render(&card_checks_from(&st)).1);
    }

    #[test]
    fn render_marks_fixes() {
        let (text, ok) = render(&[check(true, "a", "x"), check(false, "b", "do c")]);
        assert!(!ok);
        assert!(
            text.contains("  ok   a") && text.contains("  FIX  do c"),
            "{text}"
        );
        let (text, ok) = render(&[check(true, "a", "x")]);
        assert!(ok && text.contains("Everything is in place"), "{text}");
    }
}
