//! (a) The token computes exactly what the software module computes: every
//! MAC over random inputs (S1/S2/S3 shapes and arbitrary lengths, purchase and
//! load keys, four key versions), and the shared rules give identical
//! authorisations and refusals on top of either backend.

mod common;

use common::{fixture, VERSIONS};
use proptest::prelude::*;
use purse::crypto;
use purse::security_module::{KeyUse, LoadRequest, PurchaseDraw, SecurityModuleError, SessionMacs};
use purse::{BcdDate, BcdTime, CardId, Expiry, PurseId};

fn card_id() -> impl Strategy<Value = CardId> {
    "[0-9]{16}".prop_map(|s| CardId::parse(&s).unwrap())
}

fn key_use() -> impl Strategy<Value = KeyUse> {
    prop_oneof![Just(KeyUse::Purchase), Just(KeyUse::Load)]
}

fn version() -> impl Strategy<Value = u8> {
    prop::sample::select(VERSIONS.to_vec())
}

fn dates() -> impl Strategy<Value = (Expiry, BcdDate)> {
    (
        prop::sample::select(vec!["261231", "301231", "991231"]),
        prop::sample::select(vec!["20261123", "20270101", "20310101"]),
    )
        .prop_map(|(e, d)| (Expiry::parse(e).unwrap(), BcdDate::parse(d).unwrap()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Messages of 0..40 bytes cover the one-block path (H = 0) and the
    /// chained path, including lengths that are multiples of 8.
    #[test]
    fn every_mac_equals_the_software_module(
        key in key_use(),
        v in version(),
        id in card_id(),
        random in any::<[u8; 4]>(),
        atc in any::<u16>(),
        points in any::<bool>(),
        messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..5),
    ) {
        let f = fixture();
        let purse = if points { PurseId::Points } else { PurseId::Money };
        let msgs: Vec<&[u8]> = messages.iter().map(|m| m.as_slice()).collect();
        let hsm = f.keys.session_macs(key, v, &id, random, atc, purse, &msgs).unwrap();
        let sw = f.software().session_macs(key, v, &id, random, atc, purse, &msgs).unwrap();
        prop_assert_eq!(hsm, sw);
    }

    #[test]
    fn purchase_authorisations_are_identical(
        v in version(),
        id in card_id(),
        (expiry, date) in dates(),
        random in any::<[u8; 4]>(),
        atc in 1..u16::MAX,
        balance in 0..100_000u32,
        amount in 0..120_000u32,
        seq in any::<u32>(),
        points in any::<bool>(),
        flip in 0..9usize,
    ) {
        let f = fixture();
        let d = PurchaseDraw {
            card_id: id,
            expiry,
            key_version: v,
            purse: if points { PurseId::Points } else { PurseId::Money },
            balance,
            atc,
            random,
            amount,
            seq,
            date,
            time: BcdTime::parse("235959").unwrap(),
        };
        let (hsm, sw) = (f.pkcs11_module(), f.software_module());
        let a = hsm.authorize_purchase(&d);
        prop_assert_eq!(&a, &sw.authorize_purchase(&d));
        if let Ok(auth) = a {
            // The card's S3, or one byte of it flipped (flip 8 = untouched).
            let mut s3 = auth.expected_s3;
            if flip < 8 { s3[flip] ^= 0x01; }
            let r = hsm.verify_purchase_s3(&d, auth.balance_after, &s3);
            prop_assert_eq!(&r, &sw.verify_purchase_s3(&d, auth.balance_after, &s3));
            prop_assert_eq!(r.is_ok(), flip == 8);
        }
    }

    #[test]
    fn load_authorisations_are_identical(
        v in version(),
        id in card_id(),
        (expiry, date) in dates(),
        random in any::<[u8; 4]>(),
        atc in 1..u16::MAX,
        balance in 0..100_000u32,
        amount in 0..100_000u32,
        max_balance in 0..150_000u32,
        genuine_s1 in any::<bool>(),
        other_s1 in any::<[u8; 8]>(),
    ) {
        let f = fixture();
        let sw_keys = f.software();
        let sk = sw_keys.session_key(KeyUse::Load, v, &id, random, atc, PurseId::Money).unwrap();
        let s1 = if genuine_s1 {
            crypto::load_s1(&sk, balance, amount, atc, &common::TERMINAL)
        } else {
            other_s1
        };
        let r = LoadRequest {
            card_id: id,
            expiry,
            key_version: v,
            purse: PurseId::Money,
            balance,
            max_balance,
            atc,
            random,
            amount,
            s1,
            date,
            time: BcdTime::parse("000001").unwrap(),
        };
        let hsm = f.pkcs11_module().authorize_load(&r);
        prop_assert_eq!(&hsm, &f.software_module().authorize_load(&r));
        if !genuine_s1 && other_s1 != crypto::load_s1(&sk, balance, amount, atc, &common::TERMINAL) {
            prop_assert_eq!(hsm, Err(SecurityModuleError::S1Mismatch));
        }
    }
}

#[test]
fn unknown_key_versions_are_refused_alike() {
    let f = fixture();
    let id = CardId::parse("6280000000000001").unwrap();
    for v in [0u8, 5, 200] {
        let hsm = f
            .keys
            .session_macs(KeyUse::Purchase, v, &id, [0; 4], 1, PurseId::Money, &[b"x"]);
        assert_eq!(hsm, Err(SecurityModuleError::UnknownKeyVersion(v)));
        assert_eq!(
            hsm,
            f.software()
                .session_macs(KeyUse::Purchase, v, &id, [0; 4], 1, PurseId::Money, &[b"x"])
        );
    }
    assert_eq!(f.pkcs11_module().key_versions(), VERSIONS);
}

/// The software module's S2 of the team's test keys, as a fixed vector: if
/// both backends drifted together, this would still catch it.
#[test]
fn known_vector_from_the_team_test_keys() {
    let f = fixture();
    let id = CardId::parse("6280000000000001").unwrap();
    let mkp = purse::crypto::DesKey::from_hex(common::TEST_MKP).unwrap();
    let sk = crypto::session_key(
        &crypto::diversify(&mkp, &id),
        [9, 8, 7, 6],
        1,
        PurseId::Money,
    );
    let date = BcdDate::parse("20261123").unwrap();
    let time = BcdTime::parse("120000").unwrap();
    let want = crypto::purchase_s2(&sk, 250, 1, &common::TERMINAL, 1, &date, &time);
    let input = crypto::purchase_s2_input(250, 1, &common::TERMINAL, 1, &date, &time);
    let got = f
        .keys
        .session_macs(
            KeyUse::Purchase,
            1,
            &id,
            [9, 8, 7, 6],
            1,
            PurseId::Money,
            &[&input],
        )
        .unwrap();
    assert_eq!(got, vec![want]);
}

/// Many threads at once through a pool smaller than the thread count: every
/// answer right, the pool never above its limit, no session lost.
#[test]
fn concurrent_callers_share_the_pool() {
    let f = fixture();
    let threads = 8;
    let max = f.cfg.max_sessions;
    std::thread::scope(|s| {
        for t in 0..threads {
            let keys = f.keys.clone();
            s.spawn(move || {
                let sw = f.software();
                for i in 0..100u16 {
                    let id = CardId::parse(&format!("{:016}", 6280000000000000u64 + u64::from(i)))
                        .unwrap();
                    let key = if i % 2 == 0 {
                        KeyUse::Purchase
                    } else {
                        KeyUse::Load
                    };
                    let v = VERSIONS[usize::from(i) % VERSIONS.len()];
                    let msg = [t as u8; 23];
                    let a = keys
                        .session_macs(
                            key,
                            v,
                            &id,
                            [t as u8, 1, 2, 3],
                            i,
                            PurseId::Money,
                            &[&msg, &msg[..14]],
                        )
                        .unwrap();
                    let b = sw
                        .session_macs(
                            key,
                            v,
                            &id,
                            [t as u8, 1, 2, 3],
                            i,
                            PurseId::Money,
                            &[&msg, &msg[..14]],
                        )
                        .unwrap();
                    assert_eq!(a, b);
                    assert!(keys.open_sessions() <= max);
                }
            });
        }
    });
    assert!(f.keys.open_sessions() >= 1 && f.keys.open_sessions() <= max);
}
