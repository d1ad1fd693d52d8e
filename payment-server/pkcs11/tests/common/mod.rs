//! One SoftHSM2 token per test process with the team's TEST keys as key
//! version 1 and three more key versions of fixed pseudo-random keys, and the
//! same keys in a software module to compare against.

#![allow(dead_code)]

use std::sync::OnceLock;

use cardpay_pkcs11::softhsm::TestToken;
use cardpay_pkcs11::{import_master_keys, Pkcs11Config, Pkcs11Keys};
use purse::crypto::DesKey;
use purse::security_module::{SecurityModule, SoftwareKeys};
use purse::Terminal;

/// TEST KEYS (docs/TEAM.md), key version 1.
pub const TEST_MKP: &str = "404142434445464748494A4B4C4D4E4F";
pub const TEST_MKL: &str = "505152535455565758595A5B5C5D5E5F";
pub const TERMINAL: Terminal = Terminal([0, 0, 0, 0, 0, 1]);
/// Key versions in the token (and in [`software`]).
pub const VERSIONS: [u8; 4] = [1, 2, 3, 4];

pub struct Fixture {
    pub cfg: Pkcs11Config,
    pub keys: Pkcs11Keys,
    masters: Vec<(u8, DesKey, DesKey)>,
}

impl Fixture {
    /// A software module with exactly the token's master keys.
    pub fn software(&self) -> SoftwareKeys {
        let mut s = SoftwareKeys::new();
        for (v, p, l) in &self.masters {
            s.add_key_version(*v, p.clone(), l.clone());
        }
        s
    }
    pub fn software_module(&self) -> SecurityModule {
        SecurityModule::software(TERMINAL, self.software())
    }
    pub fn pkcs11_module(&self) -> SecurityModule {
        SecurityModule::new(TERMINAL, Box::new(self.keys.clone()))
    }
    pub fn master(&self, v: u8) -> (&DesKey, &DesKey) {
        let (_, p, l) = self.masters.iter().find(|m| m.0 == v).expect("key version");
        (p, l)
    }
}

/// Deterministic key bytes for versions 2..: fixed-seed xorshift (test data, not keys of anyone).
fn test_key(seed: u64) -> DesKey {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut b = [0u8; 16];
    for byte in &mut b {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = (x >> 24) as u8;
    }
    DesKey::new(b)
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let token = TestToken::shared();
        let cfg = token.config();
        let mut masters = vec![(
            1,
            DesKey::from_hex(TEST_MKP).unwrap(),
            DesKey::from_hex(TEST_MKL).unwrap(),
        )];
        for v in 2..=4u8 {
            masters.push((
                v,
                test_key(u64::from(v) * 2),
                test_key(u64::from(v) * 2 + 1),
            ));
        }
        for (v, p, l) in &masters {
            import_master_keys(&cfg, *v, p, l).expect("import test keys");
        }
        let keys = Pkcs11Keys::open(&cfg).expect("open the token");
        assert_eq!(
            purse::security_module::SessionMacs::key_versions(&keys),
            VERSIONS
        );
        Fixture { cfg, keys, masters }
    })
}
