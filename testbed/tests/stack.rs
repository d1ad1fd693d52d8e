//! The testbed itself, against the real pcscd + vpcd + card: card events
//! (remove/insert, kill/restart), pcscd restart, APDUs through PC/SC.
//! One test fn: stacks must not run in parallel.

use std::time::{Duration, Instant};

use testbed::{Stack, READER};

const SELECT: [u8; 14] = [
    0x00, 0xA4, 0x04, 0x00, 0x08, 0xF0, 0x43, 0x41, 0x52, 0x44, 0x50, 0x41, 0x59, 0x00,
];

fn transmit(card: &pcsc::Card, apdu: &[u8]) -> Result<Vec<u8>, pcsc::Error> {
    let mut buf = [0u8; 300];
    card.transmit(apdu, &mut buf).map(|r| r.to_vec())
}

fn connect(stack: &Stack) -> pcsc::Card {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).expect("pcsc context");
    ctx.connect(
        &stack.reader_cstr(),
        pcsc::ShareMode::Shared,
        pcsc::Protocols::ANY,
    )
    .expect("connect to the card")
}

#[test]
fn stack_lifecycle() {
    let mut stack = Stack::builder()
        .balance(4242)
        .start()
        .expect("stack starts");
    assert!(stack.pcscd_pid().is_some());
    let card_pid = stack.card_pid().expect("card runs");

    // ATR and SELECT through PC/SC
    let mut card = connect(&stack);
    let (_, _, atr) = {
        let mut names = [0u8; 128];
        let mut atr = [0u8; 64];
        let st = card.status2(&mut names, &mut atr).expect("status");
        (st.reader_names().count(), st.status(), st.atr().to_vec())
    };
    assert_eq!(&atr[..4], &[0x3B, 0x87, 0x80, 0x01], "our ATR");
    let r = transmit(&card, &SELECT).expect("select");
    assert_eq!(&r[r.len() - 2..], &[0x90, 0x00]);
    assert_eq!(r.len(), 35 + 2);
    assert_eq!(
        u32::from_be_bytes(r[16..20].try_into().unwrap()),
        4242,
        "money balance"
    );

    // remove: the reader goes empty, transmit fails; insert: works again
    stack.remove_card().expect("remove");
    assert!(transmit(&card, &SELECT).is_err(), "no card, no APDU");
    stack.insert_card().expect("insert");
    assert_eq!(stack.card_pid(), Some(card_pid), "same process");
    card.reconnect(
        pcsc::ShareMode::Shared,
        pcsc::Protocols::ANY,
        pcsc::Disposition::ResetCard,
    )
    .expect("reconnect after reinsertion");
    let r = transmit(&card, &SELECT).expect("select after reinsertion");
    assert_eq!(&r[r.len() - 2..], &[0x90, 0x00]);
    drop(card);

    // kill -9 and restart the card process
    stack.kill_card().expect("kill");
    assert_eq!(stack.card_pid(), None);
    stack.start_card().expect("restart card");
    let new_pid = stack.card_pid().expect("card runs again");
    assert_ne!(new_pid, card_pid);
    let card = connect(&stack);
    let r = transmit(&card, &SELECT).expect("select after restart");
    assert_eq!(&r[r.len() - 2..], &[0x90, 0x00]);
    drop(card);

    // pcscd restart: the card reconnects by itself
    let t = Instant::now();
    stack.restart_pcscd().expect("restart pcscd");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(stack.card_pid(), Some(new_pid), "card process survived");
    let card = connect(&stack);
    let r = transmit(&card, &SELECT).expect("select after pcscd restart");
    assert_eq!(&r[r.len() - 2..], &[0x90, 0x00]);
    drop(card);

    // state access
    let inspect = stack.inspect().expect("inspect");
    assert!(inspect.contains("purse money balance 4242 "), "{inspect}");
    let json = stack.state_json().expect("state parses");
    assert_eq!(json["atc"], 0);
    assert!(
        !inspect.contains(testbed::keys::CARD_ID),
        "card id is masked"
    );

    // teardown by PID
    let dir = stack.dir().to_path_buf();
    let pcscd = stack.pcscd_pid().unwrap() as i32;
    drop(stack);
    assert!(testbed::is_zombie(pcscd), "pcscd gone");
    assert!(!dir.exists(), "temp dir removed");
    let _ = READER;
}
