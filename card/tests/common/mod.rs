//! Shared helpers of the card's tests: the test keys of docs/TEAM.md.
#![allow(dead_code)]

use card::personalise::Personalisation;
use card::state::CardState;
use card::{Card, FixedRandom};
use purse::crypto::DesKey;
use purse::security_module::{SecurityModule, SoftwareKeys};
use purse::{BcdDate, BcdTime, CardId, Expiry, Terminal};

pub const MKP: &str = "404142434445464748494A4B4C4D4E4F";
pub const MKL: &str = "505152535455565758595A5B5C5D5E5F";
pub const TERMINAL: Terminal = Terminal([0, 0, 0, 0, 0, 1]);
pub const CARD_ID: &str = "6280000000000001";

pub fn personalisation() -> Personalisation {
    Personalisation {
        card_id: CardId::parse(CARD_ID).unwrap(),
        expiry: Expiry::parse("301231").unwrap(),
        currency: 978,
        exponent: 2,
        balance: 10_000,
        max_balance: 100_000,
        points: 500,
        points_max: 1_000_000,
        pin: "1234".into(),
        no_pin_limit: 2_000,
        key_version: 1,
        mkp: DesKey::from_hex(MKP).unwrap(),
        mkl: DesKey::from_hex(MKL).unwrap(),
    }
}

pub fn state() -> CardState {
    personalisation().build().unwrap()
}

pub fn card() -> Card {
    Card::with_random(state(), Box::new(FixedRandom([0x11, 0x22, 0x33, 0x44])))
}

/// The issuer's master keys (TEST KEYS) in software.
pub fn keys() -> SoftwareKeys {
    let mut keys = SoftwareKeys::new();
    keys.add_key_version(
        1,
        DesKey::from_hex(MKP).unwrap(),
        DesKey::from_hex(MKL).unwrap(),
    );
    keys
}

pub fn sm() -> SecurityModule {
    SecurityModule::software(TERMINAL, keys())
}

pub fn date(s: &str) -> BcdDate {
    BcdDate::parse(s).unwrap()
}

pub fn time(s: &str) -> BcdTime {
    BcdTime::parse(s).unwrap()
}

/// Status word of a response APDU.
pub fn sw(r: &[u8]) -> u16 {
    assert!(r.len() >= 2, "response has a status word");
    u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]])
}

pub const SELECT: [u8; 14] = [
    0x00, 0xA4, 0x04, 0x00, 0x08, 0xF0, 0x43, 0x41, 0x52, 0x44, 0x50, 0x41, 0x59, 0x00,
];
