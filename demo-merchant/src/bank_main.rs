//! `demo-bank`: the Cardpay demo bank (load your card from your account).
//! Flags or env (see `--help`). Served over TLS (`--tls-cert`/`--tls-key`),
//! or over plain HTTP only with `--insecure-http` (local development).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use purse::session::Key32;
use purse::types::Terminal;

#[derive(Parser)]
#[command(about = "Cardpay demo bank")]
struct Args {
    #[arg(long, env = "BANK_LISTEN", default_value = "127.0.0.1:8460")]
    listen: String,
    #[arg(long, env = "BANK_DB", default_value = "demo-bank.sqlite")]
    db: PathBuf,
    /// TLS certificate chain of the bank (PEM: the certificate, then intermediates).
    #[arg(long, env = "BANK_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "BANK_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Extra CA certificate(s) (PEM) to trust when calling the load server,
    /// besides the system's roots (e.g. the local test CA of scripts/certs.sh).
    #[arg(long, env = "BANK_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Serve plain HTTP and allow a plain-HTTP load server URL: for local
    /// development only. Without it the bank refuses to start without TLS.
    #[arg(long)]
    insecure_http: bool,
    /// Load server (payment server) API base URL.
    #[arg(
        long,
        env = "BANK_PAYMENT_URL",
        default_value = "https://127.0.0.1:8440"
    )]
    payment_url: String,
    /// Origin serving checkout.js (default: the payment URL).
    #[arg(long, env = "BANK_PAYMENT_ORIGIN")]
    payment_origin: Option<String>,
    /// This bank's origin as browsers see it (default: https://<listen>, or
    /// http://<listen> with --insecure-http).
    #[arg(long, env = "BANK_PUBLIC_ORIGIN")]
    public_origin: Option<String>,
    #[arg(long, env = "BANK_ID", default_value = "demo-bank")]
    bank_id: String,
    #[arg(long, env = "BANK_NAME", default_value = "Cardpay Demo Bank")]
    bank_name: String,
    /// K_bl shared with the load server, 64 hex digits (from the env in real use).
    #[arg(long, env = "BANK_KEY", hide_env_values = true)]
    bank_key: String,
    /// The load server's HSM terminal id.
    #[arg(long, env = "BANK_TERMINAL", default_value = "000000000001")]
    terminal: String,
    /// Load session lifetime, seconds.
    #[arg(long, env = "BANK_SESSION_TTL", default_value_t = 900)]
    session_ttl: u64,
    /// Subresource Integrity of checkout.js (`sha384-…`).
    #[arg(long, env = "BANK_CHECKOUT_SRI")]
    checkout_sri: Option<String>,
    /// Read the SRI of checkout.js from this sri.json instead.
    #[arg(long, env = "BANK_CHECKOUT_SRI_FILE", conflicts_with = "checkout_sri")]
    checkout_sri_file: Option<PathBuf>,
    /// How often holds past their expiry are asked about at the load server (seconds).
    #[arg(long, env = "BANK_RECONCILE_SECS", default_value_t = 60)]
    reconcile_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let a = Args::parse();
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
        "give --tls-cert and --tls-key (or BANK_TLS_CERT and BANK_TLS_KEY); \
         scripts/certs.sh makes a local test CA and a certificate for 127.0.0.1",
    )?;
    // The load server's answers (is this load credited?) are authenticated by
    // TLS alone: plain HTTP only when asked for.
    if !a.insecure_http && !a.payment_url.starts_with("https://") {
        anyhow::bail!("--payment-url must be https:// (or run with --insecure-http)");
    }
    let cfg = demo_merchant::bank::BankConfig {
        db_path: a.db,
        payment_origin: a.payment_origin.unwrap_or_else(|| a.payment_url.clone()),
        payment_url: a.payment_url,
        public_origin: a
            .public_origin
            .unwrap_or_else(|| format!("{}://{}", transport.scheme(), a.listen)),
        bank_id: a.bank_id,
        bank_name: a.bank_name,
        bank_key: Key32::from_hex(&a.bank_key)
            .map_err(|_| anyhow::anyhow!("--bank-key must be 64 hex digits"))?,
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
    };
    tracing::info!(bank = %cfg.bank_id, origin = %cfg.public_origin, payment = %cfg.payment_url, "starting demo bank");
    let state = demo_merchant::bank::BankState::new(cfg).context("opening the bank")?;
    demo_merchant::bank::spawn_reconciler(
        state.clone(),
        std::time::Duration::from_secs(a.reconcile_secs.max(1)),
    );
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
        demo_merchant::bank::router(state),
        transport,
        cardpay_tls::shutdown_signal(),
    )
    .await?;
    Ok(())
}
