//! `bridge`: the Cardpay native-messaging host and its setup commands.
//! stdout is the message channel in host mode: logs go to stderr or a file.

use std::path::PathBuf;

use anyhow::Context as _;
use bridge::config::{default_config_path, Config, Limits};
use bridge::doctor;
use bridge::host::{self, HostOptions};
use bridge::install::{self, Browser, Target};
use bridge::pcsc::PcscBackend;
use bridge::store::BudgetFile;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bridge",
    version,
    about = "Cardpay bridge: lets Cardpay payment pages use the smart card in your reader"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Register the bridge with a browser (host manifest + allowed payment origins).
    Install {
        #[command(flatten)]
        target: TargetArgs,
        /// A payment origin allowed to use the card (repeatable), e.g. https://pay.example.
        #[arg(long = "origin")]
        origins: Vec<String>,
        /// APDU rate limit per origin: burst size (default 200, at least 1; raise only for tests/benchmarks).
        #[arg(long)]
        apdu_burst: Option<u32>,
        /// APDU rate limit per origin: sustained APDUs per second (default 50, at least 1).
        #[arg(long)]
        apdu_per_sec: Option<u32>,
        /// PIN attempts (VERIFY) per origin before the limit applies (default 3, at least 1).
        #[arg(long)]
        verify_burst: Option<u32>,
        /// After the burst, one more PIN attempt per origin every N seconds (default 20, at least 1).
        #[arg(long)]
        verify_refill_secs: Option<u64>,
        /// Card transactions (INITIALIZE) per card before the hourly limit (default 30, at least 1).
        #[arg(long)]
        initialize_burst: Option<u32>,
        /// Then this many card transactions per card per hour (default 30, at least 1).
        #[arg(long)]
        initialize_per_hour: Option<u32>,
        /// An exclusive card session ends after this many ms without an APDU (default 15000, at least 1000).
        #[arg(long)]
        transaction_idle_ms: Option<u64>,
    },
    /// Remove the registration.
    Uninstall {
        #[command(flatten)]
        target: TargetArgs,
        /// Also delete the user-level settings (allowed origins).
        #[arg(long)]
        purge: bool,
    },
    /// Explain in plain words what is missing.
    Doctor {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Run as native-messaging host (the browser starts this through the launcher).
    Host {
        #[arg(long)]
        config: Option<PathBuf>,
        /// What the browser passes: the calling extension's origin (and more).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        caller: Vec<String>,
    },
    /// Restore the card's PIN tries: type your PIN here, at this computer's
    /// own prompt (never on a web page). A correct PIN gives the card all its
    /// tries back; a payment page may never use the last one.
    Pin {
        /// The reader (default: the first one with a card).
        #[arg(long)]
        reader: Option<String>,
    },
    /// Print the readiness status as JSON (same answer as the `status` message).
    Status,
    /// Time an APDU sent directly over PC/SC (SELECT, then GET BALANCE n times).
    Bench {
        #[arg(long, default_value = "Virtual PCD 00 00")]
        reader: String,
        #[arg(long, default_value_t = 1000)]
        n: usize,
    },
}

/// Which browser registration a command is about.
#[derive(clap::Args)]
struct TargetArgs {
    #[arg(long, value_enum, default_value = "chromium")]
    browser: Browser,
    /// A Chromium-family user-data dir (the tests' throw-away profiles) instead of
    /// the user-level folder. Firefox has none: set HOME for a test browser instead.
    #[arg(long)]
    profile: Option<PathBuf>,
    /// The extension's ID, if not the published Cardpay extension's
    /// (Chromium family: 32 letters a-p; Firefox: the add-on id).
    #[arg(long)]
    extension_id: Option<String>,
}

impl TargetArgs {
    fn target(&self) -> anyhow::Result<Target> {
        Target::new(
            self.browser,
            self.profile.as_deref(),
            self.extension_id.as_deref(),
        )
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("CARDPAY_BRIDGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    if let Some(path) = std::env::var_os("CARDPAY_BRIDGE_LOG_FILE") {
        if let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            builder.with_writer(std::sync::Mutex::new(f)).init();
            return;
        }
    }
    builder.with_writer(std::io::stderr).init();
}

fn run_host(config: Option<PathBuf>, caller: Vec<String>) -> anyhow::Result<()> {
    let path = config.unwrap_or_else(default_config_path);
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            // keep serving (status tells the shopper), but allow no origin
            tracing::error!("{e:#}; no payment origin is allowed");
            Config::default()
        }
    };
    let mut extension_origins: Vec<String> = caller
        .iter()
        .filter(|a| a.starts_with("chrome-extension://"))
        .cloned()
        .collect();
    // Firefox: `host MANIFEST_PATH ADDON_ID`; its extension pages are moz-extension://UUID
    if caller.iter().any(|a| a.ends_with(".json")) {
        extension_origins.push("moz-extension://*".into());
    }
    let opts = HostOptions {
        allowlist: cfg.allowlist()?,
        extension_origins,
        request_timeout: cfg.request_timeout(),
    };
    tracing::info!(
        "bridge host {} (pid {}) for {:?}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        caller
    );
    let state = bridge::config::state_path(&path);
    let backend = PcscBackend::new(cfg.guard(), Some(BudgetFile::new(state)));
    host::run(
        std::io::stdin(),
        std::io::stdout().lock(),
        opts,
        backend,
        |sink| {
            let _ = std::thread::Builder::new()
                .name("monitor".into())
                .spawn(move || bridge::monitor::monitor(sink));
        },
    )?;
    Ok(())
}

fn bench(reader: &str, n: usize) -> anyhow::Result<()> {
    use pcsc::{Context, Protocols, Scope, ShareMode};
    let ctx = Context::establish(Scope::User).context("pcscd")?;
    let name = std::ffi::CString::new(reader)?;
    let card = ctx
        .connect(&name, ShareMode::Shared, Protocols::ANY)
        .context("connect")?;
    let mut buf = [0u8; pcsc::MAX_BUFFER_SIZE];
    card.transmit(&bridge::guard::select_cardpay(), &mut buf)
        .context("select")?;
    let apdu = [0x80, 0x5C, 0x00, 0x00, 0x04];
    let mut t = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let s = std::time::Instant::now();
        let r = card.transmit(&apdu, &mut buf).context("transmit")?;
        t.push(s.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(r.ends_with(&[0x90, 0x00]), "GET BALANCE failed");
    }
    t.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| t[((t.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{{\"path\":\"pcsc-direct\",\"n\":{},\"p50_us\":{:.1},\"p99_us\":{:.1}}}",
        t.len(),
        p(0.5),
        p(0.99)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // Browsers start the host with the caller as first argument (Chrome:
    // `chrome-extension://ID/`; Firefox: manifest path + extension id).
    let args: Vec<String> = std::env::args().collect();
    init_logging();
    if args
        .get(1)
        .is_some_and(|a| a.starts_with("chrome-extension://") || a.ends_with(".json"))
    {
        return run_host(None, args[1..].to_vec());
    }
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Install {
            target,
            origins,
            apdu_burst,
            apdu_per_sec,
            verify_burst,
            verify_refill_secs,
            initialize_burst,
            initialize_per_hour,
            transaction_idle_ms,
        } => {
            let t = target.target()?;
            let exe = std::env::current_exe()?.canonicalize()?;
            let limits = Limits {
                apdu_burst,
                apdu_per_sec,
                verify_burst,
                verify_refill_secs,
                initialize_burst,
                initialize_per_hour,
                transaction_idle_ms,
            };
            let cfg = install::install(&t, &exe, &origins, &limits)?;
            println!("Installed the Cardpay bridge for {}.", t.browser.name());
            println!("  host manifest: {}", t.manifest.display());
            println!("  launcher:      {}", t.launcher.display());
            println!("  settings:      {}", t.config.display());
            if cfg.origins.is_empty() {
                println!("  No payment site is allowed yet: add one with --origin https://…");
            } else {
                println!("  allowed payment sites: {}", cfg.origins.join(", "));
            }
        }
        Cmd::Uninstall { target, purge } => {
            let t = target.target()?;
            let removed = install::uninstall(&t, purge)?;
            if removed.is_empty() {
                println!("Nothing to remove.");
            }
            for p in removed {
                println!("removed {}", p.display());
            }
        }
        Cmd::Doctor { target } => {
            let t = target.target()?;
            let mut checks = doctor::install_checks(&t);
            checks.extend(doctor::card_checks());
            let (text, ok) = doctor::render(&checks);
            print!("{text}");
            if !ok {
                std::process::exit(1);
            }
        }
        Cmd::Host { config, caller } => run_host(config, caller)?,
        Cmd::Status => {
            let mut b = PcscBackend::new(Default::default(), None);
            println!("{}", serde_json::to_string_pretty(&b.status(None))?);
        }
        Cmd::Bench { reader, n } => bench(&reader, n)?,
        Cmd::Pin { reader } => {
            let ok = bridge::pin::run(reader.as_deref(), &mut std::io::stdout())?;
            if !ok {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
