//! Thin axum handlers over [`PaymentService`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;

use crate::error::PaymentError;
use crate::service::{ConfirmRequest, PaymentService, ResolveRequest};

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<PaymentService>,
}

/// Options of the HTTP layer.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    pub body_limit: usize,
    pub cors_origins: Vec<String>,
    pub www_dir: Option<std::path::PathBuf>,
}

fn body(b: Result<Bytes, BytesRejection>) -> Result<Bytes, PaymentError> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            PaymentError::BodyTooLarge
        } else {
            PaymentError::Malformed(e.body_text())
        }
    })
}

fn parse<T: DeserializeOwned>(b: &[u8]) -> Result<T, PaymentError> {
    serde_json::from_slice(b).map_err(|e| PaymentError::Malformed(e.to_string()))
}

async fn draw(
    State(st): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, PaymentError> {
    let env = parse(&body(b)?)?;
    Ok(Json(st.service.draw(env).await?).into_response())
}

async fn complete(
    State(st): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, PaymentError> {
    let env = parse(&body(b)?)?;
    Ok(Json(st.service.complete(env).await?).into_response())
}

async fn suspicious(
    State(st): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, PaymentError> {
    let env = parse(&body(b)?)?;
    Ok(Json(st.service.suspicious(env).await?).into_response())
}

fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
}

#[derive(Deserialize)]
struct MerchantQuery {
    merchant: Option<String>,
}

async fn transaction(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<MerchantQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, PaymentError> {
    let caller = st
        .service
        .authenticate(method.as_str(), path_and_query(&uri), &headers, b"")?;
    Ok(Json(st.service.transaction(caller, q.merchant, id).await?).into_response())
}

async fn confirm(
    State(st): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, PaymentError> {
    let b = body(b)?;
    let caller = st
        .service
        .authenticate(method.as_str(), path_and_query(&uri), &headers, &b)?;
    let req: ConfirmRequest = if b.is_empty() {
        ConfirmRequest::default()
    } else {
        parse(&b)?
    };
    Ok(Json(st.service.confirm(caller, id, req).await?).into_response())
}

async fn recovery(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, PaymentError> {
    let caller = st
        .service
        .authenticate(method.as_str(), path_and_query(&uri), &headers, b"")?;
    Ok(Json(st.service.recovery(caller).await?).into_response())
}

async fn suspicious_list(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, PaymentError> {
    let caller = st
        .service
        .authenticate(method.as_str(), path_and_query(&uri), &headers, b"")?;
    Ok(Json(st.service.suspicious_reports(caller).await?).into_response())
}

async fn resolve(
    State(st): State<AppState>,
    Path((merchant, id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, PaymentError> {
    let b = body(b)?;
    let caller = st
        .service
        .authenticate(method.as_str(), path_and_query(&uri), &headers, &b)?;
    let req: ResolveRequest = parse(&b)?;
    Ok(Json(st.service.resolve(caller, merchant, id, req).await?).into_response())
}

async fn healthz(State(st): State<AppState>) -> Response {
    // A round trip through the store proves the writer thread and the DB are alive.
    match st.service.captured_total("").await {
        Ok(_) => (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found() -> PaymentError {
    PaymentError::NotFound
}

/// The router of the payment API (and the payment origin's static files).
pub fn router(service: Arc<PaymentService>, opts: &HttpOptions) -> Router {
    let limit = if opts.body_limit == 0 {
        64 * 1024
    } else {
        opts.body_limit
    };
    let api = Router::new()
        .route("/v1/purchases/draw", post(draw))
        .route("/v1/purchases/complete", post(complete))
        .route("/v1/purchases/suspicious", post(suspicious))
        .route("/v1/transactions/{id}", get(transaction))
        .route("/v1/transactions/{id}/confirm", post(confirm))
        .route("/v1/suspicious", get(suspicious_list))
        .route("/v1/recovery", get(recovery))
        .route("/v1/recovery/{merchant}/{id}/resolve", post(resolve))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(limit));
    let mut app = match &opts.www_dir {
        Some(dir) => api.fallback_service(ServeDir::new(dir)),
        None => api.fallback(not_found),
    };
    if !opts.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = opts
            .cors_origins
            .iter()
            .filter_map(|o| o.parse().ok())
            .collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::CONTENT_TYPE]),
        );
    }
    app.with_state(AppState { service })
}
