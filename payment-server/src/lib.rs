//! Cardpay payment server (DESIGN §4): the purchase API (`draw`, `complete`,
//! `recover`), the security module, the transaction store (SQLite, or
//! PostgreSQL for several instances), the merchant API, recovery and signed
//! webhooks.
//!
//! # Layout
//! - [`purchase`]: the transaction rules ([`purchase::PaymentService`]), one module per step;
//! - [`load`]: the load server (banks, the HSM's S1/S2/S3, negative and missing results);
//! - [`store`]: SQL only, SQLite (group commit) or PostgreSQL (pool), same operations;
//! - [`http`]: thin axum handlers, the auth extractor, static files;
//! - [`webhooks`]: delivery of the outbox with backoff; the recovery sweeper;
//! - [`clearing`]: batches at the concentration point, clearing into a
//!   double-entry ledger, payouts, reconciliation, the merchant's settlement page;
//! - [`config`], [`error`]: the TOML file and every refusal's stable code;
//! - [`pg_tls`]: TLS to PostgreSQL as the database URL says (`sslmode`, `sslrootcert`);
//! - [`transport`]: TLS (`[tls]`) or, only when asked for, plain HTTP; the
//!   serving itself is `cardpay_tls::serve` (shared with the demo store).
//!
//! The crate `payment-testkit` (in `testkit/`) plays the widget's part against a
//! virtual `card::Card` for the integration tests and the benchmark.

#![forbid(unsafe_code)]

pub mod card_ref;
pub mod clearing;
pub mod config;
pub mod error;
pub mod http;
pub mod ids;
pub mod load;
pub mod pg_tls;
pub mod purchase;
pub mod store;
pub mod webhooks;

use std::sync::Arc;

pub use config::Config;
pub use error::PaymentError;
pub use purchase::PaymentService;

/// Build the service and router from a resolved config: open (and migrate)
/// the database. Background tasks (webhook delivery, recovery sweeper) are
/// started by [`start_background`].
pub async fn build(
    config: &Config,
    clock: purchase::Clock,
) -> Result<(Arc<PaymentService>, axum::Router), PaymentError> {
    let store = store::Store::open(&config.database)
        .await?
        .with_bank_card_refs(
            config
                .banks
                .values()
                .filter_map(|b| Some((b.id.clone(), b.card_refs_of.clone()?)))
                .collect(),
        );
    let service = Arc::new(PaymentService::new(config, store, clock)?);
    let router = http::router(
        service.clone(),
        &http::HttpOptions {
            body_limit: config.body_limit,
            cors_origins: config.cors_origins.clone(),
            www_dir: config.www_dir.clone(),
            www_version: config.www_version.clone(),
            // Merchants' and banks' pages both embed the widget.
            frame_ancestors: http::FrameAncestors::of_merchants(
                config
                    .merchants
                    .values()
                    .map(|m| m.origins.as_slice())
                    .chain(config.banks.values().map(|b| b.origins.as_slice())),
            ),
            clearing: config.clearing.as_ref().map(|c| {
                Arc::new(http::clearing::ClearingWeb::new(
                    c.clearing_db.clone(),
                    Some(batch_signer(c)),
                ))
            }),
        },
    );
    Ok((service, router))
}

/// Where the TLS certificate goes, for the start-up refusal.
const TLS_HOW: &str =
    "write [tls] cert_file = \"/path/server.pem\" and key_file = \"/path/server.key\" \
     in the config (scripts/certs.sh makes a local test CA and a certificate for 127.0.0.1)";

/// How the server listens: TLS with the config's `[tls]` certificate, or plain
/// HTTP only if `insecure_http` (the `--insecure-http` flag) says so; neither
/// is refused with a message that says what to write. Over TLS, webhook URLs
/// must be `https://` too (a signed webhook still tells a network observer
/// about every payment).
pub fn transport(
    config: &Config,
    insecure_http: bool,
) -> Result<cardpay_tls::Transport, config::ConfigError> {
    let t = cardpay_tls::Transport::choose(config.tls.as_ref(), insecure_http, TLS_HOW)?;
    if !insecure_http {
        for m in config.merchants.values() {
            if let Some(u) = m
                .webhook_url
                .as_deref()
                .filter(|u| !u.starts_with("https://"))
            {
                return Err(config::ConfigError::Invalid(format!(
                    "merchant {}: webhook_url {u} is not https://; over TLS webhooks go over TLS too \
                     (use --insecure-http for a plain-HTTP development setup)",
                    m.id
                )));
            }
        }
    }
    Ok(t)
}

/// Start webhook delivery and the recovery sweeper on the current runtime.
pub fn start_background(service: &Arc<PaymentService>, config: &Config) {
    webhooks::spawn(
        service.clone(),
        webhooks::Delivery {
            max_backoff_secs: config.webhook_max_backoff_secs,
            ..Default::default()
        },
        config.webhook_client.clone(),
    );
    webhooks::spawn_sweeper(
        service.clone(),
        std::time::Duration::from_secs(config.sweep_interval_secs),
    );
    if let Some(c) = &config.clearing {
        clearing::produce::spawn_schedule(service.clone(), c);
    }
}

/// The batch signer of a `[clearing]` section.
pub fn batch_signer(c: &config::ClearingProducer) -> clearing::produce::BatchSigner {
    clearing::produce::BatchSigner {
        key_id: c.key_id.clone(),
        key: c.key.clone(),
        spool: c.spool.clone(),
    }
}
