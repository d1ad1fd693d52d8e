//! The widget's calls: draw, complete, recover, suspicious. Each parses its
//! envelope and hands it to the service; refusals become `{"error": …}`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{body, parse, AppState};
use crate::error::PaymentError;

/// The stored JSON text as the body (`application/json`, as `Json` sends).
impl IntoResponse for crate::purchase::StoredJson {
    fn into_response(self) -> Response {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            self.0,
        )
            .into_response()
    }
}

pub(super) async fn draw(
    State(st): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, PaymentError> {
    let env = parse(&body(b)?)?;
    Ok(st.service.draw(env).await?.into_response())
}

pub(super) async fn complete(
    State(st): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, PaymentError> {
    let env = parse(&body(b)?)?;
    Ok(st.service.complete(env).await?.into_response())
}

pub(super) async fn recover(
    State(st): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, PaymentError> {
    let env = parse(&body(b)?)?;
    Ok(Json(st.service.recover(env).await?).into_response())
}

pub(super) async fn suspicious(
    State(st): State<AppState>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, PaymentError> {
    let env = parse(&body(b)?)?;
    Ok(Json(st.service.suspicious(env).await?).into_response())
}
