//! The card side of the `vsmartcard-vpcd` protocol: the card is a TCP client
//! of vpcd (default 127.0.0.1:35963); every message is a u16 big-endian length
//! and a payload. One-byte payloads are control (00 power off, 01 power on,
//! 02 reset, 04 get ATR, only 04 is answered); longer ones are command APDUs,
//! answered with the response APDU.
//!
//! Latency (shared/ENVIRONMENT.md): vpcd writes length and APDU separately
//! without TCP_NODELAY, so the card sets TCP_NODELAY, re-arms TCP_QUICKACK
//! before every read and writes each reply in one `write`.
//!
//! Insertion: connecting = card inserted, closing = card removed.
//! [`Control::remove`] closes the connection and keeps the card out until
//! [`Control::insert`]. If vpcd goes away (pcscd restarts) the card
//! reconnects by itself.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::linux::net::TcpStreamExt;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Historical bytes of the ATR: "CARDPAY".
pub const HISTORICAL: &[u8] = b"CARDPAY";

/// The card's ATR: `3B 87 80 01 "CARDPAY" TCK` (T=1 direct convention; TCK
/// is the XOR of T0..the last historical byte).
pub fn atr() -> Vec<u8> {
    let mut a = vec![0x3B, 0x80 | HISTORICAL.len() as u8, 0x80, 0x01];
    a.extend_from_slice(HISTORICAL);
    let tck = a[1..].iter().fold(0u8, |x, b| x ^ b);
    a.push(tck);
    a
}

/// Something that answers vpcd messages: the card with its store.
pub trait Chip {
    /// Answer a command APDU (the state change must be durable on return).
    fn apdu(&mut self, apdu: &[u8]) -> Vec<u8>;
    /// Power off, power on or reset: RAM state is lost.
    fn reset(&mut self);
    /// Fault injection for tests: after this APDU was processed (and its
    /// state change is on disk), pull the card instead of answering — the
    /// torn command of a card pulled mid-transaction. One-shot.
    fn tear_after(&mut self, _apdu: &[u8]) -> bool {
        false
    }
}

/// Insert/remove switch shared between the signal handler and the run loop.
#[derive(Debug, Default)]
pub struct Control {
    inner: Mutex<ControlInner>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct ControlInner {
    removed: bool,
    conn: Option<TcpStream>,
}

impl Control {
    fn lock(&self) -> MutexGuard<'_, ControlInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Take the card out: close the vpcd connection and stay out.
    pub fn remove(&self) {
        let mut g = self.lock();
        g.removed = true;
        if let Some(c) = g.conn.take() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        self.cv.notify_all();
    }

    /// Put the card back in: reconnect to vpcd.
    pub fn insert(&self) {
        self.lock().removed = false;
        self.cv.notify_all();
    }

    /// Is the card out?
    pub fn is_removed(&self) -> bool {
        self.lock().removed
    }

    fn wait_inserted(&self) {
        let mut g = self.lock();
        while g.removed {
            g = self.cv.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Register the live connection unless the card was removed meanwhile.
    fn attach(&self, s: &TcpStream) -> bool {
        let mut g = self.lock();
        if g.removed {
            return false;
        }
        g.conn = s.try_clone().ok();
        true
    }

    fn detach(&self) {
        self.lock().conn = None;
    }
}

/// Serve vpcd forever: connect, answer, reconnect after a drop; honours
/// [`Control`]. Returns only if `stop` says so (checked between connections).
pub fn serve(chip: &mut dyn Chip, addr: &str, ctl: &Control, stop: &dyn Fn() -> bool) {
    let mut logged_wait = false;
    while !stop() {
        ctl.wait_inserted();
        let stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                if !logged_wait {
                    tracing::warn!("vpcd at {addr} not reachable ({e}); retrying");
                    logged_wait = true;
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        logged_wait = false;
        if !ctl.attach(&stream) {
            continue;
        }
        tracing::info!("connected to vpcd at {addr}: card inserted");
        chip.reset();
        match session(chip, stream, ctl) {
            Ok(()) => tracing::info!("vpcd closed the connection"),
            Err(e) => tracing::info!("vpcd connection ended: {e}"),
        }
        ctl.detach();
        chip.reset();
        if ctl.is_removed() {
            tracing::info!("card removed");
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One vpcd connection; Ok(()) on orderly EOF or when a torn command pulls
/// the card ([`Chip::tear_after`]).
pub fn session(chip: &mut dyn Chip, mut s: TcpStream, ctl: &Control) -> io::Result<()> {
    s.set_nodelay(true)?;
    let atr = atr();
    let mut buf = vec![0u8; 0x10000];
    // When the last answer left: the gap to the next message is the reader's side
    // (pcscd, the bridge, the page), not the card's.
    let mut answered: Option<Instant> = None;
    loop {
        let _ = s.set_quickack(true);
        let mut len = [0u8; 2];
        match s.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let t_len = Instant::now();
        let n = u16::from_be_bytes(len) as usize;
        let _ = s.set_quickack(true);
        s.read_exact(&mut buf[..n])?;
        let t_read = Instant::now();
        let reply = match &buf[..n] {
            [] => None,
            [0x00] | [0x01] | [0x02] => {
                chip.reset();
                None
            }
            [0x04] => Some(atr.clone()),
            [_] => None,
            apdu => {
                let r = chip.apdu(apdu);
                if chip.tear_after(apdu) {
                    tracing::info!(
                        ins = apdu.get(1).copied().unwrap_or(0),
                        "torn: command applied, card pulled before its answer"
                    );
                    ctl.remove();
                    return Ok(());
                }
                Some(r)
            }
        };
        if let Some(r) = reply {
            let mut out = Vec::with_capacity(2 + r.len());
            out.extend_from_slice(&(r.len() as u16).to_be_bytes());
            out.extend_from_slice(&r);
            s.write_all(&out)?;
            let done = Instant::now();
            // Debug timings (no APDU bytes: a VERIFY carries the PIN): the
            // wait since the last answer, the APDU's body after its length
            // (vpcd writes them apart), the card, the write.
            tracing::debug!(
                len = n,
                idle_us = answered.map_or(0, |a| (t_len - a).as_micros() as u64),
                body_us = (t_read - t_len).as_micros() as u64,
                card_us = (done - t_read).as_micros() as u64,
                "vpcd"
            );
            answered = Some(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atr_has_valid_tck() {
        let a = atr();
        assert_eq!(&a[..4], &[0x3B, 0x87, 0x80, 0x01]);
        assert_eq!(&a[4..11], b"CARDPAY");
        assert_eq!(a[1..].iter().fold(0u8, |x, b| x ^ b), 0, "TCK makes XOR 0");
    }
}
