//! (b) A full purchase and a full load against the real virtual card state
//! machine (`card::Card`, in memory) with the security module on SoftHSM2,
//! plus the attacks the token must stop: a card of other keys, a forged S1.

mod common;

use card::client::{self, ClientError, Txn};
use card::personalise::Personalisation;
use card::Card;
use common::{fixture, TEST_MKL, TEST_MKP};
use purse::command::{LogKind, Request};
use purse::crypto::DesKey;
use purse::security_module::{PurchaseDraw, SecurityModuleError};
use purse::{BcdDate, BcdTime, CardId, Expiry, PurseId, StatusWord};

fn card(id: &str, balance: u32, mkp: &str, mkl: &str) -> Card {
    Card::new(
        Personalisation {
            card_id: CardId::parse(id).unwrap(),
            expiry: Expiry::parse("301231").unwrap(),
            currency: 978,
            exponent: 2,
            balance,
            max_balance: 100_000,
            points: 0,
            points_max: 10_000,
            pin: "1234".into(),
            no_pin_limit: 100_000,
            key_version: 1,
            mkp: DesKey::from_hex(mkp).unwrap(),
            mkl: DesKey::from_hex(mkl).unwrap(),
        }
        .build()
        .unwrap(),
    )
}

fn txn(amount: u32, seq: u32) -> Txn {
    Txn {
        purse: PurseId::Money,
        amount,
        seq,
        date: BcdDate::parse("20261123").unwrap(),
        time: BcdTime::parse("101500").unwrap(),
    }
}

#[test]
fn purchase_and_load_with_the_token() {
    let sm = fixture().pkcs11_module();
    let mut c = card("6280000000000001", 5_000, TEST_MKP, TEST_MKL);
    let sel = client::select(&mut c).unwrap();

    let p = client::purchase(&mut c, &sm, &sel, txn(1_250, 7)).unwrap();
    assert_eq!(p.debit.balance_after, 3_750);
    assert_eq!(c.state().purses[0].balance, 3_750);

    // The card's log record proves the debit to the token-backed module
    // (recovery), from the draw alone.
    let log = client::read_log(&mut c).unwrap();
    let rec = &log[0];
    assert_eq!(
        (rec.kind, rec.amount, rec.atc),
        (LogKind::Purchase, 1_250, p.draw.atc)
    );
    sm.verify_purchase_s3(&p.draw, rec.balance_after, &rec.s3)
        .unwrap();

    let l = client::load(&mut c, &sm, &sel, txn(2_000, 0)).unwrap();
    assert_eq!(l.credit.balance_after, 5_750);
    assert_eq!(c.state().purses[0].balance, 5_750);

    // A second purchase on the same selection: new ATC, new session key.
    let p2 = client::purchase(&mut c, &sm, &sel, txn(750, 8)).unwrap();
    assert_eq!(p2.draw.atc, l.init.atc + 1);
    assert_eq!(c.state().purses[0].balance, 5_000);
    // The first purchase's S3 proves nothing about the second.
    assert_eq!(
        sm.verify_purchase_s3(&p2.draw, p2.debit.balance_after, &p.debit.s3),
        Err(SecurityModuleError::S3Mismatch)
    );
}

/// A card personalised under other master keys (a forged or foreign card
/// claiming key version 1): the card refuses the token's S2, nothing moves.
#[test]
fn a_card_of_other_keys_is_not_debited() {
    let sm = fixture().pkcs11_module();
    let mut c = card(
        "6280000000000002",
        5_000,
        "00112233445566778899AABBCCDDEEFF",
        TEST_MKL,
    );
    let sel = client::select(&mut c).unwrap();
    match client::purchase(&mut c, &sm, &sel, txn(100, 1)) {
        Err(ClientError::Status { step: "DEBIT", sw }) => assert_eq!(sw, StatusWord::MAC_WRONG),
        other => panic!("expected the card to refuse S2, got {other:?}"),
    }
    assert_eq!(c.state().purses[0].balance, 5_000);
}

/// A load whose S1 does not come from the card's key: the token-backed
/// module refuses before any CREDIT exists; the card keeps its balance.
#[test]
fn a_forged_s1_gets_no_credit() {
    let sm = fixture().pkcs11_module();
    let mut c = card(
        "6280000000000003",
        100,
        TEST_MKP,
        "00112233445566778899AABBCCDDEEFF",
    );
    let sel = client::select(&mut c).unwrap();
    match client::load(&mut c, &sm, &sel, txn(90_000, 0)) {
        Err(ClientError::SecurityModule(SecurityModuleError::S1Mismatch)) => {}
        other => panic!("expected S1 mismatch, got {other:?}"),
    }
    assert_eq!(c.state().purses[0].balance, 100);
    // And a DEBIT nobody authorised (S2 of zeros) is refused by the card.
    let mut c = card("6280000000000004", 100, TEST_MKP, TEST_MKL);
    let sel = client::select(&mut c).unwrap();
    let d = client::send(
        &mut c,
        "INITIALIZE",
        &Request::InitializePurchase(purse::command::InitializePurchase {
            purse: PurseId::Money,
            amount: 50,
            terminal: sm.terminal(),
        }),
    )
    .unwrap();
    let init = purse::command::InitializePurchaseResponse::decode(&d).unwrap();
    let draw = PurchaseDraw {
        card_id: sel.card_id,
        expiry: sel.expiry,
        key_version: init.key_version,
        purse: PurseId::Money,
        balance: init.balance,
        atc: init.atc,
        random: init.random,
        amount: 50,
        seq: 1,
        date: BcdDate::parse("20261123").unwrap(),
        time: BcdTime::parse("101500").unwrap(),
    };
    let mut auth = sm.authorize_purchase(&draw).unwrap();
    auth.debit.s2 = [0; 8];
    let r = client::send(&mut c, "DEBIT", &Request::DebitPurchase(auth.debit));
    assert!(matches!(r, Err(ClientError::Status { sw, .. }) if sw == StatusWord::MAC_WRONG));
    assert_eq!(c.state().purses[0].balance, 100);
}
