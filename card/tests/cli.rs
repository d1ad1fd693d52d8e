//! The `card` binary's command line: personalise, inspect, run refusals.

mod common;

use std::process::{Command, Output};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_card");

fn personalise(state: &std::path::Path, extra: &[&str], pin: &str, mkp: &str) -> Output {
    Command::new(BIN)
        .args(["personalise", "--state"])
        .arg(state)
        .args([
            "--id",
            CARD_ID,
            "--expiry",
            "301231",
            "--currency",
            "978",
            "--exponent",
            "2",
        ])
        .args(["--balance", "10000", "--max", "100000", "--points", "500"])
        .args(["--pin", pin, "--no-pin-limit", "2000", "--key-version", "1"])
        .args(["--mkp", mkp, "--mkl", MKL])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn personalise_inspect_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("card.json");

    let out = personalise(&state, &[], "1234", MKP);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !log.contains(CARD_ID) && !log.contains(MKP),
        "no secrets in logs: {log}"
    );
    // the keys in the file are the diversified ones, not the masters
    let st = card::Store::new(&state).load().unwrap();
    assert_eq!(st, state_from_masters());
    assert_ne!(hex::encode_upper(st.kp.0), MKP);

    // no silent overwrite of a card
    let again = personalise(&state, &[], "1234", MKP);
    assert!(!again.status.success());
    assert!(personalise(&state, &["--force"], "1234", MKP)
        .status
        .success());
    // bad input
    assert!(!personalise(&dir.path().join("a"), &[], "12", MKP)
        .status
        .success());
    assert!(!personalise(&dir.path().join("b"), &[], "1234", "00")
        .status
        .success());
    assert!(!dir.path().join("a").exists() && !dir.path().join("b").exists());

    // inspect
    let out = Command::new(BIN)
        .args(["inspect", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("card …0001\n"), "{text}");
    assert!(text.contains("atc 0\n"));
    assert!(text.contains("purse money balance 10000 max 100000 currency 978 exponent 2\n"));
    assert!(text.contains("purse points balance 500 max 1000000 currency 999 exponent 0\n"));
    assert!(text.contains("log 0 records, newest first\n"));
    assert!(
        !text.contains("1234") && !text.contains(CARD_ID),
        "no PIN, masked id"
    );

    // a corrupt state is refused by inspect and run
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, b"{\"format\":1").unwrap();
    for sub in ["inspect", "run"] {
        let out = Command::new(BIN)
            .args([sub, "--state"])
            .arg(&bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{sub} on a corrupt state");
    }
    // a second `card run` on a state that is being served is refused
    let lock = card::Store::new(&state).lock_exclusive().unwrap();
    let out = Command::new(BIN)
        .args(["run", "--state"])
        .arg(&state)
        .args(["--vpcd", "127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another `card run`"));
    drop(lock);
}

fn state_from_masters() -> card::CardState {
    state()
}
