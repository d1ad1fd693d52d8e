//! The members page end to end over loopback HTTP, with the real payment
//! server and the real purchase client driving a virtual card: sign in with
//! the card (an amount-0 purchase: a member session, no payment, no order, no
//! batch record), see the points earned on paid orders, redeem points for a
//! voucher (a points-purse purchase: exactly the points taken, one voucher per
//! transaction). Forged, foreign, replayed or rewritten results are refused
//! and change nothing.

mod common;

use common::{session_in, setup, setup_with, Setup};
use demo_merchant::members::{REDEEM_POINTS, VOUCHER_CENTS};
use payment_testkit::clearing::payments_signer;
use payment_testkit::*;
use purse::load::LoadWidgetSession;
use purse::purchase::{MerchantResult, ResultM, WidgetSession};
use purse::types::PurseId;
use reqwest::StatusCode;

trait Members {
    fn rows(&self, table: &str) -> i64;
    async fn members_page(&self, cookie: &str) -> String;
    async fn signin_page(&self) -> WidgetSession;
    async fn redeem_page(&self, cookie: &str) -> reqwest::Response;
    async fn redeem_session(&self, cookie: &str) -> WidgetSession;
    async fn post(&self, url: &str, body: &impl serde::Serialize) -> reqwest::Response;
    async fn sign_in(&self, shopper: &mut Shopper) -> String;
    async fn buy_and_earn(&self, shopper: &mut Shopper, product: &str);
    async fn purchase_batches(&self) -> usize;
}

impl Members for Setup {
    /// The store's own count of a table's rows.
    fn rows(&self, table: &str) -> i64 {
        rusqlite::Connection::open(self.dir.path().join("orders.sqlite"))
            .unwrap()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    async fn members_page(&self, cookie: &str) -> String {
        let r = self
            .http
            .get(format!("{}/members", self.store))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    async fn signin_page(&self) -> WidgetSession {
        let r = self
            .http
            .get(format!("{}/members/signin", self.store))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        session_in(&r.text().await.unwrap())
    }

    async fn redeem_page(&self, cookie: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/members/redeem", self.store))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
    }

    async fn redeem_session(&self, cookie: &str) -> WidgetSession {
        let r = self.redeem_page(cookie).await;
        assert_eq!(r.status(), 200);
        session_in(&r.text().await.unwrap())
    }

    async fn post(&self, url: &str, body: &impl serde::Serialize) -> reqwest::Response {
        self.http.post(url).json(body).send().await.unwrap()
    }

    /// Sign in with the shopper's card: the member cookie.
    async fn sign_in(&self, shopper: &mut Shopper) -> String {
        let ws = self.signin_page().await;
        let out = shopper.pay(&ws).await;
        let r = self
            .post(&ws.session.result_url, out.result().unwrap())
            .await;
        assert_eq!(r.status(), 200);
        let c = r.headers()["set-cookie"].to_str().unwrap().to_string();
        c.split(';').next().unwrap().to_string()
    }

    /// Buy a product and earn its points (as tests/points_flow.rs does).
    async fn buy_and_earn(&self, shopper: &mut Shopper, product: &str) {
        let (id, ws) = self.order(product).await;
        let out = shopper.pay(&ws).await;
        let r = self
            .post(&ws.session.result_url, out.result().unwrap())
            .await;
        assert_eq!(r.status(), 200);
        let offer: LoadWidgetSession = self.points_offer(&id).await.json().await.unwrap();
        let out = shopper.load(&offer).await;
        let r = self
            .post(&offer.session.result_url, out.bank_result().unwrap())
            .await;
        assert_eq!(r.status(), 200);
    }

    /// Batches the payment server would close now (purchase batches).
    async fn purchase_batches(&self) -> usize {
        let spool = self.dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let ids = self
            .svc
            .close_batches(&payments_signer(&spool))
            .await
            .unwrap();
        ids.iter().filter(|i| i.starts_with("PB-")).count()
    }
}

fn status_of(j: &serde_json::Value) -> &str {
    j["status"].as_str().unwrap_or("")
}

#[tokio::test]
async fn sign_in_with_the_card_and_redeem_points_for_a_voucher_once() {
    let s = setup().await;
    let mut shopper = Shopper::new(test_card("6280000000009001", 5_000), s.api.clone());
    s.buy_and_earn(&mut shopper, "ebook").await; // 4.99 EUR: 40 points
    let (money, pts) = (balance(&shopper.card), points(&shopper.card));
    assert_eq!((money, pts), (5_000 - 499, 500 + 40));
    let orders = s.rows("shop_orders");
    assert_eq!(s.purchase_batches().await, 1, "the paid order");

    // Signed out: an invitation to sign in, nothing of anyone's card.
    let page = s.members_page("").await;
    assert!(page.contains("Sign in with your card"), "{page}");
    assert!(!page.contains("authentication OK"));

    // Sign in: an amount-0 purchase of the money purse.
    let ws = s.signin_page().await;
    assert_eq!(
        (ws.session.amount, ws.session.purse, ws.session.currency),
        (0, PurseId::Money, 978)
    );
    let out = shopper.pay(&ws).await;
    assert!(out.is_paid(), "{out:?}");
    let r = s.post(&ws.session.result_url, out.result().unwrap()).await;
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.starts_with("member=") && set.contains("HttpOnly") && set.contains("SameSite=Lax"));
    let cookie = set.split(';').next().unwrap().to_string();
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (status_of(&j), j["card"].as_str()),
        ("signed_in", Some("…9001"))
    );
    assert_eq!(
        (balance(&shopper.card), points(&shopper.card)),
        (money, pts),
        "signing in takes nothing"
    );
    assert_eq!(s.rows("shop_orders"), orders, "a sign-in is not an order");

    let page = s.members_page(&cookie).await;
    assert!(
        page.contains("Signed in with card <b>…9001</b> (authentication OK)"),
        "{page}"
    );
    assert!(page.contains("No payment was made"));
    assert!(page.contains("<b id=\"earned-total\">40</b>"), "{page}");
    assert!(!page.contains("6280000000009001"), "never the full card id");

    // The same sign-in result again: refused, no second session.
    let r = s.post(&ws.session.result_url, out.result().unwrap()).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.headers().get("set-cookie").is_none());
    // A made-up session cookie is nobody.
    let page = s.members_page("member=00ff00ff").await;
    assert!(!page.contains("authentication OK"));
    // Redeeming needs a member: without the cookie, back to the members page.
    let r = s.redeem_page("").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // Redeem: a points purchase of exactly REDEEM_POINTS.
    let ws = s.redeem_session(&cookie).await;
    assert_eq!(
        (
            ws.session.amount,
            ws.session.purse,
            ws.session.currency,
            ws.session.exponent
        ),
        (REDEEM_POINTS, PurseId::Points, 999, 0)
    );
    let out = shopper.pay(&ws).await;
    assert!(out.is_paid(), "{out:?}");
    let r = s.post(&ws.session.result_url, out.result().unwrap()).await;
    assert_eq!(r.status(), 200);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status_of(&j), "issued", "{j}");
    assert_eq!(
        (balance(&shopper.card), points(&shopper.card)),
        (money, pts - REDEEM_POINTS),
        "exactly the points, never money"
    );
    let page = s.members_page(&cookie).await;
    assert!(page.contains("<code class=\"voucher\">CP-"), "{page}");
    assert!(page.contains(&format!("{}.00 EUR", VOUCHER_CENTS / 100)));

    // Replayed: the same voucher, never a second one.
    let r = s.post(&ws.session.result_url, out.result().unwrap()).await;
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status_of(&j), "already_issued", "{j}");
    assert_eq!(s.rows("vouchers"), 1);
    assert_eq!(points(&shopper.card), pts - REDEEM_POINTS);

    // Clearing: the sign-in (amount 0) and the redemption (points) are not
    // payment records: no batch for them.
    assert_eq!(s.purchase_batches().await, 0);
    assert_eq!(s.rows("shop_orders"), orders);

    // Signing out ends the session.
    let r = s
        .http
        .post(format!("{}/members/signout", s.store))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(!s.members_page(&cookie).await.contains("authentication OK"));
}

#[tokio::test]
async fn foreign_forged_rewritten_and_money_results_issue_nothing() {
    let s = setup().await;
    let mut shopper = Shopper::new(test_card("6280000000009002", 5_000), s.api.clone());
    let cookie = s.sign_in(&mut shopper).await;
    let kit = s.merchant.kit();
    let refused = |r: &reqwest::Response| r.status() == StatusCode::UNPROCESSABLE_ENTITY;

    // A sign-in result (money purse, amount 0) presented as a redemption.
    let redeem = s.redeem_session(&cookie).await;
    let signin = s.signin_page().await;
    let out = shopper.pay(&signin).await;
    let money_result = out.result().unwrap().clone();
    let r = s.post(&redeem.session.result_url, &money_result).await;
    assert!(refused(&r), "{}", r.status());
    // ...and a redemption's result presented as a sign-in: no session.
    let other = s.redeem_session(&cookie).await;
    let pts = points(&shopper.card);
    let out = shopper.pay(&other).await;
    let other_result = out.result().unwrap().clone();
    assert_eq!(points(&shopper.card), pts - REDEEM_POINTS);
    let r = s.post(&signin.session.result_url, &other_result).await;
    assert!(refused(&r), "{}", r.status());
    assert!(r.headers().get("set-cookie").is_none());
    // The result of another redemption at this redemption's URL.
    let r = s.post(&redeem.session.result_url, &other_result).await;
    assert!(refused(&r), "{}", r.status());
    // A forged result M (one byte changed).
    let MerchantResult::ResultM { txn_id, result_m } = other_result.clone() else {
        panic!("mode payment_server gives result M")
    };
    let mut bytes = result_m.as_slice().to_vec();
    bytes[20] ^= 1;
    let forged =
        serde_json::json!({"kind": "result_m", "txn_id": txn_id, "result_m": hex::encode(bytes)});
    let r = s.post(&other.session.result_url, &forged).await;
    assert!(refused(&r), "{}", r.status());
    // Sealed right (under DK) but naming a money purchase, or another amount:
    // the store checks what the result says, not only that it opens.
    let body = serde_json::to_string(&other_result).unwrap();
    let dk = kit.dk(&txn_id);
    for f in [
        (|m: &mut ResultM| m.purse = PurseId::Money) as fn(&mut ResultM),
        |m: &mut ResultM| m.amount = 1,
        |m: &mut ResultM| m.order_ref = "redeem-elsewhere".into(),
    ] {
        let rewritten = reseal_with::<ResultM>(&dk, &txn_id, &body, "result_m", f);
        let r = s
            .http
            .post(&other.session.result_url)
            .header("content-type", "application/json")
            .body(rewritten)
            .send()
            .await
            .unwrap();
        assert!(refused(&r), "{}", r.status());
    }
    // Nothing was issued by any of these.
    assert_eq!(s.rows("vouchers"), 0);
    assert_eq!(s.rows("member_sessions"), 1, "only the real sign-in");
    // Its own result at its own URL: the one voucher, for the points taken.
    let r = s.post(&other.session.result_url, &other_result).await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.rows("vouchers"), 1);
    // An unknown attempt.
    let r = s
        .post(
            &format!("{}/members/mbr-nope/result", s.store),
            &other_result,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(s.rows("vouchers"), 1);
}

#[tokio::test]
async fn a_redemption_whose_result_was_lost_gets_its_voucher_on_the_members_page() {
    let s = setup().await;
    let mut shopper = Shopper::new(test_card("6280000000009003", 5_000), s.api.clone());
    let cookie = s.sign_in(&mut shopper).await;
    let ws = s.redeem_session(&cookie).await;
    let pts = points(&shopper.card);
    assert!(shopper.pay(&ws).await.is_paid());
    assert_eq!(points(&shopper.card), pts - REDEEM_POINTS);
    // The page never posted the result: the members page asks the server.
    assert_eq!(s.rows("vouchers"), 0);
    let page = s.members_page(&cookie).await;
    assert!(page.contains("<code class=\"voucher\">CP-"), "{page}");
    s.members_page(&cookie).await;
    assert_eq!(s.rows("vouchers"), 1);
}

#[tokio::test]
async fn a_redemption_whose_result_was_lost_gets_its_voucher_from_the_webhook() {
    let s = setup_with(true).await;
    let mut shopper = Shopper::new(test_card("6280000000009004", 5_000), s.api.clone());
    let cookie = s.sign_in(&mut shopper).await;
    let ws = s.redeem_session(&cookie).await;
    assert!(shopper.pay(&ws).await.is_paid());
    // No result, no visit of the members page: the signed webhook books it.
    for _ in 0..100 {
        if s.rows("vouchers") == 1 {
            assert_eq!(points(&shopper.card), 500 - REDEEM_POINTS);
            // The sign-in's webhook made no session and no voucher.
            assert_eq!(s.rows("member_sessions"), 1);
            let page = s.members_page(&cookie).await;
            assert_eq!(page.matches("<code class=\"voucher\">").count(), 1);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no voucher from the webhook");
}

/// The voucher codes a members page shows.
fn vouchers_in(page: &str) -> Vec<String> {
    page.split("<code class=\"voucher\">")
        .skip(1)
        .map(|s| s.split('<').next().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn two_cards_with_the_same_last_four_are_two_members() {
    let s = setup().await;
    let mut a = Shopper::new(test_card("6280000000001234", 5_000), s.api.clone());
    let mut b = Shopper::new(test_card("6280000099991234", 5_000), s.api.clone());
    s.buy_and_earn(&mut a, "ebook").await; // 40 points on A
    let cookie_a = s.sign_in(&mut a).await;
    let ws = s.redeem_session(&cookie_a).await;
    let out = a.pay(&ws).await;
    let r = s.post(&ws.session.result_url, out.result().unwrap()).await;
    assert_eq!(r.status(), 200);
    let page_a = s.members_page(&cookie_a).await;
    let codes_a = vouchers_in(&page_a);
    assert_eq!(codes_a.len(), 1, "{page_a}");
    assert!(page_a.contains("<b id=\"earned-total\">40</b>"), "{page_a}");

    // B ends in the same four digits: shown alike, but another member.
    let cookie_b = s.sign_in(&mut b).await;
    assert_ne!(cookie_a, cookie_b);
    let page_b = s.members_page(&cookie_b).await;
    assert!(
        page_b.contains("Signed in with card <b>…1234</b> (authentication OK)"),
        "{page_b}"
    );
    assert!(page_b.contains("No points earned yet"), "{page_b}");
    assert!(page_b.contains("No vouchers yet"), "{page_b}");
    assert!(
        !page_b.contains(&codes_a[0]),
        "A's voucher code leaked to B"
    );
    // B's own redemption is B's, and A still sees only A's.
    let ws = s.redeem_session(&cookie_b).await;
    let out = b.pay(&ws).await;
    let r = s.post(&ws.session.result_url, out.result().unwrap()).await;
    assert_eq!(r.status(), 200);
    let codes_b = vouchers_in(&s.members_page(&cookie_b).await);
    assert_eq!(codes_b.len(), 1);
    assert_ne!(codes_b, codes_a);
    assert_eq!(vouchers_in(&s.members_page(&cookie_a).await), codes_a);
    // The store holds two references, never a card number.
    let c = rusqlite::Connection::open(s.dir.path().join("orders.sqlite")).unwrap();
    let refs: Vec<String> = c
        .prepare("SELECT DISTINCT card_ref FROM member_sessions ORDER BY card_ref")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(refs.len(), 2, "{refs:?}");
    // (random-looking hex: a short digit string such as the last four may occur by chance)
    assert!(
        refs.iter().all(|r| r.len() == 32
            && !r.contains("6280000000001234")
            && !r.contains("6280000099991234")),
        "{refs:?}"
    );
    let earned_ref: String = c
        .query_row("SELECT card_ref FROM points_earned", [], |r| r.get(0))
        .unwrap();
    assert!(
        refs.contains(&earned_ref),
        "A's points carry A's store reference"
    );
}

#[tokio::test]
async fn a_sign_in_without_a_card_reference_signs_no_one_in() {
    let s = setup().await;
    let mut shopper = Shopper::new(test_card("6280000000009005", 5_000), s.api.clone());
    let ws = s.signin_page().await;
    let out = shopper.pay(&ws).await;
    let MerchantResult::ResultM { txn_id, .. } = out.result().unwrap().clone() else {
        panic!("mode payment_server gives result M")
    };
    // As an older payment server would seal it: no card_ref (every card
    // would be the member ""), otherwise genuine.
    let body = serde_json::to_string(out.result().unwrap()).unwrap();
    let dk = s.merchant.kit().dk(&txn_id);
    let old = reseal_with::<ResultM>(&dk, &txn_id, &body, "result_m", |m| {
        m.card_ref = String::new()
    });
    let r = s
        .http
        .post(&ws.session.result_url)
        .header("content-type", "application/json")
        .body(old)
        .send()
        .await
        .unwrap();
    // It opened (sealed right): refused for the missing reference alone.
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(s.rows("member_sessions"), 0);
    // The genuine result still signs in.
    let r = s.post(&ws.session.result_url, out.result().unwrap()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.rows("member_sessions"), 1);
}

/// Login CSRF: another site posts its own card's genuine sign-in result into the
/// shopper's browser (or signs them out, or redeems). The browser names that
/// site in `Origin`: refused before the result is looked at, no session, and
/// the result still works from the store's own page.
#[tokio::test]
async fn another_site_cannot_sign_the_shopper_in_or_out_or_redeem() {
    let s = setup().await;
    let mut shopper = Shopper::new(test_card("6280000000009006", 5_000), s.api.clone());
    let ws = s.signin_page().await;
    let out = shopper.pay(&ws).await;
    let body = serde_json::to_string(out.result().unwrap()).unwrap();
    for origin in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        let r = s
            .http
            .post(&ws.session.result_url)
            .header("content-type", "application/json")
            .header("origin", origin)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{origin}");
        assert!(r.headers().get("set-cookie").is_none());
        let j: serde_json::Value = r.json().await.unwrap();
        assert_eq!(j["error"]["code"], "cross_site", "{j}");
    }
    assert_eq!(s.rows("member_sessions"), 0);
    // From the store's own page: signed in.
    let r = s
        .http
        .post(&ws.session.result_url)
        .header("content-type", "application/json")
        .header("origin", s.store.trim_end_matches('/'))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.rows("member_sessions"), 1);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let cookie = cookie.split(';').next().unwrap().to_string();
    // Redeem and sign out from another site: refused, the session stays.
    for path in ["/members/redeem", "/members/signout"] {
        let r = s
            .http
            .post(format!("{}{path}", s.store))
            .header("cookie", &cookie)
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(s.rows("member_sessions"), 1);
    assert_eq!(s.rows("member_attempts"), 1, "no redemption attempt opened");
}
