//! Signed load webhooks: the bank learns every decision from the load
//! server, not only through the shopper's page — verified with the bank kit,
//! deduplicated by event id — and can book a load from them alone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use merchant_kit::bank::{Bank, Booking, HoldRef};
use payment_testkit::*;
use purse::load::bank_api::{LoadEvent, LoadEventKind, LoadState};
use purse::purchase::client::Outgoing;
use purse::types::PurseId;
use purse::webhook::{HEADER_EVENT_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};

#[derive(Clone)]
struct Receiver {
    kit: Bank,
    events: Arc<Mutex<BTreeMap<String, LoadEvent>>>,
    refused: Arc<Mutex<u32>>,
}

async fn hook(State(r): State<Receiver>, h: HeaderMap, body: Bytes) -> StatusCode {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    match r.kit.verify_webhook(
        get(HEADER_EVENT_ID),
        get(HEADER_TIMESTAMP),
        get(HEADER_SIGNATURE),
        &body,
        now(),
    ) {
        Ok(ev) => {
            r.events.lock().unwrap().insert(ev.event_id.clone(), ev);
            StatusCode::NO_CONTENT
        }
        Err(_) => {
            *r.refused.lock().unwrap() += 1;
            StatusCode::UNAUTHORIZED
        }
    }
}

async fn wait_for(r: &Receiver, n: usize) -> Vec<LoadEvent> {
    for _ in 0..100 {
        let evs: Vec<LoadEvent> = r.events.lock().unwrap().values().cloned().collect();
        if evs.len() >= n {
            return evs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "only {:?}",
        r.events
            .lock()
            .unwrap()
            .values()
            .map(|e| (&e.txn_id, e.kind))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn every_load_decision_reaches_the_bank_signed() {
    let mut bank = TestBank::new("bank", 0xB1);
    let rcv = Receiver {
        kit: bank.kit(),
        events: Arc::default(),
        refused: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(rcv.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    bank.webhook_url = Some(format!("http://{}/hook", listener.local_addr().unwrap()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let srv = TestServer::start_full(&[], std::slice::from_ref(&bank), 0).await;
    let config = payment_server::Config::from_toml(
        &test_config_toml_full(&srv.db, &[], std::slice::from_ref(&bank), 0),
        |_| None,
    )
    .unwrap();
    payment_server::start_background(&srv.service, &config);
    let mut acct = Account::default();
    acct.open("a", 100_000);
    let mut shopper = Shopper::new(test_card("6280000000006001", 1_000), srv.api());
    // Credited (the page reports nothing: the bank books from the webhook alone).
    let ws = acct.hold(&bank, "W-1", "a", 1_500, PurseId::Money);
    assert!(shopper.load(&ws).await.is_loaded());
    // Not credited (CREDIT lost before the card, the card put back).
    let ws = acct.hold(&bank, "W-2", "a", 700, PurseId::Money);
    let mut c = shopper.load_client(&ws);
    shopper
        .run_load(&mut c, &mut |r: &mut Outgoing| {
            if is_credit(r) {
                Cut::CardBefore
            } else {
                Cut::None
            }
        })
        .await;
    shopper.card_present = true;
    shopper
        .run_load(&mut c, &mut |_r: &mut Outgoing| Cut::None)
        .await;
    // Voided (never drawn).
    acct.hold(&bank, "W-3", "a", 300, PurseId::Money);
    let _: purse::load::bank_api::LoadView = srv
        .api()
        .bank_call(&bank.kit(), "POST", "/v1/bank/loads/W-3/void")
        .await
        .unwrap();
    let evs = wait_for(&rcv, 3).await;
    let kinds: BTreeMap<String, (LoadEventKind, LoadState)> = evs
        .iter()
        .map(|e| (e.txn_id.clone(), (e.kind, e.state)))
        .collect();
    assert_eq!(kinds["W-1"], (LoadEventKind::Credited, LoadState::Credited));
    assert_eq!(
        kinds["W-2"],
        (LoadEventKind::NotCredited, LoadState::Failed)
    );
    assert_eq!(kinds["W-3"], (LoadEventKind::Voided, LoadState::Voided));
    assert_eq!(*rcv.refused.lock().unwrap(), 0);
    // The bank books from the events alone, each once.
    for ev in evs.iter().chain(evs.iter()) {
        let h = &acct.holds[&ev.txn_id];
        let hold = HoldRef {
            txn_id: &ev.txn_id,
            account_ref: &h.account,
            amount: h.amount,
            currency: 978,
            exponent: 2,
            purse: PurseId::Money,
            origin: &h.origin,
        };
        let booking: Booking = bank.kit().book_event(&hold, ev).unwrap();
        let txn = ev.txn_id.clone();
        acct.book(&txn, &booking);
    }
    assert_eq!(acct.state("W-1"), Some(HoldState::Posted));
    assert_eq!(acct.state("W-2"), Some(HoldState::Released));
    assert_eq!(acct.state("W-3"), Some(HoldState::Released));
    assert_eq!(acct.balances["a"], 100_000 - 1_500);
    assert_eq!(balance(&shopper.card), 2_500);
    // Another bank's key does not verify these events.
    let other = TestBank::new("bank", 0xEE).kit();
    let body = serde_json::to_vec(&evs[0]).unwrap();
    let sig = purse::webhook::sign(
        &purse::webhook::webhook_key(&purse::session::Key32::new([0xEE; 32]), "bank"),
        now(),
        &evs[0].event_id,
        &body,
    );
    assert!(bank
        .kit()
        .verify_webhook(&evs[0].event_id, &now().to_string(), &sig, &body, now())
        .is_err());
    assert!(other
        .verify_webhook(&evs[0].event_id, &now().to_string(), &sig, &body, now())
        .is_ok());
}
