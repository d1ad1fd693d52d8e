//! Who is calling the merchant/operator API: an extractor, so handlers never
//! forget to ask. A merchant signs each request (merchant-kit `auth`: HMAC-SHA256
//! under K_mp over method, path and query, timestamp and body hash); the
//! operator sends its bearer token. Both are compared in constant time.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;

use super::{body, AppState};
use crate::error::PaymentError;
use crate::purchase::{Caller, PaymentService};

/// An authenticated caller and the request body it signed.
pub struct ApiCaller {
    pub caller: Caller,
    pub body: Bytes,
}

impl FromRequest<AppState> for ApiCaller {
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
        let caller = authenticate(&st.service, &method, &path, &headers, &b)?;
        Ok(Self { caller, body: b })
    }
}

fn authenticate(
    svc: &PaymentService,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Caller, PaymentError> {
    use merchant_kit::auth;
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let (Some(tok), Some(want)) = (h("authorization"), &svc.operator_token) {
        let given = tok.strip_prefix("Bearer ").unwrap_or("");
        if purse::crypto::mac_eq(given.as_bytes(), want.as_bytes()) {
            return Ok(Caller::Operator);
        }
        return Err(PaymentError::Unauthorized);
    }
    let (Some(mid), Some(ts), Some(sig)) = (
        h(auth::HEADER_MERCHANT),
        h(auth::HEADER_TIMESTAMP),
        h(auth::HEADER_SIGNATURE),
    ) else {
        return Err(PaymentError::Unauthorized);
    };
    let m = svc.merchants.get(mid).ok_or(PaymentError::Unauthorized)?;
    let ts: u64 = ts.parse().map_err(|_| PaymentError::Unauthorized)?;
    if !auth::verify(&m.key, method, path, ts, svc.now(), body, sig) {
        return Err(PaymentError::Unauthorized);
    }
    Ok(Caller::Merchant(m.id.clone()))
}
