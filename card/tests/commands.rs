//! Every command and status word of DESIGN §3 against the sans-IO card, the
//! INITIALIZE → DEBIT/CREDIT pairing rules, the log, and persistence.

mod common;

use card::app::{SW_PERSIST_FAILED, SW_RECORD_NOT_FOUND};
use card::client::{self, ClientError, Txn};
use card::state::CardState;
use card::{Card, FixedRandom, Store};
use common::*;
use purse::command::{
    CreditLoad, DebitPurchase, DebitResponse, InitializeLoad, InitializeLoadResponse,
    InitializePurchase, InitializePurchaseResponse, LogKind, LogRecord, ReadLog, Request,
    SelectResponse,
};
use purse::crypto;
use purse::security_module::KeyUse;
use purse::{PurseId, StatusWord};

fn selected() -> (Card, SelectResponse) {
    let mut c = card();
    let r = c.process(&SELECT);
    assert_eq!(sw(&r), 0x9000);
    let sel = SelectResponse::decode(&r[..r.len() - 2]).unwrap();
    (c, sel)
}

fn txn(purse: PurseId, amount: u32) -> Txn {
    Txn {
        purse,
        amount,
        seq: 7,
        date: date("20261123"),
        time: time("194500"),
    }
}

fn init_purchase(
    c: &mut Card,
    purse: PurseId,
    amount: u32,
) -> Result<InitializePurchaseResponse, u16> {
    let r = c.process(
        &Request::InitializePurchase(InitializePurchase {
            purse,
            amount,
            terminal: TERMINAL,
        })
        .to_bytes(),
    );
    match sw(&r) {
        0x9000 => Ok(InitializePurchaseResponse::decode(&r[..r.len() - 2]).unwrap()),
        s => Err(s),
    }
}

/// A DEBIT with a correct S2 for this INITIALIZE (built with the card's own keys).
fn debit_for(
    init: &InitializePurchaseResponse,
    purse: PurseId,
    amount: u32,
    d: &str,
) -> DebitPurchase {
    let sk = keys()
        .session_key(
            KeyUse::Purchase,
            1,
            &purse::CardId::parse(CARD_ID).unwrap(),
            init.random,
            init.atc,
            purse,
        )
        .unwrap();
    let (date, time) = (date(d), time("120000"));
    DebitPurchase {
        purse,
        amount,
        seq: 9,
        date,
        time,
        s2: crypto::purchase_s2(&sk, amount, init.atc, &TERMINAL, 9, &date, &time),
    }
}

fn send(c: &mut Card, req: Request) -> (Vec<u8>, u16) {
    let r = c.process(&req.to_bytes());
    let s = sw(&r);
    (r[..r.len() - 2].to_vec(), s)
}

#[test]
fn select_answers_the_personalised_data() {
    let (_c, sel) = selected();
    assert_eq!(sel.card_id.full(), CARD_ID);
    assert_eq!(sel.expiry.bytes(), [0x30, 0x12, 0x31]);
    assert_eq!(sel.key_version, 1);
    assert_eq!(sel.app_version, 1);
    assert_eq!(sel.purses[0].currency, 978);
    assert_eq!(sel.purses[0].exponent, 2);
    assert_eq!(sel.purses[0].balance, 10_000);
    assert_eq!(sel.purses[0].max_balance, 100_000);
    assert_eq!(sel.purses[1].currency, 999);
    assert_eq!(sel.purses[1].exponent, 0);
    assert_eq!(sel.purses[1].balance, 500);
}

#[test]
fn select_errors_and_deselection() {
    let mut c = card();
    // proprietary commands need the purse selected
    assert_eq!(sw(&c.process(&[0x80, 0x5C, 0, 0, 4])), 0x6985);
    assert_eq!(sw(&c.process(&[0x00, 0x20, 0, 0])), 0x6985);
    // unknown AID: 6A82 and deselected
    assert_eq!(sw(&c.process(&SELECT)), 0x9000);
    assert_eq!(
        sw(&c.process(&[0x00, 0xA4, 0x04, 0x00, 0x02, 0xA0, 0x00, 0x00])),
        0x6A82
    );
    assert_eq!(sw(&c.process(&[0x80, 0x5C, 0, 0, 4])), 0x6985);
    // P1/P2 of SELECT
    assert_eq!(
        sw(&c.process(&[0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00])),
        0x6A86
    );
    // malformed APDUs: 6700
    assert_eq!(sw(&c.process(&[0x00, 0xA4, 0x04])), 0x6700);
    assert_eq!(
        sw(&c.process(&[0x00, 0xA4, 0x04, 0x00, 0x08, 0xF0])),
        0x6700
    );
    assert_eq!(sw(&c.process(&[])), 0x6700);
}

#[test]
fn get_balance_cla_ins_p1p2() {
    let (mut c, _) = selected();
    let r = c.process(&[0x80, 0x5C, 0, 0, 4]);
    assert_eq!(r, vec![0, 0, 0x27, 0x10, 0x90, 0x00]);
    let r = c.process(&[0x80, 0x5C, 0, 1, 4]);
    assert_eq!(r, vec![0, 0, 0x01, 0xF4, 0x90, 0x00]);
    assert_eq!(sw(&c.process(&[0x80, 0x5C, 0, 2, 4])), 0x6A86);
    assert_eq!(sw(&c.process(&[0x80, 0x5C, 1, 0, 4])), 0x6A86);
    assert_eq!(sw(&c.process(&[0x84, 0x5C, 0, 0, 4])), 0x6E00);
    assert_eq!(sw(&c.process(&[0x80, 0xCA, 0, 0, 4])), 0x6D00);
    assert_eq!(sw(&c.process(&[0x80, 0x5C, 0, 0, 1, 0xAA, 4])), 0x6700);
}

#[test]
fn verify_tries_block_and_status_query() {
    let (mut c, _) = selected();
    let pin = |p: &[u8]| {
        let mut a = vec![0x00, 0x20, 0x00, 0x00, p.len() as u8];
        a.extend_from_slice(p);
        a
    };
    assert_eq!(
        sw(&c.process(&[0x00, 0x20, 0, 0])),
        0x63C3,
        "query: 3 tries, not verified"
    );
    assert_eq!(sw(&c.process(&pin(b"1111"))), 0x63C2);
    assert_eq!(c.state().pin_tries_left, 2);
    assert_eq!(
        sw(&c.process(&pin(b"1234"))),
        0x9000,
        "correct PIN resets tries"
    );
    assert_eq!(c.state().pin_tries_left, 3);
    assert_eq!(
        sw(&c.process(&[0x00, 0x20, 0, 0])),
        0x9000,
        "query: verified"
    );
    // a new selection forgets the verification
    assert_eq!(sw(&c.process(&SELECT)), 0x9000);
    assert_eq!(sw(&c.process(&[0x00, 0x20, 0, 0])), 0x63C3);
    // malformed PINs spend no try
    assert_eq!(sw(&c.process(&pin(b"123"))), 0x6700);
    assert_eq!(sw(&c.process(&pin(b"123456789"))), 0x6700);
    assert_eq!(sw(&c.process(&pin(b"12a4"))), 0x6A80);
    assert_eq!(c.state().pin_tries_left, 3);
    // three wrong tries block, also across power cycles
    assert_eq!(sw(&c.process(&pin(b"0000"))), 0x63C2);
    c.reset();
    assert_eq!(sw(&c.process(&SELECT)), 0x9000);
    assert_eq!(sw(&c.process(&pin(b"0000"))), 0x63C1);
    assert_eq!(sw(&c.process(&pin(b"0000"))), 0x63C0);
    assert_eq!(
        sw(&c.process(&pin(b"1234"))),
        0x6983,
        "blocked: even the right PIN"
    );
    assert_eq!(sw(&c.process(&[0x00, 0x20, 0, 0])), 0x6983);
    assert_eq!(sw(&c.process(&[0x00, 0x20, 0, 1])), 0x6A86);
}

#[test]
fn no_pin_limit_per_selection() {
    let (mut c, _) = selected();
    let atc = c.state().atc;
    assert_eq!(init_purchase(&mut c, PurseId::Money, 2_001), Err(0x6982));
    assert_eq!(c.state().atc, atc, "refused INITIALIZE spends no ATC");
    assert!(
        init_purchase(&mut c, PurseId::Money, 2_000).is_ok(),
        "at the limit: no PIN"
    );
    assert!(
        init_purchase(&mut c, PurseId::Points, 400).is_ok(),
        "points: no limit"
    );
    client::verify(&mut c, "1234").unwrap();
    assert!(init_purchase(&mut c, PurseId::Money, 2_001).is_ok());
    c.process(&SELECT);
    assert_eq!(
        init_purchase(&mut c, PurseId::Money, 2_001),
        Err(0x6982),
        "new selection"
    );
    // blocked PIN: 6983
    for _ in 0..3 {
        c.process(&[0x00, 0x20, 0, 0, 4, b'9', b'9', b'9', b'9']);
    }
    assert_eq!(init_purchase(&mut c, PurseId::Money, 2_001), Err(0x6983));
    assert!(
        init_purchase(&mut c, PurseId::Money, 100).is_ok(),
        "small purchases still work"
    );
}

#[test]
fn purchase_end_to_end_with_security_module() {
    let (mut c, sel) = selected();
    let sm = sm();
    let out = client::purchase(&mut c, &sm, &sel, txn(PurseId::Money, 1_234)).unwrap();
    assert_eq!(out.init.balance, 10_000);
    assert_eq!(out.init.atc, 1, "ATC after the increment");
    assert_eq!(out.init.key_version, 1);
    assert_eq!(out.init.alg, 1);
    assert_eq!(out.init.random, [0x11, 0x22, 0x33, 0x44]);
    assert_eq!(out.debit.balance_after, 8_766);
    assert_eq!(c.state().purses[0].balance, 8_766);
    assert_eq!(c.state().atc, 1);
    let log = client::read_log(&mut c).unwrap();
    assert_eq!(
        log,
        vec![LogRecord {
            kind: LogKind::Purchase,
            purse: PurseId::Money,
            amount: 1_234,
            balance_after: 8_766,
            atc: 1,
            terminal: TERMINAL,
            date: date("20261123"),
            time: time("194500"),
            seq: 7,
            s3: out.debit.s3,
        }]
    );
    // The record is a receipt: the security module verifies its S3.
    assert!(sm
        .verify_purchase_s3(&out.draw, log[0].balance_after, &log[0].s3)
        .is_ok());
    // amount 0: authentication only, balance unchanged, still a logged transaction
    let out = client::purchase(&mut c, &sm, &sel, txn(PurseId::Points, 0)).unwrap();
    assert_eq!(out.debit.balance_after, 500);
    assert_eq!(c.state().atc, 2);
    // points purse purchase
    let out = client::purchase(&mut c, &sm, &sel, txn(PurseId::Points, 120)).unwrap();
    assert_eq!(out.debit.balance_after, 380);
    assert_eq!(c.state().purses[1].balance, 380);
    assert_eq!(c.state().purses[0].balance, 8_766);
}

#[test]
fn funds_9401() {
    let (mut c, _) = selected();
    client::verify(&mut c, "1234").unwrap();
    assert_eq!(init_purchase(&mut c, PurseId::Money, 10_001), Err(0x9401));
    assert_eq!(c.state().atc, 0);
    assert_eq!(init_purchase(&mut c, PurseId::Points, 501), Err(0x9401));
    assert!(init_purchase(&mut c, PurseId::Money, 10_000).is_ok());
}

#[test]
fn debit_without_initialize() {
    let (mut c, _) = selected();
    let init = init_purchase(&mut c, PurseId::Money, 100).unwrap();
    let d = debit_for(&init, PurseId::Money, 100, "20261123");
    c.process(&SELECT); // a new selection drops the pending INITIALIZE
    assert_eq!(send(&mut c, Request::DebitPurchase(d)).1, 0x6985);
    let mut fresh = card();
    fresh.process(&SELECT);
    assert_eq!(send(&mut fresh, Request::DebitPurchase(d)).1, 0x6985);
    // a power cycle drops it too
    let init = init_purchase(&mut c, PurseId::Money, 100).unwrap();
    let d = debit_for(&init, PurseId::Money, 100, "20261123");
    c.reset();
    c.process(&SELECT);
    assert_eq!(send(&mut c, Request::DebitPurchase(d)).1, 0x6985);
    assert_eq!(c.state().purses[0].balance, 10_000);
    assert!(c.state().log.is_empty());
}

#[test]
fn debit_with_another_amount_is_refused_and_clears_pending() {
    let (mut c, _) = selected();
    let init = init_purchase(&mut c, PurseId::Money, 100).unwrap();
    // S2 correctly computed over 50, but the card initialised 100
    let other = debit_for(&init, PurseId::Money, 50, "20261123");
    assert_eq!(send(&mut c, Request::DebitPurchase(other)).1, 0x6985);
    let right = debit_for(&init, PurseId::Money, 100, "20261123");
    assert_eq!(
        send(&mut c, Request::DebitPurchase(right)).1,
        0x6985,
        "pending consumed"
    );
    // other purse than initialised
    let init = init_purchase(&mut c, PurseId::Money, 100).unwrap();
    let d = debit_for(&init, PurseId::Points, 100, "20261123");
    assert_eq!(send(&mut c, Request::DebitPurchase(d)).1, 0x6985);
    assert_eq!(c.state().purses[0].balance, 10_000);
    assert_eq!(c.state().purses[1].balance, 500);
}

#[test]
fn debit_with_stale_s2_is_refused() {
    let (mut c, _) = selected();
    let first = init_purchase(&mut c, PurseId::Money, 100).unwrap();
    let stale = debit_for(&first, PurseId::Money, 100, "20261123");
    let second = init_purchase(&mut c, PurseId::Money, 100).unwrap();
    assert_eq!(second.atc, first.atc + 1);
    assert_eq!(
        send(&mut c, Request::DebitPurchase(stale)).1,
        0x6988,
        "S2 of an old session"
    );
    // and the MAC failure consumed the pending INITIALIZE: no second guess
    let good = debit_for(&second, PurseId::Money, 100, "20261123");
    assert_eq!(send(&mut c, Request::DebitPurchase(good)).1, 0x6985);
    // a flipped bit
    let third = init_purchase(&mut c, PurseId::Money, 100).unwrap();
    let mut bad = debit_for(&third, PurseId::Money, 100, "20261123");
    bad.s2[7] ^= 1;
    assert_eq!(send(&mut c, Request::DebitPurchase(bad)).1, 0x6988);
    // a changed seq/date/time breaks S2 as well
    let fourth = init_purchase(&mut c, PurseId::Money, 100).unwrap();
    let mut bad = debit_for(&fourth, PurseId::Money, 100, "20261123");
    bad.seq += 1;
    assert_eq!(send(&mut c, Request::DebitPurchase(bad)).1, 0x6988);
    assert_eq!(c.state().purses[0].balance, 10_000);
    assert!(c.state().log.is_empty());
}

#[test]
fn debit_twice_is_refused() {
    let (mut c, _) = selected();
    let init = init_purchase(&mut c, PurseId::Money, 100).unwrap();
    let d = debit_for(&init, PurseId::Money, 100, "20261123");
    let (data, s) = send(&mut c, Request::DebitPurchase(d));
    assert_eq!(s, 0x9000);
    assert_eq!(DebitResponse::decode(&data).unwrap().balance_after, 9_900);
    assert_eq!(send(&mut c, Request::DebitPurchase(d)).1, 0x6985);
    assert_eq!(c.state().purses[0].balance, 9_900);
    assert_eq!(c.state().log.len(), 1);
}

#[test]
fn expiry_is_checked_against_the_debit_date() {
    let (mut c, _) = selected();
    let init = init_purchase(&mut c, PurseId::Money, 100).unwrap();
    let d = debit_for(&init, PurseId::Money, 100, "20301231");
    assert_eq!(
        send(&mut c, Request::DebitPurchase(d)).1,
        0x9000,
        "last valid day"
    );
    let init = init_purchase(&mut c, PurseId::Money, 100).unwrap();
    let d = debit_for(&init, PurseId::Money, 100, "20310101");
    assert_eq!(send(&mut c, Request::DebitPurchase(d)).1, 0x9403);
    assert_eq!(c.state().purses[0].balance, 9_900);
    // a debit date that is not BCD: 6A80
    let mut raw = Request::DebitPurchase(d).to_bytes();
    raw[5 + 8 + 2] = 0x13; // month 13
    assert_eq!(sw(&c.process(&raw)), 0x6A80);
}

#[test]
fn load_end_to_end_and_9402() {
    let (mut c, sel) = selected();
    let sm = sm();
    let out = client::load(&mut c, &sm, &sel, txn(PurseId::Money, 5_000)).unwrap();
    assert_eq!(out.init.atc, 1);
    assert_eq!(out.credit.result, 0);
    assert_eq!(out.credit.balance_after, 15_000);
    assert_eq!(c.state().purses[0].balance, 15_000);
    let log = client::read_log(&mut c).unwrap();
    assert_eq!(log[0].kind, LogKind::Load);
    assert_eq!(log[0].amount, 5_000);
    assert_eq!(log[0].seq, 0);
    // over max balance: refused at INITIALIZE, no ATC spent
    let (_, s) = send(
        &mut c,
        Request::InitializeLoad(InitializeLoad {
            purse: PurseId::Money,
            amount: 85_001,
            terminal: TERMINAL,
        }),
    );
    assert_eq!(s, 0x9402);
    assert_eq!(c.state().atc, 1);
    // exactly to max works
    client::load(&mut c, &sm, &sel, txn(PurseId::Money, 85_000)).unwrap();
    assert_eq!(c.state().purses[0].balance, 100_000);
    // u32 overflow is over max too
    let (_, s) = send(
        &mut c,
        Request::InitializeLoad(InitializeLoad {
            purse: PurseId::Money,
            amount: u32::MAX,
            terminal: TERMINAL,
        }),
    );
    assert_eq!(s, 0x9402);
}

#[test]
fn credit_pairing_mac_and_expiry() {
    let (mut c, _) = selected();
    let id = purse::CardId::parse(CARD_ID).unwrap();
    let credit_for = |init: &InitializeLoadResponse, amount: u32, d: &str| {
        let sk = keys()
            .session_key(KeyUse::Load, 1, &id, init.random, init.atc, PurseId::Money)
            .unwrap();
        let (date, time) = (date(d), time("080000"));
        CreditLoad {
            purse: PurseId::Money,
            date,
            time,
            s2: crypto::load_s2(&sk, amount, init.atc, &TERMINAL, &date, &time),
        }
    };
    let init_load = |c: &mut Card, amount: u32| {
        let (d, s) = send(
            c,
            Request::InitializeLoad(InitializeLoad {
                purse: PurseId::Money,
                amount,
                terminal: TERMINAL,
            }),
        );
        assert_eq!(s, 0x9000);
        InitializeLoadResponse::decode(&d).unwrap()
    };
    // S1 is the MAC the HSM expects
    let init = init_load(&mut c, 300);
    let sk = keys()
        .session_key(KeyUse::Load, 1, &id, init.random, init.atc, PurseId::Money)
        .unwrap();
    assert!(crypto::mac_eq(
        &init.s1,
        &crypto::load_s1(&sk, 10_000, 300, init.atc, &TERMINAL)
    ));
    // CREDIT without INITIALIZE
    let cr = credit_for(&init, 300, "20261123");
    c.process(&SELECT);
    assert_eq!(send(&mut c, Request::CreditLoad(cr)).1, 0x6985);
    // S2 over another amount than initialised: MAC wrong
    let init = init_load(&mut c, 300);
    assert_eq!(
        send(
            &mut c,
            Request::CreditLoad(credit_for(&init, 301, "20261123"))
        )
        .1,
        0x6988
    );
    assert_eq!(
        send(
            &mut c,
            Request::CreditLoad(credit_for(&init, 300, "20261123"))
        )
        .1,
        0x6985
    );
    // expired
    let init = init_load(&mut c, 300);
    assert_eq!(
        send(
            &mut c,
            Request::CreditLoad(credit_for(&init, 300, "20310101"))
        )
        .1,
        0x9403
    );
    // a purchase INITIALIZE does not pair with CREDIT, nor a load one with DEBIT
    let pinit = init_purchase(&mut c, PurseId::Money, 300).unwrap();
    let fake = InitializeLoadResponse {
        balance: 0,
        atc: pinit.atc,
        key_version: 1,
        alg: 1,
        random: pinit.random,
        s1: [0; 8],
    };
    assert_eq!(
        send(
            &mut c,
            Request::CreditLoad(credit_for(&fake, 300, "20261123"))
        )
        .1,
        0x6985
    );
    let init = init_load(&mut c, 300);
    let fake = InitializePurchaseResponse {
        balance: 0,
        atc: init.atc,
        key_version: 1,
        alg: 1,
        random: init.random,
    };
    let d = debit_for(&fake, PurseId::Money, 300, "20261123");
    assert_eq!(send(&mut c, Request::DebitPurchase(d)).1, 0x6985);
    // credit twice
    let init = init_load(&mut c, 300);
    let cr = credit_for(&init, 300, "20261123");
    assert_eq!(send(&mut c, Request::CreditLoad(cr)).1, 0x9000);
    assert_eq!(send(&mut c, Request::CreditLoad(cr)).1, 0x6985);
    assert_eq!(c.state().purses[0].balance, 10_300);
    // zero-value INITIALIZE FOR LOAD: fresh S1 and ATC, nothing else
    let before = c.state().atc;
    let init = init_load(&mut c, 0);
    assert_eq!(init.atc, before + 1);
    assert_eq!(init.balance, 10_300);
}

#[test]
fn atc_refuses_at_ffff() {
    let mut s = state();
    s.atc = 0xFFFE;
    let mut c = Card::with_random(s, Box::new(FixedRandom([0; 4])));
    c.process(&SELECT);
    let i = init_purchase(&mut c, PurseId::Money, 1).unwrap();
    assert_eq!(i.atc, 0xFFFF, "the last transaction");
    assert_eq!(init_purchase(&mut c, PurseId::Money, 1), Err(0x6581));
    let (_, s) = send(
        &mut c,
        Request::InitializeLoad(InitializeLoad {
            purse: PurseId::Money,
            amount: 1,
            terminal: TERMINAL,
        }),
    );
    assert_eq!(s, 0x6581);
    assert_eq!(c.state().atc, 0xFFFF);
    assert_eq!(
        sw(&c.process(&[0x80, 0x5C, 0, 0, 4])),
        0x9000,
        "balance still readable"
    );
}

#[test]
fn log_is_cyclic_of_ten_newest_first() {
    let (mut c, sel) = selected();
    let sm = sm();
    assert_eq!(
        sw(&c.process(&[0x80, 0x5A, 1, 0, 0x1D])),
        SW_RECORD_NOT_FOUND.0
    );
    for i in 1..=12u32 {
        client::purchase(
            &mut c,
            &sm,
            &sel,
            Txn {
                seq: i,
                ..txn(PurseId::Money, i)
            },
        )
        .unwrap();
    }
    let log = client::read_log(&mut c).unwrap();
    assert_eq!(log.len(), 10);
    let amounts: Vec<u32> = log.iter().map(|r| r.amount).collect();
    assert_eq!(
        amounts,
        (3..=12).rev().collect::<Vec<_>>(),
        "newest first, two oldest gone"
    );
    assert_eq!(log[0].atc, 12);
    assert_eq!(log[0].balance_after, 10_000 - (1..=12).sum::<u32>());
    // each record: 37 bytes (with the S3 the card answered) then 9000
    let r = c.process(&Request::ReadLog(ReadLog { record: 10 }).to_bytes());
    assert_eq!(r.len(), 37 + 2);
    let oldest = LogRecord::decode(&r[..37]).unwrap();
    assert_eq!(oldest.amount, 3);
    assert_ne!(oldest.s3, [0; 8], "a receipt, not a placeholder");
    assert_eq!(sw(&c.process(&[0x80, 0x5A, 11, 0, 0x25])), 0x6A86);
    assert_eq!(sw(&c.process(&[0x80, 0x5A, 0, 0, 0x25])), 0x6A86);
    assert_eq!(sw(&c.process(&[0x80, 0x5A, 1, 1, 0x25])), 0x6A86);
}

#[test]
fn status_word_table_is_complete() {
    // every SW of DESIGN §3 is produced by some test above; this one checks
    // the client sees them typed
    let (mut c, sel) = selected();
    let sm = sm();
    match client::purchase(&mut c, &sm, &sel, txn(PurseId::Money, 5_000)) {
        Err(ClientError::Status { sw, .. }) => assert_eq!(sw, StatusWord::PIN_REQUIRED),
        other => panic!("expected 6982, got {other:?}"),
    }
}

#[test]
fn durable_commit_is_called_before_the_response_and_rolls_back() {
    let (mut c, _) = selected();
    // read-only commands do not commit
    let mut commits = 0;
    c.process_with(&[0x80, 0x5C, 0, 0, 4], |_| {
        commits += 1;
        Ok::<(), ()>(())
    });
    assert_eq!(commits, 0);
    // INITIALIZE commits the new ATC
    let mut seen_atc = None;
    let init = Request::InitializePurchase(InitializePurchase {
        purse: PurseId::Money,
        amount: 100,
        terminal: TERMINAL,
    })
    .to_bytes();
    let r = c.process_with(&init, |s| {
        seen_atc = Some(s.atc);
        Ok::<(), ()>(())
    });
    assert_eq!(sw(&r), 0x9000);
    assert_eq!(seen_atc, Some(1));
    // a failed commit: 6F00, state and pending unchanged
    let before = c.state().clone();
    let r = c.process_with(&init, |_| Err(()));
    assert_eq!(sw(&r), SW_PERSIST_FAILED.0);
    assert_eq!(c.state(), &before);
    // the earlier INITIALIZE is still the pending one
    let pending = InitializePurchaseResponse::decode(&{
        let mut fresh = card();
        fresh.process(&SELECT);
        let r = fresh.process(&init);
        r[..r.len() - 2].to_vec()
    })
    .unwrap();
    let d = debit_for(&pending, PurseId::Money, 100, "20261123");
    assert_eq!(send(&mut c, Request::DebitPurchase(d)).1, 0x9000);
}

#[test]
fn store_round_trip_and_atomicity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    let store = Store::new(&path);
    assert!(store.load().is_err(), "no file yet");
    let (mut c, sel) = selected();
    client::purchase(&mut c, &sm(), &sel, txn(PurseId::Money, 42)).unwrap();
    store.save(c.state()).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(&loaded, c.state());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("card.json")],
        "no temp file left"
    );
    // one card process per state file
    let lock = store.lock_exclusive().unwrap();
    assert!(
        store.lock_exclusive().is_err(),
        "a second server is refused"
    );
    drop(lock);
    let lock = store
        .lock_exclusive()
        .expect("free again once the first is gone");
    drop(lock);
    std::fs::remove_file(dir.path().join("card.json.lock")).unwrap();
    // keys are in the file (it is the card) but Debug never shows them
    let dbg = format!("{:?}", c.state());
    assert!(!dbg.contains(&hex::encode_upper(c.state().kp.0)));
    assert!(!dbg.contains("1234"), "no PIN in Debug: {dbg}");
    assert!(!dbg.contains(CARD_ID), "card id masked");
    // a truncated or corrupted file is refused, not half-used
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(store.load().is_err());
    let mut bad: CardState = serde_json::from_slice(&bytes).unwrap();
    bad.purses[0].balance = bad.purses[0].max_balance + 1;
    std::fs::write(&path, serde_json::to_vec(&bad).unwrap()).unwrap();
    assert!(store.load().is_err(), "balance above max");
    bad = serde_json::from_slice(&bytes).unwrap();
    bad.pin_tries_left = 4;
    std::fs::write(&path, serde_json::to_vec(&bad).unwrap()).unwrap();
    assert!(store.load().is_err(), "pin tries above 3");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Purchase(bool, u32),
        Load(bool, u32),
        Junk(Vec<u8>),
        Reset,
        Verify(bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<bool>(), 0u32..6_000).prop_map(|(p, a)| Op::Purchase(p, a)),
            (any::<bool>(), 0u32..60_000).prop_map(|(p, a)| Op::Load(p, a)),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::Junk),
            Just(Op::Reset),
            any::<bool>().prop_map(Op::Verify),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any bytes: a response with a status word, no panic.
        #[test]
        fn any_bytes_get_a_status_word(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                       select_first: bool) {
            let mut c = card();
            if select_first { c.process(&SELECT); }
            let before = c.state().clone();
            let r = c.process(&bytes);
            prop_assert!(r.len() >= 2 && r.len() <= 258);
            // random bytes never move money
            prop_assert_eq!(c.state().purses.clone(), before.purses);
        }

        /// Any mix of purchases, loads, junk, resets and PIN tries keeps the
        /// card in step with a model: balances, ATC, and money conserved.
        #[test]
        fn card_follows_the_model(ops in proptest::collection::vec(op(), 1..30)) {
            let sm = sm();
            let mut c = card();
            let sel = { let r = c.process(&SELECT); SelectResponse::decode(&r[..r.len()-2]).unwrap() };
            let mut bal = [10_000u32, 500];
            let max = [100_000u32, 1_000_000];
            let mut atc = 0u16;
            let mut verified = false;
            let mut tries = 3u8;
            for op in ops {
                match op {
                    Op::Purchase(points, a) => {
                        let p = if points { PurseId::Points } else { PurseId::Money };
                        let need_pin = !points && a > 2_000 && !verified;
                        let r = client::purchase(&mut c, &sm, &sel, txn(p, a));
                        if need_pin || a > bal[p.index()] {
                            prop_assert!(r.is_err());
                        } else {
                            let r = r.unwrap();
                            atc += 1;
                            bal[p.index()] -= a;
                            prop_assert_eq!(r.init.atc, atc);
                            prop_assert_eq!(r.debit.balance_after, bal[p.index()]);
                        }
                    }
                    Op::Load(points, a) => {
                        let p = if points { PurseId::Points } else { PurseId::Money };
                        let r = client::load(&mut c, &sm, &sel, txn(p, a));
                        if bal[p.index()] + a > max[p.index()] {
                            prop_assert!(r.is_err());
                        } else {
                            prop_assert!(r.is_ok());
                            atc += 1;
                            bal[p.index()] += a;
                        }
                    }
                    Op::Junk(b) => {
                        let r = c.process(&b);
                        prop_assert!(r.len() >= 2);
                        // junk may be a valid SELECT/VERIFY/INITIALIZE: resync the model
                        atc = c.state().atc;
                        tries = c.state().pin_tries_left;
                        verified = false;
                        c.process(&SELECT);
                    }
                    Op::Reset => { c.reset(); c.process(&SELECT); verified = false; }
                    Op::Verify(right) => {
                        let r = client::verify(&mut c, if right { "1234" } else { "4321" });
                        if tries == 0 {
                            prop_assert!(r.is_err());
                        } else if right {
                            prop_assert!(r.is_ok()); verified = true; tries = 3;
                        } else {
                            prop_assert!(r.is_err()); verified = false; tries -= 1;
                        }
                    }
                }
                prop_assert_eq!(c.state().purses[0].balance, bal[0]);
                prop_assert_eq!(c.state().purses[1].balance, bal[1]);
                prop_assert_eq!(c.state().atc, atc);
                prop_assert_eq!(c.state().pin_tries_left, tries);
                prop_assert!(c.state().log.len() <= 10);
            }
            // every logged record is consistent with its successor's balance chain
            for w in c.state().log.windows(2) {
                prop_assert!(w[0].atc < w[1].atc);
            }
        }
    }
}
