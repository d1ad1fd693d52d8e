//! Clearing fixtures: TEST batch signing keys, configs for the clearing
//! process and the payment server's `[clearing]` section, the test security
//! module, database snapshots.

use std::path::Path;

use ed25519_dalek::SigningKey;
use payment_server::clearing::produce::BatchSigner;
use purse::security_module::{SecurityModule, SoftwareKeys};

use crate::{TestMerchant, TEST_MKL, TEST_MKP, TEST_TERMINAL};

/// TEST KEY: the payment server's batch signing key (Ed25519 seed).
pub const TEST_PAYMENTS_SEED: [u8; 32] = [0x5A; 32];
/// TEST KEY: the load server's batch signing key.
pub const TEST_LOADS_SEED: [u8; 32] = [0x4C; 32];

pub fn payments_key() -> SigningKey {
    SigningKey::from_bytes(&TEST_PAYMENTS_SEED)
}
pub fn loads_key() -> SigningKey {
    SigningKey::from_bytes(&TEST_LOADS_SEED)
}

/// The payment server's signer writing to `spool`.
pub fn payments_signer(spool: &Path) -> BatchSigner {
    BatchSigner {
        key_id: "payments-test".into(),
        key: payments_key(),
        spool: spool.to_path_buf(),
    }
}

/// Test IBANs (valid check digits) for the n-th merchant or bank.
pub const TEST_IBANS: [&str; 4] = [
    "DE89370400440532013000",
    "GB82WEST12345698765432",
    "FR1420041010050500013M02606",
    "NL91ABNA0417164300",
];

/// A clearing config: database and folders under `dir`, the payment
/// server's config at `payment_config`, fees of `fee_fixed` + `fee_bps`
/// for every merchant, and banks `bank-1`, `bank-2`.
pub fn clearing_config_toml(
    dir: &Path,
    payment_config: &Path,
    merchants: &[TestMerchant],
    fee_fixed: u32,
    fee_bps: u32,
) -> String {
    let mut t = format!(
        "db_path = {:?}\npayment_config = {:?}\ninbox = {:?}\nout_dir = {:?}\ninterval_secs = 1\n\
         [issuer]\nid = \"issuer\"\nname = \"Cardpay Test Issuer\"\niban = \"{}\"\nbic = \"COBADEFFXXX\"\n\
         [[signers]]\nkey_id = \"payments-test\"\npublic_key = \"{}\"\nkinds = [\"purchases\", \"loads\"]\n\
         [[signers]]\nkey_id = \"loads-test\"\npublic_key = \"{}\"\nkinds = [\"loads\"]\n",
        dir.join("clearing.sqlite").display().to_string(),
        payment_config.display().to_string(),
        dir.join("spool").display().to_string(),
        dir.join("settlement").display().to_string(),
        TEST_IBANS[0],
        hex::encode(payments_key().verifying_key().to_bytes()),
        hex::encode(loads_key().verifying_key().to_bytes()),
    );
    for (i, m) in merchants.iter().enumerate() {
        t.push_str(&format!(
            "[[merchants]]\nid = \"{}\"\niban = \"{}\"\nbic = \"WESTGB2L\"\nfee_fixed = {fee_fixed}\nfee_bps = {fee_bps}\n",
            m.id,
            TEST_IBANS[(i + 1) % TEST_IBANS.len()]
        ));
    }
    for b in ["bank-1", "bank-2"] {
        t.push_str(&format!(
            "[[banks]]\nid = \"{b}\"\nname = \"{b} test bank\"\niban = \"{}\"\n",
            TEST_IBANS[3]
        ));
    }
    t
}

/// The test security module (TEST keys).
pub fn test_security_module() -> SecurityModule {
    let mut keys = SoftwareKeys::new();
    keys.add_key_version(
        1,
        purse::crypto::DesKey::from_hex(TEST_MKP).expect("hex"),
        purse::crypto::DesKey::from_hex(TEST_MKL).expect("hex"),
    );
    SecurityModule::software(TEST_TERMINAL, keys)
}

/// A consistent copy of a SQLite database (`VACUUM INTO`), WAL included.
pub fn snapshot(from: &Path, to: &Path) {
    let c = rusqlite::Connection::open(from).expect("open");
    c.execute("VACUUM INTO ?1", [to.display().to_string()])
        .expect("vacuum into");
}

/// The payment server's `[clearing]` section (TEST signing key), to append
/// to [`crate::test_config_toml`].
pub fn producer_toml(spool: &Path, clearing_db: &Path) -> String {
    format!(
        "[clearing]\nkey_id = \"payments-test\"\nsigning_key = \"{}\"\nspool = {:?}\nclearing_db = {:?}\n",
        hex::encode(TEST_PAYMENTS_SEED),
        spool.display().to_string(),
        clearing_db.display().to_string()
    )
}
