//! A small pool of read-only sessions on one token, all under one login.
//!
//! A caller borrows a session for one transaction's derives and MACs (tens of
//! microseconds) and gives it back. Sessions are opened on demand up to the
//! limit; a caller that finds all busy waits for one. A session the token
//! reports dead is dropped, not returned; a new one is opened (and logged in
//! again if the login went with the last session).

use std::sync::{Condvar, Mutex};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::error::Pkcs11Error;
use crate::token;

pub(crate) struct SessionPool {
    ctx: Pkcs11,
    slot: Slot,
    /// Kept (zeroized on drop) to log in again after the token dropped the login.
    pin: AuthPin,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Session>,
    open: usize,
}

impl SessionPool {
    /// A pool with its first session open and logged in (so a wrong PIN fails here).
    pub(crate) fn new(
        ctx: Pkcs11,
        slot: Slot,
        pin: AuthPin,
        max: usize,
    ) -> Result<Self, Pkcs11Error> {
        let pool = Self {
            ctx,
            slot,
            pin,
            max: max.max(1),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        };
        let first = pool.open_session()?;
        let mut st = pool.lock();
        st.idle.push(first);
        st.open = 1;
        drop(st);
        Ok(pool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_session(&self) -> Result<Session, Pkcs11Error> {
        let s = self.ctx.open_ro_session(self.slot)?;
        token::login(&s, &self.pin)?;
        Ok(s)
    }

    /// Run `f` on a pooled session.
    pub(crate) fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, Pkcs11Error>,
    ) -> Result<T, Pkcs11Error> {
        let session = self.take()?;
        let out = f(&session);
        let dead = matches!(
            out.as_ref().err().and_then(Pkcs11Error::rv),
            Some(
                RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::DeviceRemoved
                    | RvError::DeviceError
                    | RvError::TokenNotPresent
                    | RvError::UserNotLoggedIn
            )
        );
        self.give_back(session, dead);
        out
    }

    fn take(&self) -> Result<Session, Pkcs11Error> {
        let mut st = self.lock();
        loop {
            if let Some(s) = st.idle.pop() {
                return Ok(s);
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return self.open_session().inspect_err(|_| {
                    self.lock().open -= 1;
                    self.freed.notify_one();
                });
            }
            st = self.freed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn give_back(&self, session: Session, dead: bool) {
        let mut st = self.lock();
        if dead {
            st.open -= 1;
            drop(st);
            tracing::warn!("dropping a PKCS#11 session the token reported dead");
            if let Err(e) = session.close() {
                if !matches!(e, CkError::Pkcs11(RvError::SessionClosed, _)) {
                    tracing::debug!(error = %e, "closing a dead session");
                }
            }
        } else {
            st.idle.push(session);
            drop(st);
        }
        self.freed.notify_one();
    }

    /// Sessions open now (idle or lent).
    pub(crate) fn open_sessions(&self) -> usize {
        self.lock().open
    }
}
