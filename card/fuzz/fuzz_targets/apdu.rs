//! Fuzz the card's APDU entry point: a sequence of APDUs (split by the first
//! byte of each chunk as its length) against one card, after SELECT half of
//! the time. Checks: no panic, every response carries a status word, no
//! response is longer than a short APDU allows, and money is conserved:
//! balances never exceed the maximum and only change through a logged
//! transaction, and the logged record carries the S3 the card answered
//! (READ LOG is a receipt of exactly that DEBIT or CREDIT).
#![no_main]

use card::personalise::Personalisation;
use card::{Card, FixedRandom};
use libfuzzer_sys::fuzz_target;
use purse::crypto::DesKey;
use purse::{CardId, Expiry};

const SELECT: [u8; 14] = [
    0x00, 0xA4, 0x04, 0x00, 0x08, 0xF0, 0x43, 0x41, 0x52, 0x44, 0x50, 0x41, 0x59, 0x00,
];

fn card() -> Card {
    let st = Personalisation {
        card_id: CardId::parse("6280000000000001").unwrap(),
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
        mkp: DesKey::from_hex("404142434445464748494A4B4C4D4E4F").unwrap(),
        mkl: DesKey::from_hex("505152535455565758595A5B5C5D5E5F").unwrap(),
    }
    .build()
    .unwrap();
    Card::with_random(st, Box::new(FixedRandom([1, 2, 3, 4])))
}

fuzz_target!(|data: &[u8]| {
    let mut c = card();
    let mut rest = data;
    if rest.first().is_some_and(|b| b & 1 == 1) {
        c.process(&SELECT);
    }
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        let (apdu, next) = tail.split_at(n);
        rest = next;
        let before = c.state().clone();
        let r = c.process(apdu);
        assert!(
            r.len() >= 2 && r.len() <= 258,
            "response length {}",
            r.len()
        );
        let s = c.state();
        for (p, b) in s.purses.iter().zip(before.purses.iter()) {
            assert!(p.balance <= p.max_balance);
            if p.balance != b.balance {
                assert_ne!(
                    s.log.last(),
                    before.log.last(),
                    "balance moved without a log record"
                );
            }
        }
        assert!(s.atc >= before.atc);
        let ok = r.ends_with(&[0x90, 0x00]);
        // A DEBIT that answered 9000 is logged; it answers balance(4) S3(8), a
        // CREDIT result(1) balance(4) S3(8).
        match (ok, apdu.get(1)) {
            (true, Some(0x54)) => assert_eq!(&r[4..12], &s.log.last().unwrap().s3),
            (true, Some(0x52)) => assert_eq!(&r[5..13], &s.log.last().unwrap().s3),
            _ => {}
        }
        if ok && apdu.get(1) == Some(&0x5A) {
            assert_eq!(r.len(), 37 + 2, "READ LOG answers a 37-byte record");
        }
    }
});
