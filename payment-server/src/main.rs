//! `payment-server --config payment-server.toml [--insecure-http]`: parse
//! config, open the store, serve over TLS (the config's `[tls]`), or over plain
//! HTTP only with `--insecure-http`.

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
    /// Serve plain HTTP, without TLS: for local development only. Without it
    /// the server refuses to start unless the config has `[tls]`.
    #[arg(long)]
    insecure_http: bool,
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
    let transport = payment_server::transport(&config, args.insecure_http)?;
    tracing::info!(config = ?config, "starting");
    let (service, app) = payment_server::build(&config, payment_server::purchase::system_clock())?;
    payment_server::start_background(&service, &config);
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    if matches!(transport, cardpay_tls::Transport::InsecureHttp) {
        tracing::warn!(%addr, "serving PLAIN HTTP (--insecure-http): for local development only");
    }
    tracing::info!(url = %format!("{}://{addr}", transport.scheme()), "listening");
    cardpay_tls::serve(listener, app, transport, cardpay_tls::shutdown_signal()).await?;
    Ok(())
}
