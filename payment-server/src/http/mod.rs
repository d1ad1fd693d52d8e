//! The HTTP layer: routes, body limits, CORS and the payment origin's static
//! files. Handlers are thin: [`purchase`] (the widget's calls) and
//! [`merchant`] (signed merchant/operator calls, authenticated by the
//! [`auth::ApiCaller`] extractor) parse and call [`PaymentService`]; [`www`] serves
//! the static files with their headers.

pub mod auth;
pub mod clearing;
pub mod load;
pub mod merchant;
pub mod purchase;
pub mod www;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::PaymentError;
use crate::purchase::PaymentService;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../../openapi.json");

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<PaymentService>,
    /// Settlement pages and batch closing (the `[clearing]` section).
    pub clearing: Option<Arc<clearing::ClearingWeb>>,
}

/// Options of the HTTP layer.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    pub body_limit: usize,
    /// Origins allowed to call the *API* cross-origin. The static files do not
    /// depend on it: `checkout.js` is always served with `Access-Control-Allow-Origin: *`.
    pub cors_origins: Vec<String>,
    pub www_dir: Option<std::path::PathBuf>,
    /// The widget build's version in `www_dir` ([`www::build_version`]).
    pub www_version: Option<String>,
    /// Who may frame the widget page (`widget.html`): the merchants' page origins.
    pub frame_ancestors: FrameAncestors,
    /// Settlement pages and batch closing, when clearing is configured.
    pub clearing: Option<Arc<clearing::ClearingWeb>>,
}

/// The `frame-ancestors` of the widget iframe page, from the merchants' `origins`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FrameAncestors {
    /// No merchant origin at all: nobody (`'none'`).
    #[default]
    Nobody,
    /// Only these page origins.
    Origins(Vec<String>),
}

impl FrameAncestors {
    /// From each merchant's `origins` (every merchant lists at least one).
    /// Origins that are not a plain `scheme://host[:port]` are left out (and logged):
    /// they could not be a page origin, and must not smuggle CSP syntax into the header.
    pub fn of_merchants<'a>(merchants: impl IntoIterator<Item = &'a [String]>) -> Self {
        let mut out: Vec<String> = Vec::new();
        for origins in merchants {
            for o in origins {
                match csp_origin(o) {
                    Some(o) if !out.contains(&o) => out.push(o),
                    Some(_) => {}
                    None => {
                        tracing::warn!(origin = %o, "merchant origin is not scheme://host[:port]; left out of frame-ancestors")
                    }
                }
            }
        }
        if out.is_empty() {
            Self::Nobody
        } else {
            Self::Origins(out)
        }
    }

    /// The CSP directive, e.g. `frame-ancestors https://shop.example`.
    pub fn directive(&self) -> String {
        match self {
            Self::Nobody => "frame-ancestors 'none'".into(),
            Self::Origins(o) => format!("frame-ancestors {}", o.join(" ")),
        }
    }
}

/// `scheme://host[:port]` (lower-cased, no trailing slash) if `o` is one, else `None`.
fn csp_origin(o: &str) -> Option<String> {
    let o = o.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = o.split_once("://")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let (host, port) = match rest.strip_prefix('[') {
        // IPv6 literal
        Some(v6) => {
            let (addr, after) = v6.split_once(']')?;
            if addr.is_empty()
                || !addr
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            {
                return None;
            }
            let port = match after {
                "" => None,
                a => Some(a.strip_prefix(':')?),
            };
            (addr, port)
        }
        None => match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        },
    };
    let host_ok = !host.is_empty();
    let host_ok = host_ok
        && (rest.starts_with('[')
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()));
    (scheme_ok && host_ok && port_ok).then_some(o)
}

pub(crate) fn body(b: Result<Bytes, BytesRejection>) -> Result<Bytes, PaymentError> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            PaymentError::BodyTooLarge
        } else {
            PaymentError::Malformed(e.body_text())
        }
    })
}

pub(crate) fn parse<T: DeserializeOwned>(b: &[u8]) -> Result<T, PaymentError> {
    serde_json::from_slice(b).map_err(|e| PaymentError::Malformed(e.to_string()))
}

async fn healthz(State(st): State<AppState>) -> Response {
    // A round trip through the store proves the writer thread and the DB are alive.
    match st.service.health().await {
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
    use purse::purchase::{PATH_COMPLETE, PATH_DRAW, PATH_RECOVER, PATH_SUSPICIOUS};
    let api = Router::new()
        .route(PATH_DRAW, post(purchase::draw))
        .route(PATH_COMPLETE, post(purchase::complete))
        .route(PATH_RECOVER, post(purchase::recover))
        .route(PATH_SUSPICIOUS, post(purchase::suspicious))
        .route("/v1/transactions/{id}", get(merchant::transaction))
        .route("/v1/transactions/{id}/confirm", post(merchant::confirm))
        .route("/v1/suspicious", get(merchant::suspicious_list))
        .route("/v1/recovery", get(merchant::recovery))
        .route(
            "/v1/recovery/{merchant}/{id}/resolve",
            post(merchant::resolve),
        )
        .route("/merchant", get(clearing::page))
        .route(
            "/merchant/login",
            get(clearing::login_page).post(clearing::login),
        )
        .route("/merchant/login.js", get(clearing::login_js))
        .route("/merchant/style.css", get(clearing::style_css))
        .route("/merchant/challenge", post(clearing::challenge))
        .route("/merchant/logout", post(clearing::logout))
        .route("/merchant/settlements.csv", get(clearing::settlements_csv))
        .route(
            "/merchant/settlements.json",
            get(clearing::settlements_json),
        )
        .route("/merchant/payouts/{id}", get(clearing::payout_page))
        .route("/v1/settlements", get(clearing::api_settlements))
        .route("/v1/settlements/{id}", get(clearing::api_payout))
        .route("/v1/clearing/report", get(clearing::operator_json))
        .route("/v1/clearing/close", post(clearing::close_now))
        .route("/operator/clearing", get(clearing::operator_page))
        .route(purse::load::PATH_LOAD_DRAW, post(load::draw))
        .route(purse::load::PATH_LOAD_COMPLETE, post(load::complete))
        .route(purse::load::PATH_LOAD_RECOVER, post(load::recover))
        .route("/v1/bank/loads/{id}", get(load::view))
        .route("/v1/bank/loads/{id}/void", post(load::void))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(limit));
    // CORS for the API only (layered before the fallback is added, so the static
    // files keep their own headers, see `static_headers`).
    let api = if opts.cors_origins.is_empty() {
        api
    } else {
        let origins: Vec<HeaderValue> = opts
            .cors_origins
            .iter()
            .filter_map(|o| o.parse().ok())
            .collect();
        api.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::CONTENT_TYPE]),
        )
    };
    let app = match &opts.www_dir {
        Some(dir) => api.fallback_service(www::files(
            dir,
            &opts.frame_ancestors,
            opts.www_version.as_deref(),
        )),
        None => api.fallback(not_found),
    };
    app.with_state(AppState {
        service,
        clearing: opts.clearing.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_ancestors_from_merchant_origins() {
        let a = vec![
            "http://127.0.0.1:8450".to_string(),
            "https://Shop.example/".into(),
        ];
        let b = vec![
            "https://shop.example".to_string(),
            "http://x; script-src *".into(),
        ];
        let fa = FrameAncestors::of_merchants([a.as_slice(), b.as_slice()]);
        assert_eq!(
            fa.directive(),
            "frame-ancestors http://127.0.0.1:8450 https://shop.example"
        );
        assert_eq!(
            FrameAncestors::of_merchants(std::iter::empty()).directive(),
            "frame-ancestors 'none'"
        );
    }

    #[test]
    fn only_plain_origins_pass() {
        assert_eq!(
            csp_origin("http://[::1]:8450").as_deref(),
            Some("http://[::1]:8450")
        );
        for bad in [
            "shop.example",
            "http://",
            "http://a b",
            "http://a,b",
            "http://a:99999999",
            "http://a/path",
            "http://[::1]x",
            "null",
        ] {
            assert_eq!(csp_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn openapi_names_every_route_and_code() {
        use purse::purchase::{PATH_COMPLETE, PATH_DRAW, PATH_RECOVER, PATH_SUSPICIOUS};
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        for p in [
            PATH_DRAW,
            PATH_COMPLETE,
            PATH_RECOVER,
            PATH_SUSPICIOUS,
            "/v1/transactions/{id}",
            "/v1/transactions/{id}/confirm",
            "/v1/suspicious",
            "/v1/recovery",
            "/v1/recovery/{merchant}/{id}/resolve",
        ] {
            assert!(
                doc["paths"].get(p).is_some(),
                "{p} missing from openapi.json"
            );
        }
        let codes = &doc["components"]["schemas"]["ErrorBody"]["properties"]["error"]["properties"]
            ["code"]["enum"];
        let errors = [
            PaymentError::Malformed(String::new()),
            PaymentError::BodyTooLarge,
            PaymentError::UnknownMerchant,
            PaymentError::BadMac,
            PaymentError::ModeNotAllowed,
            PaymentError::Expired,
            PaymentError::BadSeal,
            PaymentError::TxnMismatch,
            PaymentError::AmountMismatch,
            PaymentError::CurrencyMismatch,
            PaymentError::OriginMismatch,
            PaymentError::TerminalMismatch,
            PaymentError::UnknownKeyVersion,
            PaymentError::CardExpired,
            PaymentError::InsufficientFunds,
            PaymentError::Replay,
            PaymentError::UnknownTxn,
            PaymentError::S3Mismatch,
            PaymentError::BadLogRecord,
            PaymentError::OrderPaid,
            PaymentError::OrderInFlight,
            PaymentError::WrongState,
            PaymentError::Unauthorized,
            PaymentError::NotFound,
            PaymentError::Internal(String::new()),
        ];
        for e in errors {
            let c = e.code().as_str();
            assert!(
                codes.as_array().unwrap().iter().any(|v| v == c),
                "code {c} missing from openapi.json"
            );
        }
    }
}
