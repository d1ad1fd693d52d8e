//! The merchant and operator API (signed calls): a transaction's view, the
//! merchant's confirm, recovery lists and the operator's resolve.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use purse::merchant_api::{ConfirmRequest, ResolveRequest};
use serde::Deserialize;

use super::auth::ApiCaller;
use super::{parse, AppState};
use crate::error::PaymentError;

#[derive(Deserialize)]
pub(super) struct MerchantQuery {
    merchant: Option<String>,
}

pub(super) async fn transaction(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<MerchantQuery>,
    a: ApiCaller,
) -> Result<Response, PaymentError> {
    Ok(Json(st.service.transaction(a.caller, q.merchant, id).await?).into_response())
}

pub(super) async fn confirm(
    State(st): State<AppState>,
    Path(id): Path<String>,
    a: ApiCaller,
) -> Result<Response, PaymentError> {
    let req: ConfirmRequest = if a.body.is_empty() {
        ConfirmRequest::default()
    } else {
        parse(&a.body)?
    };
    Ok(Json(st.service.confirm(a.caller, id, req).await?).into_response())
}

pub(super) async fn recovery(
    State(st): State<AppState>,
    a: ApiCaller,
) -> Result<Response, PaymentError> {
    Ok(Json(st.service.recovery(a.caller).await?).into_response())
}

pub(super) async fn suspicious_list(
    State(st): State<AppState>,
    a: ApiCaller,
) -> Result<Response, PaymentError> {
    Ok(Json(st.service.suspicious_reports(a.caller).await?).into_response())
}

pub(super) async fn resolve(
    State(st): State<AppState>,
    Path((merchant, id)): Path<(String, String)>,
    a: ApiCaller,
) -> Result<Response, PaymentError> {
    let req: ResolveRequest = parse(&a.body)?;
    Ok(Json(st.service.resolve(a.caller, merchant, id, req).await?).into_response())
}
