//! `payment-server --config payment-server.toml`: parse config, open the store, serve.
//! `payment-server close-batches …` and `payment-server clearing …`: the
//! concentration point and the clearing process (docs/clearing.md).

mod clearing_cmd;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Cardpay payment server")]
struct Args {
    /// TOML config file (see docs/payment-server.md).
    #[arg(long, env = "CARDPAY_CONFIG")]
    config: Option<PathBuf>,
    /// Override the listen address of the config.
    #[arg(long)]
    listen: Option<String>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Close a batch per merchant of the captured purchases now (as the
    /// schedule does) and write them to the spool.
    CloseBatches {
        /// The payment server's config (its `[clearing]` section).
        #[arg(long, env = "CARDPAY_CONFIG")]
        config: PathBuf,
    },
    /// The clearing process (its own config and database).
    #[command(subcommand)]
    Clearing(clearing_cmd::ClearingCmd),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .init();
    let args = Args::parse();
    match args.cmd {
        None => {
            let config = args
                .config
                .context("--config is required (or CARDPAY_CONFIG)")?;
            serve(config, args.listen).await
        }
        Some(Cmd::CloseBatches { config }) => clearing_cmd::close_batches(&config).await,
        Some(Cmd::Clearing(c)) => {
            let code = clearing_cmd::run(c).await?;
            std::process::exit(code)
        }
    }
}

async fn serve(config: PathBuf, listen: Option<String>) -> anyhow::Result<()> {
    let mut config = payment_server::Config::load(&config).context("loading config")?;
    if let Some(l) = listen {
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
