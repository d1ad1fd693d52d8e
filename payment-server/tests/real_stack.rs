//! Torn purchases and loads on the real stack: the real purchase and load
//! clients, the real payment server (HTTP, SQLite), and the real card
//! process behind pcscd + vsmartcard-vpcd, reached through libpcsclite. The
//! faults are physical: the card is pulled out of the reader before a
//! command reaches it, after it applied DEBIT or CREDIT but before it
//! answered (the card's tear switch), or right after it answered.
//!
//! Money is conserved, and the test says how: after each scenario the card's
//! own balance (read from its state file, not from any client) has moved by
//! exactly what the server captured (purchases) or credited (loads), and the
//! transaction sits in a final state once the card has been back.
//!
//! One test fn: pcscd is one per machine (testbed holds a machine-wide lock).

use payment_testkit::*;
use purse::load::client::Charged;
use purse::purchase::client::{Outgoing, Problem};
use purse::session::VerifyMode;
use purse::types::PurseId;
use testbed::Stack;

/// The real reader: the `card run` process plugged into vpcd, reached via
/// pcscd. Cuts are made by pulling the card (SIGUSR1) or arming its tear
/// switch (it applies the command, then leaves the reader unanswered).
struct PcscReader {
    stack: Stack,
    ctx: pcsc::Context,
    card: Option<pcsc::Card>,
}

impl PcscReader {
    fn new(stack: Stack) -> Self {
        let ctx = pcsc::Context::establish(pcsc::Scope::User).expect("PC/SC context");
        let mut r = Self {
            stack,
            ctx,
            card: None,
        };
        r.connect();
        r
    }

    fn connect(&mut self) {
        self.card = None;
        self.card = Some(
            self.ctx
                .connect(
                    &self.stack.reader_cstr(),
                    pcsc::ShareMode::Shared,
                    pcsc::Protocols::ANY,
                )
                .expect("connect to the card"),
        );
    }

    /// Pull the card out of the reader.
    fn pull(&mut self) {
        self.card = None;
        self.stack.remove_card().expect("card removed");
    }

    /// Put the card back into the reader.
    fn put_back(&mut self) {
        self.stack.insert_card().expect("card inserted");
    }

    /// The card's money balance, from its own state file.
    fn balance(&self) -> u64 {
        self.purse_balance(0)
    }

    fn purse_balance(&self, i: usize) -> u64 {
        self.stack.state_json().expect("card state")["purses"][i]["balance"]
            .as_u64()
            .expect("balance")
    }
}

impl Reader for PcscReader {
    fn exchange(&mut self, apdu: &[u8], cut: Cut) -> Option<Vec<u8>> {
        match cut {
            Cut::CardBefore => {
                self.pull();
                return None;
            }
            Cut::CardAfter => self.stack.tear_next(apdu[1]).expect("tear switch"),
            _ => {}
        }
        let mut buf = [0u8; 300];
        // As the bridge reads PC/SC: an answer without a status word is a
        // card that left during the command.
        let answer = match self.card.as_ref()?.transmit(apdu, &mut buf) {
            Ok(r) if r.len() >= 2 => Ok(r.to_vec()),
            Ok(_) => Err(pcsc::Error::RemovedCard),
            Err(e) => Err(e),
        };
        if cut == Cut::CardAfter {
            // The card applied the command and left: PC/SC must say so.
            assert!(answer.is_err(), "a torn command has no answer: {answer:?}");
            self.stack
                .wait_card_absent(std::time::Duration::from_secs(5))
                .expect("the torn card left the reader");
        }
        if cut == Cut::PulledAfterAnswer {
            self.pull();
        }
        match answer {
            Ok(a) => Some(a),
            Err(_) => {
                self.card = None;
                None
            }
        }
    }

    fn reset(&mut self) {
        self.connect();
    }
}

fn at(ins: u8, cut: Cut) -> impl FnMut(&mut Outgoing) -> Cut {
    move |r: &mut Outgoing| match r {
        Outgoing::Card(a) if a.get(1) == Some(&ins) => cut,
        _ => Cut::None,
    }
}

const DEBIT: u8 = purse::command::INS_DEBIT;
const CREDIT: u8 = purse::command::INS_CREDIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_purchases_and_loads_on_pcscd_end_in_a_final_state_and_conserve_money() {
    let stack = Stack::builder()
        .balance(10_000)
        .no_pin_limit(2_000)
        .start()
        .expect("pcscd + vpcd + card");
    let srv = TestServer::start_full(
        &[TestMerchant::new("shop", 1)],
        &[TestBank::new("bank", 0xB1)],
        0,
    )
    .await;
    let m = &srv.merchants[0];
    let mut shopper = Shopper::new(PcscReader::new(stack), srv.api());
    let session =
        |txn: &str, amount: u32| m.session(txn, amount, VerifyMode::PaymentServer, now() + 600);
    // What the card lost so far must equal what the server captured.
    let start = shopper.card.balance();
    let points = shopper.card.purse_balance(1);
    let conserved = |shopper: &Shopper<PcscReader>, srv: &TestServer, what: &str| {
        assert_eq!(
            start as i64 - shopper.card.balance() as i64,
            srv.captured() as i64 - srv.credited() as i64,
            "{what}: the card's balance moved by exactly what the server captured minus credited"
        );
    };

    // 1. Nothing cut: paid, above the no-PIN limit (VERIFY over PC/SC).
    let out = shopper.pay(&session("R-1", 2_500)).await;
    assert!(out.is_paid(), "{out:?}");
    assert_eq!(srv.state_of("shop", "R-1").as_deref(), Some("debited"));
    assert_eq!(shopper.card.balance(), start - 2_500);
    conserved(&shopper, &srv, "plain purchase");

    // 2. Torn DEBIT: the card applied it and left without answering. The
    // shopper is told the card may be charged; the server holds it drawn.
    let ws = session("R-2", 700);
    let mut c = shopper.client(&ws);
    let out = shopper.run(&mut c, &mut at(DEBIT, Cut::CardAfter)).await;
    assert_eq!(out.problem(), Some(Problem::Torn), "{out:?}");
    assert_eq!(
        shopper.card.balance(),
        start - 3_200,
        "the card did apply it"
    );
    assert_eq!(srv.state_of("shop", "R-2").as_deref(), Some("drawn"));
    assert!(!c.cancel(), "no cancel once DEBIT went out");
    // Put back: the client reads the card's log (S3 included) and the
    // server captures on the card's own proof.
    shopper.card.put_back();
    shopper.card_present = true;
    let out = shopper.run(&mut c, &mut |_: &mut Outgoing| Cut::None).await;
    assert!(out.is_paid(), "recovered from the log: {out:?}");
    assert_eq!(srv.state_of("shop", "R-2").as_deref(), Some("debited"));
    conserved(&shopper, &srv, "torn DEBIT, card back");

    // 3. Pulled before DEBIT reached it: not charged, and the server says so
    // once the card is back (its log shows no such debit).
    let ws = session("R-3", 800);
    let mut c = shopper.client(&ws);
    let out = shopper.run(&mut c, &mut at(DEBIT, Cut::CardBefore)).await;
    assert_eq!(out.problem(), Some(Problem::Torn), "{out:?}");
    shopper.card.put_back();
    shopper.card_present = true;
    let out = shopper.run(&mut c, &mut |_: &mut Outgoing| Cut::None).await;
    assert_eq!(out.problem(), Some(Problem::NotCharged), "{out:?}");
    assert_eq!(srv.state_of("shop", "R-3").as_deref(), Some("failed"));
    assert_eq!(shopper.card.balance(), start - 3_200);
    conserved(&shopper, &srv, "pulled before DEBIT");

    // 4. Pulled right after it answered DEBIT: complete needs no card.
    let ws = session("R-4", 300);
    let mut c = shopper.client(&ws);
    let out = shopper
        .run(&mut c, &mut at(DEBIT, Cut::PulledAfterAnswer))
        .await;
    assert!(out.is_paid(), "{out:?}");
    assert_eq!(shopper.card.balance(), start - 3_500);
    conserved(&shopper, &srv, "pulled after the answer");
    shopper.card.put_back();
    shopper.card_present = true;

    // 5. The complete reply is lost: the shopper retries, one capture.
    let ws = session("R-5", 200);
    let mut c = shopper.client(&ws);
    let mut lost = false;
    let out = shopper
        .run(&mut c, &mut |r: &mut Outgoing| {
            if is_post(r, purse::purchase::PATH_COMPLETE) && !lost {
                lost = true;
                Cut::ReplyLost
            } else {
                Cut::None
            }
        })
        .await;
    assert!(lost);
    assert_eq!(out.problem(), Some(Problem::ServerUnreachable), "{out:?}");
    c.retry();
    let out = shopper.run(&mut c, &mut |_: &mut Outgoing| Cut::None).await;
    assert!(out.is_paid(), "{out:?}");
    assert_eq!(shopper.card.balance(), start - 3_700);
    conserved(&shopper, &srv, "complete reply lost");

    // 6. A load whose CREDIT tore: the card was credited and left. Once it
    // is back, the load completes on the card's log and the bank posts it.
    let mut acct = Account::default();
    acct.open("acct-1", 100_000);
    let bank = &srv.banks[0];
    let ws = acct.hold(bank, "RL-1", "acct-1", 5_000, PurseId::Money);
    let mut c = shopper.load_client(&ws);
    let out = shopper
        .run_load(&mut c, &mut at(CREDIT, Cut::CardAfter))
        .await;
    assert_eq!(out.charged(), Some(Charged::Maybe), "{out:?}");
    assert_eq!(shopper.card.balance(), start - 3_700 + 5_000, "credited");
    shopper.card.put_back();
    shopper.card_present = true;
    let out = shopper
        .run_load(&mut c, &mut |_: &mut Outgoing| Cut::None)
        .await;
    let LoadOutcome::Loaded { result, .. } = out else {
        panic!("recovered load: {out:?}")
    };
    acct.take_result(bank, &srv.api(), &result).await.unwrap();
    assert_eq!(acct.posted("acct-1"), 5_000, "the account paid once");
    assert_eq!(srv.load_state("bank", "RL-1").as_deref(), Some("credited"));
    conserved(&shopper, &srv, "torn CREDIT, card back");

    // 7. A load pulled before CREDIT reached the card: nothing credited,
    // nothing posted, the hold released.
    let ws = acct.hold(bank, "RL-2", "acct-1", 1_000, PurseId::Money);
    let mut c = shopper.load_client(&ws);
    let out = shopper
        .run_load(&mut c, &mut at(CREDIT, Cut::CardBefore))
        .await;
    assert!(!out.is_loaded(), "{out:?}");
    shopper.card.put_back();
    shopper.card_present = true;
    let out = shopper
        .run_load(&mut c, &mut |_: &mut Outgoing| Cut::None)
        .await;
    assert_eq!(out.charged(), Some(Charged::No), "{out:?}");
    if let Some(result) = out.bank_result() {
        acct.take_result(bank, &srv.api(), result).await.unwrap();
    }
    assert_eq!(acct.posted("acct-1"), 5_000, "nothing posted for RL-2");
    assert_eq!(shopper.card.balance(), start - 3_700 + 5_000);
    conserved(&shopper, &srv, "pulled before CREDIT");
    assert_eq!(
        shopper.card.purse_balance(1),
        points,
        "points purse untouched"
    );
}
