//! (d) Operator mistakes give clear, typed errors and never show the PIN:
//! wrong PIN, missing token, missing module, PIN source unset or unreadable.
//! Its own test process: PKCS#11 login is per process, so no other test here
//! may log in before the wrong-PIN attempt.

use std::path::PathBuf;

use cardpay_pkcs11::softhsm::TestToken;
use cardpay_pkcs11::{
    generate_master_keys, import_master_keys, list_master_keys, PinSource, Pkcs11Config,
    Pkcs11Error, Pkcs11Keys,
};
use purse::crypto::DesKey;

fn write_pin(name: &str, pin: &str) -> PathBuf {
    let p = TestToken::shared().dir.join(name);
    std::fs::write(&p, pin).unwrap();
    p
}

#[test]
fn wrong_pin_then_right_pin() {
    let token = TestToken::shared();
    let mut cfg = token.config();
    let wrong = "00000000wrong";
    cfg.pin = PinSource::File(write_pin("wrong-pin", wrong));
    let e = Pkcs11Keys::open(&cfg).unwrap_err();
    assert!(matches!(e, Pkcs11Error::WrongPin), "{e:?}");
    assert_eq!(e.to_string(), "wrong token PIN");
    assert!(!format!("{e:?}").contains(wrong));
    for e in [
        list_master_keys(&cfg).unwrap_err(),
        generate_master_keys(&cfg, 1).unwrap_err(),
    ] {
        assert!(matches!(e, Pkcs11Error::WrongPin), "{e:?}");
    }
    // The same token with its PIN: fine (and, on SoftHSM, not locked by the tries above).
    let keys = Pkcs11Keys::open(&token.config()).unwrap();
    assert!(purse::security_module::SessionMacs::key_versions(&keys).is_empty());
}

#[test]
fn missing_token() {
    let mut cfg = TestToken::shared().config();
    cfg.token_label = "no-such-token".into();
    let e = Pkcs11Keys::open(&cfg).unwrap_err();
    assert!(
        matches!(&e, Pkcs11Error::TokenNotFound(l) if l == "no-such-token"),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "no PKCS#11 token labelled \"no-such-token\"");
    let k = DesKey::from_hex("000102030405060708090A0B0C0D0E0F").unwrap();
    let k2 = DesKey::from_hex("101112131415161718191A1B1C1D1E1F").unwrap();
    assert!(matches!(
        import_master_keys(&cfg, 1, &k, &k2),
        Err(Pkcs11Error::TokenNotFound(_))
    ));
}

#[test]
fn missing_module() {
    let mut cfg = TestToken::shared().config();
    cfg.module = "/nonexistent/libpkcs11.so".into();
    let e = Pkcs11Keys::open(&cfg).unwrap_err();
    assert!(
        matches!(&e, Pkcs11Error::ModuleLoad { path, .. } if path == &PathBuf::from("/nonexistent/libpkcs11.so")),
        "{e:?}"
    );
    assert!(e
        .to_string()
        .starts_with("cannot load PKCS#11 module /nonexistent/libpkcs11.so"));
}

#[test]
fn pin_source_unset_or_unreadable() {
    let token = TestToken::shared();
    let mut cfg: Pkcs11Config = token.config();
    cfg.pin = PinSource::Env("CARDPAY_TEST_HSM_PIN_NOT_SET".into());
    let e = Pkcs11Keys::open(&cfg).unwrap_err();
    assert!(matches!(&e, Pkcs11Error::PinEnvMissing(v) if v == "CARDPAY_TEST_HSM_PIN_NOT_SET"));
    assert_eq!(
        e.to_string(),
        "token PIN: environment variable CARDPAY_TEST_HSM_PIN_NOT_SET is not set"
    );
    cfg.pin = PinSource::File(token.dir.join("absent-pin"));
    assert!(matches!(
        Pkcs11Keys::open(&cfg),
        Err(Pkcs11Error::PinFile { .. })
    ));
    cfg.pin = PinSource::File(write_pin("empty-pin", "\n"));
    assert!(matches!(Pkcs11Keys::open(&cfg), Err(Pkcs11Error::PinEmpty)));
}

#[test]
fn bad_key_labels() {
    let mut cfg = TestToken::shared().config();
    cfg.key_labels.load = "cardpay-mkl".into();
    assert!(matches!(
        Pkcs11Keys::open(&cfg),
        Err(Pkcs11Error::Config(_))
    ));
}
