//! The store's guarantees between instances, at the store's own API: two
//! `Store`s (two instances' pools) on one PostgreSQL schema race for the same
//! rows. Webhook leases, the sweeper and sequence blocks never hand one row
//! or number to both; of two draws of one order, of one txn id or of one
//! card ATC, the database lets one in. And, on whichever backend the tests
//! run (`CARDPAY_TEST_DB`), an attempt captured between the service's order
//! check and the insert stops the insert.

use std::collections::BTreeSet;

use payment_server::config::{Database, PgDatabase};
use payment_server::store::{InsertConflict, Store, TxnRow};
use payment_testkit::{TestDb, TestPg};
use purse::merchant_api::TxnState;
use purse::session::VerifyMode;
use purse::types::{BcdDate, BcdTime, CardId, Expiry, PurseId};
use purse::webhook::{EventKind, WebhookEvent};

fn drawn(txn: &str, order: &str, card: &str, atc: u16, expires_at: u64) -> TxnRow {
    TxnRow {
        merchant_id: "shop".into(),
        txn_id: txn.into(),
        order_ref: order.into(),
        state: TxnState::Drawn,
        verify_mode: VerifyMode::PaymentServer,
        amount: 100,
        currency: 978,
        exponent: 2,
        purse: PurseId::Money,
        origin: "http://shop.test".into(),
        card_id: CardId::parse(card).unwrap(),
        card_expiry: Expiry::parse("301231").unwrap(),
        key_version: 1,
        atc,
        card_random: [1, 2, 3, 4],
        balance_before: 1_000,
        balance_after: 900,
        seq: u32::from(atc),
        date: BcdDate::parse("20261129").unwrap(),
        time: BcdTime::parse("120000").unwrap(),
        expected_s3: [9; 8],
        draw_hash: vec![7; 32],
        draw_response: "{}".into(),
        complete_hash: None,
        complete_response: None,
        card_s3: None,
        card_sw: None,
        resolution: None,
        expires_at,
        created_at: 1,
        drawn_at: 1,
        debited_at: None,
        confirmed_at: None,
        updated_at: 1,
    }
}

fn event(txn: &str) -> WebhookEvent {
    WebhookEvent {
        event_id: format!("evt_{txn}"),
        kind: EventKind::Suspicious,
        created_at: 1,
        merchant_id: "shop".into(),
        txn_id: txn.into(),
        order_ref: String::new(),
        state: TxnState::Created,
        amount: 1,
        currency: 978,
        exponent: 2,
        purse: PurseId::Money,
        card: String::new(),
        card_ref: String::new(),
        atc: 0,
        detail: "test".into(),
    }
}

/// Two instances' stores on one fresh schema, opened at once (their
/// migrations meet on the advisory lock).
async fn two_stores(pg: &TestPg) -> (TestDb, Store, Store) {
    let db = TestDb::fresh_schema(&pg.url);
    let cfg = Database::Postgres(PgDatabase {
        url: db.url_or_path(),
        pool_size: 4,
    });
    let (a, b) = tokio::join!(Store::open(&cfg), Store::open(&cfg));
    (db.clone(), a.unwrap(), b.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_never_lease_one_webhook_sweep_one_row_or_share_a_seq() {
    let pg = TestPg::get();
    let (db, a, b) = two_stores(&pg).await;

    // 200 webhooks due; both instances lease in batches of 16 until none is left.
    for i in 0..200 {
        a.record_suspicious(
            "shop".into(),
            format!("W-{i}"),
            "http://shop.test".into(),
            "test".into(),
            10,
            Some(event(&format!("W-{i}"))),
        )
        .await
        .unwrap();
    }
    let lease_all = |s: Store| async move {
        let mut got = Vec::new();
        loop {
            let due = s.lease_webhooks(100, 60, 16).await.unwrap();
            if due.is_empty() {
                return got;
            }
            got.extend(due.into_iter().map(|d| d.id));
        }
    };
    let (la, lb) = tokio::join!(
        tokio::spawn(lease_all(a.clone())),
        tokio::spawn(lease_all(b.clone()))
    );
    let (la, lb) = (la.unwrap(), lb.unwrap());
    let all: BTreeSet<i64> = la.iter().chain(&lb).copied().collect();
    assert_eq!(la.len() + lb.len(), 200, "each leased once");
    assert_eq!(all.len(), 200);
    // A leased event is not due again before its lease ends; then it is.
    assert!(b.lease_webhooks(159, 60, 16).await.unwrap().is_empty());
    assert_eq!(b.lease_webhooks(160, 60, 300).await.unwrap().len(), 200);

    // 150 drawn transactions past expiry; both sweep at once: each moves once.
    for i in 0..150u16 {
        a.insert_drawn(drawn(&format!("S-{i}"), "", "6280000000000901", i + 1, 5))
            .await
            .unwrap()
            .unwrap();
    }
    let sweep = |s: Store| async move { s.sweep_expired(100, 0).await.unwrap() };
    let (na, nb) = tokio::join!(
        tokio::spawn(sweep(a.clone())),
        tokio::spawn(sweep(b.clone()))
    );
    assert_eq!(na.unwrap() + nb.unwrap(), 150);
    assert_eq!(
        db.int("SELECT COUNT(*) FROM txn_log WHERE event = 'sweep'", &[]),
        150,
        "one history entry each"
    );
    assert_eq!(
        db.int(
            "SELECT COUNT(*) FROM transactions WHERE state = 'unknown'",
            &[]
        ),
        150
    );

    // Sequence blocks reserved concurrently never overlap.
    let reserve = |s: Store| async move {
        let mut v = Vec::new();
        for _ in 0..25 {
            v.push(s.reserve_seq("000000000001".into(), 1000).await.unwrap());
        }
        v
    };
    let (ra, rb) = tokio::join!(
        tokio::spawn(reserve(a.clone())),
        tokio::spawn(reserve(b.clone()))
    );
    let firsts: BTreeSet<u32> = ra.unwrap().into_iter().chain(rb.unwrap()).collect();
    assert_eq!(
        firsts.into_iter().collect::<Vec<_>>(),
        (0..50).map(|i| 1 + i * 1000).collect::<Vec<_>>(),
        "blocks of 1000, back to back, none twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_draws_of_one_order_txn_id_or_card_atc_let_one_in() {
    let pg = TestPg::get();
    let (_db, a, b) = two_stores(&pg).await;
    for round in 0..20u16 {
        // Two attempts at one order, from two instances at once.
        let order = format!("O-{round}");
        let ta = drawn(
            &format!("A-{round}"),
            &order,
            "6280000000000911",
            round + 1,
            999,
        );
        let tb = drawn(
            &format!("B-{round}"),
            &order,
            "6280000000000912",
            round + 1,
            999,
        );
        let (ra, rb) = tokio::join!(
            tokio::spawn({
                let a = a.clone();
                async move { a.insert_drawn(ta).await.unwrap() }
            }),
            tokio::spawn({
                let b = b.clone();
                async move { b.insert_drawn(tb).await.unwrap() }
            })
        );
        let mut got = [ra.unwrap(), rb.unwrap()];
        got.sort_by_key(|r| r.is_err());
        assert_eq!(
            got,
            [Ok(()), Err(InsertConflict::OpenOrder)],
            "round {round}"
        );
        // The same txn id twice, and the same card ATC under another txn id.
        let same = drawn(
            &format!("C-{round}"),
            "",
            "6280000000000913",
            round + 1,
            999,
        );
        let other_id = drawn(
            &format!("D-{round}"),
            "",
            "6280000000000913",
            round + 1,
            999,
        );
        let (r1, r2, r3) = tokio::join!(
            a.insert_drawn(same.clone()),
            b.insert_drawn(same),
            b.insert_drawn(other_id)
        );
        let got = [r1.unwrap(), r2.unwrap(), r3.unwrap()];
        assert_eq!(
            got.iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round}: {got:?}"
        );
        assert!(
            got.iter().all(|r| matches!(
                r,
                Ok(()) | Err(InsertConflict::TxnId | InsertConflict::CardAtc)
            )),
            "round {round}: {got:?}"
        );
    }
}

#[tokio::test]
async fn an_attempt_captured_since_the_order_check_stops_the_insert() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::in_dir(dir.path());
    let store = Store::open(&Database::from_path_or_url(&db.url_or_path()))
        .await
        .unwrap();
    store
        .insert_drawn(drawn("P-1", "O-9", "6280000000000921", 1, 999))
        .await
        .unwrap()
        .unwrap();
    // While P-2's draw was at the security module, P-1 was captured (by
    // another instance, or another task).
    match &db {
        TestDb::Sqlite(p) => {
            let c = rusqlite::Connection::open(p).unwrap();
            c.execute("UPDATE transactions SET state = 'debited'", [])
                .unwrap();
        }
        TestDb::Postgres { .. } => {
            payment_testkit::db::pg_blocking(&db.url_or_path(), |c| {
                c.execute("UPDATE transactions SET state = 'debited'", &[])
            })
            .unwrap();
        }
    }
    let r = store
        .insert_drawn(drawn("P-2", "O-9", "6280000000000922", 1, 999))
        .await
        .unwrap();
    assert_eq!(r, Err(InsertConflict::OrderPaid));
    assert!(
        store.get_txn("shop", "P-2").await.unwrap().is_none(),
        "rolled back"
    );
    assert_eq!(
        db.int("SELECT COUNT(*) FROM txn_log WHERE txn_id = 'P-2'", &[]),
        0
    );
    // Another order is not concerned.
    assert_eq!(
        store
            .insert_drawn(drawn("P-3", "O-10", "6280000000000923", 1, 999))
            .await
            .unwrap(),
        Ok(())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_closing_batches_at_once_batch_each_purchase_once() {
    use payment_server::store::ClosedBatch;
    let pg = TestPg::get();
    let (db, a, b) = two_stores(&pg).await;
    for i in 0..40u16 {
        a.insert_drawn(drawn(&format!("K-{i}"), "", "6280000000000931", i + 1, 999))
            .await
            .unwrap()
            .unwrap();
    }
    payment_testkit::db::pg_blocking(&db.url_or_path(), |c| {
        c.execute(
            "UPDATE transactions SET state = 'debited', debited_at = 5",
            &[],
        )
    })
    .unwrap();
    // Both instances see the same 40 unbatched purchases and close them at once.
    let (ua, ub) = tokio::join!(a.unbatched("shop", 100), b.unbatched("shop", 100));
    assert_eq!((ua.unwrap().len(), ub.unwrap().len()), (40, 40));
    let close = |s: Store, id: &'static str| async move {
        let ids: Vec<String> = (0..40).map(|i| format!("K-{i}")).collect();
        let batch = ClosedBatch {
            batch_id: id.into(),
            kind: "purchases".into(),
            party: "shop".into(),
            closed_at: 6,
            record_count: 40,
            total: 4_000,
            file: format!("{{\"batch\":\"{id}\"}}"),
        };
        s.record_batch(batch, vec![1; 32], ids).await
    };
    let (ra, rb) = tokio::join!(
        tokio::spawn(close(a.clone(), "PB-a")),
        tokio::spawn(close(b.clone(), "PB-b"))
    );
    let results = [ra.unwrap(), rb.unwrap()];
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(results.contains(&Err(payment_server::PaymentError::WrongState)));
    assert_eq!(db.int("SELECT COUNT(*) FROM clearing_batches", &[]), 1);
    assert_eq!(
        db.int("SELECT COUNT(DISTINCT batch_id) FROM transactions", &[]),
        1,
        "every purchase in the one batch recorded"
    );
    assert!(a.unbatched_merchants().await.unwrap().is_empty());
    assert_eq!(b.unexported_batches().await.unwrap().len(), 1);
}

/// K_ref (the card references' key) is made once per database: the same
/// after a restart, so a merchant's members keep their reference; per
/// merchant, and per card (not per last four).
#[tokio::test]
async fn card_refs_survive_a_restart_and_separate_merchants_and_cards() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::in_dir(dir.path());
    let cfg = Database::from_path_or_url(&db.url_or_path());
    let a = CardId::parse("6280000000001234").unwrap();
    let b = CardId::parse("6280000099991234").unwrap();
    assert_eq!(a.masked(), b.masked());
    let first = Store::open(&cfg).await.unwrap();
    let ref_a = first.card_ref_key().card_ref("shop", &a);
    assert_eq!(ref_a.len(), 32);
    assert_ne!(ref_a, first.card_ref_key().card_ref("shop", &b));
    assert_ne!(ref_a, first.card_ref_key().card_ref("other-shop", &a));
    drop(first);
    let again = Store::open(&cfg).await.unwrap();
    assert_eq!(again.card_ref_key().card_ref("shop", &a), ref_a);
    assert_eq!(
        db.int("SELECT COUNT(*) FROM server_secrets", &[]),
        1,
        "one key, kept"
    );
    // Another database (another deployment) has its own key.
    let dir2 = tempfile::tempdir().unwrap();
    let other = Store::open(&Database::from_path_or_url(
        &TestDb::in_dir(dir2.path()).url_or_path(),
    ))
    .await
    .unwrap();
    assert_ne!(other.card_ref_key().card_ref("shop", &a), ref_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_share_one_card_ref_key() {
    let pg = TestPg::get();
    let (db, a, b) = two_stores(&pg).await;
    let card = CardId::parse("6280000000001234").unwrap();
    assert_eq!(
        a.card_ref_key().card_ref("shop", &card),
        b.card_ref_key().card_ref("shop", &card)
    );
    assert_eq!(db.int("SELECT COUNT(*) FROM server_secrets", &[]), 1);
}
