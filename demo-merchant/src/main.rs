//! `demo-merchant`: the Cardpay demo store. Flags or env (see `--help`).
//! Served over TLS (`--tls-cert`/`--tls-key`), or over plain HTTP only with
//! `--insecure-http` (local development).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use purse::session::{Key32, VerifyMode};
use purse::types::Terminal;

#[derive(Parser)]
#[command(about = "Cardpay demo store")]
struct Args {
    #[arg(long, env = "DEMO_LISTEN", default_value = "127.0.0.1:8450")]
    listen: String,
    #[arg(long, env = "DEMO_DB", default_value = "demo-merchant.sqlite")]
    db: PathBuf,
    /// TLS certificate chain of the store (PEM: the certificate, then intermediates).
    #[arg(long, env = "DEMO_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "DEMO_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Extra CA certificate(s) (PEM) to trust when calling the payment server,
    /// besides the system's roots (e.g. the local test CA of scripts/certs.sh).
    #[arg(long, env = "DEMO_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Serve plain HTTP and allow a plain-HTTP payment URL: for local
    /// development only. Without it the store refuses to start without TLS.
    #[arg(long)]
    insecure_http: bool,
    /// Payment server API base URL.
    #[arg(
        long,
        env = "DEMO_PAYMENT_URL",
        default_value = "https://127.0.0.1:8440"
    )]
    payment_url: String,
    /// Origin serving checkout.js (default: the payment URL).
    #[arg(long, env = "DEMO_PAYMENT_ORIGIN")]
    payment_origin: Option<String>,
    /// This store's origin as browsers see it (default: https://<listen>, or
    /// http://<listen> with --insecure-http).
    #[arg(long, env = "DEMO_PUBLIC_ORIGIN")]
    public_origin: Option<String>,
    #[arg(long, env = "DEMO_MERCHANT_ID", default_value = "demo-store")]
    merchant_id: String,
    #[arg(long, env = "DEMO_MERCHANT_NAME", default_value = "Cardpay Demo Store")]
    merchant_name: String,
    /// K_mp shared with the payment server, 64 hex digits. Read from the env in
    /// real use so it does not show in `ps`.
    #[arg(long, env = "DEMO_MERCHANT_KEY", hide_env_values = true)]
    merchant_key: String,
    /// payment_server (default), security_module, client or merchant.
    #[arg(long, env = "DEMO_VERIFY_MODE", default_value = "payment_server")]
    verify_mode: String,
    /// The payment server's security module terminal id.
    #[arg(long, env = "DEMO_TERMINAL", default_value = "000000000001")]
    terminal: String,
    /// Session lifetime, seconds.
    #[arg(long, env = "DEMO_SESSION_TTL", default_value_t = 900)]
    session_ttl: u64,
    /// Subresource Integrity of checkout.js (`sha384-…`, printed by scripts/build-widget.sh).
    #[arg(long, env = "DEMO_CHECKOUT_SRI")]
    checkout_sri: Option<String>,
    /// Read the SRI of checkout.js from this sri.json (`www/pkg/sri.json`) instead.
    #[arg(long, env = "DEMO_CHECKOUT_SRI_FILE", conflicts_with = "checkout_sri")]
    checkout_sri_file: Option<PathBuf>,
    /// K_bl of the store's loyalty program at the load server (points earned
    /// on paid orders), 64 hex digits; without it the store earns no points.
    #[arg(long, env = "DEMO_LOYALTY_KEY", hide_env_values = true)]
    loyalty_key: Option<String>,
    /// The loyalty program's bank id at the load server.
    #[arg(long, env = "DEMO_LOYALTY_ID", default_value = "demo-store-loyalty")]
    loyalty_id: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let a = Args::parse();
    let verify_mode: VerifyMode =
        serde_json::from_value(serde_json::Value::String(a.verify_mode.clone()))
            .context("--verify-mode")?;
    let tls = match (a.tls_cert, a.tls_key) {
        (Some(cert_file), Some(key_file)) => Some(cardpay_tls::TlsFiles {
            cert_file,
            key_file,
        }),
        _ => None,
    };
    let transport = cardpay_tls::Transport::choose(
        tls.as_ref(),
        a.insecure_http,
        "give --tls-cert and --tls-key (or DEMO_TLS_CERT and DEMO_TLS_KEY); \
         scripts/certs.sh makes a local test CA and a certificate for 127.0.0.1",
    )?;
    let cfg = demo_merchant::StoreConfig {
        db_path: a.db,
        payment_origin: a.payment_origin.unwrap_or_else(|| a.payment_url.clone()),
        payment_url: a.payment_url,
        public_origin: a
            .public_origin
            .unwrap_or_else(|| format!("{}://{}", transport.scheme(), a.listen)),
        merchant_id: a.merchant_id,
        merchant_name: a.merchant_name,
        merchant_key: Key32::from_hex(&a.merchant_key)
            .map_err(|_| anyhow::anyhow!("--merchant-key must be 64 hex digits"))?,
        verify_mode,
        terminal: Terminal::parse_hex(&a.terminal)
            .map_err(|_| anyhow::anyhow!("--terminal must be 12 hex digits"))?,
        session_ttl: a.session_ttl,
        checkout_sri: match (a.checkout_sri, a.checkout_sri_file) {
            (Some(s), _) => Some(s.trim().to_string()),
            (None, Some(f)) => Some(
                demo_merchant::sri_from_file(&f)
                    .map_err(|e| anyhow::anyhow!("--checkout-sri-file: {e}"))?,
            ),
            (None, None) => None,
        },
        ca_file: a.ca_file,
        insecure_http: a.insecure_http,
    };
    tracing::info!(merchant = %cfg.merchant_id, origin = %cfg.public_origin, payment = %cfg.payment_url, mode = verify_mode.as_str(), "starting demo store");
    let loyalty = match &a.loyalty_key {
        Some(k) => Some(demo_merchant::points::Loyalty::new(
            &a.loyalty_id,
            "Cardpay Demo Store points",
            Key32::from_hex(k)
                .map_err(|_| anyhow::anyhow!("--loyalty-key must be 64 hex digits"))?,
            10,
        )),
        None => None,
    };
    let state = demo_merchant::AppState::new_with_loyalty(cfg, loyalty)?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    let addr = listener.local_addr()?;
    if a.insecure_http {
        tracing::warn!(%addr, "serving PLAIN HTTP (--insecure-http): for local development only");
    }
    tracing::info!(url = %format!("{}://{addr}", transport.scheme()), "listening");
    cardpay_tls::serve(
        listener,
        demo_merchant::router(state),
        transport,
        cardpay_tls::shutdown_signal(),
    )
    .await?;
    Ok(())
}
