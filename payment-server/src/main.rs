//! `payment-server --config payment-server.toml [--insecure-http]`: parse
//! config, open the store, serve over TLS (the config's `[tls]`), or over plain
//! HTTP only with `--insecure-http`.
//! `payment-server --config … hsm import|generate|list`: the master keys in the
//! PKCS#11 token (docs/pkcs11.md).
//! `payment-server close-batches …` and `payment-server clearing …`: the
//! concentration point and the clearing process (docs/clearing.md).

mod clearing_cmd;

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use payment_server::config::KeyStore;
use purse::crypto::DesKey;

#[derive(Parser)]
#[command(about = "Cardpay payment server")]
struct Args {
    /// TOML config file (see docs/payment-server.md).
    #[arg(long, env = "CARDPAY_CONFIG")]
    config: Option<PathBuf>,
    /// Override the listen address of the config.
    #[arg(long)]
    listen: Option<String>,
    /// Serve plain HTTP, without TLS: for local development only. Without it
    /// the server refuses to start unless the config has `[tls]`.
    #[arg(long)]
    insecure_http: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Master keys in the PKCS#11 token named by `[security_module.pkcs11]`.
    Hsm {
        #[command(subcommand)]
        op: HsmOp,
    },
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

#[derive(Subcommand)]
enum HsmOp {
    /// Import MKP and MKL of a key version as non-extractable token objects.
    /// The keys come from CARDPAY_SM_MKP_<v> / CARDPAY_SM_MKL_<v>, or from
    /// stdin (two lines of 32 hex digits: MKP then MKL); never from the command line.
    Import {
        #[arg(long)]
        version: u8,
    },
    /// Generate fresh master keys of a key version inside the token.
    Generate {
        #[arg(long)]
        version: u8,
    },
    /// List the master keys on the token with their check values.
    List,
}

fn read_keys(version: u8) -> anyhow::Result<(DesKey, DesKey)> {
    let from_env = |w: &str| std::env::var(format!("CARDPAY_SM_{w}_{version}")).ok();
    let (mkp, mkl) = match (from_env("MKP"), from_env("MKL")) {
        (Some(p), Some(l)) => (p, l),
        _ => {
            eprintln!("MKP and MKL of key version {version}: two lines of 32 hex digits on stdin");
            let mut lines = std::io::stdin().lock().lines();
            let mut next = || -> anyhow::Result<String> {
                Ok(lines.next().context("stdin ended")??.trim().to_string())
            };
            (next()?, next()?)
        }
    };
    let parse = |h: &str, which: &str| {
        DesKey::from_hex(h.trim()).map_err(|_| anyhow::anyhow!("{which} must be 32 hex digits"))
    };
    Ok((parse(&mkp, "MKP")?, parse(&mkl, "MKL")?))
}

fn hsm(config: &payment_server::Config, op: HsmOp) -> anyhow::Result<()> {
    let KeyStore::Pkcs11(p) = &config.keys else {
        bail!("the config has no [security_module.pkcs11]: the keys are in software");
    };
    match op {
        HsmOp::Import { version } => {
            let (mkp, mkl) = read_keys(version)?;
            let r = cardpay_pkcs11::import_master_keys(p, version, &mkp, &mkl)?;
            println!("imported {r}");
        }
        HsmOp::Generate { version } => {
            let r = cardpay_pkcs11::generate_master_keys(p, version)?;
            println!("generated {r}");
        }
        HsmOp::List => {
            for k in cardpay_pkcs11::list_master_keys(p)? {
                let kcv = k.kcv.map(|c| c.to_string()).unwrap_or_else(|| "?".into());
                let protection = k.unprotected.as_deref().unwrap_or("protected");
                println!(
                    "key version {} {:?}: {} KCV {kcv} ({protection})",
                    k.key_version, k.key, k.label
                );
            }
        }
    }
    Ok(())
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
            serve(config, args.listen, args.insecure_http).await
        }
        Some(Cmd::Hsm { op }) => {
            let path = args
                .config
                .context("--config is required (or CARDPAY_CONFIG)")?;
            let config = payment_server::Config::load(&path).context("loading config")?;
            hsm(&config, op)
        }
        Some(Cmd::CloseBatches { config }) => clearing_cmd::close_batches(&config).await,
        Some(Cmd::Clearing(c)) => {
            let code = clearing_cmd::run(c).await?;
            std::process::exit(code)
        }
    }
}

/// A payment error for this process's own output, with an internal error's
/// detail (which clients never see): "internal error" alone says nothing to
/// the operator starting the server.
pub(crate) fn report(e: payment_server::PaymentError) -> anyhow::Error {
    anyhow::anyhow!(e.detail())
}

async fn serve(config: PathBuf, listen: Option<String>, insecure_http: bool) -> anyhow::Result<()> {
    let mut config = payment_server::Config::load(&config).context("loading config")?;
    if let Some(l) = listen {
        config.listen = l;
    }
    let transport = payment_server::transport(&config, insecure_http)?;
    tracing::info!(config = ?config, "starting");
    let (service, app) = payment_server::build(&config, payment_server::purchase::system_clock())
        .await
        .map_err(report)
        .context("opening the store")?;
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
