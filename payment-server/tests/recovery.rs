//! Torn purchases always reach a final state, and money is conserved: for
//! every card, what the card was debited equals what the server captured,
//! once the card has been back (DESIGN §4 "Recovery").
//!
//! Faults are injected at the client's boundaries with the real card state
//! machine and the real server: the card pulled before DEBIT reaches it,
//! after it applied DEBIT but before it answered, after it answered; a request
//! or a reply lost on the network.

use payment_testkit::*;
use purse::merchant_api::{RecoveryList, TxnState, TxnView};
use purse::purchase::client::{Outgoing, Problem};
use purse::purchase::{PATH_COMPLETE, PATH_DRAW, PATH_RECOVER};
use purse::session::VerifyMode;

async fn server() -> TestServer {
    TestServer::start(&[TestMerchant::new("shop", 1)]).await
}

fn recovers(trace: &[Outgoing]) -> usize {
    trace.iter().filter(|r| is_post(r, PATH_RECOVER)).count()
}

#[tokio::test]
async fn card_pulled_after_it_applied_debit_then_put_back_shows_charged() {
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000101", 5_000), srv.api());
    let ws = m.session("T-1", 1_500, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws);
    let out = shopper.run(&mut c, &mut cut_debit(Cut::CardAfter)).await;
    assert_eq!(
        out.problem(),
        Some(Problem::Torn),
        "the shopper is told the card may be charged"
    );
    assert!(!c.cancel(), "no cancel once DEBIT went out");
    assert_eq!(balance(&shopper.card), 3_500, "the card did apply it");
    assert_eq!(srv.state_of("shop", "T-1").as_deref(), Some("drawn"));
    // Put back: the client reads the log and asks the server.
    shopper.card_present = true;
    let out = shopper
        .run(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await;
    let Outcome::Paid { receipt, result } = out else {
        panic!("{out:?}")
    };
    assert_eq!(receipt.balance_after, 3_500);
    assert_eq!(recovers(&shopper.trace), 1);
    // The merchant can release the goods on the result M the recovery returned.
    let order = merchant_kit::OrderRef {
        txn_id: "T-1",
        order_ref: "",
        amount: 1_500,
        currency: 978,
        exponent: 2,
        purse: purse::types::PurseId::Money,
        origin: &m.origin,
        verify_mode: VerifyMode::PaymentServer,
    };
    assert!(matches!(
        m.kit().verify_result(&order, &result),
        Ok(merchant_kit::Verified::Captured(_))
    ));
    assert_eq!(srv.state_of("shop", "T-1").as_deref(), Some("debited"));
    assert_eq!(srv.captured(), 1_500);
}

#[tokio::test]
async fn card_pulled_before_debit_reached_it_shows_not_charged() {
    let srv = server().await;
    let m = &srv.merchants[0];
    // A young card (empty log) and one with history: both decide "not charged".
    for (card, history) in [("6280000000000102", 0), ("6280000000000103", 2)] {
        let mut shopper = Shopper::new(test_card(card, 5_000), srv.api());
        for i in 0..history {
            assert!(shopper
                .pay(&m.session(
                    &format!("H-{card}-{i}"),
                    100,
                    VerifyMode::PaymentServer,
                    now() + 600
                ))
                .await
                .is_paid());
        }
        let txn = format!("T-{card}");
        let ws = m.session(&txn, 1_500, VerifyMode::PaymentServer, now() + 600);
        let mut c = shopper.client(&ws);
        let out = shopper.run(&mut c, &mut cut_debit(Cut::CardBefore)).await;
        assert_eq!(out.problem(), Some(Problem::Torn));
        shopper.card_present = true;
        let out = shopper
            .run(&mut c, &mut |_r: &mut Outgoing| Cut::None)
            .await;
        assert_eq!(
            out.problem(),
            Some(Problem::NotCharged),
            "history {history}"
        );
        assert_eq!(srv.state_of("shop", &txn).as_deref(), Some("failed"));
        assert_eq!(balance(&shopper.card), 5_000 - 100 * history);
    }
    assert_eq!(srv.captured(), 200);
}

#[tokio::test]
async fn card_pulled_after_it_answered_debit_still_completes() {
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000104", 5_000), srv.api());
    let ws = m.session("T-3", 900, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws);
    // Pulled right after its answer: complete needs no card.
    let out = shopper
        .run(&mut c, &mut cut_debit(Cut::PulledAfterAnswer))
        .await;
    assert!(out.is_paid(), "{out:?}");
    assert!(!shopper.card_present);
    assert_eq!(srv.captured(), 900);
    assert_eq!(balance(&shopper.card), 4_100);
}

#[tokio::test]
async fn card_pulled_before_the_draw_then_put_back_pays_once() {
    let srv = server().await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000105", 5_000), srv.api());
    let ws = m.session("T-4", 900, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws);
    // A click with no press before it (Enter on a focused Approve): the
    // INITIALIZE FOR PURCHASE (P1 01, after Approve) is lost with the card:
    // nothing drawn yet.
    shopper.presses = false;
    let initialize = |p1: u8| {
        move |r: &mut Outgoing| {
            if is_initialize(r, p1) {
                Cut::CardAfter
            } else {
                Cut::None
            }
        }
    };
    let out = shopper.run(&mut c, &mut initialize(0x01)).await;
    assert_eq!(out.problem(), Some(Problem::CardRemoved));
    assert_eq!(srv.state_of("shop", "T-4"), None, "nothing drawn");
    // Put back: the same page reads the card again and pays.
    shopper.card_present = true;
    assert!(shopper
        .run(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await
        .is_paid());
    assert_eq!(srv.captured(), 900);
    assert_eq!(balance(&shopper.card), 4_100);
    shopper.presses = true;

    // A press on Approve: its INITIALIZE FOR PURCHASE (sent at the press,
    // right after the proof) is lost with the card. Nothing started (no draw
    // before the click), so the client waits for the card again, no problem
    // to show; put back, it pays once.
    let ws = m.session("T-4b", 500, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws);
    let out = shopper.run(&mut c, &mut initialize(0x01)).await;
    assert_eq!(out, Outcome::Waiting("WaitingForCard".into()));
    assert_eq!(srv.state_of("shop", "T-4b"), None, "nothing drawn");
    shopper.card_present = true;
    assert!(shopper
        .run(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await
        .is_paid());
    assert_eq!(srv.captured(), 1_400);
    assert_eq!(balance(&shopper.card), 3_600);

    // The card's proof (P1 02, sent at the shopper's press while the amount
    // is shown) is lost with the card: nothing started, so the client just
    // waits for the card again (no problem to show), and nothing is drawn.
    let ws = m.session("T-5", 600, VerifyMode::PaymentServer, now() + 600);
    let mut c = shopper.client(&ws);
    let out = shopper.run(&mut c, &mut initialize(0x02)).await;
    assert_eq!(out, Outcome::Waiting("WaitingForCard".into()));
    assert_eq!(srv.state_of("shop", "T-5"), None, "nothing drawn");
    shopper.card_present = true;
    assert!(shopper
        .run(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await
        .is_paid());
    assert_eq!(srv.captured(), 2_000);
    assert_eq!(balance(&shopper.card), 3_000);
}

#[tokio::test]
async fn lost_requests_and_replies_are_retried_without_a_second_capture() {
    let srv = server().await;
    let m = &srv.merchants[0];
    for (i, (path, cut)) in [
        (PATH_DRAW, Cut::RequestLost),
        (PATH_DRAW, Cut::ReplyLost),
        (PATH_COMPLETE, Cut::RequestLost),
        (PATH_COMPLETE, Cut::ReplyLost),
    ]
    .into_iter()
    .enumerate()
    {
        let mut shopper = Shopper::new(
            test_card(&format!("62800000000002{i:02}"), 5_000),
            srv.api(),
        );
        let ws = m.session(
            &format!("T-net-{i}"),
            250,
            VerifyMode::PaymentServer,
            now() + 600,
        );
        let mut c = shopper.client(&ws);
        let mut once = true;
        let out = shopper
            .run(&mut c, &mut |r: &mut Outgoing| {
                if is_post(r, path) && std::mem::take(&mut once) {
                    cut
                } else {
                    Cut::None
                }
            })
            .await;
        assert_eq!(
            out.problem(),
            Some(Problem::ServerUnreachable),
            "{path} {cut:?}"
        );
        c.retry();
        let out = shopper
            .run(&mut c, &mut |_r: &mut Outgoing| Cut::None)
            .await;
        assert!(out.is_paid(), "{path} {cut:?}: {out:?}");
        assert_eq!(balance(&shopper.card), 4_750);
    }
    assert_eq!(srv.captured(), 4 * 250);
}

#[tokio::test]
async fn silent_transactions_become_unknown_then_the_cards_next_use_decides() {
    let srv = TestServer::start_with_grace(
        &[TestMerchant::new("shop", 1), TestMerchant::new("other", 2)],
        0,
    )
    .await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(test_card("6280000000000106", 5_000), srv.api());
    // Torn (applied), and the shopper never comes back to this page; its session expires.
    let ws = m.session("T-5", 1_200, VerifyMode::PaymentServer, now() + 1);
    let mut c = shopper.client(&ws);
    let out = shopper.run(&mut c, &mut cut_debit(Cut::CardAfter)).await;
    assert_eq!(out.problem(), Some(Problem::Torn));
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    assert_eq!(srv.service.sweep().await.unwrap(), 1);
    assert_eq!(srv.state_of("shop", "T-5").as_deref(), Some("unknown"));
    let list: RecoveryList = srv
        .api()
        .operator_call("GET", "/v1/recovery", None)
        .await
        .unwrap();
    assert_eq!(list.transactions.len(), 1);
    assert_eq!(list.transactions[0].state, TxnState::Unknown);
    // The item names the card as the transaction's view and webhooks do
    // (the merchant's reference), never by its full number.
    let waiting = &list.transactions[0];
    let view: TxnView = srv
        .api()
        .merchant_call(&m.kit(), "GET", "/v1/transactions/T-5", None)
        .await
        .unwrap();
    assert_eq!(waiting.card_ref.len(), 32);
    assert_eq!(waiting.card_ref, view.card_ref);
    assert_eq!(waiting.card, view.card);
    assert!(!waiting.card.contains("6280000000000106"));
    // The card is next used at another merchant: its draw carries the log.
    shopper.card_present = true;
    let o = &srv.merchants[1];
    assert!(shopper
        .pay(&o.session("T-6", 100, VerifyMode::PaymentServer, now() + 600))
        .await
        .is_paid());
    let v: TxnView = srv
        .api()
        .merchant_call(&m.kit(), "GET", "/v1/transactions/T-5", None)
        .await
        .unwrap();
    assert_eq!(v.state, TxnState::Debited);
    assert_eq!(
        v.resolution.as_deref(),
        Some("card log record proves the debit")
    );
    let list: RecoveryList = srv
        .api()
        .operator_call("GET", "/v1/recovery", None)
        .await
        .unwrap();
    assert!(list.transactions.is_empty());
    assert_eq!(srv.captured(), 1_300);
    assert_eq!(balance(&shopper.card), 3_700);
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[tokio::test]
async fn money_is_conserved_under_random_faults() {
    let seed = std::env::var("CONSERVATION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_CAFE_u64);
    let mut rng = Rng(seed);
    let srv = server().await;
    let m = &srv.merchants[0];
    const CARDS: usize = 4;
    const START: u32 = 50_000;
    let mut shoppers: Vec<Shopper> = (0..CARDS)
        .map(|i| {
            Shopper::new(
                test_card(&format!("62800000000003{i:02}"), START),
                srv.api(),
            )
        })
        .collect();
    // The faults of a purchase: (which request, how), struck in order.
    type Target = fn(&Outgoing) -> bool;
    let initialize: Target = |r| matches!(r, Outgoing::Card(a) if a.get(1) == Some(&0x50));
    let draw: Target = |r| is_post(r, PATH_DRAW);
    let complete: Target = |r| is_post(r, PATH_COMPLETE);
    let recover: Target = |r| is_post(r, PATH_RECOVER);
    let faults: [(&str, &[(Target, Cut)]); 8] = [
        ("none", &[]),
        ("debit lost before the card", &[(is_debit, Cut::CardBefore)]),
        ("debit applied, answer lost", &[(is_debit, Cut::CardAfter)]),
        (
            "initialize applied, card pulled",
            &[(initialize, Cut::CardAfter)],
        ),
        ("draw reply lost", &[(draw, Cut::ReplyLost)]),
        ("complete request lost", &[(complete, Cut::RequestLost)]),
        ("complete reply lost", &[(complete, Cut::ReplyLost)]),
        (
            "debit applied, answer lost, then the recover reply lost",
            &[(is_debit, Cut::CardAfter), (recover, Cut::ReplyLost)],
        ),
    ];
    let mut struck = [0u32; 8];
    for n in 0..80 {
        let k = rng.below(CARDS as u64) as usize;
        let s = &mut shoppers[k];
        s.card_present = true;
        let mode = [
            VerifyMode::PaymentServer,
            VerifyMode::SecurityModule,
            VerifyMode::Client,
            VerifyMode::Merchant,
        ][rng.below(4) as usize];
        let amount = 1 + rng.below(1_500) as u32;
        let ws = m.session(&format!("R-{n}"), amount, mode, now() + 600);
        let mut c = s.client(&ws);
        let f = rng.below(faults.len() as u64) as usize;
        let steps = faults[f].1;
        let mut next = 0;
        let mut plan = |r: &mut Outgoing| match steps.get(next) {
            Some((target, cut)) if target(r) => {
                next += 1;
                if next == steps.len() {
                    struck[f] += 1;
                }
                *cut
            }
            _ => Cut::None,
        };
        let _ = s.run(&mut c, &mut plan).await;
        // Most of the time the shopper puts the card back on the same page
        // (and retries what a lost reply left); else the page is closed.
        if rng.below(3) != 0 {
            s.card_present = true;
            if matches!(
                c.status(),
                purse::purchase::client::Status::Failed { retry: true, .. }
            ) {
                c.retry();
            }
            let _ = s.run(&mut c, &mut plan).await;
        }
    }
    for (i, (name, _)) in faults.iter().enumerate().skip(1) {
        assert!(struck[i] > 0, "seed {seed:#x}: fault `{name}` never struck");
    }
    // Every card is used once more, anywhere: its draw carries its log.
    for (k, s) in shoppers.iter_mut().enumerate() {
        s.card_present = true;
        let out = s
            .pay(&m.session(&format!("F-{k}"), 1, VerifyMode::PaymentServer, now() + 600))
            .await;
        assert!(out.is_paid(), "{out:?}");
    }
    // Conservation, per card and in total.
    let debited: u64 = shoppers
        .iter()
        .map(|s| u64::from(START - balance(&s.card)))
        .sum();
    assert_eq!(
        srv.captured(),
        debited,
        "seed {seed:#x}: captures = card debits"
    );
    for s in &shoppers {
        let id = s.card.state().card_id.full();
        let captured = srv.db.int(
            "SELECT CAST(COALESCE(SUM(amount),0) AS BIGINT) FROM transactions WHERE card_id = ?1 AND state IN ('debited','confirmed','settled')",
            &[&id],
        );
        assert_eq!(
            captured as u32,
            START - balance(&s.card),
            "card …{}",
            &id[12..]
        );
    }
}
