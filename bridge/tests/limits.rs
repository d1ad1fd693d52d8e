//! The bridge's protections on the real stack (bridge process over stdio,
//! pcscd + vpcd + the virtual card): budgets that survive a restart and a
//! crash, the per-card limit on card transactions (the ATC), exclusive
//! sessions against another PC/SC program, the T=0 `6Cxx` retry, and the
//! last-PIN-try rule with its recovery (`bridge pin`).

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use purse::command::{DebitResponse, InitializePurchaseResponse};
use purse::types::Terminal;
use serde_json::{json, Value};

/// One testbed stack at a time in this binary.
static STACK: std::sync::Mutex<()> = std::sync::Mutex::new(());

const VERIFY_1234: &[u8] = b"\x00\x20\x00\x00\x041234";
const VERIFY_9999: &[u8] = b"\x00\x20\x00\x00\x049999";
const GET_BALANCE: &[u8] = &[0x80, 0x5C, 0x00, 0x00, 0x04];
/// SELECT of the decoy application (card/src/decoy.rs).
const SELECT_DECOY: &[u8] = &[
    0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10,
];

fn initialize(amount: u32, le: bool) -> Vec<u8> {
    let mut a = vec![0x80, 0x50, 0x01, 0x00, 0x0A];
    a.extend(amount.to_be_bytes());
    a.extend(Terminal::parse_hex("000000000001").unwrap().bytes());
    if le {
        a.push(0x0C);
    }
    a
}

fn config(extra: Value) -> Value {
    let mut c = json!({"origins": [ORIGIN], "request_timeout_ms": 10000});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// Give the card an opt-in test personality (card/src/decoy.rs): take it
/// out, add `"decoy"` to its state file, put it back.
fn personality(stack: &mut testbed::Stack, decoy: Value) {
    stack.kill_card().unwrap();
    stack.wait_card_absent(Duration::from_secs(5)).unwrap();
    let mut st = stack.state_json().unwrap();
    st["decoy"] = decoy;
    std::fs::write(stack.state_path(), serde_json::to_vec_pretty(&st).unwrap()).unwrap();
    stack.start_card().unwrap();
    stack.wait_card_present(Duration::from_secs(5)).unwrap();
}

/// Every object key and string value in `v`, where a card number could be written.
fn json_texts(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(json_texts).collect(),
        Value::Object(o) => o
            .iter()
            .flat_map(|(k, v)| std::iter::once(k.clone()).chain(json_texts(v)))
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn budgets_survive_a_bridge_restart_and_a_crash() {
    let _one = STACK.lock().unwrap_or_else(|e| e.into_inner());
    let stack = testbed::Stack::start().expect("testbed stack");
    let dir = stack.dir().to_path_buf();
    let cfg = config(json!({
        "verify_burst": 2, "verify_refill_secs": 600,
        "apdu_burst": 12, "apdu_per_sec": 1,
    }));
    let mut b = Bridge::start_config(&dir, cfg.clone());
    let (h, _) = connect_and_select(&mut b); // APDU 1
    assert_eq!(sw(&b.apdu(h, VERIFY_1234)), 0x9000); // APDU 2, PIN attempt 1
    assert_eq!(sw(&b.apdu(h, VERIFY_1234)), 0x9000); // APDU 3, PIN attempt 2
    let v = b.call(json!({"type": "transmit", "handle": h, "apdu": hex::encode(VERIFY_1234)}));
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    assert_eq!(v["error"]["limit"], "verify", "{v}");
    // the bridge is killed (a crash: no chance to save anything at the end)
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    drop(b);
    let state = dir.join("bridge.state.json");
    let saved = std::fs::read_to_string(&state).expect("state file written");
    // keys and string values only: a timestamp such as 1796280023677 holds the digits too
    let texts = json_texts(&serde_json::from_str(&saved).expect("state file is JSON"));
    assert!(
        !texts.iter().any(|t| t.contains("6280")),
        "no card number in the state file: {saved}"
    );
    assert!(!dir.join("bridge.state.json.tmp").exists());

    let mut b = Bridge::start_config(&dir, cfg.clone());
    let (h, _) = connect_and_select(&mut b); // APDU 5
    let v = b.call(json!({"type": "transmit", "handle": h, "apdu": hex::encode(VERIFY_1234)}));
    assert_eq!(
        v["error"]["code"], "rate_limited",
        "restart reset the PIN budget: {v}"
    );
    let wait = v["error"]["retry_after_ms"].as_u64().unwrap();
    assert!((560_000..=600_000).contains(&wait), "{v}");
    // spend the APDU budget (12, then 1/s), let it be saved (within a second), crash again
    let mut limited = false;
    for _ in 0..12 {
        let v = b.call(json!({"type": "transmit", "handle": h, "apdu": hex::encode(GET_BALANCE)}));
        if v["error"]["code"] == "rate_limited" {
            assert_eq!(v["error"]["limit"], "apdu", "{v}");
            limited = true;
            break;
        }
    }
    assert!(limited, "the APDU budget never ran out");
    std::thread::sleep(Duration::from_millis(1300));
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    drop(b);
    let mut b = Bridge::start_config(&dir, cfg.clone());
    let c = b.ok(json!({"type": "connect", "reader": testbed::READER}));
    let h = c["handle"].as_u64().unwrap();
    let passed = (0..10)
        .filter(|_| {
            let v = b
                .call(json!({"type": "transmit", "handle": h, "apdu": hex::encode(select_apdu())}));
            v.get("result").is_some()
        })
        .count();
    // a fresh budget would let all 10 through; about one per second refilled
    assert!(
        passed <= 4,
        "{passed} of 10 APDUs passed right after a restart"
    );
    // a clean end (the browser closed the port) saves too
    b.close();
    let b = Bridge::start_config(&dir, cfg);
    let mut b = b;
    let c = b.ok(json!({"type": "connect", "reader": testbed::READER}));
    let h = c["handle"].as_u64().unwrap();
    let v = b.call(json!({"type": "transmit", "handle": h, "apdu": hex::encode(select_apdu())}));
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
}

#[test]
fn card_transactions_are_limited_per_card_so_the_atc_cannot_be_exhausted() {
    let _one = STACK.lock().unwrap_or_else(|e| e.into_inner());
    let stack = testbed::Stack::start().expect("testbed stack");
    let dir = stack.dir().to_path_buf();
    let cfg = config(json!({"initialize_burst": 3, "initialize_per_hour": 1, "apdu_burst": 1000}));
    let mut b = Bridge::start_config(&dir, cfg.clone());
    let (h, _) = connect_and_select(&mut b);
    for n in 1..=3u16 {
        let r = b.apdu(h, &initialize(0, true));
        assert_eq!(sw(&r), 0x9000);
        assert_eq!(InitializePurchaseResponse::decode(data(&r)).unwrap().atc, n);
    }
    let v =
        b.call(json!({"type": "transmit", "handle": h, "apdu": hex::encode(initialize(0, true))}));
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    assert_eq!(v["error"]["limit"], "initialize", "{v}");
    let wait = v["error"]["retry_after_ms"].as_u64().unwrap();
    assert!((3_500_000..=3_600_000).contains(&wait), "one per hour: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("transaction numbers"),
        "{v}"
    );
    // INITIALIZE FOR LOAD spends the same counter: refused too
    let load = hex::decode("8050020C0A000001F400000000000114").unwrap();
    assert_eq!(b.apdu_err(h, &load), "rate_limited");
    // other commands still work, and the card spent nothing for the refusals
    assert_eq!(sw(&b.apdu(h, GET_BALANCE)), 0x9000);
    assert_eq!(stack.state_json().unwrap()["atc"], 3);
    // a restarted bridge keeps the limit
    b.close();
    let mut b = Bridge::start_config(&dir, cfg);
    let (h, _) = connect_and_select(&mut b);
    assert_eq!(b.apdu_err(h, &initialize(0, true)), "rate_limited");
    assert_eq!(stack.state_json().unwrap()["atc"], 3);
}

/// The card's INITIALIZE tokens left in the bridge's state file (a card with
/// no bucket has the whole `burst`), once it reads `want` (within 3 s) or as
/// it reads then.
fn initialize_left(dir: &std::path::Path, burst: f64, want: f64) -> f64 {
    let read = || {
        let Ok(text) = std::fs::read_to_string(dir.join("bridge.state.json")) else {
            return burst;
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        let cards = v["initialize"].as_object().cloned().unwrap_or_default();
        assert!(cards.len() <= 1, "one card: {v}");
        cards
            .values()
            .next()
            .map_or(burst, |b| b["tokens"].as_f64().unwrap())
    };
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        // tokens to the hundredth (a few seconds refill ~0.001 at 1 an hour)
        let left = (read() * 100.0).round() / 100.0;
        if left == want || Instant::now() > end {
            return left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn card_transactions_reserved_at_select_are_spent_once_and_given_back() {
    let _one = STACK.lock().unwrap_or_else(|e| e.into_inner());
    let stack = testbed::Stack::start().expect("testbed stack");
    let dir = stack.dir().to_path_buf();
    let cfg = config(json!({"initialize_burst": 3, "initialize_per_hour": 1, "apdu_burst": 1000}));
    let left = |want| initialize_left(&dir, 3.0, want);
    let mut b = Bridge::start_config(&dir, cfg.clone());
    // a page that SELECTs and disconnects over and over spends nothing
    for _ in 0..8 {
        let (h, _) = connect_and_select(&mut b);
        b.ok(json!({"type": "disconnect", "handle": h}));
    }
    // a SELECT reserves one (on disk), a release gives it back, the page's next
    // command selects again and reserves again
    let (h, _) = connect_and_select(&mut b);
    assert_eq!(left(2.0), 2.0, "the SELECT reserved one");
    b.ok(json!({"type": "release", "handle": h}));
    assert_eq!(left(3.0), 3.0, "the release gave it back");
    assert_eq!(sw(&b.apdu(h, GET_BALANCE)), 0x9000);
    assert_eq!(left(2.0), 2.0, "the new session reserved one");
    // a clean end gives it back before the bridge exits
    b.close();
    assert_eq!(left(3.0), 3.0, "the bridge's end gave it back");
    // a crash with a reservation held leaves it spent
    let mut b = Bridge::start_config(&dir, cfg.clone());
    let _ = connect_and_select(&mut b);
    assert_eq!(left(2.0), 2.0);
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    drop(b);
    let mut b = Bridge::start_config(&dir, cfg);
    assert_eq!(left(2.0), 2.0, "a crash gave back a reservation");
    let (h, _) = connect_and_select(&mut b);
    assert_eq!(left(1.0), 1.0);
    // the INITIALIZE uses the reservation: nothing more is spent
    let r = b.apdu(h, &initialize(0, true));
    assert_eq!(InitializePurchaseResponse::decode(data(&r)).unwrap().atc, 1);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        left(1.0),
        1.0,
        "the reserved INITIALIZE spent a second token"
    );
    // the next one takes the last token, and then the card is never asked
    let r = b.apdu(h, &initialize(0, true));
    assert_eq!(InitializePurchaseResponse::decode(data(&r)).unwrap().atc, 2);
    assert_eq!(left(0.0), 0.0);
    // SELECT again: nothing to reserve, INITIALIZE refused as before
    let (h2, _) = connect_and_select(&mut b);
    for h in [h, h2] {
        assert_eq!(b.apdu_err(h, &initialize(0, true)), "rate_limited");
    }
    assert_eq!(stack.state_json().unwrap()["atc"], 2);
}

#[test]
fn the_initialize_after_the_pin_uses_a_reservation_too() {
    let _one = STACK.lock().unwrap_or_else(|e| e.into_inner());
    let stack = testbed::Stack::start().expect("testbed stack");
    let dir = stack.dir().to_path_buf();
    let cfg = config(json!({"initialize_burst": 3, "initialize_per_hour": 1, "apdu_burst": 1000}));
    let left = |want| initialize_left(&dir, 3.0, want);
    let mut b = Bridge::start_config(&dir, cfg);
    let (h, _) = connect_and_select(&mut b);
    assert_eq!(left(2.0), 2.0);
    // 25.00 needs the PIN: the card answers 6982; that INITIALIZE spent the
    // reservation but no ATC, and its token is held for the one to come after
    // the VERIFY (no token more, no write)
    assert_eq!(sw(&b.apdu(h, &initialize(2_500, true))), 0x6982);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(left(2.0), 2.0, "6982 took a second token");
    assert_eq!(sw(&b.apdu(h, VERIFY_1234)), 0x9000);
    let r = b.apdu(h, &initialize(2_500, true));
    assert_eq!(sw(&r), 0x9000);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        left(2.0),
        2.0,
        "the INITIALIZE after the PIN took a token itself"
    );
    let log = std::fs::read_to_string(dir.join("bridge.log")).unwrap();
    assert_eq!(log.matches("(reserved)").count(), 2, "{log}");
    // the last two tokens, then nothing, and the card's counter agrees: one
    // ATC per token (6982 spent neither in the end)
    for _ in 0..2 {
        assert_eq!(sw(&b.apdu(h, &initialize(0, true))), 0x9000);
    }
    assert_eq!(b.apdu_err(h, &initialize(0, true)), "rate_limited");
    assert_eq!(stack.state_json().unwrap()["atc"], 3, "6982 spends no ATC");
    b.close();
    assert_eq!(left(0.0), 0.0);
}

#[test]
fn the_purchase_initialize_after_the_cards_proof_uses_a_reservation_too() {
    // A purchase: INITIALIZE FOR LOAD of 0 (the card proves itself), then at
    // once INITIALIZE FOR PURCHASE. The second is reserved as the first is
    // sent, so neither writes on the Approve path; each spends one token.
    let _one = STACK.lock().unwrap_or_else(|e| e.into_inner());
    let stack = testbed::Stack::start().expect("testbed stack");
    let dir = stack.dir().to_path_buf();
    let cfg = config(json!({"initialize_burst": 3, "initialize_per_hour": 1, "apdu_burst": 1000}));
    let left = |want| initialize_left(&dir, 3.0, want);
    let mut b = Bridge::start_config(&dir, cfg);
    let (h, _) = connect_and_select(&mut b);
    assert_eq!(left(2.0), 2.0);
    let mut proof = vec![0x80, 0x50, 0x02, 0x00, 0x0A, 0, 0, 0, 0];
    proof.extend(Terminal::parse_hex("000000000001").unwrap().bytes());
    proof.push(0x14);
    assert_eq!(sw(&b.apdu(h, &proof)), 0x9000);
    assert_eq!(
        left(1.0),
        1.0,
        "the proof spent the SELECT's, and reserved the next"
    );
    let r = b.apdu(h, &initialize(100, true));
    assert_eq!(InitializePurchaseResponse::decode(data(&r)).unwrap().atc, 2);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        left(1.0),
        1.0,
        "the purchase's INITIALIZE took a token itself"
    );
    let log = std::fs::read_to_string(dir.join("bridge.log")).unwrap();
    assert_eq!(log.matches("(reserved)").count(), 2, "{log}");
    b.close();
    assert_eq!(left(1.0), 1.0, "two INITIALIZEs, two tokens");
}

#[test]
fn a_reservation_is_never_used_for_another_card() {
    let _one = STACK.lock().unwrap_or_else(|e| e.into_inner());
    let mut stack = testbed::Stack::start().expect("testbed stack");
    let dir = stack.dir().to_path_buf();
    let cfg = config(json!({"initialize_burst": 1, "initialize_per_hour": 1, "apdu_burst": 1000}));
    let mut b = Bridge::start_config(&dir, cfg);
    let (h, a) = connect_and_select(&mut b);
    assert_eq!(
        initialize_left(&dir, 1.0, 0.0),
        0.0,
        "card A's one is reserved"
    );
    // another card in the reader: A out, B (another number) in
    stack.kill_card().unwrap();
    let mut st = stack.state_json().unwrap();
    st["card_id"] = json!("6280000000000002");
    std::fs::write(stack.state_path(), serde_json::to_vec_pretty(&st).unwrap()).unwrap();
    stack.start_card().unwrap();
    assert_eq!(b.apdu_err(h, GET_BALANCE), "card_removed");
    let (h2, card_b) = connect_and_select(&mut b);
    assert_ne!(card_b.card_id, a.card_id);
    // B's INITIALIZE spends B's own token (its reservation), never A's
    let r = b.apdu(h2, &initialize(0, true));
    assert_eq!(sw(&r), 0x9000);
    assert_eq!(b.apdu_err(h2, &initialize(0, true)), "rate_limited");
    // A's reservation went back with its connection: only B's bucket is left, empty
    let end = Instant::now() + Duration::from_secs(3);
    let cards = loop {
        let v: Value =
            serde_json::from_slice(&std::fs::read(dir.join("bridge.state.json")).unwrap()).unwrap();
        let cards = v["initialize"].as_object().cloned().unwrap_or_default();
        if cards.len() == 1 || Instant::now() > end {
            break cards;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        cards.len(),
        1,
        "A's reservation was not given back: {cards:?}"
    );
    assert!(cards.values().next().unwrap()["tokens"].as_f64().unwrap() < 0.01);
}

/// Another program sends `apdu` on its own thread; the answer arrives on the channel.
fn other_sends(
    card: pcsc::Card,
    apdu: &'static [u8],
) -> (
    mpsc::Receiver<Result<u16, pcsc::Error>>,
    std::thread::JoinHandle<pcsc::Card>,
) {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(other_transmit(&card, apdu));
        card
    });
    (rx, t)
}

#[test]
fn another_program_cannot_redirect_the_verify_to_another_application() {
    let _one = STACK.lock().unwrap_or_else(|e| e.into_inner());
    let mut stack = testbed::Stack::start().expect("testbed stack");
    personality(
        &mut stack,
        json!({"app": {"pin": "0000", "pin_tries_left": 3}}),
    );
    let dir = stack.dir().to_path_buf();
    // another program on the machine, connected to the same card
    let (_ctx, other) = other_program(&stack);
    let mut b = Bridge::start_config(&dir, config(json!({})));
    let (h, _) = connect_and_select(&mut b);
    // 25.00 is above the no-PIN limit: the card asks for the PIN
    assert_eq!(sw(&b.apdu(h, &initialize(2_500, true))), 0x6982);
    // the other program selects its application now: it has to wait
    let (answer, other) = other_sends(other, SELECT_DECOY);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        answer.try_recv().is_err(),
        "the other program reached the card during the page's session"
    );
    // the page's VERIFY reaches Cardpay, not the other application
    assert_eq!(sw(&b.apdu(h, VERIFY_1234)), 0x9000);
    assert_eq!(sw(&b.apdu(h, &initialize(2_500, true))), 0x9000);
    assert!(answer.try_recv().is_err(), "still waiting");
    let st = stack.state_json().unwrap();
    assert_eq!(st["decoy"]["app"]["pin_tries_left"], 3, "{st}");
    assert_eq!(
        (st["pin_tries_left"].as_u64(), st["atc"].as_u64()),
        (Some(3), Some(1))
    );

    // once the page releases the card, the other program's SELECT goes
    // through ... and the page's next VERIFY still reaches Cardpay: the
    // bridge selects it again in the new session
    b.ok(json!({"type": "release", "handle": h}));
    let r = answer
        .recv_timeout(Duration::from_secs(3))
        .expect("the other program got the card");
    // the session ended with a card reset (no verified PIN outlives it): the
    // other program is told so, reconnects, and then has the card
    assert!(matches!(r, Err(pcsc::Error::ResetCard)), "{r:?}");
    let mut other = other.join().unwrap();
    reconnect(&mut other);
    assert_eq!(other_transmit(&other, SELECT_DECOY).unwrap(), 0x9000);
    assert_eq!(other_transmit(&other, VERIFY_1234).unwrap(), 0x63C2); // its own wrong PIN
    assert_eq!(sw(&b.apdu(h, VERIFY_1234)), 0x9000);
    let st = stack.state_json().unwrap();
    assert_eq!(
        st["decoy"]["app"]["pin_tries_left"], 2,
        "only the other program's own try: {st}"
    );
    assert_eq!(st["pin_tries_left"], 3);
    b.close();
}

#[test]
fn sessions_end_when_idle_released_or_reset_and_the_page_keeps_working() {
    let _one = STACK.lock().unwrap_or_else(|e| e.into_inner());
    let stack = testbed::Stack::start().expect("testbed stack");
    let dir = stack.dir().to_path_buf();
    let (_ctx, other) = other_program(&stack);
    let mut b = Bridge::start_config(&dir, config(json!({"transaction_idle_ms": 1000})));
    let (h, _) = connect_and_select(&mut b);
    assert_eq!(sw(&b.apdu(h, VERIFY_1234)), 0x9000);
    // a page that stops sending (crashed, hung) loses the card after the idle time
    let t0 = Instant::now();
    let (answer, other) = other_sends(other, &[0x00, 0x20, 0x00, 0x00]);
    let r = answer
        .recv_timeout(Duration::from_secs(5))
        .expect("the idle session ended");
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(500), "no wait: {waited:?}");
    // the session ended with a reset: the page's verified PIN is gone
    assert!(matches!(r, Err(pcsc::Error::ResetCard)), "{r:?}");
    let mut other = other.join().unwrap();
    reconnect(&mut other);
    assert_eq!(other_transmit(&other, &select_apdu()).unwrap(), 0x9000);
    assert_eq!(
        other_transmit(&other, &[0x00, 0x20, 0x00, 0x00]).unwrap(),
        0x63C3
    );
    // the page's next command works: a new session, Cardpay selected again
    let r = b.apdu(h, GET_BALANCE);
    assert_eq!(r, [0x00, 0x00, 0x27, 0x10, 0x90, 0x00]);
    // ... and its PIN is no longer verified (6982 for a purchase above 20.00)
    assert_eq!(sw(&b.apdu(h, &initialize(2_500, true))), 0x6982);
    // the other program resets the card between two sessions of the page
    b.ok(json!({"type": "release", "handle": h}));
    other
        .reconnect(
            pcsc::ShareMode::Shared,
            pcsc::Protocols::ANY,
            pcsc::Disposition::ResetCard,
        )
        .unwrap();
    assert_eq!(other_transmit(&other, SELECT_DECOY).unwrap(), 0x6A82);
    let r = b.apdu(h, GET_BALANCE);
    assert_eq!(sw(&r), 0x9000, "after a reset by another program: {r:02X?}");
    // a second connection of the bridge on the same reader takes the card;
    // the first gets it back, selected again, with its next APDU
    let (h2, _) = connect_and_select(&mut b);
    assert_eq!(sw(&b.apdu(h, GET_BALANCE)), 0x9000);
    assert_eq!(sw(&b.apdu(h2, GET_BALANCE)), 0x9000);
    // release and disconnect of someone else's handle are refused
    assert_eq!(
        b.err(json!({"type": "release", "handle": h, "origin": "http://127.0.0.1:4243"})),
        "forbidden_origin"
    );
    assert_eq!(
        b.err(json!({"type": "release", "handle": 999})),
        "bad_request"
    );
    b.close();
    // the host ending released the card (with a reset)
    reconnect(&mut other);
    assert_eq!(other_transmit(&other, &select_apdu()).unwrap(), 0x9000);
}

#[test]
fn t0_6cxx_retry_changes_only_le() {
    let _one = STACK.lock().unwrap_or_else(|e| e.into_inner());
    let mut stack = testbed::Stack::start().expect("testbed stack");
    personality(&mut stack, json!({"strict_le": true}));
    let dir = stack.dir().to_path_buf();
    let mut b = Bridge::start_config(&dir, config(json!({})));
    // SELECT with Le 00: the card answers 6C23, the bridge asks again with Le 23
    let (h, sel) = connect_and_select(&mut b);
    // GET BALANCE with Le 00 → 6C04 → Le 04
    assert_eq!(
        b.apdu(h, &[0x80, 0x5C, 0x00, 0x00, 0x00]),
        [0x00, 0x00, 0x27, 0x10, 0x90, 0x00]
    );
    // INITIALIZE without Le: the card answers 6C0C; the bridge adds Le 0C and
    // leaves the data (amount, terminal id) as the page sent them
    let amount = 500;
    let r = b.apdu(h, &initialize(amount, false));
    assert_eq!(sw(&r), 0x9000, "{r:02X?}");
    let ir = InitializePurchaseResponse::decode(data(&r)).unwrap();
    // the security module signs for terminal 000000000001: the DEBIT passes only
    // if the card's session was opened for that terminal
    let auth = common::sm::authorize_purchase(&sel, &ir, amount);
    let r = b.apdu(
        h,
        &purse::command::Request::DebitPurchase(auth.debit).to_bytes(),
    );
    assert_eq!(sw(&r), 0x9000, "DEBIT: {r:02X?}");
    let dr = DebitResponse::decode(data(&r)).unwrap();
    auth.verify_s3(dr.balance_after, &dr.s3)
        .expect("S3 verifies");
    let st = stack.state_json().unwrap();
    assert_eq!(st["log"][0]["terminal"], "000000000001", "{st}");
    assert_eq!(st["atc"], 1, "the 6C0C answer spent no transaction number");
    // readiness works on such a card too
    b.ok(json!({"type": "disconnect", "handle": h}));
    assert_eq!(b.ok(json!({"type": "status"}))["state"], "ready");
}

fn bridge_pin(stack: &testbed::Stack, typed: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bridge"))
        .args(["pin", "--reader", testbed::READER])
        .env("CARDPAY_BRIDGE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(typed.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = stack;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !text.contains(typed.trim()) || typed.trim().is_empty(),
        "the PIN was echoed: {text}"
    );
    (out.status.success(), text)
}

#[test]
fn a_page_never_takes_the_last_pin_try_and_bridge_pin_restores_the_tries() {
    let _one = STACK.lock().unwrap_or_else(|e| e.into_inner());
    let stack = testbed::Stack::start().expect("testbed stack");
    let dir = stack.dir().to_path_buf();
    let mut b = Bridge::start_config(&dir, config(json!({"verify_burst": 20})));
    let (h, _) = connect_and_select(&mut b);
    assert_eq!(sw(&b.apdu(h, VERIFY_9999)), 0x63C2);
    assert_eq!(sw(&b.apdu(h, VERIFY_9999)), 0x63C1);
    for pin in [VERIFY_9999, VERIFY_1234] {
        let v = b.call(json!({"type": "transmit", "handle": h, "apdu": hex::encode(pin)}));
        assert_eq!(v["error"]["code"], "last_pin_try", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("bridge pin"),
            "{v}"
        );
    }
    assert_eq!(stack.state_json().unwrap()["pin_tries_left"], 1);
    b.ok(json!({"type": "disconnect", "handle": h}));
    let st = b.ok(json!({"type": "status"}));
    assert_eq!(st["card"]["pin_tries_left"], 1, "{st}");
    assert!(
        st["message"].as_str().unwrap().contains("bridge pin"),
        "{st}"
    );

    // the shopper types at the bridge's own prompt: not a PIN → nothing sent
    let (ok, text) = bridge_pin(&stack, "12a\n");
    assert!(!ok && text.contains("nothing was sent"), "{text}");
    assert!(
        text.contains("is wrong, the card is blocked"),
        "the prompt warns about the last try: {text}"
    );
    assert_eq!(stack.state_json().unwrap()["pin_tries_left"], 1);
    let (ok, text) = bridge_pin(&stack, "\n");
    assert!(!ok && text.contains("Stopped"), "{text}");
    // the right PIN restores the tries
    let (ok, text) = bridge_pin(&stack, "1234\n");
    assert!(ok && text.contains("PIN correct"), "{text}");
    assert_eq!(stack.state_json().unwrap()["pin_tries_left"], 3);
    // a wrong PIN there counts as the card counts it (and says what is left)
    let (ok, text) = bridge_pin(&stack, "9999\n");
    assert!(!ok && text.contains("2 tries left"), "{text}");
    let (ok, _) = bridge_pin(&stack, "1234\n");
    assert!(ok);
    // pages can pay with the PIN again
    let (h, _) = connect_and_select(&mut b);
    assert_eq!(sw(&b.apdu(h, VERIFY_1234)), 0x9000);
    assert_eq!(sw(&b.apdu(h, &initialize(2_500, true))), 0x9000);
    b.close();
}
