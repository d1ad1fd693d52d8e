//! The writer: one SQLite connection on its own thread.
//!
//! One writer connection lives on its own thread. Jobs (closures over the
//! connection) queue to it; the thread runs every queued job in one SQLite
//! transaction, each inside its own savepoint (a job that returns an error is
//! rolled back alone), commits once — one fsync for the whole group — and only
//! then hands each job its result. So every reply that depends on a state change
//! follows the commit of that change, and the async runtime never blocks on disk.
//!
//! Reads go to a second connection on a thread of its own: they see only
//! committed data (a commit becomes visible to other connections only after
//! its fsync), and never wait for the writer's fsync — on the writer's thread
//! every read queued behind a group commit waited for its fsync, and a
//! purchase makes two reads and two writes. The reads queued together share
//! one read transaction (one WAL read lock for all of them). The reader's
//! page cache is dropped after each commit of the writer (SQLite's WAL rule);
//! its pages come back from the operating system's cache.

use std::sync::mpsc;

use rusqlite::Connection;

use crate::error::PaymentError;

type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> (bool, Deliver) + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

enum Task {
    Read(ReadJob),
    Write(Job),
}

/// Most jobs committed together.
const MAX_GROUP: usize = 512;

/// Handle to the writer (and reader) threads. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Task>,
    /// The reader thread; none: reads run on the writer's thread, before
    /// each group's writes.
    read_tx: Option<mpsc::Sender<ReadJob>>,
}

impl Writer {
    /// Start the writer thread on an open, migrated connection; reads run on
    /// the same thread, before each group's writes.
    pub fn start(conn: Connection) -> Result<Self, PaymentError> {
        let (tx, rx) = mpsc::channel::<Task>();
        std::thread::Builder::new()
            .name("cardpay-store".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| PaymentError::Internal(format!("spawn store thread: {e}")))?;
        Ok(Self { tx, read_tx: None })
    }

    /// Start the writer thread on `conn`, and the reader thread on `reader`,
    /// a second connection to the same database.
    pub fn start_with_reader(conn: Connection, reader: Connection) -> Result<Self, PaymentError> {
        let mut w = Self::start(conn)?;
        let (read_tx, read_rx) = mpsc::channel::<ReadJob>();
        std::thread::Builder::new()
            .name("cardpay-store-read".into())
            .spawn(move || read_loop(reader, read_rx))
            .map_err(|e| PaymentError::Internal(format!("spawn store reader: {e}")))?;
        w.read_tx = Some(read_tx);
        Ok(w)
    }

    /// Run `f` on the writer connection inside its own savepoint; an `Err` rolls
    /// back only this job. Resolves after the group's commit.
    pub async fn run<R, F>(&self, f: F) -> Result<R, PaymentError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, PaymentError> + Send + 'static,
    {
        let (otx, orx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let r = f(conn);
            let ok = r.is_ok();
            let deliver: Deliver = Box::new(move |commit| {
                let out = match commit {
                    Ok(()) => r,
                    Err(e) => Err(PaymentError::Internal(e)),
                };
                let _ = otx.send(out);
            });
            (ok, deliver)
        });
        self.tx
            .send(Task::Write(job))
            .map_err(|_| PaymentError::Internal("store thread gone".into()))?;
        orx.await
            .map_err(|_| PaymentError::Internal("store thread dropped a job".into()))?
    }

    /// Run a read-only query on the reader's connection (or the writer's,
    /// before its next group): committed data only, no commit to wait for.
    pub async fn read<R, F>(&self, f: F) -> Result<R, PaymentError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, PaymentError> + Send + 'static,
    {
        let (otx, orx) = tokio::sync::oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)))
                .unwrap_or_else(|_| Err(PaymentError::Internal("read job panicked".into())));
            let _ = otx.send(r);
        });
        let sent = match &self.read_tx {
            Some(r) => r.send(job).is_ok(),
            None => self.tx.send(Task::Read(job)).is_ok(),
        };
        if !sent {
            return Err(PaymentError::Internal("store thread gone".into()));
        }
        orx.await
            .map_err(|_| PaymentError::Internal("store thread dropped a job".into()))?
    }
}

/// The reader thread: the reads queued meanwhile, in one read transaction.
fn read_loop(conn: Connection, rx: mpsc::Receiver<ReadJob>) {
    while let Ok(first) = rx.recv() {
        let mut reads = vec![first];
        while reads.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => reads.push(r),
                Err(_) => break,
            }
        }
        run_reads(&conn, reads);
    }
}

fn writer(conn: Connection, rx: mpsc::Receiver<Task>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = Vec::new();
        let mut reads = Vec::new();
        let mut next = Some(first);
        while let Some(task) = next.take() {
            match task {
                Task::Read(r) => reads.push(r),
                Task::Write(j) => jobs.push(j),
            }
            if jobs.len() < MAX_GROUP && reads.len() < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        // Before the group's writes: they see committed data only.
        run_reads(&conn, reads);
        if jobs.is_empty() {
            continue;
        }
        let mut delivers = Vec::with_capacity(jobs.len());
        let begin = run_cached(&conn, "BEGIN IMMEDIATE");
        if let Err(e) = begin {
            let msg = format!("begin: {e}");
            for job in jobs {
                // Run nothing; report the failure to each waiter.
                let (_, d) = job_failed(job, &conn);
                delivers.push(d);
            }
            for d in delivers {
                d(Err(msg.clone()));
            }
            continue;
        }
        let mut failed: Option<String> = None;
        for job in jobs {
            if let Err(e) = run_cached(&conn, "SAVEPOINT job") {
                failed = Some(format!("savepoint: {e}"));
            }
            // A panicking job must not take the writer (and so the whole API) down:
            // its savepoint is rolled back and its waiter gets an error.
            let (ok, d) =
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&conn))) {
                    Ok(out) => out,
                    Err(_) => {
                        let d: Deliver = Box::new(|_| {});
                        (false, d)
                    }
                };
            let run = |sql: &str| run_cached(&conn, sql);
            let end = if ok {
                run("RELEASE job")
            } else {
                run("ROLLBACK TO job").and_then(|_| run("RELEASE job"))
            };
            if let Err(e) = end {
                failed = Some(format!("savepoint end: {e}"));
            }
            delivers.push(d);
        }
        let commit = match failed {
            None => run_cached(&conn, "COMMIT").map_err(|e| format!("commit: {e}")),
            Some(e) => Err(e),
        };
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for d in delivers {
            d(commit.clone());
        }
    }
}

/// A statement without parameters or rows, from the statement cache (the
/// group's BEGIN, savepoints and COMMIT are parsed once, not every group).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Queued reads: several in one read transaction, which takes the WAL read
/// lock once for all of them instead of once per statement (each sees the
/// data committed when the transaction began).
fn run_reads(conn: &Connection, reads: Vec<ReadJob>) {
    if reads.len() < 2 {
        for r in reads {
            r(conn);
        }
        return;
    }
    let txn = run_cached(conn, "BEGIN DEFERRED").is_ok();
    for r in reads {
        r(conn);
    }
    if txn && run_cached(conn, "COMMIT").is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

/// A job that cannot run (the transaction did not begin): run it against a
/// savepoint-less connection is unsafe, so it is not run; its deliver reports.
fn job_failed(job: Job, conn: &Connection) -> (bool, Deliver) {
    // Run inside a throw-away savepoint that is always rolled back, so the
    // closure's result is discarded and its waiter gets the error.
    let _ = conn.execute_batch("SAVEPOINT dead");
    let out = job(conn);
    let _ = conn.execute_batch("ROLLBACK TO dead; RELEASE dead");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn group_commit_and_rollback_of_one_job() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = super::super::sqlite::SqliteStore::open(&path).unwrap();
        let mut handles = Vec::new();
        for i in 0..50u32 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                s.write(move |c| {
                    c.execute(
                        "INSERT INTO sm_counter (terminal, seq) VALUES (?1, ?2)",
                        (format!("t{i}"), i),
                    )?;
                    if i % 10 == 0 {
                        return Err(PaymentError::Replay);
                    }
                    Ok(i)
                })
                .await
            }));
        }
        let mut ok = 0;
        for h in handles {
            match h.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => assert_eq!(e, PaymentError::Replay),
            }
        }
        assert_eq!(ok, 45);
        // A fresh connection sees exactly the committed jobs.
        let c = super::super::sqlite::open_connection(&path).unwrap();
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM sm_counter", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 45);
        let sync: i64 = c
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_do_not_wait_for_the_writer_and_see_only_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::sqlite::SqliteStore::open(&dir.path().join("r.sqlite")).unwrap();
        let count = |s: &super::super::sqlite::SqliteStore| {
            let s = s.clone();
            async move {
                s.read(|c| {
                    Ok(c.query_row("SELECT COUNT(*) FROM sm_counter", [], |r| {
                        r.get::<_, i64>(0)
                    })?)
                })
                .await
                .unwrap()
            }
        };
        // A write job that holds the writer (inside its transaction) until released.
        let (inside_tx, inside_rx) = std::sync::mpsc::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let w = store.clone();
        let write = tokio::spawn(async move {
            w.write(move |c| {
                c.execute(
                    "INSERT INTO sm_counter (terminal, seq) VALUES ('held', 1)",
                    [],
                )?;
                inside_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Ok(())
            })
            .await
        });
        tokio::task::spawn_blocking(move || inside_rx.recv().unwrap())
            .await
            .unwrap();
        // The writer is busy: a read still answers, without the uncommitted row.
        let during = tokio::time::timeout(std::time::Duration::from_secs(5), count(&store))
            .await
            .expect("a read waited for the writer");
        assert_eq!(during, 0, "uncommitted rows are not read");
        release_tx.send(()).unwrap();
        write.await.unwrap().unwrap();
        assert_eq!(count(&store).await, 1, "a read after the commit sees it");
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::sqlite::SqliteStore::open(&dir.path().join("p.sqlite")).unwrap();
        let r: Result<(), _> = store
            .write(|c| {
                c.execute("INSERT INTO sm_counter (terminal, seq) VALUES ('x', 1)", [])?;
                panic!("boom")
            })
            .await;
        assert!(matches!(r, Err(PaymentError::Internal(_))));
        let n: i64 = store
            .write(|c| Ok(c.query_row("SELECT COUNT(*) FROM sm_counter", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(
            n, 0,
            "the panicking job was rolled back; the writer lives on"
        );
    }
}
