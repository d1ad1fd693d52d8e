//! `payment-server hsm import|list` against a real SoftHSM2 token, then the
//! real binary serving purchases with the keys only the token holds.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use card::personalise::Personalisation;
use card::Card;
use cardpay_pkcs11::softhsm::TestToken;
use payment_testkit::*;
use purse::crypto::DesKey;
use purse::session::VerifyMode;
use purse::types::{CardId, Expiry};

/// TEST KEYS of key version 2 (made up for this test).
const MKP2: &str = "0F1E2D3C4B5A69788796A5B4C3D2E1F0";
const MKL2: &str = "F0E1D2C3B4A5968778695A4B3C2D1E0F";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_payment-server"))
}

#[tokio::test]
async fn keys_imported_by_the_cli_serve_purchases_and_never_leave_the_token() {
    let token = TestToken::shared();
    let cfg = token.config();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::in_dir(dir.path());
    let m = TestMerchant::new("shop", 7);
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n{}[security_module]\nterminal = \"000000000001\"\n\
         [security_module.pkcs11]\nmodule = {:?}\ntoken_label = {:?}\npin = {{ file = {:?} }}\n{}",
        db.toml(),
        cfg.module.display().to_string(),
        cfg.token_label,
        token.pin_file().display().to_string(),
        test_config_toml(&db, std::slice::from_ref(&m), 0)
            .split_once("[[merchants]]")
            .map(|(_, rest)| format!("[[merchants]]{rest}"))
            .unwrap()
    );
    let path = dir.path().join("ps.toml");
    std::fs::write(&path, toml).unwrap();

    // Import from the environment (never from the command line).
    let out = bin()
        .args([
            "--config",
            path.to_str().unwrap(),
            "hsm",
            "import",
            "--version",
            "2",
        ])
        .env("CARDPAY_SM_MKP_2", MKP2)
        .env("CARDPAY_SM_MKL_2", MKL2)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("key version 2") && text.contains("KCV"),
        "{text}"
    );
    assert!(
        !text.contains(MKP2) && !text.contains(&MKP2.to_lowercase()),
        "no key printed"
    );
    // A key version is never overwritten.
    let again = bin()
        .args([
            "--config",
            path.to_str().unwrap(),
            "hsm",
            "import",
            "--version",
            "2",
        ])
        .env("CARDPAY_SM_MKP_2", MKL2)
        .env("CARDPAY_SM_MKL_2", MKP2)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let list = bin()
        .args(["--config", path.to_str().unwrap(), "hsm", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("key version 2") && text.contains("(protected)"),
        "{text}"
    );

    // The server on the token pays with a card of key version 2.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Server(
        bin()
            .args([
                "--config",
                path.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--insecure-http", // loopback only: tests/tls.rs covers TLS
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut up = false;
    for _ in 0..100 {
        if reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "server on the token did not start");
    let state = Personalisation {
        card_id: CardId::parse("6280000000000902").unwrap(),
        expiry: Expiry::parse("301231").unwrap(),
        currency: 978,
        exponent: 2,
        balance: 5_000,
        max_balance: 100_000,
        points: 0,
        points_max: 1_000,
        pin: TEST_PIN.into(),
        no_pin_limit: 2_000,
        key_version: 2,
        mkp: DesKey::from_hex(MKP2).unwrap(),
        mkl: DesKey::from_hex(MKL2).unwrap(),
    }
    .build()
    .unwrap();
    let mut shopper = Shopper::new(
        Card::new(state),
        Api::new(format!("127.0.0.1:{port}").parse().unwrap()),
    );
    for mode in [VerifyMode::PaymentServer, VerifyMode::SecurityModule] {
        let out = shopper
            .pay(&m.session(&format!("H-{}", mode.as_str()), 400, mode, now() + 600))
            .await;
        assert!(out.is_paid(), "{mode:?}: {out:?}");
    }
    assert_eq!(balance(&shopper.card), 4_200);
}
