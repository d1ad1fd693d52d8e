//! Cardpay payment server (DESIGN §4): the purchase API (`draw`, `complete`),
//! the security module, the SQLite transaction store, the merchant API and
//! recovery. Logic lives in [`service::PaymentService`]; [`http`] is a thin axum
//! layer; [`store::Store`] serialises durable writes with group commit.
//!
//! The crate `payment-testkit` (in `testkit/`) plays the widget's part against a
//! virtual `card::Card` for the integration tests and the benchmark.

#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod http;
pub mod service;
pub mod store;

use std::sync::Arc;

pub use config::Config;
pub use error::PaymentError;
pub use service::PaymentService;

/// Build the service and router from a resolved config.
pub fn build(
    config: &Config,
    clock: service::Clock,
) -> Result<(Arc<PaymentService>, axum::Router), PaymentError> {
    let store = store::Store::open(&config.db_path)?;
    let service = Arc::new(PaymentService::new(config, store, clock));
    let router = http::router(
        service.clone(),
        &http::HttpOptions {
            body_limit: config.body_limit,
            cors_origins: config.cors_origins.clone(),
            www_dir: config.www_dir.clone(),
            frame_ancestors: http::FrameAncestors::of_merchants(
                config.merchants.values().map(|m| m.origins.as_slice()),
            ),
        },
    );
    Ok((service, router))
}
