//! Conservation across loads and purchases, with faults: for every card,
//! loaded − spent = its balance change, and the bank's posted total equals
//! the loads credited. Loads are booked only from what the bank verifies
//! (result B, or the load server's view); purchases only on captures.

use payment_testkit::*;
use purse::purchase::client::Outgoing;
use purse::session::VerifyMode;
use purse::types::PurseId;

const ACCOUNT: &str = "acct-c";

/// A small deterministic sequence (no dependency for randomness in tests).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn per_card(srv: &TestServer, card: &str) -> (i64, i64) {
    let loaded = srv.db.int(
        "SELECT CAST(COALESCE(SUM(amount),0) AS BIGINT) FROM loads WHERE card_id = ?1 AND state IN ('credited','settled')",
        &[card],
    );
    let spent = srv.db.int(
        "SELECT CAST(COALESCE(SUM(amount),0) AS BIGINT) FROM transactions WHERE card_id = ?1 AND state IN ('debited','confirmed','settled')",
        &[card],
    );
    (loaded, spent)
}

#[tokio::test]
async fn loaded_minus_spent_is_every_cards_balance_change() {
    let srv = TestServer::start_full(
        &[TestMerchant::new("shop", 1)],
        &[TestBank::new("bank", 0xB1)],
        0,
    )
    .await;
    let m = srv.merchants[0].clone();
    let b = srv.banks[0].clone();
    let mut acct = Account::default();
    acct.open(ACCOUNT, 10_000_000);
    let mut rng = Lcg(7);
    let cards: Vec<String> = (0..4).map(|i| format!("62800000000050{i:02}")).collect();
    let mut shoppers: Vec<Shopper> = cards
        .iter()
        .map(|d| Shopper::new(test_card(d, 2_000), srv.api()))
        .collect();
    let mut n = 0;
    for _round in 0..6 {
        for s in shoppers.iter_mut() {
            n += 1;
            s.card_present = true;
            let cut = match rng.next(5) {
                0 => Cut::CardBefore,
                1 => Cut::CardAfter,
                _ => Cut::None,
            };
            if rng.next(2) == 0 {
                let txn = format!("L-{n}");
                let ws = acct.hold(
                    &b,
                    &txn,
                    ACCOUNT,
                    100 + rng.next(900) as u32,
                    PurseId::Money,
                );
                let mut c = s.load_client(&ws);
                let out = s
                    .run_load(&mut c, &mut |r: &mut Outgoing| {
                        if is_credit(r) {
                            cut
                        } else {
                            Cut::None
                        }
                    })
                    .await;
                if let Some(r) = out.bank_result() {
                    acct.take_result(&b, &srv.api(), r).await.unwrap();
                }
                // Half the time the shopper puts the card back on the same page.
                if !s.card_present && rng.next(2) == 0 {
                    s.card_present = true;
                    let out = s.run_load(&mut c, &mut |_r: &mut Outgoing| Cut::None).await;
                    if let Some(r) = out.bank_result() {
                        acct.take_result(&b, &srv.api(), r).await.unwrap();
                    }
                }
            } else {
                let ws = m.session(
                    &format!("P-{n}"),
                    50 + rng.next(400) as u32,
                    VerifyMode::PaymentServer,
                    now() + 600,
                );
                let mut c = s.client(&ws);
                s.run(&mut c, &mut |r: &mut Outgoing| {
                    if is_debit(r) {
                        cut
                    } else {
                        Cut::None
                    }
                })
                .await;
                if !s.card_present && rng.next(2) == 0 {
                    s.card_present = true;
                    s.run(&mut c, &mut |_r: &mut Outgoing| Cut::None).await;
                }
            }
        }
    }
    // Each card is used once more (a small load: its S1 and log settle what is open).
    for s in shoppers.iter_mut() {
        n += 1;
        s.card_present = true;
        let ws = acct.hold(&b, &format!("L-{n}"), ACCOUNT, 10, PurseId::Money);
        let out = s.load(&ws).await;
        acct.take_result(&b, &srv.api(), out.bank_result().unwrap())
            .await
            .unwrap();
    }
    // The bank asks the load server about every hold still open.
    let open: Vec<String> = acct
        .holds
        .iter()
        .filter(|(_, h)| h.state == HoldState::Held)
        .map(|(t, _)| t.clone())
        .collect();
    for txn in &open {
        acct.ask_server(&b, &srv.api(), txn, true).await.unwrap();
    }
    for (s, digits) in shoppers.iter().zip(&cards) {
        let (loaded, spent) = per_card(&srv, digits);
        assert_eq!(
            loaded - spent,
            balance(&s.card) as i64 - 2_000,
            "card {digits}: loaded {loaded} − spent {spent}"
        );
    }
    assert_eq!(
        acct.posted(ACCOUNT),
        srv.credited(),
        "bank debited = loads credited"
    );
    let recovered: usize = shoppers
        .iter()
        .map(|s| {
            s.trace
                .iter()
                .filter(|r| is_post(r, purse::load::PATH_LOAD_RECOVER))
                .count()
        })
        .sum();
    assert!(
        recovered >= 2,
        "the run had lost CREDIT answers to recover ({recovered})"
    );
    let still_held = acct
        .holds
        .values()
        .filter(|h| h.state == HoldState::Held)
        .count();
    assert_eq!(
        still_held, 0,
        "every load decided once its card was used again"
    );
}
