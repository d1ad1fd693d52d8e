//! A private, real PC/SC stack for integration tests: `pcscd` with the
//! `vsmartcard-vpcd` driver, and the Cardpay virtual card (`card run`) plugged
//! into the first vpcd reader.
//!
//! ```no_run
//! let stack = testbed::Stack::start().unwrap();          // pcscd + card, card present
//! let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
//! let card = ctx
//!     .connect(&stack.reader_cstr(), pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
//!     .unwrap();
//! // ... transmit APDUs ...
//! drop(card);
//! println!("{}", stack.inspect().unwrap());             // `card inspect` output
//! // dropping the stack kills the card and pcscd (by PID) and releases the lock
//! ```
//!
//! Rules it follows (docs/TEAM.md, shared/ENVIRONMENT.md):
//! - only one pcscd per machine: [`Stack::start`] blocks on an exclusive
//!   `flock` of [`LOCK_PATH`] and holds it until the stack is dropped, so
//!   stacks in different test binaries / processes run one after another;
//!   inside one test binary keep one stack at a time (one test fn, or a mutex);
//! - pcscd and the card are child processes; they are `wait()`ed on and a
//!   zombie counts as dead;
//! - the card binary comes from [`Builder::card_bin`], else `$CARDPAY_CARD_BIN`,
//!   else it is built with `cargo build -p card` (into `<target>/testbed`, so
//!   it never waits on the caller's cargo lock) and found from cargo's output.
//!
//! The card is personalised with the test keys of docs/TEAM.md ([`keys`]).

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The machine-wide lock every starter of pcscd must hold (docs/TEAM.md).
pub const LOCK_PATH: &str = "/tmp/cardpay-pcscd.lock";
/// The reader the card is plugged into (vpcd port [`VPCD_PORT`]).
pub const READER: &str = "Virtual PCD 00 00";
/// vpcd's port for [`READER`]; vpcd also listens on the next one (its second
/// reader, `Virtual PCD 00 01`). Below Linux's ephemeral range (32768–60999),
/// unlike vpcd's default 35963: there an outgoing connection of the tests (a
/// database pool's, an HTTP client's) or a port-0 listener can hold 35964 and
/// vpcd then cannot open its readers ("Address already in use"; CI saw it).
pub const VPCD_PORT: u16 = 27771;
/// vpcd's TCP endpoint for [`READER`].
pub const VPCD_ADDR: &str = "127.0.0.1:27771";

/// Test keys and personalisation of the demo card (docs/TEAM.md). TEST KEYS ONLY.
pub mod keys {
    /// Purchase master key MKP (test key).
    pub const MKP: &str = "404142434445464748494A4B4C4D4E4F";
    /// Load master key MKL (test key).
    pub const MKL: &str = "505152535455565758595A5B5C5D5E5F";
    /// Key version.
    pub const KEY_VERSION: u8 = 1;
    /// Security module (terminal) id.
    pub const TERMINAL: [u8; 6] = [0, 0, 0, 0, 0, 1];
    /// PIN.
    pub const PIN: &str = "1234";
    /// Demo card id (16 digits).
    pub const CARD_ID: &str = "6280000000000001";
    /// Expiry YYMMDD.
    pub const EXPIRY: &str = "301231";
    /// Currency (EUR) and exponent.
    pub const CURRENCY: u16 = 978;
    /// Exponent of the money purse.
    pub const EXPONENT: u8 = 2;
}

/// What can go wrong while driving the stack.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error, with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Something did not happen in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// A child process failed.
    #[error("{0}")]
    Process(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Result of testbed operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Personalisation and options of the stack's card. Defaults: the demo card of
/// docs/TEAM.md with balance 100.00, max 1000.00, 500 points, no-PIN limit 20.00.
#[derive(Debug, Clone)]
pub struct Builder {
    card_bin: Option<PathBuf>,
    card_id: String,
    expiry: String,
    balance: u32,
    max_balance: u32,
    points: u32,
    pin: String,
    no_pin_limit: u32,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            card_bin: None,
            card_id: keys::CARD_ID.into(),
            expiry: keys::EXPIRY.into(),
            balance: 10_000,
            max_balance: 100_000,
            points: 500,
            pin: keys::PIN.into(),
            no_pin_limit: 2_000,
        }
    }
}

impl Builder {
    /// Use this `card` binary (e.g. `env!("CARGO_BIN_EXE_card")` in card's tests).
    pub fn card_bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.card_bin = Some(path.into());
        self
    }
    /// Starting money balance (minor units).
    pub fn balance(mut self, v: u32) -> Self {
        self.balance = v;
        self
    }
    /// Maximum money balance.
    pub fn max_balance(mut self, v: u32) -> Self {
        self.max_balance = v;
        self
    }
    /// Starting points balance.
    pub fn points(mut self, v: u32) -> Self {
        self.points = v;
        self
    }
    /// PIN (4–8 digits).
    pub fn pin(mut self, v: &str) -> Self {
        self.pin = v.into();
        self
    }
    /// Purchases above this amount need VERIFY.
    pub fn no_pin_limit(mut self, v: u32) -> Self {
        self.no_pin_limit = v;
        self
    }
    /// Card id (16 digits).
    pub fn card_id(mut self, v: &str) -> Self {
        self.card_id = v.into();
        self
    }
    /// Expiry YYMMDD.
    pub fn expiry(mut self, v: &str) -> Self {
        self.expiry = v.into();
        self
    }

    /// Take the lock, start pcscd, personalise and start the card; returns
    /// once the card is present in [`READER`].
    pub fn start(self) -> Result<Stack> {
        let card_bin = match self.card_bin.clone() {
            Some(p) => p,
            None => locate_card_bin()?,
        };
        let lock = take_lock()?;
        kill_orphans();
        let dir = tempfile::Builder::new()
            .prefix("cardpay-testbed-")
            .tempdir()
            .map_err(io_err("creating temp dir"))?;
        let conf_dir = dir.path().join("reader.conf.d");
        fs::create_dir(&conf_dir).map_err(io_err("creating reader.conf.d"))?;
        fs::write(
            conf_dir.join("vpcd"),
            format!(
                "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:0x{VPCD_PORT:04X}\nLIBPATH /usr/lib/pcsc/drivers/serial/libifdvpcd.so\n"
            ),
        )
        .map_err(io_err("writing reader.conf"))?;
        let state = dir.path().join("card.json");
        let mut stack = Stack {
            _lock: lock,
            dir,
            conf_dir,
            state,
            card_bin,
            pcscd: None,
            card: None,
        };
        stack.personalise(&self)?;
        stack.start_pcscd()?;
        stack.start_card()?;
        Ok(stack)
    }
}

/// A running pcscd + vpcd + virtual card. Dropping it kills both by PID,
/// removes the temp dir and releases [`LOCK_PATH`].
pub struct Stack {
    _lock: File,
    dir: tempfile::TempDir,
    conf_dir: PathBuf,
    state: PathBuf,
    card_bin: PathBuf,
    pcscd: Option<Child>,
    card: Option<Child>,
}

impl Stack {
    /// [`Builder::default`]`.start()`.
    pub fn start() -> Result<Stack> {
        Builder::default().start()
    }

    /// Options for the card.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The reader name as a C string, for `pcsc::Context::connect`.
    pub fn reader_cstr(&self) -> CString {
        CString::new(READER).expect("no NUL in reader name")
    }

    /// The card's state file (JSON).
    pub fn state_path(&self) -> &Path {
        &self.state
    }

    /// The temp dir holding reader.conf, the state and the logs
    /// (`pcscd.log`, `card.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `card` binary in use.
    pub fn card_bin(&self) -> &Path {
        &self.card_bin
    }

    /// PID of the card process, if running.
    pub fn card_pid(&mut self) -> Option<u32> {
        alive(&mut self.card)
            .then(|| self.card.as_ref().map(Child::id))
            .flatten()
    }

    /// PID of pcscd, if running.
    pub fn pcscd_pid(&mut self) -> Option<u32> {
        alive(&mut self.pcscd)
            .then(|| self.pcscd.as_ref().map(Child::id))
            .flatten()
    }

    fn personalise(&self, b: &Builder) -> Result<()> {
        let out = Command::new(&self.card_bin)
            .arg("personalise")
            .arg("--state")
            .arg(&self.state)
            .args(["--id", &b.card_id, "--expiry", &b.expiry])
            .args(["--currency", &keys::CURRENCY.to_string()])
            .args(["--exponent", &keys::EXPONENT.to_string()])
            .args(["--balance", &b.balance.to_string()])
            .args(["--max", &b.max_balance.to_string()])
            .args(["--points", &b.points.to_string()])
            .args(["--pin", &b.pin])
            .args(["--no-pin-limit", &b.no_pin_limit.to_string()])
            .args(["--key-version", &keys::KEY_VERSION.to_string()])
            .args(["--mkp", keys::MKP, "--mkl", keys::MKL])
            .output()
            .map_err(io_err(format!("running {}", self.card_bin.display())))?;
        if !out.status.success() {
            return Err(Error::Process(format!(
                "card personalise failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    /// Start pcscd (if not running) and wait until [`READER`] is listed.
    /// A pcscd that does not list it within 10 s is stopped and started once
    /// more (seen once in CI, on a loaded machine, with no cause in reach);
    /// the second failure is the error, with pcscd's log.
    pub fn start_pcscd(&mut self) -> Result<()> {
        match self.try_start_pcscd() {
            Err(Error::Timeout(first)) => {
                let log = self.pcscd_log();
                eprintln!("testbed: {first}; starting pcscd again. Its log:\n{log}");
                self.stop_pcscd();
                self.try_start_pcscd().map_err(|e| match e {
                    Error::Timeout(t) => {
                        Error::Timeout(format!("{t} (twice); pcscd log:\n{}", self.pcscd_log()))
                    }
                    other => other,
                })
            }
            other => other,
        }
    }

    fn pcscd_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("pcscd.log")).unwrap_or_default()
    }

    fn try_start_pcscd(&mut self) -> Result<()> {
        if alive(&mut self.pcscd) {
            return Ok(());
        }
        let log = log_file(self.dir.path(), "pcscd.log")?;
        // CARDPAY_PCSCD_DEBUG=1: pcscd logs every call (handles, locks).
        let debug = std::env::var_os("CARDPAY_PCSCD_DEBUG").is_some_and(|v| v == "1");
        let child = Command::new(pcscd_path())
            .args(["-f", if debug { "-d" } else { "-i" }, "-c"])
            .arg(&self.conf_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io_err("log"))?)
            .stderr(log)
            .spawn()
            .map_err(io_err("spawning pcscd"))?;
        self.pcscd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if !alive(&mut self.pcscd) {
                return Err(Error::Process(format!(
                    "pcscd exited; log:\n{}",
                    fs::read_to_string(self.dir.path().join("pcscd.log")).unwrap_or_default()
                )));
            }
            if reader_listed() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!("reader {READER} to be listed")));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop pcscd (SIGTERM, then SIGKILL after 3 s) and reap it.
    pub fn stop_pcscd(&mut self) {
        stop_child(&mut self.pcscd, libc::SIGTERM);
    }

    /// Stop and start pcscd; the card reconnects to the new vpcd by itself.
    /// Returns once the card is present again.
    pub fn restart_pcscd(&mut self) -> Result<()> {
        self.stop_pcscd();
        self.start_pcscd()?;
        self.wait_card_present(Duration::from_secs(10))
    }

    /// Start `card run` (if not running) and wait until the card is present.
    pub fn start_card(&mut self) -> Result<()> {
        if !alive(&mut self.card) {
            let log = log_file(self.dir.path(), "card.log")?;
            let child = Command::new(&self.card_bin)
                .arg("run")
                .arg("--state")
                .arg(&self.state)
                .args(["--vpcd", VPCD_ADDR])
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(io_err("log"))?)
                .stderr(log)
                .spawn()
                .map_err(io_err("spawning card"))?;
            self.card = Some(child);
        }
        self.wait_card_present(Duration::from_secs(10))
    }

    /// Kill the card process with SIGKILL (a power cut) and reap it. Returns
    /// once PC/SC sees the reader empty.
    pub fn kill_card(&mut self) -> Result<()> {
        stop_child(&mut self.card, libc::SIGKILL);
        self.wait_card_absent(Duration::from_secs(5))
    }

    /// [`Stack::kill_card`] then [`Stack::start_card`].
    pub fn restart_card(&mut self) -> Result<()> {
        self.kill_card()?;
        self.start_card()
    }

    /// Pull the card out of the reader (SIGUSR1 to `card run`); returns once
    /// PC/SC sees the reader empty. The process keeps running.
    /// Arm a torn command: the card applies the next APDU with this INS
    /// (e.g. `0x54` DEBIT, `0x52` CREDIT), then is pulled before it answers.
    /// Put it back with [`Stack::insert_card`].
    pub fn tear_next(&mut self, ins: u8) -> Result<()> {
        let f = self.state_path().with_extension("tear");
        std::fs::write(&f, format!("{ins:02X}")).map_err(io_err("writing the tear file"))
    }

    pub fn remove_card(&mut self) -> Result<()> {
        self.signal_card(libc::SIGUSR1)?;
        self.wait_card_absent(Duration::from_secs(5))
    }

    /// Put the card back (SIGUSR2); returns once PC/SC sees it present.
    pub fn insert_card(&mut self) -> Result<()> {
        self.signal_card(libc::SIGUSR2)?;
        self.wait_card_present(Duration::from_secs(5))
    }

    fn signal_card(&mut self, sig: libc::c_int) -> Result<()> {
        let pid = self
            .card_pid()
            .ok_or_else(|| Error::Process("card is not running".into()))?;
        // SAFETY: kill(2) on our own child's PID.
        if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
            return Err(io_err("signalling card")(io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Wait until PC/SC reports a card in [`READER`].
    pub fn wait_card_present(&self, timeout: Duration) -> Result<()> {
        wait_reader_state(true, timeout)
    }

    /// Wait until PC/SC reports [`READER`] empty.
    pub fn wait_card_absent(&self, timeout: Duration) -> Result<()> {
        wait_reader_state(false, timeout)
    }

    /// The human-readable output of `card inspect --state <state>`.
    pub fn inspect(&self) -> Result<String> {
        let out = Command::new(&self.card_bin)
            .arg("inspect")
            .arg("--state")
            .arg(&self.state)
            .output()
            .map_err(io_err("running card inspect"))?;
        if !out.status.success() {
            return Err(Error::Process(format!(
                "card inspect failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The card's state file parsed as JSON (the card crate's `CardState`).
    pub fn state_json(&self) -> Result<serde_json::Value> {
        let text = fs::read_to_string(&self.state).map_err(io_err("reading state"))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Process(format!("state file does not parse: {e}")))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        stop_child(&mut self.card, libc::SIGKILL);
        stop_child(&mut self.pcscd, libc::SIGTERM);
        // the lock is released when `_lock` is closed, after pcscd is gone
    }
}

/// Is the child still running? Reaps it if it has exited (no zombies).
fn alive(child: &mut Option<Child>) -> bool {
    match child {
        Some(c) => match c.try_wait() {
            Ok(None) => true,
            _ => {
                *child = None;
                false
            }
        },
        None => false,
    }
}

/// Signal a child, wait up to 3 s, then SIGKILL; always reaps.
fn stop_child(child: &mut Option<Child>, sig: libc::c_int) {
    let Some(mut c) = child.take() else { return };
    if let Ok(Some(_)) = c.try_wait() {
        return;
    }
    // SAFETY: kill(2) on our own, not yet reaped, child.
    unsafe { libc::kill(c.id() as libc::pid_t, sig) };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = c.kill();
    let _ = c.wait();
}

fn log_file(dir: &Path, name: &str) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .map_err(io_err(format!("opening {name}")))
}

fn pcscd_path() -> PathBuf {
    for p in ["/usr/sbin/pcscd", "/sbin/pcscd", "/usr/local/sbin/pcscd"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    "pcscd".into()
}

/// Exclusive flock on [`LOCK_PATH`], blocking (with a generous timeout).
fn take_lock() -> Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_PATH)
        .map_err(io_err(format!("opening {LOCK_PATH}")))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        // SAFETY: flock(2) on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(f);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io_err("flock")(e));
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout(format!("the lock {LOCK_PATH}")));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Processes of a testbed whose test process died without dropping its stack
/// (their arguments name a `cardpay-testbed-` dir). We hold the lock, so no
/// live stack owns them. Kill them so they do not block pcscd / vpcd's port.
fn kill_orphans() {
    let Ok(rd) = fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let mut cmd = Vec::new();
        if File::open(e.path().join("cmdline"))
            .and_then(|mut f| f.read_to_end(&mut cmd))
            .is_err()
        {
            continue;
        }
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("cardpay-testbed-") && !is_zombie(pid) && pid != std::process::id() as i32 {
            // SAFETY: kill(2); the process is an orphan of a dead testbed.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// State `Z` (or gone) in /proc counts as dead.
pub fn is_zombie(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(") ")
            .map(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'))
            .unwrap_or(true),
        Err(_) => true,
    }
}

fn reader_listed() -> bool {
    let Ok(ctx) = pcsc::Context::establish(pcsc::Scope::User) else {
        return false;
    };
    let mut buf = [0u8; 2048];
    match ctx.list_readers(&mut buf) {
        Ok(names) => names.into_iter().any(|n| n.to_bytes() == READER.as_bytes()),
        Err(_) => false,
    }
}

fn card_present() -> Option<bool> {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).ok()?;
    let name = CString::new(READER).ok()?;
    let mut rs = [pcsc::ReaderState::new(name, pcsc::State::UNAWARE)];
    ctx.get_status_change(Duration::from_millis(0), &mut rs)
        .ok()?;
    let st = rs[0].event_state();
    Some(st.contains(pcsc::State::PRESENT) && !st.contains(pcsc::State::MUTE))
}

fn wait_reader_state(present: bool, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if card_present() == Some(present) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout(format!(
                "card {} in {READER}",
                if present { "present" } else { "absent" }
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Find (building if needed) the `card` binary: `$CARDPAY_CARD_BIN`, else
/// `cargo build -p card --bin card` into `<target>/testbed`. Cached per process.
pub fn locate_card_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("CARDPAY_CARD_BIN") {
            return Ok(PathBuf::from(p));
        }
        build_card_bin()
    })
    .clone()
    .map_err(Error::Process)
}

fn build_card_bin() -> std::result::Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // <target>/<profile>/deps/<test-exe>  →  <target>/testbed
    let target = std::env::current_exe()
        .ok()
        .and_then(|p| p.ancestors().nth(3).map(|t| t.join("testbed")))
        .unwrap_or_else(|| std::env::temp_dir().join("cardpay-testbed-target"));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "build",
            "-p",
            "card",
            "--bin",
            "card",
            "--message-format=json",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running cargo build -p card: {e}"))?;
    if !out.status.success() {
        return Err("cargo build -p card failed".into());
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] == "compiler-artifact" && v["target"]["name"] == "card" {
            if let Some(exe) = v["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    Err("cargo build -p card produced no card executable".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpcd_ports_are_below_the_ephemeral_range() {
        assert_eq!(VPCD_ADDR, format!("127.0.0.1:{VPCD_PORT}"));
        // vpcd listens on the port and the next one; the kernel hands out
        // ephemeral ports from ip_local_port_range's low end up
        let low: u32 = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(32768);
        assert!(
            u32::from(VPCD_PORT) + 1 < low,
            "vpcd's ports {VPCD_PORT}-{} reach the ephemeral range from {low}",
            VPCD_PORT + 1
        );
    }

    #[test]
    fn zombie_and_dead_processes_count_as_dead() {
        assert!(!is_zombie(std::process::id() as i32), "we are alive");
        assert!(is_zombie(i32::MAX), "no such process");
        let mut child = Some(Command::new("sleep").arg("5").spawn().unwrap());
        assert!(alive(&mut child));
        let pid = child.as_ref().unwrap().id() as i32;
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // not yet reaped: a zombie, which counts as dead
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_zombie(pid) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert!(is_zombie(pid));
        stop_child(&mut child, libc::SIGTERM);
        assert!(!alive(&mut child), "reaped");
        assert!(child.is_none());
    }

    #[test]
    fn stop_child_escalates_to_sigkill() {
        // a child that ignores SIGTERM
        let mut child = Some(
            Command::new("sh")
                .args(["-c", "trap '' TERM; sleep 30"])
                .spawn()
                .unwrap(),
        );
        thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        stop_child(&mut child, libc::SIGTERM);
        assert!(child.is_none());
        assert!(
            t.elapsed() >= Duration::from_secs(3),
            "waited for SIGTERM first"
        );
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn builder_defaults_are_the_team_test_card() {
        let b = Builder::default();
        assert_eq!(b.card_id, keys::CARD_ID);
        assert_eq!(b.expiry, keys::EXPIRY);
        assert_eq!(b.pin, keys::PIN);
        let b = b
            .balance(1)
            .max_balance(2)
            .points(3)
            .no_pin_limit(4)
            .pin("5678");
        assert_eq!(
            (b.balance, b.max_balance, b.points, b.no_pin_limit),
            (1, 2, 3, 4)
        );
        assert_eq!(b.pin, "5678");
    }
}
