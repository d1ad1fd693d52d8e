//! Money is conserved under failures: N purchases with a failure injected at a
//! random step (request lost, reply lost, client gone after DEBIT). Afterwards
//! every card balance plus the server's captured total equals the starting
//! balances once the transactions the server lists for recovery are resolved
//! from the cards' logs, and the server lists exactly the transactions that were
//! drawn but never completed.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use payment_server::service::{RecoveryList, TxnState, TxnView};
use payment_testkit::{self as testkit, now};
use purse::apdu::Response;
use purse::command::{LogRecord, ReadLog, Request, Select};
use purse::session::VerifyMode;
use purse::wire::Hex;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    DrawRequestLost,
    DrawReplyLostGiveUp,
    DrawReplyLostRetry,
    ClientGoneAfterDebit,
    CompleteReplyLostRetry,
    CompleteRequestLostRetry,
}

const FAULTS: [Fault; 7] = [
    Fault::None,
    Fault::DrawRequestLost,
    Fault::DrawReplyLostGiveUp,
    Fault::DrawReplyLostRetry,
    Fault::ClientGoneAfterDebit,
    Fault::CompleteReplyLostRetry,
    Fault::CompleteRequestLostRetry,
];

fn card_log(card: &mut card::Card) -> Vec<LogRecord> {
    card.reset();
    testkit::transmit(
        card,
        &Request::Select(Select {
            aid: purse::AID.to_vec(),
        }),
    );
    let mut out = Vec::new();
    for n in 1..=10u8 {
        let r: Response = testkit::transmit(card, &Request::ReadLog(ReadLog { record: n }));
        if !r.sw.is_ok() {
            break;
        }
        out.push(LogRecord::decode(&r.data).unwrap());
    }
    out
}

#[tokio::test]
async fn money_is_conserved_under_injected_failures() {
    let e = common::env().await;
    let seed = std::env::var("CONSERVATION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_CAFE_u64);
    let mut rng = Rng(seed);
    const CARDS: usize = 16;
    const N: usize = 64;
    const START: u32 = 20_000;
    let mut cards: Vec<card::Card> = (0..CARDS)
        .map(|i| testkit::test_card(&format!("62800000000{:05}", i + 100), START))
        .collect();
    let start_total = (CARDS as u64) * START as u64;
    let mut expect_recovery = BTreeSet::new();
    let mut faults_seen = BTreeMap::new();
    let modes = [
        VerifyMode::PaymentServer,
        VerifyMode::SecurityModule,
        VerifyMode::Client,
    ];

    for i in 0..N {
        let card = &mut cards[i % CARDS];
        let txn = format!("C-{i:03}");
        let amount = 1 + rng.below(500) as u32;
        let mode = modes[rng.below(3) as usize];
        let fault = FAULTS[rng.below(FAULTS.len() as u64) as usize];
        *faults_seen.entry(format!("{fault:?}")).or_insert(0) += 1;
        let ws = e.a.session(&txn, amount, mode, now() + 600);
        let dr = testkit::card_draw_request(card, &ws, &e.a.origin, None).unwrap();
        let denv = testkit::draw_envelope(&ws, &dr);
        if fault == Fault::DrawRequestLost {
            continue;
        }
        let draw = e.widget.draw(&denv).await.unwrap();
        let draw = match fault {
            Fault::DrawReplyLostGiveUp => {
                expect_recovery.insert(txn);
                continue;
            }
            // The reply was lost; the retry gets the stored answer.
            Fault::DrawReplyLostRetry => {
                let again = e.widget.draw(&denv).await.unwrap();
                assert_eq!(again, draw, "idempotent draw");
                again
            }
            _ => draw,
        };
        let cmd = testkit::open_debit(&ws, &draw).unwrap();
        let card_resp = card.process(cmd.apdu.as_slice());
        assert!(
            Response::parse(&card_resp).unwrap().sw.is_ok(),
            "card debits"
        );
        if fault == Fault::ClientGoneAfterDebit {
            expect_recovery.insert(txn);
            continue;
        }
        let cenv = testkit::complete_envelope(&ws, &card_resp);
        if fault != Fault::CompleteRequestLostRetry {
            let first = e.widget.complete(&cenv).await.unwrap();
            if fault == Fault::CompleteReplyLostRetry {
                // A re-sealed retry of the same response: the same stored answer.
                let again = e
                    .widget
                    .complete(&testkit::complete_envelope(&ws, &card_resp))
                    .await
                    .unwrap();
                assert_eq!(again, first);
            }
        } else {
            e.widget.complete(&cenv).await.unwrap();
        }
    }
    assert!(
        faults_seen.len() >= 5,
        "most fault kinds exercised: {faults_seen:?}"
    );

    // Every drawn-but-never-completed transaction is listed for recovery.
    let list: RecoveryList = e
        .widget
        .operator_call("GET", "/v1/recovery", None)
        .await
        .unwrap();
    let listed: BTreeSet<String> = list.transactions.iter().map(|t| t.txn_id.clone()).collect();
    assert_eq!(
        listed, expect_recovery,
        "recovery list is exactly the unfinished draws"
    );
    let merchant_list: RecoveryList = e
        .widget
        .merchant_call(&e.a.kit(), "GET", "/v1/recovery", None)
        .await
        .unwrap();
    assert_eq!(merchant_list.transactions.len(), listed.len());

    // Before recovery: balances + captured + (listed txns the cards did debit) = start.
    let balances: u64 = cards.iter().map(|c| testkit::balance(c) as u64).sum();
    let captured = e.service.captured_total("shop-a").await.unwrap();
    assert_eq!(captured, common::captured(&e.db));
    let mut pending_debited = 0u64;
    let logs: Vec<Vec<LogRecord>> = cards.iter_mut().map(card_log).collect();
    for t in &list.transactions {
        let idx = cards_index(&t.txn_id, CARDS);
        if logs[idx].iter().any(|r| r.atc == t.atc && r.seq == t.seq) {
            pending_debited += t.amount as u64;
        }
    }
    assert_eq!(balances + captured + pending_debited, start_total);

    // Recovery: the card's log and ATC decide.
    for t in &list.transactions {
        let idx = cards_index(&t.txn_id, CARDS);
        let rec = logs[idx].iter().find(|r| r.atc == t.atc && r.seq == t.seq);
        if rec.is_none() && cards[idx].state().atc == t.atc {
            // The card has not moved on: a zero-amount INITIALIZE gives a fresh
            // ATC and drops the pending one, so that debit can never happen now.
            let c = &mut cards[idx];
            testkit::transmit(
                c,
                &Request::Select(Select {
                    aid: purse::AID.to_vec(),
                }),
            );
            let init = purse::command::InitializePurchase {
                purse: purse::types::PurseId::Money,
                amount: 0,
                terminal: testkit::TEST_TERMINAL,
            };
            assert!(testkit::transmit(c, &Request::InitializePurchase(init))
                .sw
                .is_ok());
        }
        let card_atc = cards[idx].state().atc;
        let body = serde_json::json!({
            "log_record": rec.map(|r| Hex(r.encode())),
            "card_atc": card_atc,
        });
        let v: TxnView = e
            .widget
            .operator_call(
                "POST",
                &format!("/v1/recovery/shop-a/{}/resolve", t.txn_id),
                Some(&body),
            )
            .await
            .unwrap();
        let want = if rec.is_some() {
            TxnState::Debited
        } else {
            TxnState::Failed
        };
        assert_eq!(v.state, want, "{}", t.txn_id);
        assert_eq!(v.log.last().unwrap().event, "resolve");
        // The operator reads any merchant's transaction by naming the merchant.
        let o: TxnView = e
            .widget
            .operator_call(
                "GET",
                &format!("/v1/transactions/{}?merchant=shop-a", t.txn_id),
                None,
            )
            .await
            .unwrap();
        assert_eq!(o.state, want);
    }
    let after: RecoveryList = e
        .widget
        .operator_call("GET", "/v1/recovery", None)
        .await
        .unwrap();
    assert!(after.transactions.is_empty());
    let captured = common::captured(&e.db);
    assert_eq!(
        balances + captured,
        start_total,
        "conservation after recovery"
    );
    // A merchant cannot resolve.
    let r: Result<TxnView, _> = e
        .widget
        .merchant_call(
            &e.a.kit(),
            "POST",
            "/v1/recovery/shop-a/C-000/resolve",
            Some(&serde_json::json!({"card_atc": 1})),
        )
        .await;
    assert_eq!(r.unwrap_err().code(), Some("unauthorized"));
}

fn cards_index(txn: &str, cards: usize) -> usize {
    txn[2..].parse::<usize>().unwrap() % cards
}
