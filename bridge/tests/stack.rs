//! The bridge process over stdio ↔ real pcscd + vpcd + the virtual card (testbed):
//! readers, status, connect, a purchase's APDUs (S2 from the security module),
//! forbidden APDUs and origins, the PIN guard, the card pulled and put back
//! (events seen), pcscd killed and restarted (recovery without restarting the
//! bridge), and the bridge-over-stdio round trip time next to direct PC/SC.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bridge::stdio::{self, Frame};
use common::*;
use purse::command::{DebitResponse, InitializePurchaseResponse, SelectResponse};
use purse::types::{PurseId, Terminal};
use serde_json::{json, Value};

/// One testbed stack at a time in this binary.
static STACK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn status_reports_an_expired_card() {
    let _one = STACK.lock().unwrap_or_else(|e| e.into_inner());
    let stack = testbed::Stack::builder()
        .expiry("200131")
        .start()
        .expect("testbed stack");
    let mut b = Bridge::start(stack.dir());
    let st = b.ok(json!({"type": "status"}));
    assert_eq!(st["state"], "expired", "{st}");
    assert_eq!(st["card"]["expiry"], "200131");
    assert!(st["message"].as_str().unwrap().contains("expired"));
    drop(b);

    // started by a browser without the launcher (argv[1] = caller): default config path
    let xdg = stack.dir().join("xdg");
    std::fs::create_dir_all(xdg.join("cardpay")).unwrap();
    std::fs::write(
        xdg.join("cardpay").join("bridge.json"),
        json!({"origins": ["https://pay.example"]}).to_string(),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bridge"))
        .arg(EXT)
        .env("XDG_CONFIG_HOME", &xdg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut r = child.stdout.take().unwrap();
    let mut ask = |origin: &str| {
        let req = json!({"id": 1, "type": "readers", "origin": origin}).to_string();
        stdin.write_all(&stdio::encode(&req)).unwrap();
        match stdio::read_frame(&mut r).unwrap() {
            Some(Frame::Message(m)) => serde_json::from_str::<Value>(&m).unwrap(),
            other => panic!("{other:?}"),
        }
    };
    assert!(ask("https://pay.example")["result"]["readers"].is_array());
    assert_eq!(ask(ORIGIN)["error"]["code"], "forbidden_origin");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn bridge_over_real_pcsc_stack() {
    let _one = STACK.lock().unwrap_or_else(|e| e.into_inner());
    let mut stack = testbed::Stack::start().expect("testbed stack");
    let dir = stack.dir().to_path_buf();
    let mut b = Bridge::start(&dir);

    // hello and readiness
    let h = b.ok(json!({"type": "hello"}));
    assert_eq!(h["version"], 1);
    let readers = b.ok(json!({"type": "readers"}));
    let list = readers["readers"].as_array().unwrap();
    assert!(
        list.iter()
            .any(|r| r["name"] == testbed::READER && r["card_present"] == true),
        "{readers}"
    );
    let st = b.ok(json!({"type": "status"}));
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["card"]["pin_tries_left"], 3);
    // the extension's own pages (popup) may ask for status, not for the card
    let st = b.ok(json!({"type": "status", "origin": EXT}));
    assert_eq!(st["state"], "ready");
    assert_eq!(
        b.err(json!({"type": "connect", "reader": testbed::READER, "origin": EXT})),
        "forbidden_origin"
    );

    // other origins get nothing, not even reader names
    for o in [
        "http://localhost:4242",
        "http://127.0.0.1:4243",
        "https://evil.example",
    ] {
        assert_eq!(
            b.err(json!({"type": "readers", "origin": o})),
            "forbidden_origin"
        );
        assert_eq!(
            b.err(json!({"type": "connect", "reader": testbed::READER, "origin": o})),
            "forbidden_origin"
        );
    }
    assert_eq!(
        b.err(json!({"type": "connect", "reader": "No Such Reader 00 00"})),
        "no_reader"
    );

    // connect; nothing but SELECT Cardpay before SELECT
    let c = b.ok(json!({"type": "connect", "reader": testbed::READER}));
    let hd = c["handle"].as_u64().unwrap();
    assert_eq!(
        b.apdu_err(hd, &[0x80, 0x5C, 0x00, 0x00, 0x04]),
        "forbidden_apdu"
    );
    let r = b.apdu(hd, &select_apdu());
    assert_eq!(sw(&r), 0x9000);
    let sel = SelectResponse::decode(data(&r)).unwrap();
    assert_eq!(sel.purse(PurseId::Money).balance, 10_000);

    // forbidden APDUs: other applications, non-purse commands
    let piv = hex::decode("00A4040009A00000030800001000").unwrap();
    let emv = hex::decode("00A404000E315041592E5359532E444446303100").unwrap();
    for bad in [
        &piv[..],
        &emv[..],
        &[0x00, 0xB0, 0x00, 0x00, 0x10],
        &[0x00, 0x70, 0x00, 0x00, 0x01],
    ] {
        assert_eq!(b.apdu_err(hd, bad), "forbidden_apdu", "{bad:02X?}");
    }
    // the handle belongs to its origin
    assert_eq!(
        b.err(json!({"type":"transmit","handle":hd,"apdu":"805C000004","origin":"http://127.0.0.1:4243"})),
        "forbidden_origin"
    );
    // still selected after the refusals
    let r = b.apdu(hd, &[0x80, 0x5C, 0x00, 0x00, 0x04]);
    assert_eq!(r, [0x00, 0x00, 0x27, 0x10, 0x90, 0x00]);

    // a purchase of 25.00 (above the no-PIN limit: VERIFY first)
    let r = b.apdu(hd, b"\x00\x20\x00\x00\x041234");
    assert_eq!(sw(&r), 0x9000, "VERIFY");
    let terminal = Terminal::parse_hex("000000000001").unwrap();
    let amount = 2_500u32;
    let mut init = vec![0x80, 0x50, 0x01, 0x00, 0x0A];
    init.extend(amount.to_be_bytes());
    init.extend(terminal.bytes());
    init.push(0x0C);
    let r = b.apdu(hd, &init);
    assert_eq!(sw(&r), 0x9000, "INITIALIZE {r:02X?}");
    let ir = InitializePurchaseResponse::decode(data(&r)).unwrap();
    let auth = common::sm::authorize_purchase(&sel, &ir, amount);
    let debit = purse::command::Request::DebitPurchase(auth.debit).to_bytes();
    let r = b.apdu(hd, &debit);
    assert_eq!(sw(&r), 0x9000, "DEBIT {r:02X?}");
    let dr = DebitResponse::decode(data(&r)).unwrap();
    assert_eq!(dr.balance_after, 7_500);
    auth.verify_s3(dr.balance_after, &dr.s3)
        .expect("S3 verifies");

    // PIN guard: wrong PINs down to one try left, then the bridge refuses
    let r = b.apdu(hd, b"\x00\x20\x00\x00\x049999");
    assert_eq!(sw(&r), 0x63C2);
    let r = b.apdu(hd, b"\x00\x20\x00\x00\x049999");
    assert_eq!(sw(&r), 0x63C1);
    assert_eq!(b.apdu_err(hd, b"\x00\x20\x00\x00\x049999"), "last_pin_try");
    let v = b.call(json!({"type": "transmit", "handle": hd, "apdu": "002000000431323334"}));
    assert_eq!(v["error"]["code"], "last_pin_try", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bridge pin"),
        "{v}"
    );
    // the card still has its last try (the status VERIFY passes through)
    let r = b.apdu(hd, &[0x00, 0x20, 0x00, 0x00]);
    assert_eq!(sw(&r), 0x63C1);
    let st = b.ok(json!({"type": "status"}));
    assert_eq!(st["state"], "ready");
    assert_eq!(st["in_use"], true);

    // disconnect; the handle is gone
    b.ok(json!({"type": "disconnect", "handle": hd}));
    assert_eq!(b.apdu_err(hd, &select_apdu()), "bad_request");

    // card pulled and put back
    let (h2, _) = connect_and_select(&mut b);
    b.events.clear();
    stack.remove_card().expect("remove card");
    let ev = b.wait_event("card_removed", Duration::from_secs(5));
    assert_eq!(ev["reader"], testbed::READER);
    let code = b.apdu_err(h2, &[0x80, 0x5C, 0x00, 0x00, 0x04]);
    assert!(code == "card_removed" || code == "no_card", "{code}");
    assert_eq!(b.ok(json!({"type": "status"}))["state"], "no_card");
    assert_eq!(
        b.err(json!({"type": "connect", "reader": testbed::READER})),
        "no_card"
    );
    stack.insert_card().expect("insert card");
    let ev = b.wait_event("card_inserted", Duration::from_secs(5));
    assert_eq!(ev["reader"], testbed::READER);
    let (h3, sel) = connect_and_select(&mut b);
    assert_eq!(sel.purse(PurseId::Money).balance, 7_500);
    // a fresh selection: the PIN counter is still at one try, the guard still
    // refuses, however often a page tries (and spends none of its PIN budget)
    for _ in 0..12 {
        assert_eq!(b.apdu_err(h3, b"\x00\x20\x00\x00\x041234"), "last_pin_try");
    }
    // the card still has its last try
    assert_eq!(sw(&b.apdu(h3, &[0x00, 0x20, 0x00, 0x00])), 0x63C1);

    // the APDU rate limit per origin (burst 60, 20/s in this config)
    let mut refused = 0;
    for _ in 0..80 {
        let v = b.call(json!({"type": "transmit", "handle": h3, "apdu": "805C000004"}));
        if v.get("error").is_some() {
            assert_eq!(v["error"]["code"], "rate_limited", "{v}");
            assert!(
                v["error"]["message"].as_str().unwrap().contains("too many"),
                "{v}"
            );
            let wait = v["error"]["retry_after_ms"].as_u64().unwrap();
            assert!((1..=50).contains(&wait), "20/s: at most 50 ms: {v}");
            refused += 1;
        }
    }
    assert!(refused >= 10, "rate limit refused only {refused} of 80");
    // the rest of this test sends APDUs in bursts: lift the limit (a new bridge reads the new config)
    drop(b);
    let cfg = dir.join("bridge.json");
    std::fs::write(
        &cfg,
        json!({"origins": [ORIGIN], "verify_burst": 10, "apdu_burst": 100000, "apdu_per_sec": 100000}).to_string(),
    )
    .unwrap();
    let mut b = Bridge::start_with(&dir, false);
    let (h3, _) = connect_and_select(&mut b);

    // card pulled mid-command: APDUs in flight while the card loses power
    let ids: Vec<u64> = (0..40)
        .map(|_| b.send(json!({"type": "transmit", "handle": h3, "apdu": "805C000004"})))
        .collect();
    stack.kill_card().expect("kill card");
    for id in ids {
        let v = loop {
            let v = b.rx.recv_timeout(Duration::from_secs(15)).expect("answer");
            if v.get("event").is_some() {
                b.events.push(v);
                continue;
            }
            break v;
        };
        assert_eq!(v["id"], id);
        match v["error"]["code"].as_str() {
            None => assert!(
                v["result"]["rapdu"].as_str().unwrap().ends_with("9000"),
                "{v}"
            ),
            Some("card_removed") | Some("no_card") => {}
            Some(other) => panic!("unexpected error {other}: {v}"),
        }
    }
    let code = b.apdu_err(h3, &[0x80, 0x5C, 0x00, 0x00, 0x04]);
    assert_eq!(code, "card_removed");
    // (the card may have answered every one of the 40 before it died; the next one fails)
    b.wait_event("card_removed", Duration::from_secs(5));
    stack.start_card().expect("card back");
    b.wait_event("card_inserted", Duration::from_secs(5));
    let (h3, sel) = connect_and_select(&mut b);
    assert_eq!(sel.purse(PurseId::Money).balance, 7_500);

    // pcscd killed and restarted: clear errors, then recovery in the same bridge
    b.events.clear();
    stack.stop_pcscd();
    b.wait_event("service", Duration::from_secs(5));
    assert_eq!(b.err(json!({"type": "readers"})), "no_service");
    assert_eq!(b.ok(json!({"type": "status"}))["state"], "no_service");
    let code = b.apdu_err(h3, &[0x80, 0x5C, 0x00, 0x00, 0x04]);
    assert!(
        ["no_service", "card_removed"].contains(&code.as_str()),
        "{code}"
    );
    stack.start_pcscd().expect("restart pcscd");
    stack
        .wait_card_present(Duration::from_secs(10))
        .expect("card back");
    let ev = b.wait_event("card_inserted", Duration::from_secs(10));
    assert_eq!(ev["reader"], testbed::READER);
    let readers = b.ok(json!({"type": "readers"}));
    assert!(readers["readers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["card_present"] == true));
    // the old handle is gone (clearly: connect again), a new connection works
    assert_eq!(
        b.apdu_err(h3, &[0x80, 0x5C, 0x00, 0x00, 0x04]),
        "card_removed"
    );
    let (h4, sel) = connect_and_select(&mut b);
    assert_eq!(sel.purse(PurseId::Money).balance, 7_500);
    let r = b.apdu(h4, &[0x80, 0x5C, 0x00, 0x00, 0x04]);
    assert_eq!(sw(&r), 0x9000);
    assert_eq!(b.ok(json!({"type": "status"}))["state"], "ready");

    // a blocked PIN (spent by another program, not through the bridge) is reported
    b.ok(json!({"type": "disconnect", "handle": h4}));
    {
        let (_ctx, card) = other_program(&stack);
        let mut buf = [0u8; 300];
        card.transmit(&select_apdu(), &mut buf).unwrap();
        let r = card
            .transmit(b"\x00\x20\x00\x00\x049999", &mut buf)
            .unwrap();
        assert_eq!(sw(r), 0x63C0);
    }
    let st = b.ok(json!({"type": "status"}));
    assert_eq!(st["state"], "blocked", "{st}");

    // closing stdin ends the host cleanly
    let mut stdin = b.stdin.take().unwrap();
    stdin.flush().unwrap();
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = b.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "bridge did not exit on EOF");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// pcscd (pcsc-lite) makes SCardDisconnect and SCardConnect wait while any
/// connection holds a transaction on the reader, the bridge's own included.
/// A page closing an old connection while another page of the same bridge
/// holds the card (e.g. after the card was pulled and put back: the widget
/// connects again, the old handle is disconnected later) must not hang the
/// bridge, and must not leave pcscd waiting on a lock nobody will release:
/// a new bridge (the browser restarted) still reaches the card.
#[test]
fn closing_one_page_while_another_holds_the_card_does_not_hang_pcscd() {
    let _one = STACK.lock().unwrap_or_else(|e| e.into_inner());
    let mut stack = testbed::Stack::start().expect("testbed stack");
    let dir = stack.dir().to_path_buf();
    let mut b = Bridge::start(&dir);
    let (old, _) = connect_and_select(&mut b);
    // the card is pulled and put back: the old connection is stale
    stack.remove_card().unwrap();
    stack.insert_card().unwrap();
    let (new, sel) = connect_and_select(&mut b);
    assert_eq!(sel.purse(PurseId::Money).balance, 10_000);
    // the new page holds the card (its SELECT began a transaction); the old
    // page goes away now
    let t = Instant::now();
    b.ok(json!({"type": "disconnect", "handle": old}));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // the new page goes on, its card selected again
    assert_eq!(sw(&b.apdu(new, &[0x80, 0x5C, 0x00, 0x00, 0x04])), 0x9000);
    // and two live pages: the one not holding the card closes first
    let (a, _) = connect_and_select(&mut b);
    let (c, _) = connect_and_select(&mut b);
    b.ok(json!({"type": "disconnect", "handle": a}));
    assert_eq!(sw(&b.apdu(c, &[0x80, 0x5C, 0x00, 0x00, 0x04])), 0x9000);
    b.close();
    // the browser restarts: a new bridge reaches the card at once
    let mut b = Bridge::start(&dir);
    let t = Instant::now();
    let (_, sel) = connect_and_select(&mut b);
    assert_eq!(sel.purse(PurseId::Money).balance, 10_000);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    b.close();
}
