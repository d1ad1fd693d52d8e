//! `demo-bank`: the Cardpay demo bank (load your card from your account).
//! Flags or env (see `--help`).

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
    /// Load server (payment server) API base URL.
    #[arg(
        long,
        env = "BANK_PAYMENT_URL",
        default_value = "http://127.0.0.1:8440"
    )]
    payment_url: String,
    /// Origin serving checkout.js (default: the payment URL).
    #[arg(long, env = "BANK_PAYMENT_ORIGIN")]
    payment_origin: Option<String>,
    /// This bank's origin as browsers see it (default: http://<listen>).
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
    let cfg = demo_merchant::bank::BankConfig {
        db_path: a.db,
        payment_origin: a.payment_origin.unwrap_or_else(|| a.payment_url.clone()),
        payment_url: a.payment_url,
        public_origin: a
            .public_origin
            .unwrap_or_else(|| format!("http://{}", a.listen)),
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
    tracing::info!(addr = %listener.local_addr()?, "listening");
    axum::serve(listener, demo_merchant::bank::router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
