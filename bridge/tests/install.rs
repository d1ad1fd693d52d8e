//! `bridge install / doctor / uninstall` as a shopper runs them, per browser,
//! into a throw-away HOME (the manifests are written, checked and removed by
//! the `native_messaging` crate), and the floors of the limit flags.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

struct Home(PathBuf);

impl Home {
    fn new(name: &str) -> Home {
        let p = std::env::temp_dir().join(format!("bridge-install-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Home(p)
    }

    fn bridge(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_bridge"))
            .args(args)
            .env("HOME", &self.0)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("NATIVE_MESSAGING_BROWSERS_CONFIG")
            .env("CARDPAY_BRIDGE_LOG", "warn")
            .output()
            .expect("run bridge")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.bridge(args);
        assert!(
            o.status.success(),
            "bridge {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The doctor's install lines (the card lines depend on pcscd, not tested here).
fn doctor(home: &Home, args: &[&str]) -> String {
    let mut a = vec!["doctor"];
    a.extend(args);
    String::from_utf8(home.bridge(&a).stdout).unwrap()
}

#[test]
fn install_doctor_uninstall_for_each_browser() {
    let home = Home::new("each");
    let cases = [
        (
            "chromium",
            ".config/chromium/NativeMessagingHosts",
            "allowed_origins",
            "chrome-extension://balkbpnchocdfjmodhmppaobcgfpdlih/",
        ),
        (
            "chrome",
            ".config/google-chrome/NativeMessagingHosts",
            "allowed_origins",
            "chrome-extension://balkbpnchocdfjmodhmppaobcgfpdlih/",
        ),
        (
            "edge",
            ".config/microsoft-edge/NativeMessagingHosts",
            "allowed_origins",
            "chrome-extension://balkbpnchocdfjmodhmppaobcgfpdlih/",
        ),
        (
            "brave",
            ".config/BraveSoftware/Brave-Browser/NativeMessagingHosts",
            "allowed_origins",
            "chrome-extension://balkbpnchocdfjmodhmppaobcgfpdlih/",
        ),
        (
            "firefox",
            ".mozilla/native-messaging-hosts",
            "allowed_extensions",
            "cardpay@cardpay.example",
        ),
    ];
    for (browser, dir, field, id) in cases {
        let manifest = home.0.join(dir).join("com.cardpay.bridge.json");
        let before = doctor(&home, &["--browser", browser]);
        assert!(
            before.contains(&format!("not registered with {browser}")),
            "{before}"
        );
        assert!(
            before.contains(&format!("bridge install --browser {browser}")),
            "{before}"
        );
        let out = home.ok(&[
            "install",
            "--browser",
            browser,
            "--origin",
            "https://pay.example",
        ]);
        assert!(out.contains(&manifest.display().to_string()), "{out}");
        let m = json(&manifest);
        assert_eq!(m["name"], "com.cardpay.bridge", "{browser}");
        assert_eq!(m["type"], "stdio");
        assert_eq!(m[field], serde_json::json!([id]), "{browser}: {m}");
        let other = if field == "allowed_origins" {
            "allowed_extensions"
        } else {
            "allowed_origins"
        };
        assert!(m.get(other).is_none(), "{browser}: {m}");
        let launcher = PathBuf::from(m["path"].as_str().unwrap());
        assert_eq!(launcher, home.0.join(".config/cardpay/bridge-host.sh"));
        let script = std::fs::read_to_string(&launcher).unwrap();
        assert!(script.contains(env!("CARGO_BIN_EXE_bridge").rsplit('/').next().unwrap()));
        assert!(script.contains(" host --config "), "{script}");
        let after = doctor(&home, &["--browser", browser]);
        assert!(
            after.contains(&format!(
                "ok   The bridge is registered with {browser} for the Cardpay extension ({id})"
            )),
            "{after}"
        );
        assert!(after.contains("ok   The bridge program the browser starts is in place."));
        assert!(after.contains("ok   Payment sites allowed to use the card: https://pay.example."));
    }
    // a manifest for another extension is reported, with the fix
    let ff = home
        .0
        .join(".mozilla/native-messaging-hosts/com.cardpay.bridge.json");
    let mut m = json(&ff);
    m["allowed_extensions"] = serde_json::json!(["someone@else.example"]);
    std::fs::write(&ff, m.to_string()).unwrap();
    let d = doctor(&home, &["--browser", "firefox"]);
    assert!(
        d.contains("does not admit the Cardpay extension (cardpay@cardpay.example)"),
        "{d}"
    );
    // a Firefox manifest with Chromium's field is not valid for Firefox
    m["allowed_origins"] =
        serde_json::json!(["chrome-extension://balkbpnchocdfjmodhmppaobcgfpdlih/"]);
    std::fs::write(&ff, m.to_string()).unwrap();
    let d = doctor(&home, &["--browser", "firefox"]);
    assert!(d.contains("is not a valid firefox host manifest"), "{d}");
    // an add-on id of the tester's choice
    home.ok(&[
        "install",
        "--browser",
        "firefox",
        "--extension-id",
        "dev@cardpay.example",
    ]);
    assert_eq!(json(&ff)["allowed_extensions"][0], "dev@cardpay.example");
    let d = doctor(
        &home,
        &[
            "--browser",
            "firefox",
            "--extension-id",
            "dev@cardpay.example",
        ],
    );
    assert!(
        d.contains("ok   The bridge is registered with firefox"),
        "{d}"
    );

    // uninstall removes the manifest and keeps the shared launcher and settings
    let out = home.ok(&["uninstall", "--browser", "firefox"]);
    assert!(out.contains("removed") && !ff.exists(), "{out}");
    assert!(home.0.join(".config/cardpay/bridge.json").exists());
    assert!(home
        .0
        .join(".config/chromium/NativeMessagingHosts/com.cardpay.bridge.json")
        .exists());
    assert_eq!(
        home.ok(&["uninstall", "--browser", "firefox"]).trim(),
        "Nothing to remove."
    );
    let out = home.ok(&["uninstall", "--browser", "brave", "--purge"]);
    assert!(
        out.contains("bridge.json") && out.contains("bridge-host.sh"),
        "{out}"
    );
}

#[test]
fn profile_install_for_chromium_test_profiles() {
    let home = Home::new("profile");
    let udd = home.0.join("udd");
    let udd_s = udd.display().to_string();
    home.ok(&[
        "install",
        "--profile",
        &udd_s,
        "--origin",
        "http://127.0.0.1:*",
    ]);
    let nm = udd.join("NativeMessagingHosts");
    let m = json(&nm.join("com.cardpay.bridge.json"));
    assert_eq!(
        m["allowed_origins"][0],
        "chrome-extension://balkbpnchocdfjmodhmppaobcgfpdlih/"
    );
    assert_eq!(
        m["path"],
        nm.join("cardpay-bridge-host.sh").display().to_string()
    );
    let cfg = json(&nm.join("cardpay-bridge.config.json"));
    assert_eq!(cfg["origins"][0], "http://127.0.0.1:*");
    // nothing at user level
    assert!(!home.0.join(".config").exists());
    // re-install without origins keeps them; limits go into the profile's settings
    home.ok(&[
        "install",
        "--profile",
        &udd_s,
        "--verify-burst",
        "100",
        "--verify-refill-secs",
        "1",
    ]);
    let cfg = json(&nm.join("cardpay-bridge.config.json"));
    assert_eq!(cfg["origins"][0], "http://127.0.0.1:*");
    assert_eq!(
        (
            cfg["verify_burst"].as_u64(),
            cfg["verify_refill_secs"].as_u64()
        ),
        (Some(100), Some(1))
    );
    let d = doctor(&home, &["--profile", &udd_s]);
    assert!(
        d.contains("ok   The bridge is registered with chromium"),
        "{d}"
    );
    assert!(
        d.contains(&format!("--profile {udd_s}")) || !d.contains("FIX  The bridge"),
        "{d}"
    );
    // Firefox has no per-profile manifests
    let o = home.bridge(&["install", "--browser", "firefox", "--profile", &udd_s]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("HOME"));
    let out = home.ok(&["uninstall", "--profile", &udd_s]);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(!nm.join("com.cardpay.bridge.json").exists());
}

#[test]
fn limit_flags_below_their_floor_are_refused() {
    let home = Home::new("floors");
    let udd = home.0.join("udd").display().to_string();
    home.ok(&[
        "install",
        "--profile",
        &udd,
        "--origin",
        "https://pay.example",
    ]);
    let cfg_path = home
        .0
        .join("udd/NativeMessagingHosts/cardpay-bridge.config.json");
    let before = std::fs::read_to_string(&cfg_path).unwrap();
    for (flag, value, min) in [
        ("--verify-refill-secs", "0", "1"),
        ("--verify-burst", "0", "1"),
        ("--apdu-burst", "0", "1"),
        ("--apdu-per-sec", "0", "1"),
        ("--initialize-burst", "0", "1"),
        ("--initialize-per-hour", "0", "1"),
        ("--transaction-idle-ms", "999", "1000"),
    ] {
        let o = home.bridge(&["install", "--profile", &udd, flag, value]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{flag} {value} was accepted");
        assert!(
            err.contains(&format!("{flag} must be at least {min}")),
            "{flag}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(&cfg_path).unwrap(),
            before,
            "{flag}"
        );
    }
}
