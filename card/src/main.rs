//! `card`: personalise, run (plugged into pcscd's vpcd reader) and inspect
//! the Cardpay virtual card.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use card::personalise::Personalisation;
use card::state::CardState;
use card::vpcd::{self, Chip, Control};
use card::{Card, Store};
use clap::{Parser, Subcommand};
use purse::command::LogKind;
use purse::crypto::DesKey;
use purse::{CardId, Expiry, PurseId};

#[derive(Parser)]
#[command(
    name = "card",
    about = "The Cardpay virtual stored-value card",
    version
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a freshly personalised card state (card keys diversified from the masters).
    Personalise {
        /// State file to create (refuses to overwrite unless --force).
        #[arg(long)]
        state: PathBuf,
        /// Card id, 16 digits.
        #[arg(long)]
        id: String,
        /// Expiry YYMMDD.
        #[arg(long)]
        expiry: String,
        /// Money purse currency (ISO 4217 numeric).
        #[arg(long)]
        currency: u16,
        /// Money purse exponent.
        #[arg(long)]
        exponent: u8,
        /// Money balance (minor units).
        #[arg(long)]
        balance: u32,
        /// Money maximum balance.
        #[arg(long)]
        max: u32,
        /// Points balance.
        #[arg(long)]
        points: u32,
        /// Points maximum balance.
        #[arg(long, default_value_t = 1_000_000)]
        points_max: u32,
        /// PIN, 4-8 digits.
        #[arg(long)]
        pin: String,
        /// Money purchases above this need VERIFY.
        #[arg(long)]
        no_pin_limit: u32,
        /// Key version.
        #[arg(long)]
        key_version: u8,
        /// Purchase master key MKP (32 hex digits).
        #[arg(long)]
        mkp: String,
        /// Load master key MKL (32 hex digits).
        #[arg(long)]
        mkl: String,
        /// Overwrite an existing state file.
        #[arg(long)]
        force: bool,
    },
    /// Plug the card into vpcd and serve APDUs. SIGUSR1 removes the card,
    /// SIGUSR2 inserts it again. For fault tests, a file `<state>.tear`
    /// holding an INS in hex (e.g. `54` for DEBIT) makes the card apply the
    /// next such command, then pull itself out before answering (one-shot).
    Run {
        /// State file.
        #[arg(long)]
        state: PathBuf,
        /// vpcd endpoint.
        #[arg(long, default_value = "127.0.0.1:35963")]
        vpcd: String,
    },
    /// Print balances, ATC and the log.
    Inspect {
        /// State file.
        #[arg(long)]
        state: PathBuf,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Personalise {
            state,
            id,
            expiry,
            currency,
            exponent,
            balance,
            max,
            points,
            points_max,
            pin,
            no_pin_limit,
            key_version,
            mkp,
            mkl,
            force,
        } => {
            let p = Personalisation {
                card_id: CardId::parse(&id).context("--id")?,
                expiry: Expiry::parse(&expiry).context("--expiry")?,
                currency,
                exponent,
                balance,
                max_balance: max,
                points,
                points_max,
                pin,
                no_pin_limit,
                key_version,
                mkp: DesKey::from_hex(&mkp).context("--mkp")?,
                mkl: DesKey::from_hex(&mkl).context("--mkl")?,
            };
            let s = p.build()?;
            if state.exists() && !force {
                bail!("{} exists (use --force to overwrite)", state.display());
            }
            Store::new(&state).save(&s)?;
            tracing::info!(card = %s.card_id, "personalised {}", state.display());
            Ok(())
        }
        Cmd::Run { state, vpcd } => run(state, &vpcd),
        Cmd::Inspect { state } => {
            let s = Store::new(&state).load()?;
            print!("{}", inspect(&s));
            Ok(())
        }
    }
}

struct PersistentCard {
    card: Card,
    store: Store,
    /// `<state>.tear`: holds the INS (hex) of the next command to tear (tests).
    tear_file: PathBuf,
}

impl Chip for PersistentCard {
    fn apdu(&mut self, apdu: &[u8]) -> Vec<u8> {
        let store = &self.store;
        // Where the card's time goes (RUST_LOG=debug): the application, the durable save.
        let t0 = Instant::now();
        let mut save = Duration::ZERO;
        let r = self.card.process_with(apdu, |s| {
            let t = Instant::now();
            let r = store
                .save(s)
                .inspect_err(|e| tracing::error!("persisting state: {e}"));
            save = t.elapsed();
            r
        });
        let total = t0.elapsed();
        tracing::debug!(
            ins = apdu.get(1).copied().unwrap_or(0),
            sw = %hex::encode_upper(&r[r.len().saturating_sub(2)..]),
            app_us = (total - save).as_micros() as u64,
            save_us = save.as_micros() as u64,
            "apdu"
        );
        r
    }
    fn reset(&mut self) {
        self.card.reset();
    }
    fn tear_after(&mut self, apdu: &[u8]) -> bool {
        let Ok(text) = std::fs::read_to_string(&self.tear_file) else {
            return false;
        };
        let armed = u8::from_str_radix(text.trim(), 16).ok();
        if armed.is_some() && armed == apdu.get(1).copied() {
            let _ = std::fs::remove_file(&self.tear_file);
            return true;
        }
        false
    }
}

fn run(state: PathBuf, addr: &str) -> Result<()> {
    let store = Store::new(&state);
    let _lock = store.lock_exclusive()?;
    let s = store.load()?;
    tracing::info!(card = %s.card_id, atc = s.atc, "card loaded from {}", state.display());
    let ctl = Arc::new(Control::default());
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGUSR1,
        signal_hook::consts::SIGUSR2,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("installing signal handlers")?;
    let ctl2 = Arc::clone(&ctl);
    std::thread::spawn(move || {
        for sig in signals.forever() {
            match sig {
                signal_hook::consts::SIGUSR1 => {
                    tracing::info!("SIGUSR1: removing card");
                    ctl2.remove();
                }
                signal_hook::consts::SIGUSR2 => {
                    tracing::info!("SIGUSR2: inserting card");
                    ctl2.insert();
                }
                _ => {
                    // Every committed state is already on disk: just go.
                    tracing::info!("terminating");
                    std::process::exit(0);
                }
            }
        }
    });
    let mut chip = PersistentCard {
        card: Card::new(s),
        store,
        tear_file: state.with_extension("tear"),
    };
    vpcd::serve(&mut chip, addr, &ctl, &|| false);
    Ok(())
}

fn purse_name(p: PurseId) -> &'static str {
    match p {
        PurseId::Money => "money",
        PurseId::Points => "points",
    }
}

/// Human-readable summary. One fact per line, `key value` pairs, so tests and
/// people can both read it. The card id is masked.
fn inspect(s: &CardState) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "card {}", s.card_id);
    let _ = writeln!(o, "expiry {}", s.expiry);
    let _ = writeln!(o, "key-version {}", s.key_version);
    let _ = writeln!(o, "atc {}", s.atc);
    let _ = writeln!(o, "pin-tries {}", s.pin_tries_left);
    let _ = writeln!(o, "no-pin-limit {}", s.no_pin_limit);
    for (i, p) in s.purses.iter().enumerate() {
        let name = if i == 0 { "money" } else { "points" };
        let _ = writeln!(
            o,
            "purse {name} balance {} max {} currency {} exponent {}",
            p.balance, p.max_balance, p.currency, p.exponent
        );
    }
    let _ = writeln!(o, "log {} records, newest first", s.log.len());
    for (n, r) in s.log.iter().rev().enumerate() {
        let kind = match r.kind {
            LogKind::Purchase => "purchase",
            LogKind::Load => "load",
        };
        let _ = writeln!(
            o,
            "#{} {kind} {} amount {} balance-after {} atc {} terminal {} date {} time {} seq {}",
            n + 1,
            purse_name(r.purse),
            r.amount,
            r.balance_after,
            r.atc,
            r.terminal,
            r.date,
            r.time,
            r.seq
        );
    }
    o
}
