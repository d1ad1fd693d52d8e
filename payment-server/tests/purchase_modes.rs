//! Every verify mode end to end: the real client, the real card state machine,
//! the real server on HTTP and SQLite; the merchant kit decides what is paid.
//! Money: after each purchase the card's debit equals the server's capture.

use merchant_kit::{OrderRef, Verified};
use payment_testkit::*;
use purse::merchant_api::{TxnState, TxnView};
use purse::purchase::client::Outgoing;
use purse::purchase::MerchantResult;
use purse::session::VerifyMode;
use purse::types::PurseId;

fn order<'a>(m: &'a TestMerchant, txn: &'a str, amount: u32, mode: VerifyMode) -> OrderRef<'a> {
    OrderRef {
        txn_id: txn,
        order_ref: "",
        amount,
        currency: 978,
        exponent: 2,
        purse: PurseId::Money,
        origin: &m.origin,
        verify_mode: mode,
    }
}

/// One purchase in `mode`; the background complete of the one-trip modes is
/// delivered only if `background`. Returns what the merchant ends up with.
async fn one_purchase(mode: VerifyMode, background: bool) -> (TestServer, TxnView, u32) {
    let srv = TestServer::start(&[TestMerchant::new("shop", 1)]).await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000001", 10_000), srv.api());
    let ws = m.session("T-1", 1_234, mode, now() + 600);
    let mut c = shopper.client(&ws);
    let out = shopper
        .run(&mut c, &mut |r: &mut Outgoing| {
            if !background
                && is_post(r, purse::purchase::PATH_COMPLETE)
                && matches!(mode, VerifyMode::Client | VerifyMode::Merchant)
            {
                Cut::RequestLost
            } else {
                Cut::None
            }
        })
        .await;
    let Outcome::Paid { receipt, result } = out else {
        panic!("{mode:?}: {out:?}")
    };
    assert_eq!(receipt.balance_after, 10_000 - 1_234);
    let kit = m.kit();
    let view = match kit
        .verify_result(&order(m, "T-1", 1_234, mode), &result)
        .unwrap()
    {
        Verified::Captured(p) => {
            assert!(matches!(result, MerchantResult::ResultM { .. }));
            assert_eq!(p.evidence, "result_m");
            srv.api()
                .merchant_call::<TxnView>(&kit, "POST", "/v1/transactions/T-1/confirm", None)
                .await
                .unwrap()
        }
        Verified::ConfirmWithServer { txn_id, confirm } => {
            assert!(matches!(mode, VerifyMode::Client | VerifyMode::Merchant));
            let body = serde_json::to_value(&confirm).unwrap();
            let v: TxnView = srv
                .api()
                .merchant_call(
                    &kit,
                    "POST",
                    &format!("/v1/transactions/{txn_id}/confirm"),
                    Some(&body),
                )
                .await
                .unwrap();
            let paid = kit
                .check_confirmed(&order(m, "T-1", 1_234, mode), &v)
                .unwrap();
            assert_eq!(paid.evidence, "confirm");
            v
        }
    };
    let bal = balance(&shopper.card);
    (srv, view, bal)
}

#[tokio::test]
async fn every_mode_captures_exactly_the_card_debit() {
    for mode in [
        VerifyMode::PaymentServer,
        VerifyMode::SecurityModule,
        VerifyMode::Client,
        VerifyMode::Merchant,
    ] {
        for background in [true, false] {
            let (srv, v, bal) = one_purchase(mode, background).await;
            assert_eq!(v.state, TxnState::Confirmed, "{mode:?}");
            assert_eq!(bal, 10_000 - 1_234);
            assert_eq!(
                srv.captured(),
                1_234,
                "{mode:?} background={background}: one capture"
            );
        }
    }
}

#[tokio::test]
async fn the_background_complete_captures_without_the_merchant() {
    for mode in [VerifyMode::Client, VerifyMode::Merchant] {
        let srv = TestServer::start(&[TestMerchant::new("shop", 1)]).await;
        let m = &srv.merchants[0];
        let mut shopper = Shopper::new(test_card("6280000000000002", 5_000), srv.api());
        let out = shopper
            .pay(&m.session("T-bg", 700, mode, now() + 600))
            .await;
        assert!(out.is_paid(), "{out:?}");
        // The merchant never confirmed: the card's S3 reached the server anyway.
        assert_eq!(srv.state_of("shop", "T-bg").as_deref(), Some("debited"));
        assert_eq!(srv.captured(), 700);
        assert_eq!(balance(&shopper.card), 4_300);
    }
}

#[tokio::test]
async fn above_the_no_pin_limit_the_pin_is_asked_and_verified() {
    let srv = TestServer::start(&[TestMerchant::new("shop", 1)]).await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000003", 10_000), srv.api());
    let out = shopper
        .pay(&m.session("T-pin", 2_500, VerifyMode::PaymentServer, now() + 600))
        .await;
    assert!(out.is_paid(), "{out:?}");
    // SELECT, READ LOG (empty), INITIALIZE FOR LOAD 0 (the card's proof),
    // INITIALIZE (6982: no ATC spent), VERIFY, INITIALIZE (the proof kept),
    // draw, DEBIT, complete: two ATCs.
    let verifies = shopper
        .trace
        .iter()
        .filter(|r| matches!(r, Outgoing::Card(a) if a.get(1) == Some(&0x20)))
        .count();
    assert_eq!(verifies, 1, "one VERIFY");
    assert_eq!(initializes(&shopper.trace, 0x02), 1, "one proof");
    assert_eq!(shopper.card.state().atc, 2);
    // Without the PIN the purchase waits on the keypad and nothing moves.
    let mut no_pin = Shopper::new(test_card("6280000000000004", 10_000), srv.api());
    no_pin.pin = None;
    let ws = m.session("T-nopin", 2_500, VerifyMode::PaymentServer, now() + 600);
    let mut c = no_pin.client(&ws);
    let out = no_pin.run(&mut c, &mut |_r: &mut Outgoing| Cut::None).await;
    assert_eq!(out, Outcome::Waiting("pin".into()));
    assert_eq!(balance(&no_pin.card), 10_000);
    // Meanwhile another terminal uses the card (one INITIALIZE): the kept
    // proof no longer comes right before the purchase's INITIALIZE, so the
    // client proves the card again instead of sending a draw the server
    // would refuse; the shopper then types the PIN and pays.
    let _ = card_proof(&mut no_pin.card, PurseId::Money, TEST_TERMINAL);
    reset_and_select(&mut no_pin.card);
    no_pin.pin = Some(TEST_PIN.into());
    let out = no_pin.run(&mut c, &mut |_r: &mut Outgoing| Cut::None).await;
    assert!(out.is_paid(), "{out:?}");
    assert_eq!(initializes(&no_pin.trace, 0x02), 2, "proved again");
    assert_eq!(balance(&no_pin.card), 7_500);
    assert_eq!(srv.captured(), 5_000);
}

/// The card's INITIALIZEs in a trace: its proofs (FOR LOAD, P1 02) and the
/// purchase's (FOR PURCHASE, P1 01).
fn initializes(trace: &[Outgoing], p1: u8) -> usize {
    trace.iter().filter(|r| is_initialize(r, p1)).count()
}

/// Carry the client's requests until it waits for the shopper; `before`
/// sees each card request first (the test's own moves go there).
async fn until_the_shopper(
    shopper: &mut Shopper,
    c: &mut purse::purchase::client::Client,
    before: &mut dyn FnMut(&Outgoing, &mut purse::purchase::client::Client),
) {
    while let Some(req) = c.poll_request() {
        before(&req, c);
        let reply = shopper.carry(&req, Cut::None).await;
        shopper.trace.push(req);
        c.handle(reply);
    }
}

/// A new client for `ws` on a fresh selection of the card, carried until the
/// amount is shown (the trace starts empty there).
async fn at_the_amount(
    shopper: &mut Shopper,
    ws: &purse::purchase::WidgetSession,
) -> purse::purchase::client::Client {
    let mut c = shopper.client(ws);
    shopper.trace.clear();
    shopper.card.reset();
    c.card_ready();
    until_the_shopper(shopper, &mut c, &mut |_, _| {}).await;
    assert!(
        matches!(c.status(), purse::purchase::client::Status::Confirm),
        "{:?}",
        c.status()
    );
    c
}

#[tokio::test]
async fn the_card_proves_itself_at_the_shoppers_gesture_not_when_the_amount_is_shown() {
    use purse::purchase::client::{Status, Step};
    let srv = TestServer::start(&[TestMerchant::new("shop", 1)]).await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000006", 10_000), srv.api());
    // The amount is shown (Confirm): the card has spent nothing. A page that
    // only shows checkouts (a hostile merchant mounting frame after frame)
    // cannot spend the card's ATCs nor the bridge's INITIALIZE budget.
    let ws = m.session("T-early", 700, VerifyMode::PaymentServer, now() + 600);
    let mut c = at_the_amount(&mut shopper, &ws).await;
    assert_eq!(
        initializes(&shopper.trace, 0x02),
        0,
        "no proof at the amount"
    );
    assert_eq!(shopper.card.state().atc, 0, "no ATC spent at the amount");
    // The shopper presses Approve: the proof goes out at the press, so
    // Approve (the click, a press's length later) waits for one card round
    // trip less. More gestures ask nothing more.
    c.gesture();
    until_the_shopper(&mut shopper, &mut c, &mut |_, _| {}).await;
    c.gesture();
    assert!(c.poll_request().is_none(), "one proof for many gestures");
    assert!(matches!(c.status(), Status::Confirm), "{:?}", c.status());
    assert_eq!(
        initializes(&shopper.trace, 0x02),
        1,
        "the proof at the press"
    );
    assert_eq!(
        initializes(&shopper.trace, 0x01),
        0,
        "nothing more before Approve"
    );
    assert_eq!(shopper.card.state().atc, 1, "the proof spent one ATC");
    // Before the click lands, another terminal uses the card (one
    // INITIALIZE): the purchase's INITIALIZE shows the card's ATC moved, so
    // the client proves the card again instead of sending a draw the server
    // would refuse.
    let _ = card_proof(&mut shopper.card, PurseId::Money, TEST_TERMINAL);
    reset_and_select(&mut shopper.card);
    let out = shopper
        .run(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await;
    assert!(out.is_paid(), "{out:?}");
    assert_eq!(initializes(&shopper.trace, 0x02), 2, "proved again");
    // ATCs: the proof, the other terminal's, the stale INITIALIZE, the new
    // proof, the purchase's INITIALIZE.
    assert_eq!(shopper.card.state().atc, 5);
    assert_eq!(balance(&shopper.card), 9_300);
    assert_eq!(srv.captured(), 700);

    // A click that lands before the proof's answer is in (a short press, or a
    // bench's): the answer goes straight on to the INITIALIZE, one proof.
    let ws = m.session("T-quick", 300, VerifyMode::PaymentServer, now() + 600);
    let mut c = at_the_amount(&mut shopper, &ws).await;
    c.gesture();
    c.approve(0);
    assert!(
        matches!(c.status(), Status::Working(Step::Preparing)),
        "Approve while the proof was on its way: {:?}",
        c.status()
    );
    until_the_shopper(&mut shopper, &mut c, &mut |_, _| {}).await;
    assert!(c.is_finished(), "{:?}", c.status());
    assert_eq!(initializes(&shopper.trace, 0x02), 1, "one proof");
    assert_eq!(
        initializes(&shopper.trace, 0x01),
        1,
        "one INITIALIZE FOR PURCHASE"
    );
    assert_eq!(shopper.card.state().atc, 7);
    assert_eq!(balance(&shopper.card), 9_000);
    assert_eq!(srv.captured(), 1_000);

    // Approve with no gesture before it (a click synthesized inside the
    // frame, Enter on a focused Approve): the proof goes out at the approval.
    let ws = m.session("T-plain", 200, VerifyMode::PaymentServer, now() + 600);
    let mut c = at_the_amount(&mut shopper, &ws).await;
    assert_eq!(shopper.card.state().atc, 7, "no ATC spent at the amount");
    c.approve(0);
    until_the_shopper(&mut shopper, &mut c, &mut |_, _| {}).await;
    assert!(c.is_finished(), "{:?}", c.status());
    assert_eq!(initializes(&shopper.trace, 0x02), 1, "one proof");
    assert_eq!(initializes(&shopper.trace, 0x01), 1, "then the purchase's");
    assert_eq!(shopper.card.state().atc, 9);
    assert_eq!(balance(&shopper.card), 8_800);
    assert_eq!(srv.captured(), 1_200);
}

#[tokio::test]
async fn the_press_on_approve_initializes_the_purchase_so_the_click_goes_straight_to_the_draw() {
    use purse::purchase::client::{Problem, Status, PRESS_TO_CLICK_MS};
    use purse::purchase::PATH_DRAW;
    let srv = TestServer::start(&[TestMerchant::new("shop", 1)]).await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000006", 10_000), srv.api());
    let cards = |t: &[Outgoing]| -> Vec<Outgoing> {
        t.iter()
            .filter(|r| !matches!(r, Outgoing::Crypto(_)))
            .cloned()
            .collect()
    };

    // The press (at 1 s on the widget's clock): the card's proof, then the
    // purchase's INITIALIZE; nothing to the server, no money moved, the
    // amount still shown. More presses ask nothing more.
    let ws = m.session("T-press", 700, VerifyMode::PaymentServer, now() + 600);
    let mut c = at_the_amount(&mut shopper, &ws).await;
    shopper.trace.clear(); // (the SELECT and READ LOG)
    c.press(1_000);
    until_the_shopper(&mut shopper, &mut c, &mut |_, _| {}).await;
    c.press(1_040);
    assert!(c.poll_request().is_none(), "one proof and one INITIALIZE");
    assert!(matches!(c.status(), Status::Confirm), "{:?}", c.status());
    assert_eq!(
        cards(&shopper.trace).len(),
        2,
        "the card only: {:?}",
        shopper.trace
    );
    assert!(is_initialize(&shopper.trace[0], 0x02), "the proof first");
    assert!(
        is_initialize(&shopper.trace[1], 0x01),
        "then the purchase's"
    );
    assert_eq!(shopper.card.state().atc, 2);
    assert_eq!(balance(&shopper.card), 10_000, "nothing taken at the press");
    assert_eq!(srv.state_of("shop", "T-press"), None, "nothing drawn");
    // The click, 80 ms later: the draw at once (no card round trip first),
    // then the DEBIT; paid once, no further INITIALIZE.
    shopper.trace.clear();
    c.approve(1_080);
    until_the_shopper(&mut shopper, &mut c, &mut |_, _| {}).await;
    assert!(c.is_finished(), "{:?}", c.status());
    let after = cards(&shopper.trace);
    assert!(is_post(&after[0], PATH_DRAW), "the draw first: {after:?}");
    assert!(is_debit(&after[1]), "then the DEBIT: {after:?}");
    assert_eq!(after.iter().filter(|r| is_initialize(r, 0x01)).count(), 0);
    assert_eq!(
        shopper.card.state().atc,
        2,
        "the press's INITIALIZE was used"
    );
    assert_eq!(balance(&shopper.card), 9_300);
    assert_eq!(srv.captured(), 700);

    // A press let go off the button, and the click long after it: the card
    // may have been used meanwhile, so it proves itself and is initialized
    // again (two more ATCs), and the purchase is paid once.
    let ws = m.session("T-late", 300, VerifyMode::PaymentServer, now() + 600);
    let mut c = at_the_amount(&mut shopper, &ws).await;
    c.press(5_000);
    until_the_shopper(&mut shopper, &mut c, &mut |_, _| {}).await;
    assert_eq!(shopper.card.state().atc, 4);
    shopper.trace.clear();
    c.approve(5_000 + PRESS_TO_CLICK_MS + 1);
    until_the_shopper(&mut shopper, &mut c, &mut |_, _| {}).await;
    assert!(c.is_finished(), "{:?}", c.status());
    let after = cards(&shopper.trace);
    assert!(is_initialize(&after[0], 0x02), "proved again: {after:?}");
    assert!(
        is_initialize(&after[1], 0x01),
        "initialized again: {after:?}"
    );
    assert!(is_post(&after[2], PATH_DRAW), "{after:?}");
    assert_eq!(shopper.card.state().atc, 6);
    assert_eq!(balance(&shopper.card), 9_000);
    assert_eq!(srv.captured(), 1_000);
    // What the press costs: another terminal uses the card between the press
    // and its click (within the window). The card's pending INITIALIZE is
    // gone, so it refuses the DEBIT: the purchase fails, nothing is taken
    // (the card's balance, the books), and the server records it failed.
    let ws = m.session("T-raced", 200, VerifyMode::PaymentServer, now() + 600);
    let mut c = at_the_amount(&mut shopper, &ws).await;
    c.press(20_000);
    until_the_shopper(&mut shopper, &mut c, &mut |_, _| {}).await;
    let _ = card_proof(&mut shopper.card, PurseId::Money, TEST_TERMINAL);
    reset_and_select(&mut shopper.card);
    c.approve(20_080);
    until_the_shopper(&mut shopper, &mut c, &mut |_, _| {}).await;
    assert!(
        matches!(
            c.status(),
            Status::Failed {
                problem: Problem::CardRefused(_),
                retry: false
            }
        ),
        "{:?}",
        c.status()
    );
    assert_eq!(balance(&shopper.card), 9_000, "nothing taken");
    assert_eq!(srv.captured(), 1_000, "nothing captured");
    assert_eq!(srv.state_of("shop", "T-raced").as_deref(), Some("failed"));
}

#[tokio::test]
async fn draw_requests_carry_the_cards_log() {
    let srv = TestServer::start(&[TestMerchant::new("shop", 1)]).await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000005", 10_000), srv.api());
    for i in 0..3 {
        let out = shopper
            .pay(&m.session(
                &format!("T-{i}"),
                100,
                VerifyMode::PaymentServer,
                now() + 600,
            ))
            .await;
        assert!(out.is_paid());
    }
    // The third purchase read two records before its draw.
    let reads = shopper
        .trace
        .iter()
        .filter(|r| matches!(r, Outgoing::Card(a) if a.get(1) == Some(&0x5A)))
        .count();
    // 1 (empty) + 2 (one record, then the end) + 3 (two records, then the end)
    assert_eq!(reads, 6);
    assert_eq!(srv.captured(), 300);
}

/// A payment of `card` at merchant `m`: the card reference of its result M
/// and of the merchant API's view.
async fn card_refs(
    srv: &TestServer,
    m: usize,
    shopper: &mut Shopper,
    txn: &str,
) -> (String, String) {
    let m = &srv.merchants[m];
    let ws = m.session(txn, 100, VerifyMode::PaymentServer, now() + 600);
    let out = shopper.pay(&ws).await;
    let kit = m.kit();
    let Verified::Captured(p) = kit
        .verify_result(
            &order(m, txn, 100, VerifyMode::PaymentServer),
            out.result().unwrap(),
        )
        .unwrap()
    else {
        panic!("result M")
    };
    let v: TxnView = srv
        .api()
        .merchant_call(&kit, "GET", &format!("/v1/transactions/{txn}"), None)
        .await
        .unwrap();
    assert_eq!(p.card, v.card);
    (p.card_ref, v.card_ref)
}

#[tokio::test]
async fn card_refs_are_per_card_and_per_merchant_never_the_card_number() {
    let srv =
        TestServer::start(&[TestMerchant::new("shop", 1), TestMerchant::new("other", 2)]).await;
    let mut a = Shopper::new(test_card("6280000000001234", 10_000), srv.api());
    let mut b = Shopper::new(test_card("6280000099991234", 10_000), srv.api());
    let (a1, a1_view) = card_refs(&srv, 0, &mut a, "T-1").await;
    let (a2, _) = card_refs(&srv, 0, &mut a, "T-2").await;
    let (a_other, a_other_view) = card_refs(&srv, 1, &mut a, "T-3").await;
    let (b1, _) = card_refs(&srv, 0, &mut b, "T-4").await;
    assert_eq!(a1.len(), 32);
    assert_eq!(
        (&a1_view, &a2),
        (&a1, &a1),
        "one card, one merchant: one reference"
    );
    assert_eq!(a_other_view, a_other);
    assert_ne!(a_other, a1, "another merchant: another reference");
    assert_ne!(b1, a1, "the same last four: another reference");
    for r in [&a1, &a_other, &b1] {
        assert!(!r.contains("6280000000001234") && !r.contains("6280000099991234"));
    }
}
