//! Test vectors of the load messages (`tests/vectors/load.json` at the
//! repository root): inputs, TEST keys, S1/S2/S3 with their MAC inputs, the
//! session MAC, DK, ETSK and every sealed load message with fixed nonces.
//!
//! The file is checked byte for byte against `purse` and against the real
//! card (`card::Card` with a fixed random): the card's INITIALIZE FOR LOAD
//! answer (S1), its CREDIT answer (S3) and its zero-value INITIALIZE after
//! the credit must be the vectors'. `CARDPAY_BLESS=1 cargo test -p
//! payment-server --test load_vectors` rewrites the file (after a deliberate
//! protocol change only).

use card::app::FixedRandom;
use card::personalise::Personalisation;
use card::Card;
use purse::command::{
    CreditLoad, CreditResponse, InitializeLoad, InitializeLoadResponse, LogRecord, ReadLog,
    Request, Select,
};
use purse::crypto::{self, DesKey};
use purse::load::{
    CreditCommand, CreditResponseMsg, LoadDrawRequest, LoadRecoverRequest, LoadResultB,
    LoadResultC, LoadSession, LoadStatus, LoadWidgetSession,
};
use purse::session::{self, Key32};
use purse::types::{BcdDate, BcdTime, CardId, Expiry, PurseId, Terminal};
use purse::wire::{Hex, Sealed};
use serde_json::{json, Value};

const MKP: &str = "404142434445464748494A4B4C4D4E4F"; // TEST KEY
const MKL: &str = "505152535455565758595A5B5C5D5E5F"; // TEST KEY
const K_BL: [u8; 32] = [0xB1; 32]; // TEST KEY
const TSK: [u8; 32] = [0x7E; 32]; // TEST KEY

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

fn sealed<T: Sealed + serde::Serialize>(
    m: &T,
    key: &Key32,
    key_name: &str,
    nonce: [u8; 12],
) -> Value {
    json!({
        "label": T::LABEL,
        "key": key_name,
        "aad": String::from_utf8(session::aad(T::LABEL, m.txn_id())).unwrap(),
        "nonce": h(&nonce),
        "plaintext": serde_json::to_string(m).unwrap(),
        "sealed": h(m.seal(key, nonce).as_slice()),
    })
}

fn card() -> Card {
    let state = Personalisation {
        card_id: CardId::parse("6280000000000001").unwrap(),
        expiry: Expiry::parse("301231").unwrap(),
        currency: 978,
        exponent: 2,
        balance: 1_000,
        max_balance: 100_000,
        points: 500,
        points_max: 100_000,
        pin: "1234".into(),
        no_pin_limit: 2_000,
        key_version: 1,
        mkp: DesKey::from_hex(MKP).unwrap(),
        mkl: DesKey::from_hex(MKL).unwrap(),
    }
    .build()
    .unwrap();
    Card::with_random(state, Box::new(FixedRandom([0x01, 0x02, 0x03, 0x04])))
}

fn ok(r: Vec<u8>) -> Vec<u8> {
    let r = purse::apdu::Response::parse(&r).unwrap();
    assert!(r.sw.is_ok(), "{:04X}", r.sw.0);
    r.data
}

/// Everything in the file, computed now: by `purse`, and by the real card.
fn compute() -> Value {
    let terminal = Terminal([0, 0, 0, 0, 0, 1]);
    let id = CardId::parse("6280000000000001").unwrap();
    let kl = crypto::diversify(&DesKey::from_hex(MKL).unwrap(), &id);
    let (amount, date, time) = (
        5_000u32,
        BcdDate::parse("20261129").unwrap(),
        BcdTime::parse("120000").unwrap(),
    );

    // The card: SELECT, INITIALIZE FOR LOAD (R = 01020304, ATC 1), CREDIT, READ LOG 1,
    // then a zero-value INITIALIZE FOR LOAD (R = 01020305, ATC 2).
    let mut c = card();
    let select = ok(c.process(
        &Request::Select(Select {
            aid: purse::AID.to_vec(),
        })
        .to_bytes(),
    ));
    let init_apdu = Request::InitializeLoad(InitializeLoad {
        purse: PurseId::Money,
        amount,
        terminal,
    })
    .to_bytes();
    let init_data = ok(c.process(&init_apdu));
    let init = InitializeLoadResponse::decode(&init_data).unwrap();
    let sk = crypto::session_key(&kl, init.random, init.atc, PurseId::Money);
    let s1_in = crypto::load_s1_input(init.balance, amount, init.atc, &terminal);
    let s2_in = crypto::load_s2_input(amount, init.atc, &terminal, &date, &time);
    let s2 = crypto::retail_mac(&sk, &s2_in);
    let credit_apdu = Request::CreditLoad(CreditLoad {
        purse: PurseId::Money,
        date,
        time,
        s2,
    })
    .to_bytes();
    let credit_data = ok(c.process(&credit_apdu));
    let credit = CreditResponse::decode(&credit_data).unwrap();
    let s3_in = crypto::load_s3_input(0, credit.balance_after, init.atc, amount);
    let log1 = ok(c.process(&Request::ReadLog(ReadLog { record: 1 }).to_bytes()));
    let zero_apdu = Request::InitializeLoad(InitializeLoad {
        purse: PurseId::Money,
        amount: 0,
        terminal,
    })
    .to_bytes();
    let zero_data = ok(c.process(&zero_apdu));
    let zero = InitializeLoadResponse::decode(&zero_data).unwrap();
    let zsk = crypto::session_key(&kl, zero.random, zero.atc, PurseId::Money);

    // The bank's session.
    let k_bl = Key32::new(K_BL);
    let s = LoadSession {
        bank_id: "demo-bank".into(),
        bank_name: "Cardpay Demo Bank".into(),
        txn_id: "L-vector-1".into(),
        account_ref: "acct-alice".into(),
        amount,
        currency: 978,
        exponent: 2,
        purse: PurseId::Money,
        expires_at: 1_800_000_000,
        result_url: "http://127.0.0.1:8460/loads/L-vector-1/result".into(),
        origin: "http://127.0.0.1:8460".into(),
        terminal,
    };
    let tsk = Key32::new(TSK);
    let ws = LoadWidgetSession::build(&k_bl, s.clone(), &tsk, [0x11; 12]);
    let dk = purse::load::session::load_dk(&k_bl, &s);
    let txn = s.txn_id.clone();
    let req = LoadDrawRequest {
        txn_id: txn.clone(),
        page_origin: s.origin.clone(),
        amount,
        purse: PurseId::Money,
        select: Hex(select.clone()),
        initialize: Hex(init_data.clone()),
        log: vec![],
    };
    let cmd = CreditCommand {
        txn_id: txn.clone(),
        apdu: Hex(credit_apdu.clone()),
        amount,
        balance_after: credit.balance_after,
    };
    let mut rapdu = credit_data.clone();
    rapdu.extend_from_slice(&[0x90, 0x00]);
    let resp = CreditResponseMsg {
        txn_id: txn.clone(),
        response: Hex(rapdu),
    };
    let result_c = LoadResultC {
        txn_id: txn.clone(),
        status: LoadStatus::Credited,
        bank_name: s.bank_name.clone(),
        amount,
        currency: 978,
        exponent: 2,
        purse: PurseId::Money,
        balance_before: init.balance,
        balance_after: Some(credit.balance_after),
        date: "20261129".into(),
        time: "120000".into(),
    };
    let result_b = LoadResultB {
        bank_id: s.bank_id.clone(),
        txn_id: txn.clone(),
        account_ref: s.account_ref.clone(),
        status: LoadStatus::Credited,
        amount,
        currency: 978,
        exponent: 2,
        purse: PurseId::Money,
        origin: s.origin.clone(),
        card: id.masked(),
        // K_ref of the test: the reference is opaque to the bank.
        card_ref: payment_server::card_ref::CardRefKey::from_bytes([7; 32])
            .card_ref(&s.bank_id, &id),
        atc: init.atc,
        balance_after: Some(credit.balance_after),
        proof: "s3".into(),
        date: "20261129".into(),
        time: "120000".into(),
    };
    let recover = LoadRecoverRequest {
        txn_id: txn.clone(),
        card_answer: Some(Hex(vec![0x94, 0x02])),
        zero_initialize: Some(Hex(zero_data.clone())),
        log: vec![Hex(log1.clone())],
    };
    json!({
        "description": "Cardpay load messages (DESIGN §3-4, docs/protocol.md §11). Every key here is a TEST KEY.",
        "keys": { "mkl": MKL, "key_version": 1, "k_bl": h(&K_BL), "tsk": h(&TSK) },
        "card": {
            "card_id": "6280000000000001", "expiry": "301231", "kl": h(kl.bytes()),
            "balance": 1000, "max_balance": 100000, "select": h(&select)
        },
        "terminal": "000000000001",
        "load": {
            "amount": amount, "date": "20261129", "time": "120000",
            "initialize_apdu": h(&init_apdu), "initialize_response": h(&init_data),
            "random": h(&init.random), "atc": init.atc, "session_key": h(sk.bytes()),
            "s1_input": h(&s1_in), "s1": h(&init.s1),
            "s2_input": h(&s2_in), "s2": h(&s2),
            "credit_apdu": h(&credit_apdu), "credit_response": h(&credit_data),
            "balance_after": credit.balance_after,
            "s3_input": h(&s3_in), "s3": h(&credit.s3),
            "log_record_1": h(&log1)
        },
        "zero_value_initialize": {
            "apdu": h(&zero_apdu), "response": h(&zero_data),
            "random": h(&zero.random), "atc": zero.atc, "balance": zero.balance,
            "session_key": h(zsk.bytes()),
            "s1_input": h(&crypto::load_s1_input(zero.balance, 0, zero.atc, &terminal)),
            "s1": h(&zero.s1),
            "decides": "ATC = load ATC + 1 and balance = balance before + amount: credited (balance before alone: not credited)"
        },
        "session": {
            "json": serde_json::to_value(&ws.session).unwrap(),
            "canonical": h(&s.canonical_bytes()),
            "dk": h(dk.bytes()),
            "etsk_nonce": h(&[0x11; 12]),
            "etsk": h(ws.etsk.as_slice()),
            "session_mac": h(ws.session_mac.as_slice())
        },
        "sealed": [
            sealed(&req, &tsk, "tsk", [0x21; 12]),
            sealed(&cmd, &tsk, "tsk", [0x22; 12]),
            sealed(&resp, &tsk, "tsk", [0x23; 12]),
            sealed(&result_c, &tsk, "tsk", [0x24; 12]),
            sealed(&result_b, &dk, "dk", [0x25; 12]),
            sealed(&recover, &tsk, "tsk", [0x26; 12])
        ]
    })
}

fn path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/load.json")
}

#[test]
fn load_vectors_match_purse_and_the_card() {
    let now = compute();
    if std::env::var_os("CARDPAY_BLESS").is_some() {
        std::fs::create_dir_all(path().parent().unwrap()).unwrap();
        std::fs::write(path(), serde_json::to_string_pretty(&now).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(path()).expect("tests/vectors/load.json");
    let file: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        file, now,
        "the load vectors changed: a protocol change needs a new vector file"
    );
    // And the file's values verify on their own, with the security module.
    let mut keys = purse::security_module::SoftwareKeys::new();
    keys.add_key_version(
        1,
        DesKey::from_hex(MKP).unwrap(),
        DesKey::from_hex(MKL).unwrap(),
    );
    let sm = purse::security_module::SecurityModule::software(Terminal([0, 0, 0, 0, 0, 1]), keys);
    let l = &file["load"];
    let hx = |v: &Value| hex::decode(v.as_str().unwrap()).unwrap();
    let init = InitializeLoadResponse::decode(&hx(&l["initialize_response"])).unwrap();
    let auth = sm
        .authorize_load(&purse::security_module::LoadRequest {
            card_id: CardId::parse("6280000000000001").unwrap(),
            expiry: Expiry::parse("301231").unwrap(),
            key_version: 1,
            purse: PurseId::Money,
            balance: init.balance,
            max_balance: 100_000,
            atc: init.atc,
            random: init.random,
            amount: 5_000,
            s1: init.s1,
            date: BcdDate::parse("20261129").unwrap(),
            time: BcdTime::parse("120000").unwrap(),
        })
        .expect("the vector's S1 verifies");
    assert_eq!(h(&auth.credit.s2), l["s2"].as_str().unwrap());
    assert_eq!(h(&auth.expected_s3), l["s3"].as_str().unwrap());
    let rec = LogRecord::decode(&hx(&l["log_record_1"])).unwrap();
    assert_eq!(
        (rec.atc, h(&rec.s3)),
        (init.atc, l["s3"].as_str().unwrap().to_string())
    );
    // Every sealed message opens under its key with its label and txn id.
    let k = |name: &str| match name {
        "tsk" => Key32::new(TSK),
        _ => Key32::from_hex(file["session"]["dk"].as_str().unwrap()).unwrap(),
    };
    for m in file["sealed"].as_array().unwrap() {
        let plain = session::open(
            &k(m["key"].as_str().unwrap()),
            m["aad"].as_str().unwrap().as_bytes(),
            &hx(&m["sealed"]),
        )
        .unwrap_or_else(|_| panic!("{} opens", m["label"]));
        assert_eq!(
            std::str::from_utf8(&plain).unwrap(),
            m["plaintext"].as_str().unwrap()
        );
    }
}
