//! The merchant and operator API (signed calls): a transaction's view, the
//! merchant's confirm, recovery lists and the operator's resolve.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use purse::merchant_api::{ConfirmRequest, ReportsPage, ResolveRequest};
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

/// `?before=<cursor>&limit=<1..=1000>`, as text: a bad value is our `malformed`
/// error, not the extractor's own answer.
#[derive(Deserialize)]
pub(super) struct PageQuery {
    before: Option<String>,
    limit: Option<String>,
}

impl PageQuery {
    fn page(&self) -> Result<ReportsPage, PaymentError> {
        let before = match &self.before {
            None => None,
            Some(b) => Some(b.parse::<i64>().map_err(|_| {
                PaymentError::Malformed("before must be a previous page's next".into())
            })?),
        };
        let limit = match &self.limit {
            None => ReportsPage::MAX,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=ReportsPage::MAX).contains(l))
                .ok_or_else(|| {
                    PaymentError::Malformed(format!(
                        "limit must be a number from 1 to {}",
                        ReportsPage::MAX
                    ))
                })?,
        };
        Ok(ReportsPage { before, limit })
    }
}

pub(super) async fn suspicious_list(
    State(st): State<AppState>,
    Query(q): Query<PageQuery>,
    a: ApiCaller,
) -> Result<Response, PaymentError> {
    let page = q.page()?;
    Ok(Json(st.service.suspicious_reports(a.caller, page).await?).into_response())
}

pub(super) async fn resolve(
    State(st): State<AppState>,
    Path((merchant, id)): Path<(String, String)>,
    a: ApiCaller,
) -> Result<Response, PaymentError> {
    let req: ResolveRequest = parse(&a.body)?;
    Ok(Json(st.service.resolve(a.caller, merchant, id, req).await?).into_response())
}
