//! Earning points: a paid order of the demo store earns points through a
//! points load signed with the store's loyalty key (a `[[banks]]` entry of
//! the load server for the points purse), booked once on the load server's
//! proof — from the widget's result or from the signed webhook.

mod common;

use std::time::Duration;

use common::setup;
use demo_merchant::points::PointsLoad;
use payment_testkit::*;
use purse::load::LoadWidgetSession;
use purse::purchase::MerchantResult;
use purse::types::PurseId;

#[tokio::test]
async fn a_paid_order_earns_points_once_on_the_load_servers_proof() {
    let s = setup().await;
    let mut shopper = Shopper::new(test_card("6280000000008001", 5_000), s.api.clone());
    let points_before = points(&shopper.card);
    // An unpaid order earns nothing.
    let (id, ws) = s.order("ebook").await;
    assert_eq!(s.points_offer(&id).await.status(), 400);
    // Pay it (4.99 EUR → 4 whole euros × 10 points).
    let out = shopper.pay(&ws).await;
    let r = s
        .http
        .post(&ws.session.result_url)
        .json(out.result().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let offer: LoadWidgetSession = s.points_offer(&id).await.json().await.unwrap();
    assert_eq!(
        (
            offer.session.purse,
            offer.session.amount,
            offer.session.currency
        ),
        (PurseId::Points, 40, 999)
    );
    // The same offer again while open: one points load per order.
    let again: LoadWidgetSession = s.points_offer(&id).await.json().await.unwrap();
    assert_eq!(again.session.txn_id, offer.session.txn_id);
    // The load onto the points purse; the result is posted to the store.
    let out = shopper.load(&offer).await;
    assert!(out.is_loaded(), "{out:?}");
    let r = s
        .http
        .post(&offer.session.result_url)
        .json(out.bank_result().unwrap())
        .send()
        .await
        .unwrap();
    let p: PointsLoad = r.json().await.unwrap();
    assert_eq!((p.status.as_str(), p.points), ("earned", 40));
    assert_eq!(points(&shopper.card), points_before + 40);
    assert_eq!(
        balance(&shopper.card),
        5_000 - 499,
        "money purse untouched by the points load"
    );
    // Earned once: no second offer, the result again changes nothing.
    assert_eq!(s.points_offer(&id).await.status(), 400);
    let r = s
        .http
        .post(&offer.session.result_url)
        .json(out.bank_result().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<PointsLoad>().await.unwrap().status, "earned");
    assert_eq!(points(&shopper.card), points_before + 40);
    // A points session is refused as a money load by the load server's config
    // (the loyalty program may load points only): its MAC is over purse 1.
    let mut money = offer.clone();
    money.session.purse = PurseId::Money;
    let out = shopper.load(&money).await;
    assert!(out.problem().is_some(), "{out:?}");
    assert_eq!(points(&shopper.card), points_before + 40);
}

#[tokio::test]
async fn points_are_earned_from_the_webhook_when_the_page_never_reports() {
    let s = setup().await;
    let mut shopper = Shopper::new(test_card("6280000000008002", 5_000), s.api.clone());
    let (id, ws) = s.order("font").await;
    let out = shopper.pay(&ws).await;
    let MerchantResult::ResultM { .. } = out.result().unwrap() else {
        panic!()
    };
    s.http
        .post(&ws.session.result_url)
        .json(out.result().unwrap())
        .send()
        .await
        .unwrap();
    let offer: LoadWidgetSession = s.points_offer(&id).await.json().await.unwrap();
    assert!(shopper.load(&offer).await.is_loaded());
    // No result posted: the signed webhook books it.
    for _ in 0..100 {
        if s.points_offer(&id).await.status() == 400 {
            let body = s.points_offer(&id).await.text().await.unwrap();
            assert!(body.contains("earned"), "{body}");
            assert_eq!(points(&shopper.card), 500 + 30);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("points never earned from the webhook");
}
