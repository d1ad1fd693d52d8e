//! The load server's routes: the widget's calls (draw, complete, recover)
//! and the bank's signed calls (view, void), authenticated by the
//! [`BankCaller`] extractor.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use purse::load::bank_api::auth;

use super::{body, parse, AppState};
use crate::error::PaymentError;

pub(super) async fn draw(
    State(st): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, PaymentError> {
    let env = parse(&body(b)?)?;
    Ok(Json(st.service.load_draw(env).await?).into_response())
}

pub(super) async fn complete(
    State(st): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, PaymentError> {
    let env = parse(&body(b)?)?;
    Ok(Json(st.service.load_complete(env).await?).into_response())
}

pub(super) async fn recover(
    State(st): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, PaymentError> {
    let env = parse(&body(b)?)?;
    Ok(Json(st.service.load_recover(env).await?).into_response())
}

/// A bank that signed its request (HMAC-SHA256 under K_bl over method, path,
/// timestamp and body hash; compared in constant time).
pub struct BankCaller {
    pub bank_id: String,
}

impl FromRequest<AppState> for BankCaller {
    type Rejection = PaymentError;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, PaymentError> {
        let method = req.method().as_str().to_string();
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let headers = req.headers().clone();
        let b = body(Bytes::from_request(req, st).await)?;
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        let (Some(id), Some(ts), Some(sig)) = (
            h(auth::HEADER_BANK),
            h(auth::HEADER_TIMESTAMP),
            h(auth::HEADER_SIGNATURE),
        ) else {
            return Err(PaymentError::Unauthorized);
        };
        let bank = st
            .service
            .bank(id)
            .map_err(|_| PaymentError::Unauthorized)?;
        let ts: u64 = ts.parse().map_err(|_| PaymentError::Unauthorized)?;
        if !auth::verify(&bank.key, &method, &path, ts, st.service.now(), &b, sig) {
            return Err(PaymentError::Unauthorized);
        }
        Ok(Self {
            bank_id: bank.id.clone(),
        })
    }
}

pub(super) async fn view(
    State(st): State<AppState>,
    Path(id): Path<String>,
    caller: BankCaller,
) -> Result<Response, PaymentError> {
    Ok(Json(st.service.bank_load(&caller.bank_id, &id).await?).into_response())
}

pub(super) async fn void(
    State(st): State<AppState>,
    Path(id): Path<String>,
    caller: BankCaller,
) -> Result<Response, PaymentError> {
    Ok(Json(st.service.bank_void(&caller.bank_id, &id).await?).into_response())
}
