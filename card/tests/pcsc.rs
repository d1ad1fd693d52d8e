//! Integration test on the real stack: pcscd + vsmartcard-vpcd + `card run`,
//! driven from this process through libpcsclite (`pcsc` crate). One test fn:
//! pcscd is one per machine (testbed also takes the machine-wide flock).

mod common;

use card::client::{self, Transport, Txn};
use common::*;
use purse::command::{LogKind, LogRecord, ReadLog, Request};
use purse::PurseId;
use testbed::Stack;

struct Pcsc<'a>(&'a pcsc::Card);

impl Transport for Pcsc<'_> {
    type Error = pcsc::Error;
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, pcsc::Error> {
        let mut buf = [0u8; 300];
        self.0.transmit(apdu, &mut buf).map(|r| r.to_vec())
    }
}

/// Lines of `card inspect` output by their first word(s).
fn field<'a>(inspect: &'a str, prefix: &str) -> &'a str {
    inspect
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in\n{inspect}"))
        .trim()
}

#[test]
fn purchase_and_load_through_pcscd_and_vpcd() {
    let mut stack = Stack::builder()
        .card_bin(env!("CARGO_BIN_EXE_card"))
        .balance(10_000)
        .no_pin_limit(2_000)
        .start()
        .expect("pcscd + vpcd + card");
    let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
    let handle = ctx
        .connect(
            &stack.reader_cstr(),
            pcsc::ShareMode::Shared,
            pcsc::Protocols::ANY,
        )
        .unwrap();
    let mut t = Pcsc(&handle);
    let sm = sm();

    // SELECT
    let sel = client::select(&mut t).unwrap();
    assert_eq!(sel.card_id.full(), CARD_ID);
    assert_eq!(sel.purses[0].balance, 10_000);
    // GET BALANCE
    assert_eq!(
        t.transmit(&[0x80, 0x5C, 0, 0, 4]).unwrap(),
        vec![0, 0, 0x27, 0x10, 0x90, 0]
    );
    // a purchase above the no-PIN limit needs VERIFY first
    let x = Txn {
        purse: PurseId::Money,
        amount: 2_500,
        seq: 1,
        date: date("20261123"),
        time: time("201500"),
    };
    match client::purchase(&mut t, &sm, &sel, x) {
        Err(client::ClientError::Status { sw, .. }) => assert_eq!(sw.0, 0x6982),
        other => panic!("expected 6982, got {other:?}"),
    }
    assert_eq!(
        sw(&t
            .transmit(&[0x00, 0x20, 0, 0, 4, b'1', b'2', b'3', b'5'])
            .unwrap()),
        0x63C2
    );
    client::verify(&mut t, "1234").unwrap();
    // purchase: INITIALIZE + DEBIT with S2 from the security module, S3 verified
    let p = client::purchase(&mut t, &sm, &sel, x).unwrap();
    assert_eq!(p.init.atc, 1);
    assert_eq!(p.debit.balance_after, 7_500);
    // load: S1 verified by the HSM, CREDIT, S3 verified
    let l = client::load(&mut t, &sm, &sel, Txn { amount: 5_000, ..x }).unwrap();
    assert_eq!(l.init.atc, 2);
    assert_eq!(l.credit.balance_after, 12_500);
    // the log through PC/SC
    let log = client::read_log(&mut t).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].kind, LogKind::Load);
    assert_eq!(log[1].kind, LogKind::Purchase);
    let raw = t
        .transmit(&Request::ReadLog(ReadLog { record: 2 }).to_bytes())
        .unwrap();
    assert_eq!(raw.len(), LogRecord::LEN + 2, "37-byte record and SW");
    assert_eq!(LogRecord::decode(&raw[..LogRecord::LEN]).unwrap(), log[1]);

    // latency: vpcd's two unbuffered writes cost ~44 ms per APDU unless the
    // card re-arms TCP_QUICKACK (shared/ENVIRONMENT.md); keep it sub-ms
    let mut rtt: Vec<std::time::Duration> = (0..300)
        .map(|_| {
            let t0 = std::time::Instant::now();
            t.transmit(&[0x80, 0x5C, 0, 0, 4]).unwrap();
            t0.elapsed()
        })
        .collect();
    rtt.sort();
    eprintln!(
        "APDU round trip via pcscd+vpcd: p50 {:?}, p90 {:?}",
        rtt[150], rtt[270]
    );
    assert!(
        rtt[150] < std::time::Duration::from_millis(5),
        "median APDU round trip {:?}: the 44 ms delayed-ACK trap is back",
        rtt[150]
    );
    drop(handle);

    // balance, ATC and log through `card inspect`
    let out = stack.inspect().unwrap();
    assert!(
        out.contains("purse money balance 12500 max 100000"),
        "{out}"
    );
    assert_eq!(field(&out, "atc "), "2");
    assert_eq!(field(&out, "log "), "2 records, newest first");
    assert!(
        out.contains("#1 load money amount 5000 balance-after 12500 atc 2 terminal 000000000001"),
        "{out}"
    );
    assert!(
        out.contains("#2 purchase money amount 2500 balance-after 7500 atc 1 terminal 000000000001 date 2026-11-23 time 20:15:00 seq 1"),
        "{out}"
    );
    assert_eq!(
        field(&out, "pin-tries "),
        "3",
        "a correct PIN resets the tries"
    );
    assert!(!out.contains(CARD_ID), "inspect masks the card id");

    // a power cut (SIGKILL) and restart keep everything
    stack.restart_card().unwrap();
    let handle = ctx
        .connect(
            &stack.reader_cstr(),
            pcsc::ShareMode::Shared,
            pcsc::Protocols::ANY,
        )
        .unwrap();
    let mut t = Pcsc(&handle);
    let sel = client::select(&mut t).unwrap();
    assert_eq!(sel.purses[0].balance, 12_500);
    assert_eq!(client::read_log(&mut t).unwrap(), log);
}
