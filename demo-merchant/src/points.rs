//! Earning points (seed figure 16): a paid order earns points on the card's
//! points purse, through a **points load** the store signs with its loyalty
//! key — the store acts as the "bank" of its loyalty program (a `[[banks]]`
//! entry of the load server with `purses = ["points"]`). The points are
//! booked as earned only on the load server's proof (result B or its signed
//! webhook), once per order; the members page that mounts the widget for it
//! comes later (`GET /orders/{id}/points` gives the session now).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use merchant_kit::bank::{Bank, Booking, HoldRef, LoadParams};
use purse::load::{BankResult, LoadWidgetSession};
use purse::session::Key32;
use purse::types::PurseId;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::{now, AppState, StoreError};

pub(crate) const SCHEMA: &str = r#"
-- One points load per paid order: offered → earned | released.
CREATE TABLE IF NOT EXISTS points_earned (
    order_id    TEXT PRIMARY KEY REFERENCES shop_orders (id),
    txn_id      TEXT NOT NULL UNIQUE,
    points      INTEGER NOT NULL,
    status      TEXT NOT NULL,          -- offered | earned | released
    session     TEXT NOT NULL,          -- the widget's load session (offered once)
    expires_at  INTEGER NOT NULL,
    card        TEXT,                   -- masked
    created_at  INTEGER NOT NULL,
    decided_at  INTEGER,
    card_ref    TEXT                    -- the store's reference of the card (members)
);
"#;

/// The store's loyalty program at the load server.
#[derive(Clone)]
pub struct Loyalty {
    pub kit: Bank,
    /// Points per whole euro of a paid order (at least 1 point per order).
    pub points_per_euro: u32,
}

impl Loyalty {
    pub fn new(bank_id: &str, name: &str, key: Key32, points_per_euro: u32) -> Self {
        Self {
            kit: Bank::new(bank_id, name, key),
            points_per_euro,
        }
    }
}

/// A points load as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsLoad {
    pub order_id: String,
    pub txn_id: String,
    pub points: u32,
    pub status: String,
    pub card: Option<String>,
}

pub(crate) fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PointsLoad> {
    Ok(PointsLoad {
        order_id: r.get("order_id")?,
        txn_id: r.get("txn_id")?,
        points: r.get("points")?,
        status: r.get("status")?,
        card: r.get("card")?,
    })
}

impl AppState {
    fn loyalty(&self) -> Result<&Loyalty, StoreError> {
        self.loyalty
            .as_ref()
            .ok_or_else(|| StoreError::BadRequest("this store has no loyalty program".into()))
    }

    /// The points load of a paid order, made once (the same session again
    /// while it is offered: one load per order, never two open at once).
    pub async fn points_session(
        self: &Arc<Self>,
        order_id: &str,
    ) -> Result<LoadWidgetSession, StoreError> {
        let l = self.loyalty()?.clone();
        let o = self.order(order_id).await?;
        if o.status != "paid" {
            return Err(StoreError::BadRequest(
                "points are earned on paid orders".into(),
            ));
        }
        let oid = o.id.clone();
        let existing: Option<(String, String)> = self
            .db(move |c| {
                Ok(c.query_row(
                    "SELECT status, session FROM points_earned WHERE order_id = ?1",
                    params![oid],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?)
            })
            .await?;
        match existing {
            Some((status, session)) if status == "offered" => {
                return serde_json::from_str(&session)
                    .map_err(|e| StoreError::Internal(e.to_string()))
            }
            Some((status, _)) => {
                return Err(StoreError::BadRequest(format!(
                    "points for this order: {status}"
                )))
            }
            None => {}
        }
        let points = (o.amount / 100 * l.points_per_euro).max(1);
        let txn = format!(
            "pts-{}",
            hex::encode(
                merchant_kit::random_bytes::<12>()
                    .map_err(|e| StoreError::Internal(e.to_string()))?
            )
        );
        let expires_at = now() + self.cfg.session_ttl;
        let ws = l
            .kit
            .build_session(LoadParams {
                txn_id: txn.clone(),
                account_ref: o.id.clone(),
                amount: points,
                currency: 999,
                exponent: 0,
                purse: PurseId::Points,
                expires_at,
                result_url: format!("{}/orders/{}/points/result", self.cfg.public_origin, o.id),
                origin: self.cfg.public_origin.clone(),
                terminal: self.cfg.terminal,
            })
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let json = serde_json::to_string(&ws).map_err(|e| StoreError::Internal(e.to_string()))?;
        let oid = o.id.clone();
        self.db(move |c| {
            c.execute(
                "INSERT INTO points_earned (order_id, txn_id, points, status, session, expires_at, created_at)
                 VALUES (?1, ?2, ?3, 'offered', ?4, ?5, ?6)",
                params![oid, txn, points, json, expires_at, now()],
            )?;
            Ok(())
        })
        .await?;
        Ok(ws)
    }

    pub async fn points_load(self: &Arc<Self>, order_id: &str) -> Result<PointsLoad, StoreError> {
        let oid = order_id.to_string();
        self.db(move |c| {
            c.query_row(
                "SELECT order_id, txn_id, points, status, card FROM points_earned WHERE order_id = ?1",
                params![oid],
                row,
            )
            .optional()?
            .ok_or(StoreError::NotFound)
        })
        .await
    }

    fn points_hold<'a>(&'a self, p: &'a PointsLoad) -> HoldRef<'a> {
        HoldRef {
            txn_id: &p.txn_id,
            account_ref: &p.order_id,
            amount: p.points,
            currency: 999,
            exponent: 0,
            purse: PurseId::Points,
            origin: &self.cfg.public_origin,
        }
    }

    async fn book_points(
        self: &Arc<Self>,
        p: &PointsLoad,
        b: &Booking,
    ) -> Result<PointsLoad, StoreError> {
        let (status, card, card_ref) = match b {
            Booking::Post(v) => (
                "earned",
                Some(v.card.clone()),
                // Empty from an older load server: no member gets these points.
                Some(v.card_ref.clone()).filter(|r| !r.is_empty()),
            ),
            Booking::Release(_) => ("released", None, None),
            _ => return self.points_load(&p.order_id).await,
        };
        let oid = p.order_id.clone();
        self.db(move |c| {
            c.execute(
                "UPDATE points_earned SET status = ?2, card = ?3, card_ref = ?4, decided_at = ?5
                 WHERE order_id = ?1 AND status = 'offered'",
                params![oid, status, card, card_ref, now()],
            )?;
            Ok(())
        })
        .await?;
        let p = self.points_load(&p.order_id).await?;
        tracing::info!(order = %p.order_id, points = p.points, status = %p.status, "points load booked");
        Ok(p)
    }

    /// What the widget posted after the points load: verified with the
    /// loyalty kit; the widget's word alone voids at the load server.
    pub async fn take_points_result(
        self: &Arc<Self>,
        order_id: &str,
        r: &BankResult,
    ) -> Result<PointsLoad, StoreError> {
        let l = self.loyalty()?.clone();
        let p = self.points_load(order_id).await?;
        let booking = l
            .kit
            .verify_result(&self.points_hold(&p), r)
            .map_err(|e| StoreError::BadRequest(e.to_string()))?;
        let booking = match booking {
            Booking::AskServer { txn_id } => {
                let path = Bank::void_path(&txn_id);
                let mut rb = self.http.post(format!("{}{path}", self.cfg.payment_url));
                for (k, v) in l.kit.sign("POST", &path, now(), b"") {
                    rb = rb.header(k, v);
                }
                let v: purse::load::bank_api::LoadView = rb
                    .send()
                    .await
                    .map_err(|e| StoreError::Internal(e.to_string()))?
                    .json()
                    .await
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                l.kit
                    .check_view(&self.points_hold(&p), &v)
                    .map_err(|e| StoreError::BadRequest(e.to_string()))?
            }
            b => b,
        };
        self.book_points(&p, &booking).await
    }

    /// A signed load webhook of the loyalty program.
    pub async fn take_loyalty_webhook(
        self: &Arc<Self>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), StoreError> {
        use purse::webhook::{HEADER_EVENT_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
        let l = self.loyalty()?.clone();
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
        let ev = l.kit.verify_webhook(
            h(HEADER_EVENT_ID),
            h(HEADER_TIMESTAMP),
            h(HEADER_SIGNATURE),
            body,
            now(),
        )?;
        let p = match self.points_load(&ev.account_ref).await {
            Ok(p) if p.txn_id == ev.txn_id => p,
            _ => return Ok(()),
        };
        let b = l
            .kit
            .book_event(&self.points_hold(&p), &ev)
            .map_err(|e| StoreError::BadRequest(e.to_string()))?;
        self.book_points(&p, &b).await.map(|_| ())
    }
}

type St = State<Arc<AppState>>;

/// `GET /orders/{id}/points`: the points load session of a paid order.
pub(crate) async fn offer(
    State(st): St,
    Path(id): Path<String>,
) -> Result<Json<LoadWidgetSession>, StoreError> {
    Ok(Json(st.points_session(&id).await?))
}

pub(crate) async fn result(
    State(st): St,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<PointsLoad>, StoreError> {
    let r: BankResult =
        serde_json::from_slice(&body).map_err(|e| StoreError::BadRequest(e.to_string()))?;
    Ok(Json(st.take_points_result(&id, &r).await?))
}

pub(crate) async fn webhook(
    State(st): St,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, StoreError> {
    st.take_loyalty_webhook(&headers, &body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
