//! The budgets on disk: a small JSON file next to the config
//! (`bridge.state.json`), so limits survive the bridge's restarts (the
//! extension stops it 30 s after the last payment frame is gone, and a
//! crash restarts it too).
//!
//! - Crash-safe: write a temp file, fsync it, rename it over the file, fsync
//!   the folder; a reader sees the old file or the new one, never a mix.
//! - Shared: several bridge processes (two browsers) may run at once; every
//!   write is a read-merge-write under an exclusive `flock` of a lock file
//!   next to it, and merging keeps the emptier bucket.
//! - Count, then act: a PIN attempt or a card transaction is taken from its
//!   budget and made durable *before* the command goes to the card; if that
//!   cannot be written, the command is refused (fail closed).
//! - APDUs are counted in memory and written at most once a second (and when
//!   the host ends), since an fsync per APDU would cost more than the APDU.
//! - The file is the truth for PIN attempts and card transactions: every take
//!   and give-back is written at once, so a write merges in only this process's
//!   unsaved APDU counts (an older in-memory view of the others would undo a
//!   token given back).
//! - Reservations ([`crate::reserve`]): a card transaction can be taken ahead of
//!   its INITIALIZE, and an unused one given back, by a writer thread of the
//!   [`Keeper`] ([`Job`]), so that the write is off the page's request path.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::io::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use purse::bridge_msg::{BridgeError, ErrorCode, Limit};

use crate::budget::{refusal, Budgets, Ms, Rates};

/// APDU budgets are written at most this often.
pub const APDU_FLUSH_MS: Ms = 1000;

/// The state file.
#[derive(Debug, Clone)]
pub struct BudgetFile {
    path: PathBuf,
    lock: PathBuf,
}

/// An exclusive `flock`, released when dropped (the file is closed).
struct Locked(#[allow(dead_code)] File);

impl BudgetFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let lock = path.with_extension("lock");
        Self { path, lock }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> io::Result<Locked> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)?;
        // SAFETY: flock(2) on a descriptor we own for the duration of the call.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Locked(f))
    }

    /// The saved budgets; none yet (or an unreadable file) = full budgets.
    pub fn load(&self) -> Budgets {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "{} is not a budget file ({e}); starting afresh",
                    self.path.display()
                );
                Budgets::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Budgets::default(),
            Err(e) => {
                tracing::warn!("cannot read {}: {e}", self.path.display());
                Budgets::default()
            }
        }
    }

    /// Durably replace the file: temp file, fsync, rename, fsync the folder.
    fn save(&self, b: &Budgets) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(b).map_err(io::Error::other)?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &self.path)?;
        File::open(dir)?.sync_all()
    }

    /// Read-merge-modify-write under the lock: the file's budgets and `mem`'s
    /// APDU counts (this process's unsaved ones; the file is the truth for the
    /// durable limits) are merged, `f` runs on the result, the result is saved
    /// and becomes `mem`.
    pub fn update<T>(
        &self,
        mem: &mut Budgets,
        rates: &Rates,
        now: Ms,
        f: impl FnOnce(&mut Budgets) -> T,
    ) -> io::Result<T> {
        let _lock = self.lock()?;
        let mut b = self.load();
        b.merge_limits(mem, &[Limit::Apdu], rates, now);
        let out = f(&mut b);
        b.prune(rates, now);
        self.save(&b)?;
        *mem = b;
        Ok(out)
    }
}

/// A card-transaction write the [`Keeper`] does off the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Take one token of the card's INITIALIZE budget ahead of its INITIALIZE;
    /// the outcome comes back with `id` ([`Keeper::try_reserved`]).
    Reserve { id: u64, card: String },
    /// Give back the token of a reservation that was never used; with
    /// `if_taken`, only if the reservation of that id was taken (its outcome
    /// had not come back yet).
    GiveBack { card: String, if_taken: Option<u64> },
}

/// The last reservations taken, for [`Job::GiveBack`]'s `if_taken` (a give-back
/// follows its reservation in the job queue, so a short memory is enough; an id
/// forgotten is not given back: the safe direction).
#[derive(Debug, Default)]
struct Taken(std::collections::VecDeque<u64>);

impl Taken {
    fn add(&mut self, id: u64) {
        if self.0.len() >= 256 {
            self.0.pop_front();
        }
        self.0.push_back(id);
    }

    /// May this give-back go ahead? (forgets the id: given back once)
    fn allows(&mut self, if_taken: Option<u64>) -> bool {
        match if_taken {
            None => true,
            Some(id) => match self.0.iter().position(|&x| x == id) {
                Some(i) => {
                    self.0.remove(i);
                    true
                }
                None => false,
            },
        }
    }
}

/// How a [`Job::Reserve`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// A token is taken and on disk.
    Taken,
    /// The card's budget was empty: nothing taken.
    Empty,
    /// The file could not be written: nothing taken.
    Failed,
}

/// The writer thread: does the [`Job`]s in order, each a read-merge-write of
/// the file under its lock (as a second process would).
#[derive(Debug)]
struct Writer {
    jobs: Option<Sender<(Job, Ms)>>,
    done: Receiver<(u64, Reserved)>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(file: BudgetFile, rates: Rates) -> Self {
        let (jobs, rx) = mpsc::channel::<(Job, Ms)>();
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("budgets".into())
            .spawn(move || {
                let mut taken = Taken::default();
                for (job, now) in rx {
                    let t0 = Instant::now();
                    // nothing of this process's own view is merged in: the file
                    // alone holds the card transactions
                    let mut scratch = Budgets::default();
                    match job {
                        Job::Reserve { id, card } => {
                            let r = file.update(&mut scratch, &rates, now, |b| {
                                b.take(Limit::Initialize, &card, &rates, now)
                            });
                            let out = match r {
                                Ok(Ok(())) => {
                                    taken.add(id);
                                    Reserved::Taken
                                }
                                Ok(Err(_)) => Reserved::Empty,
                                Err(e) => {
                                    tracing::warn!(
                                        "cannot reserve a card transaction in {}: {e}",
                                        file.path().display()
                                    );
                                    Reserved::Failed
                                }
                            };
                            tracing::debug!(
                                "reservation {id}: {out:?} in {} µs",
                                t0.elapsed().as_micros()
                            );
                            if done_tx.send((id, out)).is_err() {
                                break;
                            }
                        }
                        Job::GiveBack { card, if_taken } => {
                            if !taken.allows(if_taken) {
                                continue;
                            }
                            if let Err(e) = file.update(&mut scratch, &rates, now, |b| {
                                b.give_back(Limit::Initialize, &card, &rates, now)
                            }) {
                                tracing::warn!(
                                    "cannot give a reserved card transaction back in {}: {e}",
                                    file.path().display()
                                );
                            }
                            tracing::debug!("give-back in {} µs", t0.elapsed().as_micros());
                        }
                    }
                }
            });
        match thread {
            Ok(t) => Self {
                jobs: Some(jobs),
                done,
                thread: Some(t),
            },
            Err(e) => {
                // no thread: every job fails at once, INITIALIZE takes its token itself
                tracing::warn!("cannot start the budget writer: {e}");
                Self {
                    jobs: None,
                    done,
                    thread: None,
                }
            }
        }
    }
}

/// The budgets a bridge process enforces: in memory, backed by a
/// [`BudgetFile`] (none in unit tests of other parts).
#[derive(Debug)]
pub struct Keeper {
    mem: Budgets,
    file: Option<BudgetFile>,
    rates: Rates,
    /// When unsaved APDU counts were first taken.
    dirty_since: Option<Ms>,
    /// Does the [`Job`]s when there is a file.
    writer: Option<Writer>,
    /// Outcomes of reservations done at once (no file, or no writer).
    done: std::collections::VecDeque<(u64, Reserved)>,
    /// Reservations taken at once (no file).
    taken: Taken,
}

impl Keeper {
    pub fn new(rates: Rates, file: Option<BudgetFile>) -> Self {
        let mem = file.as_ref().map(BudgetFile::load).unwrap_or_default();
        let writer = file.clone().map(|f| Writer::start(f, rates));
        Self {
            mem,
            file,
            rates,
            dirty_since: None,
            writer,
            done: Default::default(),
            taken: Taken::default(),
        }
    }

    /// Hand a [`Job`] to the writer thread (without a file: done at once in memory).
    pub fn submit(&mut self, job: Job, now: Ms) {
        let rates = self.rates;
        match &self.writer {
            Some(w) => match &w.jobs {
                Some(tx) => {
                    if let Err(mpsc::SendError((Job::Reserve { id, .. }, _))) = tx.send((job, now))
                    {
                        self.done.push_back((id, Reserved::Failed));
                    }
                }
                None => {
                    if let Job::Reserve { id, .. } = job {
                        self.done.push_back((id, Reserved::Failed));
                    }
                }
            },
            None => match job {
                Job::Reserve { id, card } => {
                    let r = match self.mem.take(Limit::Initialize, &card, &rates, now) {
                        Ok(()) => {
                            self.taken.add(id);
                            Reserved::Taken
                        }
                        Err(_) => Reserved::Empty,
                    };
                    self.done.push_back((id, r));
                }
                Job::GiveBack { card, if_taken } => {
                    if self.taken.allows(if_taken) {
                        self.mem.give_back(Limit::Initialize, &card, &rates, now)
                    }
                }
            },
        }
    }

    /// The outcome of a reservation, if one is in.
    pub fn try_reserved(&mut self) -> Option<(u64, Reserved)> {
        if let Some(r) = self.done.pop_front() {
            return Some(r);
        }
        self.writer.as_ref()?.done.try_recv().ok()
    }

    /// Wait up to `timeout` for the outcome of a reservation.
    pub fn wait_reserved(&mut self, timeout: Duration) -> Option<(u64, Reserved)> {
        if let Some(r) = self.done.pop_front() {
            return Some(r);
        }
        self.writer.as_ref()?.done.recv_timeout(timeout).ok()
    }

    /// Let the writer finish the jobs handed to it (the host is ending);
    /// waits at most `timeout` for it.
    pub fn finish_writes(&mut self, timeout: Duration) {
        let Some(w) = &mut self.writer else { return };
        w.jobs = None; // the thread ends after the last job
        let Some(t) = w.thread.take() else { return };
        let end = Instant::now() + timeout;
        while !t.is_finished() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(2));
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            tracing::warn!("the budget writer did not finish in time");
        }
    }

    /// An APDU from `origin` (in memory; saved by [`Keeper::flush_due`]).
    pub fn take_apdu(&mut self, origin: &str, now: Ms) -> Result<(), BridgeError> {
        self.mem
            .take(Limit::Apdu, origin, &self.rates, now)
            .map_err(|wait| refusal(Limit::Apdu, wait))?;
        self.dirty_since.get_or_insert(now);
        Ok(())
    }

    /// A PIN attempt (per origin) or a card transaction (per card), made
    /// durable before the caller sends the command.
    pub fn take_durable(&mut self, limit: Limit, key: &str, now: Ms) -> Result<(), BridgeError> {
        let rates = self.rates;
        let taken = match &self.file {
            Some(file) => file
                .update(&mut self.mem, &rates, now, |b| b.take(limit, key, &rates, now))
                .map_err(|e| {
                    tracing::error!("cannot record the limit in {}: {e}", file.path().display());
                    BridgeError::new(
                        ErrorCode::CardError,
                        "the bridge cannot record its limits (state file); nothing was sent to the card",
                    )
                })?,
            None => self.mem.take(limit, key, &rates, now),
        };
        if self.file.is_some() {
            self.dirty_since = None; // the APDU counts went out with it
        }
        taken.map_err(|wait| refusal(limit, wait))
    }

    /// When the next save of APDU counts is due.
    pub fn poll_flush(&self) -> Option<Ms> {
        self.file.as_ref()?;
        self.dirty_since.map(|t| t + APDU_FLUSH_MS)
    }

    /// Save the APDU counts if they have waited long enough.
    pub fn flush_due(&mut self, now: Ms) {
        if self.poll_flush().is_some_and(|due| due <= now) {
            self.flush(now);
        }
    }

    /// Save now (the host is ending).
    pub fn flush(&mut self, now: Ms) {
        let Some(file) = &self.file else { return };
        if self.dirty_since.is_none() {
            return;
        }
        let rates = self.rates;
        match file.update(&mut self.mem, &rates, now, |_| ()) {
            Ok(()) => self.dirty_since = None,
            Err(e) => tracing::warn!("cannot save APDU budgets to {}: {e}", file.path().display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Rate;
    use std::time::Duration;

    fn rates() -> Rates {
        Rates {
            apdu: Rate::per_sec(3.0, 1.0),
            verify: Rate::every(2.0, Duration::from_secs(600)),
            initialize: Rate::per_hour(1.0, 1.0),
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bridge-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn durable_budgets_survive_a_new_keeper() {
        let d = dir("restart");
        let path = d.join("bridge.state.json");
        let t0 = 1_700_000_000_000;
        let mut k = Keeper::new(rates(), Some(BudgetFile::new(&path)));
        k.take_durable(Limit::Verify, "https://pay.example", t0)
            .unwrap();
        k.take_durable(Limit::Verify, "https://pay.example", t0)
            .unwrap();
        k.take_durable(Limit::Initialize, "card-a", t0).unwrap();
        // a restarted bridge (a new keeper on the same file) keeps the counts
        let mut k2 = Keeper::new(rates(), Some(BudgetFile::new(&path)));
        let e = k2
            .take_durable(Limit::Verify, "https://pay.example", t0 + 1000)
            .unwrap_err();
        assert_eq!(
            (e.code, e.limit),
            (ErrorCode::RateLimited, Some(Limit::Verify))
        );
        assert_eq!(e.retry_after_ms, Some(599_000));
        assert!(k2
            .take_durable(Limit::Initialize, "card-a", t0 + 1000)
            .is_err());
        k2.take_durable(Limit::Initialize, "card-b", t0 + 1000)
            .unwrap();
        // no temp file is left behind
        assert!(!path.with_extension("json.tmp").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    fn saved_level(path: &Path, card: &str, now: Ms) -> f64 {
        BudgetFile::new(path)
            .load()
            .level(Limit::Initialize, card, &rates_burst(3.0), now)
    }

    fn rates_burst(burst: f64) -> Rates {
        Rates {
            initialize: Rate::per_hour(burst, 1.0),
            ..rates()
        }
    }

    fn reserve(k: &mut Keeper, id: u64, card: &str, now: Ms) -> Reserved {
        k.submit(
            Job::Reserve {
                id,
                card: card.into(),
            },
            now,
        );
        let (got, r) = k.wait_reserved(Duration::from_secs(5)).expect("an outcome");
        assert_eq!(got, id);
        r
    }

    #[test]
    fn a_reservation_is_on_disk_and_a_crash_leaves_it_spent() {
        let d = dir("reserve");
        let path = d.join("s.json");
        let t0 = 1_700_000_000_000;
        let mut k = Keeper::new(rates_burst(3.0), Some(BudgetFile::new(&path)));
        assert_eq!(reserve(&mut k, 1, "a", t0), Reserved::Taken);
        assert!((saved_level(&path, "a", t0) - 2.0).abs() < 1e-6);
        // a crash: the keeper goes without giving anything back
        drop(k);
        let mut k = Keeper::new(rates_burst(3.0), Some(BudgetFile::new(&path)));
        assert!((saved_level(&path, "a", t0) - 2.0).abs() < 1e-6);
        // two tokens left: a reservation and a take, then nothing
        assert_eq!(reserve(&mut k, 2, "a", t0), Reserved::Taken);
        k.take_durable(Limit::Initialize, "a", t0).unwrap();
        assert_eq!(reserve(&mut k, 3, "a", t0), Reserved::Empty);
        assert!(k.take_durable(Limit::Initialize, "a", t0).is_err());
        // a given-back token can be taken again, once
        k.submit(
            Job::GiveBack {
                card: "a".into(),
                if_taken: None,
            },
            t0,
        );
        k.finish_writes(Duration::from_secs(5));
        assert!((saved_level(&path, "a", t0) - 1.0).abs() < 1e-6);
        let mut k = Keeper::new(rates_burst(3.0), Some(BudgetFile::new(&path)));
        k.take_durable(Limit::Initialize, "a", t0).unwrap();
        assert!(k.take_durable(Limit::Initialize, "a", t0).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_token_given_back_stays_back_after_later_writes_of_this_process() {
        let d = dir("giveback");
        let path = d.join("s.json");
        let t0 = 1_700_000_000_000;
        let mut k = Keeper::new(rates_burst(3.0), Some(BudgetFile::new(&path)));
        assert_eq!(reserve(&mut k, 1, "a", t0), Reserved::Taken);
        // this process saves its APDU counts: its view now has the reservation
        k.take_apdu("o", t0).unwrap();
        k.flush(t0);
        k.submit(
            Job::GiveBack {
                card: "a".into(),
                if_taken: None,
            },
            t0 + 1,
        );
        let mut other = Keeper::new(rates_burst(3.0), Some(BudgetFile::new(&path)));
        other.submit(
            Job::GiveBack {
                card: "zzz".into(),
                if_taken: None,
            },
            t0 + 1,
        ); // nothing to give
        other.finish_writes(Duration::from_secs(5));
        k.take_apdu("o", t0 + 2).unwrap();
        // wait for the give-back, then save the APDU counts again
        let end = Instant::now() + Duration::from_secs(5);
        while saved_level(&path, "a", t0 + 2) < 3.0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        k.flush(t0 + 2);
        assert_eq!(
            saved_level(&path, "a", t0 + 2),
            3.0,
            "the give-back was undone"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn two_processes_reserving_never_take_more_than_the_budget() {
        let d = dir("reserve2");
        let path = d.join("s.json");
        let t0 = 1_700_000_000_000;
        let mut a = Keeper::new(rates_burst(3.0), Some(BudgetFile::new(&path)));
        let mut b = Keeper::new(rates_burst(3.0), Some(BudgetFile::new(&path)));
        for id in 0..4 {
            for k in [&mut a, &mut b] {
                k.submit(
                    Job::Reserve {
                        id,
                        card: "a".into(),
                    },
                    t0,
                );
            }
        }
        let mut taken = 0;
        for k in [&mut a, &mut b] {
            for _ in 0..4 {
                let (_, r) = k.wait_reserved(Duration::from_secs(5)).unwrap();
                taken += usize::from(r == Reserved::Taken);
            }
        }
        assert_eq!(taken, 3);
        // and neither process may take one more itself
        assert!(a.take_durable(Limit::Initialize, "a", t0).is_err());
        assert!(b.take_durable(Limit::Initialize, "a", t0).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_reservation_cancelled_in_flight_goes_back_only_if_it_was_taken() {
        let d = dir("cancel");
        let path = d.join("s.json");
        let t0 = 1_700_000_000_000;
        let mut k = Keeper::new(rates_burst(3.0), Some(BudgetFile::new(&path)));
        let reserve = |id| Job::Reserve {
            id,
            card: "a".into(),
        };
        let back = |id| Job::GiveBack {
            card: "a".into(),
            if_taken: Some(id),
        };
        // ten reservations, each cancelled right after it was handed over:
        // the writer gives back each one it took, never more
        for id in 1..=10 {
            k.submit(reserve(id), t0);
            k.submit(back(id), t0);
        }
        for id in 11..=13 {
            k.submit(reserve(id), t0);
        }
        // one that found the budget empty is not given back
        k.submit(reserve(14), t0);
        k.submit(back(14), t0);
        // and a second give-back of one id does nothing
        k.submit(back(3), t0);
        k.finish_writes(Duration::from_secs(5));
        let mut outcomes = vec![];
        while let Some(o) = k.try_reserved() {
            outcomes.push(o);
        }
        assert_eq!(outcomes.len(), 14);
        assert!(
            outcomes[..13].iter().all(|(_, r)| *r == Reserved::Taken),
            "{outcomes:?}"
        );
        assert_eq!(outcomes[13], (14, Reserved::Empty));
        assert_eq!(saved_level(&path, "a", t0), 0.0);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_unwritable_file_fails_the_reservation() {
        let d = dir("ro-reserve");
        fs::create_dir_all(&d).unwrap();
        let blocker = d.join("not-a-dir");
        fs::write(&blocker, b"x").unwrap();
        let mut k = Keeper::new(rates(), Some(BudgetFile::new(blocker.join("s.json"))));
        assert_eq!(reserve(&mut k, 7, "a", 1), Reserved::Failed);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn apdu_counts_are_saved_within_a_second_and_at_the_end() {
        let d = dir("apdu");
        let path = d.join("s.json");
        let t0 = 1_700_000_000_000;
        let mut k = Keeper::new(rates(), Some(BudgetFile::new(&path)));
        for _ in 0..3 {
            k.take_apdu("o", t0).unwrap();
        }
        assert!(k.take_apdu("o", t0).is_err());
        assert_eq!(k.poll_flush(), Some(t0 + APDU_FLUSH_MS));
        k.flush_due(t0 + 10);
        assert!(!path.exists(), "saved before it was due");
        k.flush_due(t0 + APDU_FLUSH_MS);
        assert!(path.exists());
        assert_eq!(k.poll_flush(), None);
        let mut k2 = Keeper::new(rates(), Some(BudgetFile::new(&path)));
        assert!(k2.take_apdu("o", t0 + APDU_FLUSH_MS).is_ok()); // one refilled in that second
        assert!(k2.take_apdu("o", t0 + APDU_FLUSH_MS).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn two_processes_share_the_file() {
        let d = dir("shared");
        let path = d.join("s.json");
        let t0 = 1_700_000_000_000;
        // both start before either wrote anything
        let mut a = Keeper::new(rates(), Some(BudgetFile::new(&path)));
        let mut b = Keeper::new(rates(), Some(BudgetFile::new(&path)));
        a.take_durable(Limit::Verify, "o", t0).unwrap();
        b.take_durable(Limit::Verify, "o", t0).unwrap();
        // the second process's write merged the first's: the budget of 2 is spent
        assert!(a.take_durable(Limit::Verify, "o", t0).is_err());
        assert!(b.take_durable(Limit::Verify, "o", t0).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_unwritable_state_file_refuses_the_command() {
        let d = dir("ro");
        fs::create_dir_all(&d).unwrap();
        // the "folder" of the state file is a regular file: nothing can be written
        let blocker = d.join("not-a-dir");
        fs::write(&blocker, b"x").unwrap();
        let mut k = Keeper::new(rates(), Some(BudgetFile::new(blocker.join("s.json"))));
        let e = k.take_durable(Limit::Verify, "o", 1).unwrap_err();
        assert_eq!(e.code, ErrorCode::CardError);
        assert!(e.message.contains("nothing was sent"));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_broken_file_starts_afresh() {
        let d = dir("broken");
        fs::create_dir_all(&d).unwrap();
        let path = d.join("s.json");
        fs::write(&path, b"{not json").unwrap();
        let mut k = Keeper::new(rates(), Some(BudgetFile::new(&path)));
        k.take_durable(Limit::Verify, "o", 5).unwrap();
        let saved: Budgets = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert!(saved.verify.contains_key("o"));
        fs::remove_dir_all(&d).unwrap();
    }
}
