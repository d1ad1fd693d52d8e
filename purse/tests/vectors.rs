//! Test vectors of the purchase protocol (`tests/vectors/purchase.json`),
//! named in docs/protocol.md. This test computes every value with the real
//! implementation from fixed inputs (TEST KEYS, fixed nonces) and compares it
//! with the committed file, so a change of any byte on the wire fails here;
//! the Node merchant in tests/browser recomputes the same file independently
//! (`tests/browser/vectors.test.mjs`).
//!
//! `CARDPAY_BLESS=1 cargo test -p purse --test vectors` rewrites the file after
//! a deliberate protocol change.

use purse::command::{
    DebitPurchase, DebitResponse, InitializeLoadResponse, InitializePurchaseResponse, LogKind,
    LogRecord, PurseInfo, Request, SelectResponse,
};
use purse::crypto::{self, DesKey};
use purse::purchase::{
    check_value, DebitCommand, DebitResponseMsg, DrawRequest, ExpectedS3, PurchaseStatus,
    RecoverRequest, ResultC, ResultM, SuspiciousReport,
};
use purse::session::{self, Key32, Session, VerifyMode};
use purse::types::{BcdDate, BcdTime, CardId, Expiry, PurseId, Terminal};
use purse::webhook::{self, EventKind, WebhookEvent};
use purse::wire::{Hex, Sealed};
use serde_json::{json, Value};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/vectors/purchase.json"
);

/// A card reference as the payment server gives it (opaque to the merchant:
/// HMAC under the server's K_ref, docs/protocol.md).
const CARD_REF: &str = "6a5227b2684480d0924121ad2a6458d3";

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

fn sealed<T: Sealed>(name: &str, key_name: &str, key: &Key32, nonce: u8, m: &T) -> Value {
    let plain = serde_json::to_string(m).unwrap();
    let nonce = [nonce; 12];
    let s = m.seal(key, nonce);
    // The sealed bytes open again into the same message.
    assert_eq!(
        serde_json::to_string(&T::open(key, m.txn_id(), s.as_slice()).unwrap()).unwrap(),
        plain
    );
    json!({
        "name": name,
        "label": T::LABEL,
        "key": key_name,
        "aad": String::from_utf8(session::aad(T::LABEL, m.txn_id())).unwrap(),
        "nonce": h(&nonce),
        "plaintext": plain,
        "sealed": h(s.as_slice()),
    })
}

fn generate() -> Value {
    // TEST KEYS (docs/TEAM.md): never used for real money.
    let k_mp = Key32::from_hex(&"d5".repeat(32)).unwrap();
    let mkp = DesKey::from_hex("404142434445464748494A4B4C4D4E4F").unwrap();
    let mkl = DesKey::from_hex("505152535455565758595A5B5C5D5E5F").unwrap();
    let tsk = Key32::new([0x22; 32]);
    let terminal = Terminal([0, 0, 0, 0, 0, 1]);
    let s = Session {
        merchant_id: "demo-store".into(),
        merchant_name: "Cardpay Demo Store".into(),
        txn_id: "T-0001".into(),
        order_ref: "o-42".into(),
        amount: 1_250,
        currency: 978,
        exponent: 2,
        purse: PurseId::Money,
        expires_at: 1_800_000_000,
        verify_mode: VerifyMode::PaymentServer,
        result_url: "https://shop.example/orders/o-42/result".into(),
        origin: "https://shop.example".into(),
        terminal,
    };
    let dk = session::derive_dk(&k_mp, &s.txn_id, &s.merchant_id);
    let etsk = session::wrap_tsk(&dk, [0x01; 12], &s.txn_id, &tsk);
    let mac = session::session_mac(&k_mp, &s, &etsk);

    // The card's side: KP, SK, S2, S3.
    let card_id = CardId::parse("6280000000000001").unwrap();
    let kp = crypto::diversify(&mkp, &card_id);
    let random = [0x11, 0x22, 0x33, 0x44];
    let atc = 7u16;
    let sk = crypto::session_key(&kp, random, atc, PurseId::Money);
    let (seq, date, time) = (
        42u32,
        BcdDate::parse("20261123").unwrap(),
        BcdTime::parse("194500").unwrap(),
    );
    let balance = 10_000u32;
    let after = balance - s.amount;
    // The card proves itself first: INITIALIZE FOR LOAD of amount 0 at ATC 6
    // (the purchase's ATC less 1), its S1 under the load key KL.
    let kl = crypto::diversify(&mkl, &card_id);
    let proof_random = [0x55, 0x66, 0x77, 0x88];
    let proof_atc = atc - 1;
    let proof_sk = crypto::session_key(&kl, proof_random, proof_atc, PurseId::Money);
    let s1_in = crypto::load_s1_input(balance, 0, proof_atc, &terminal);
    let s1 = crypto::retail_mac(&proof_sk, &s1_in);
    let initialize_load = InitializeLoadResponse {
        balance,
        atc: proof_atc,
        key_version: 1,
        alg: 1,
        random: proof_random,
        s1,
    }
    .encode();
    let s2_in = crypto::purchase_s2_input(s.amount, atc, &terminal, seq, &date, &time);
    let s2 = crypto::retail_mac(&sk, &s2_in);
    let s3_in = crypto::purchase_s3_input(after, atc, s.amount, seq);
    let s3 = crypto::retail_mac(&sk, &s3_in);
    let debit_apdu = Request::DebitPurchase(DebitPurchase {
        purse: s.purse,
        amount: s.amount,
        seq,
        date,
        time,
        s2,
    })
    .to_bytes();
    let mut debit_resp = DebitResponse {
        balance_after: after,
        s3,
    }
    .encode();
    debit_resp.extend_from_slice(&[0x90, 0x00]);
    let record = LogRecord {
        kind: LogKind::Purchase,
        purse: s.purse,
        amount: s.amount,
        balance_after: after,
        atc,
        terminal,
        date,
        time,
        seq,
        s3,
    };
    let cv = check_value(&s.txn_id, after, &s3);

    let draw = DrawRequest {
        txn_id: s.txn_id.clone(),
        page_origin: s.origin.clone(),
        amount: s.amount,
        purse: s.purse,
        select: Hex(SelectResponse {
            card_id,
            expiry: Expiry::parse("301231").unwrap(),
            key_version: 1,
            app_version: 1,
            purses: [
                PurseInfo {
                    currency: 978,
                    exponent: 2,
                    balance,
                    max_balance: 100_000,
                },
                PurseInfo {
                    currency: 999,
                    exponent: 0,
                    balance: 500,
                    max_balance: 1_000_000,
                },
            ],
        }
        .encode()),
        initialize_load: Hex(initialize_load.clone()),
        initialize: Hex(InitializePurchaseResponse {
            balance,
            atc,
            key_version: 1,
            alg: 1,
            random,
        }
        .encode()),
        pin_verified: false,
        log: vec![],
    };
    let cmd = DebitCommand {
        txn_id: s.txn_id.clone(),
        apdu: Hex(debit_apdu.clone()),
        amount: s.amount,
        balance_after: after,
        check_value: Some(Hex(cv.to_vec())),
    };
    let resp = DebitResponseMsg {
        txn_id: s.txn_id.clone(),
        response: Hex(debit_resp.clone()),
    };
    let rc = ResultC {
        txn_id: s.txn_id.clone(),
        status: PurchaseStatus::Debited,
        merchant_name: s.merchant_name.clone(),
        amount: s.amount,
        currency: s.currency,
        exponent: s.exponent,
        balance_after: Some(after),
        card_sw: None,
        date: String::from(date),
        time: String::from(time),
    };
    let rm = ResultM {
        merchant_id: s.merchant_id.clone(),
        txn_id: s.txn_id.clone(),
        order_ref: s.order_ref.clone(),
        status: PurchaseStatus::Debited,
        amount: s.amount,
        currency: s.currency,
        exponent: s.exponent,
        purse: s.purse,
        origin: s.origin.clone(),
        verify_mode: s.verify_mode,
        card: card_id.masked(),
        card_ref: CARD_REF.into(),
        atc,
        seq,
        date: String::from(date),
        time: String::from(time),
    };
    let exp = ExpectedS3 {
        merchant_id: s.merchant_id.clone(),
        txn_id: s.txn_id.clone(),
        amount: s.amount,
        currency: s.currency,
        exponent: s.exponent,
        purse: s.purse,
        origin: s.origin.clone(),
        card: card_id.masked(),
        card_ref: CARD_REF.into(),
        atc,
        seq,
        balance_after: after,
        expected_s3: Hex(s3.to_vec()),
    };
    let rec = RecoverRequest {
        txn_id: s.txn_id.clone(),
        log: vec![Hex(record.encode())],
        initialize_load: Some(Hex(initialize_load.clone())),
    };
    let sus = SuspiciousReport {
        txn_id: s.txn_id.clone(),
        page_origin: s.origin.clone(),
        reason: "not my purchase".into(),
    };

    // Webhook and merchant API signatures.
    let k_wh = webhook::webhook_key(&k_mp, &s.merchant_id);
    let ev = WebhookEvent {
        event_id: "evt_00000000000000000000000000000001".into(),
        kind: EventKind::Captured,
        created_at: 1_795_000_000,
        merchant_id: s.merchant_id.clone(),
        txn_id: s.txn_id.clone(),
        order_ref: s.order_ref.clone(),
        state: purse::merchant_api::TxnState::Debited,
        amount: s.amount,
        currency: s.currency,
        exponent: s.exponent,
        purse: s.purse,
        card: card_id.masked(),
        card_ref: CARD_REF.into(),
        atc,
        detail: "card S3 verified".into(),
    };
    let ev_body = serde_json::to_string(&ev).unwrap();
    let api_ts = 1_795_000_000u64;
    let api_path = "/v1/transactions/T-0001";
    let body_hash = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(b""))
    };
    let api_msg = format!("cardpay/merchant-api/v1\nGET\n{api_path}\n{api_ts}\n{body_hash}");
    let api_sig = session::hmac_sha256(&k_mp, &[api_msg.as_bytes()]);

    // The retail MAC primitive (ISO/IEC 9797-1 MAC algorithm 3) with padding
    // method 2, on the key and message of the standard's B.4 example.
    let x919_key = DesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
    let x919 = crypto::retail_mac(&x919_key, b"Now is the time for all ");

    json!({
        "about": "Cardpay purchase protocol test vectors (docs/protocol.md). TEST KEYS ONLY. Hex is lowercase. Every sealed value is AES-256-GCM nonce||ciphertext||tag over the UTF-8 plaintext given, with the AAD given.",
        "retail_mac": {"key": h(x919_key.bytes()), "data": h(b"Now is the time for all "), "padding": "ISO/IEC 9797-1 method 2", "mac": h(&x919)},
        "keys": {"k_mp": h(k_mp.bytes()), "mkp": h(mkp.bytes()), "mkl": h(mkl.bytes()), "tsk": h(tsk.bytes())},
        "session": serde_json::to_value(&s).unwrap(),
        "session_canonical": h(&s.canonical_bytes()),
        "dk": {"salt": s.txn_id, "info": format!("cardpay/dk{}", s.merchant_id), "okm": h(dk.bytes())},
        "etsk": {"nonce": h(&[0x01; 12]), "aad": String::from_utf8(session::aad("etsk", &s.txn_id)).unwrap(), "sealed": h(&etsk)},
        "session_mac": h(&mac),
        "card": {
            "card_id": card_id.full(),
            "kp": h(kp.bytes()),
            "random": h(&random),
            "atc": atc,
            "sk": h(sk.bytes()),
            "s2": {"input": h(&s2_in), "mac": h(&s2)},
            "s3": {"input": h(&s3_in), "mac": h(&s3)},
            "debit_apdu": h(&debit_apdu),
            "debit_response": h(&debit_resp),
            "log_record": h(&record.encode()),
            "proof": {
                "kl": h(kl.bytes()),
                "random": h(&proof_random),
                "atc": proof_atc,
                "sk": h(proof_sk.bytes()),
                "s1": {"input": h(&s1_in), "mac": h(&s1)},
                "initialize_load": h(&initialize_load),
            },
        },
        "check_value": {"txn_id": s.txn_id, "balance_after": after, "s3": h(&s3), "value": h(&cv)},
        "sealed": [
            sealed("draw_request", "tsk", &tsk, 0x10, &draw),
            sealed("debit_command", "tsk", &tsk, 0x11, &cmd),
            sealed("debit_response", "tsk", &tsk, 0x12, &resp),
            sealed("result_c", "tsk", &tsk, 0x13, &rc),
            sealed("result_m", "dk", &dk, 0x14, &rm),
            sealed("expected_s3", "dk", &dk, 0x15, &exp),
            sealed("recover_request", "tsk", &tsk, 0x16, &rec),
            sealed("suspicious", "tsk", &tsk, 0x17, &sus),
        ],
        "webhook": {
            "k_wh": h(k_wh.bytes()),
            "info": format!("cardpay/webhook{}", s.merchant_id),
            "timestamp": 1_795_000_010u64,
            "event_id": ev.event_id,
            "body": ev_body,
            "signature": webhook::sign(&k_wh, 1_795_000_010, &ev.event_id, ev_body.as_bytes()),
        },
        "merchant_api": {
            "method": "GET",
            "path": api_path,
            "timestamp": api_ts,
            "body": "",
            "string_to_sign": api_msg,
            "signature": h(&api_sig),
        },
    })
}

#[test]
fn purchase_vectors_are_current() {
    let v = generate();
    let text = serde_json::to_string_pretty(&v).unwrap() + "\n";
    let current = std::fs::read_to_string(PATH).unwrap_or_default();
    if current != text {
        if std::env::var_os("CARDPAY_BLESS").is_some() {
            std::fs::create_dir_all(std::path::Path::new(PATH).parent().unwrap()).unwrap();
            std::fs::write(PATH, text).unwrap();
            return;
        }
        panic!("tests/vectors/purchase.json is out of date (CARDPAY_BLESS=1 cargo test -p purse --test vectors rewrites it)");
    }
    // The committed session MAC verifies under the implementation.
    let s: Session = serde_json::from_value(v["session"].clone()).unwrap();
    let k = Key32::from_hex(v["keys"]["k_mp"].as_str().unwrap()).unwrap();
    let etsk = hex::decode(v["etsk"]["sealed"].as_str().unwrap()).unwrap();
    let mac = hex::decode(v["session_mac"].as_str().unwrap()).unwrap();
    assert!(session::verify_session_mac(&k, &s, &etsk, &mac));
}
