//! Atomic persistence of the card state: write a temp file, fsync it, rename
//! it over the state file, fsync the directory. A reader (or a restart after
//! SIGKILL / power loss) sees either the old or the new state, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::state::{CardState, StateError};

/// Errors loading or saving the state file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// File system error.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// Which file.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// The file's contents are not a valid state.
    #[error("{path}: {source}")]
    State {
        /// Which file.
        path: PathBuf,
        /// Cause.
        source: StateError,
    },
}

/// The state file of one card.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
}

impl Store {
    /// A store at `path` (the file need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "card".into());
        let tmp = dir.join(format!(".{name}.tmp"));
        Store { path, tmp, dir }
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Take an exclusive lock on `<state>.lock` for as long as the returned
    /// file is open, so two `card run` can never serve (and clone) one card.
    /// The kernel drops it when the process dies, even by SIGKILL.
    pub fn lock_exclusive(&self) -> Result<File, StoreError> {
        let mut name = self.path.clone().into_os_string();
        name.push(".lock");
        let lock_path = PathBuf::from(name);
        let io = |op, source| StoreError::Io {
            op,
            path: lock_path.clone(),
            source,
        };
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("opening", e))?;
        // SAFETY: flock(2) on a file descriptor we own and keep open.
        let rc = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        if rc != 0 {
            return Err(io(
                "locking (is another `card run` serving it?)",
                io::Error::last_os_error(),
            ));
        }
        Ok(f)
    }

    /// Load and validate the state.
    pub fn load(&self) -> Result<CardState, StoreError> {
        let bytes = fs::read(&self.path).map_err(|source| StoreError::Io {
            op: "reading",
            path: self.path.clone(),
            source,
        })?;
        CardState::from_json(&bytes).map_err(|source| StoreError::State {
            path: self.path.clone(),
            source,
        })
    }

    /// Durably replace the state: temp file, fsync, rename, fsync dir.
    pub fn save(&self, state: &CardState) -> Result<(), StoreError> {
        let bytes = state.to_json().map_err(|source| StoreError::State {
            path: self.path.clone(),
            source,
        })?;
        self.write_atomic(&bytes)
            .map_err(|(op, source)| StoreError::Io {
                op,
                path: self.path.clone(),
                source,
            })
    }

    fn write_atomic(&self, bytes: &[u8]) -> Result<(), (&'static str, io::Error)> {
        let t0 = Instant::now();
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.tmp)
            .map_err(|e| ("creating temp file for", e))?;
        f.write_all(bytes)
            .map_err(|e| ("writing temp file for", e))?;
        let t_write = t0.elapsed();
        f.sync_all().map_err(|e| ("fsyncing temp file for", e))?;
        drop(f);
        let t_sync = t0.elapsed();
        fs::rename(&self.tmp, &self.path).map_err(|e| ("renaming temp file to", e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ("fsyncing directory of", e))?;
        tracing::debug!(
            bytes = bytes.len(),
            write_us = t_write.as_micros() as u64,
            fsync_us = (t_sync - t_write).as_micros() as u64,
            rename_dir_fsync_us = (t0.elapsed() - t_sync).as_micros() as u64,
            "state saved"
        );
        Ok(())
    }
}
