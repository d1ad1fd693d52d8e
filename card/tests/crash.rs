//! Crash test: the real `card run` binary serves debits over the vpcd wire
//! protocol (this test plays vpcd on a private port, so it needs no pcscd and
//! can kill often) while a thread kills it with SIGKILL after a random delay.
//! After every kill the card is restarted on the same state file and:
//! - the state file parses (never half written);
//! - balance + sum(debits logged since the round began) == balance at the round's start;
//! - every debit whose response reached us (9000 + S3 verified) is in the log
//!   (durable before the response);
//! - the log's balance chain is consistent record to record, ATC only grows.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use card::client::{self, Transport, Txn};
use card::Store;
use common::*;
use purse::command::LogKind;
use purse::PurseId;

const BIN: &str = env!("CARGO_BIN_EXE_card");

/// The terminal side of the vpcd protocol over one accepted connection.
struct Vpcd(TcpStream);

impl Vpcd {
    fn exchange(&mut self, payload: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut m = (payload.len() as u16).to_be_bytes().to_vec();
        m.extend_from_slice(payload);
        self.0.write_all(&m)?;
        let mut len = [0u8; 2];
        self.0.read_exact(&mut len)?;
        let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
        self.0.read_exact(&mut r)?;
        Ok(r)
    }
}

impl Transport for Vpcd {
    type Error = std::io::Error;
    fn transmit(&mut self, apdu: &[u8]) -> std::io::Result<Vec<u8>> {
        self.exchange(apdu)
    }
}

/// xorshift64*: enough randomness for kill delays, seed printed for replay.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn personalise(path: &std::path::Path, balance: u32) {
    let st = Command::new(BIN)
        .args(["personalise", "--state"])
        .arg(path)
        .args([
            "--id",
            CARD_ID,
            "--expiry",
            "301231",
            "--currency",
            "978",
            "--exponent",
            "2",
        ])
        .args([
            "--balance",
            &balance.to_string(),
            "--max",
            "10000000",
            "--points",
            "0",
        ])
        .args([
            "--pin",
            "1234",
            "--no-pin-limit",
            "100000",
            "--key-version",
            "1",
        ])
        .args(["--mkp", MKP, "--mkl", MKL])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Kills and reaps the card if the test panics mid-round.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_card(path: &std::path::Path, port: u16) -> Guard {
    Guard(
        Command::new(BIN)
            .args(["run", "--state"])
            .arg(path)
            .args(["--vpcd", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn sigkill_at_random_moments_never_loses_or_invents_money() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed {seed} (CRASH_SEED={seed} to replay)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    personalise(&path, 1_000_000);
    let store = Store::new(&path);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sm = sm();

    let rounds = 100;
    let mut kills_mid_debit = 0;
    let mut rounds_with_debits = 0u32;
    let mut durable_but_unanswered = 0;
    let mut confirmed_total = 0u64;
    // (count, total µs) of completed purchases, to size the kill window
    let mut timed = (0u64, 0u64);
    let started = store.load().unwrap().purses[0].balance;
    for round in 0..rounds {
        let before = store.load().expect("state parses after every kill");
        let b0 = before.purses[0].balance;
        let atc0 = before.atc;
        let mut child = spawn_card(&path, port);
        let pid = child.0.id() as libc::pid_t;
        let (conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut v = Vpcd(conn);
        v.0.write_all(&[0, 1, 0x01]).unwrap(); // power on: not answered
        let atr = v.exchange(&[0x04]).expect("ATR");
        assert_eq!(&atr[..4], &[0x3B, 0x87, 0x80, 0x01]);
        // kill somewhere inside the 8 debits: the window adapts to how long a
        // debit takes on this disk (two fsynced writes each)
        let window_us = (7 * timed.1)
            .checked_div(timed.0)
            .map_or(25_000, |w| w.max(200));
        let delay = Duration::from_micros(rng.below(window_us));
        let killed = Arc::new(AtomicBool::new(false));
        let k = Arc::clone(&killed);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            // SAFETY: kill(2) on our child, not yet reaped (the main thread
            // waits only after joining this thread).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            k.store(true, Ordering::SeqCst);
        });
        let mut confirmed: Vec<(u16, u32)> = Vec::new();
        'txns: for i in 0..8u32 {
            let sel = match client::select(&mut v) {
                Ok(s) => s,
                Err(_) => break 'txns,
            };
            let amount = 1 + rng.below(500) as u32;
            let x = Txn {
                purse: PurseId::Money,
                amount,
                seq: round * 100 + i,
                date: date("20261123"),
                time: time("120000"),
            };
            let t = Instant::now();
            match client::purchase(&mut v, &sm, &sel, x) {
                Ok(out) => {
                    confirmed.push((out.init.atc, amount));
                    timed.0 += 1;
                    timed.1 += t.elapsed().as_micros() as u64;
                }
                Err(client::ClientError::Transport(_)) => break 'txns,
                Err(e) => panic!("round {round}: card refused a good purchase: {e}"),
            }
        }
        killer.join().unwrap();
        if killed.load(Ordering::SeqCst) && confirmed.len() < 8 {
            kills_mid_debit += 1;
        }
        child.0.wait().unwrap();

        let after = store.load().expect("state parses after SIGKILL");
        let new: Vec<_> = after
            .log
            .iter()
            .filter(|r| r.atc > atc0 && r.kind == LogKind::Purchase)
            .collect();
        let logged: u32 = new.iter().map(|r| r.amount).sum();
        assert_eq!(
            after.purses[0].balance + logged,
            b0,
            "round {round}: balance + logged debits == balance before"
        );
        for (atc, amount) in &confirmed {
            assert!(
                new.iter().any(|r| r.atc == *atc && r.amount == *amount),
                "round {round}: debit atc {atc} was answered 9000 but is not in the log"
            );
        }
        assert!(new.len() >= confirmed.len());
        rounds_with_debits += u32::from(!new.is_empty());
        durable_but_unanswered += new.len() - confirmed.len();
        assert!(
            new.len() <= confirmed.len() + 1,
            "at most one unconfirmed debit per round"
        );
        assert!(after.atc >= atc0, "ATC never goes back");
        for w in after.log.windows(2) {
            assert!(w[0].atc < w[1].atc, "log in ATC order");
            assert_eq!(
                w[1].balance_after + w[1].amount,
                w[0].balance_after,
                "log chain: each record starts where the previous ended"
            );
        }
        if let Some(last) = after.log.last() {
            assert_eq!(
                last.balance_after, after.purses[0].balance,
                "last record is the balance"
            );
        }
        confirmed_total += confirmed.iter().map(|c| c.1 as u64).sum::<u64>();
    }
    let end = store.load().unwrap();
    assert!(u64::from(started - end.purses[0].balance) >= confirmed_total);
    eprintln!(
        "{rounds} rounds, {kills_mid_debit} kills before the 8th debit completed, \
         {rounds_with_debits} rounds with debits, {durable_but_unanswered} debits durable \
         but killed before answering"
    );
    assert!(
        rounds_with_debits > rounds / 4,
        "debits did happen between kills"
    );
    assert!(
        kills_mid_debit > rounds / 4,
        "the killer must actually interrupt debits"
    );
}
