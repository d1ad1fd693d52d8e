//! `payment-server --config payment-server.toml`: parse config, open the store, serve.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Cardpay payment server")]
struct Args {
    /// TOML config file (see docs/payment-server.md).
    #[arg(long, env = "CARDPAY_CONFIG")]
    config: PathBuf,
    /// Override the listen address of the config.
    #[arg(long)]
    listen: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .init();
    let args = Args::parse();
    let mut config = payment_server::Config::load(&args.config).context("loading config")?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    tracing::info!(config = ?config, "starting");
    let (service, app) = payment_server::build(&config, payment_server::purchase::system_clock())?;
    payment_server::start_background(&service, &config);
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
