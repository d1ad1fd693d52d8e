//! Throughput of the PKCS#11 security module on SoftHSM2, next to the
//! software module: MACs/s, purchase/load authorisations/s (1..N threads)
//! and full purchases against the in-memory virtual card.
//!
//! `cargo bench -p cardpay-pkcs11` (prints a table; `BENCH_SECS` per row, default 1).

use std::time::{Duration, Instant};

use card::client::{self, Txn};
use card::personalise::Personalisation;
use card::Card;
use cardpay_pkcs11::softhsm::TestToken;
use cardpay_pkcs11::{import_master_keys, Pkcs11Keys};
use purse::crypto::DesKey;
use purse::security_module::{KeyUse, PurchaseDraw, SecurityModule, SessionMacs, SoftwareKeys};
use purse::{BcdDate, BcdTime, CardId, Expiry, PurseId, Terminal};

/// TEST KEYS (docs/TEAM.md).
const MKP: &str = "404142434445464748494A4B4C4D4E4F";
const MKL: &str = "505152535455565758595A5B5C5D5E5F";
const TERMINAL: Terminal = Terminal([0, 0, 0, 0, 0, 1]);

fn secs() -> Duration {
    Duration::from_secs_f64(
        std::env::var("BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0),
    )
}

/// CPU seconds (user + system) this process has used: other engineers'
/// builds on a shared machine slow the wall clock, not this.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the ")" closing the command name: state, ppid, ... utime and stime
    // are the 12th and 13th (fields 14 and 15 of proc(5)), in clock ticks (100/s).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// Ops per wall-clock second and per CPU second.
#[derive(Clone, Copy)]
struct Rate {
    wall: f64,
    cpu: f64,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = format!("{:.0} ({:.0})", self.wall, self.cpu);
        f.pad(&s)
    }
}

impl std::ops::Mul<f64> for Rate {
    type Output = Rate;
    fn mul(self, k: f64) -> Rate {
        Rate {
            wall: self.wall * k,
            cpu: self.cpu * k,
        }
    }
}

/// Run `op(thread, i)` on `threads` threads for the bench time.
fn rate(threads: usize, op: impl Fn(usize, u32) + Sync) -> Rate {
    let d = secs();
    let cpu0 = cpu_secs();
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let op = &op;
                s.spawn(move || {
                    let mut n = 0u64;
                    while start.elapsed() < d {
                        op(t, n as u32);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    Rate {
        wall: total as f64 / start.elapsed().as_secs_f64(),
        cpu: total as f64 / (cpu_secs() - cpu0).max(0.01),
    }
}

fn draw(t: usize, i: u32) -> PurchaseDraw {
    PurchaseDraw {
        card_id: CardId::parse(&format!("62800000{:08}", i % 100_000_000)).unwrap(),
        expiry: Expiry::parse("301231").unwrap(),
        key_version: 1,
        purse: PurseId::Money,
        balance: 100_000,
        atc: (i % 65_000) as u16 + 1,
        random: [t as u8, (i >> 16) as u8, (i >> 8) as u8, i as u8],
        amount: 250,
        seq: i,
        date: BcdDate::parse("20261123").unwrap(),
        time: BcdTime::parse("120000").unwrap(),
    }
}

fn test_card(id: u32) -> Card {
    Card::new(
        Personalisation {
            card_id: CardId::parse(&format!("62800000{id:08}")).unwrap(),
            expiry: Expiry::parse("301231").unwrap(),
            currency: 978,
            exponent: 2,
            balance: 1_000_000,
            max_balance: 1_000_000,
            points: 0,
            points_max: 0,
            pin: "1234".into(),
            no_pin_limit: 1_000_000,
            key_version: 1,
            mkp: DesKey::from_hex(MKP).unwrap(),
            mkl: DesKey::from_hex(MKL).unwrap(),
        }
        .build()
        .unwrap(),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored.
    let token = TestToken::shared();
    let mut cfg = token.config();
    if let Some(n) = std::env::var("BENCH_MAX_SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        cfg.max_sessions = n;
    }
    let (mkp, mkl) = (
        DesKey::from_hex(MKP).unwrap(),
        DesKey::from_hex(MKL).unwrap(),
    );
    import_master_keys(&cfg, 1, &mkp, &mkl).expect("import test keys");
    let hsm = Pkcs11Keys::open(&cfg).expect("open SoftHSM token");
    let mut sw = SoftwareKeys::new();
    sw.add_key_version(1, mkp, mkl);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "PKCS#11 security module on SoftHSM2 ({}), {cores} cores, pool max {} sessions, {:?} per row",
        softhsm_version(),
        cfg.max_sessions,
        secs()
    );

    let id = CardId::parse("6280000000000001").unwrap();
    let msg23 = [0x5Au8; 23];
    let sixteen: Vec<&[u8]> = (0..16).map(|_| &msg23[..]).collect();
    let backends: [&(dyn SessionMacs + Sync); 2] = [&sw, &hsm];
    let line = |name: &str, a: Rate, b: Rate| println!("{name:<40} {a:>22} {b:>20}");
    println!("\nops per second of wall clock (per CPU second of this process)");
    println!("{:<40} {:>22} {:>20}", "1 thread", "software", "pkcs11");
    let both = |f: &(dyn Fn(&dyn SessionMacs, u32) + Sync)| -> [Rate; 2] {
        backends.map(|b| rate(1, |_, i| f(b, i)))
    };
    let [a, b] = both(&|b, i| {
        b.session_macs(
            KeyUse::Purchase,
            1,
            &id,
            [0; 4],
            i as u16,
            PurseId::Money,
            &[&msg23],
        )
        .unwrap();
    });
    line("derive SK + 1 MAC (S2, 3 blocks)", a, b);
    let [a, b] = both(&|b, i| {
        b.session_macs(
            KeyUse::Purchase,
            1,
            &id,
            [1; 4],
            i as u16,
            PurseId::Money,
            &sixteen,
        )
        .unwrap();
    });
    line("MACs, 16 under each SK", a * 16.0, b * 16.0);

    let sm_sw = SecurityModule::software(TERMINAL, {
        let mut k = SoftwareKeys::new();
        k.add_key_version(
            1,
            DesKey::from_hex(MKP).unwrap(),
            DesKey::from_hex(MKL).unwrap(),
        );
        k
    });
    let sm_hsm = SecurityModule::new(TERMINAL, Box::new(hsm.clone()));
    let auth = |sm: &SecurityModule, threads: usize| {
        rate(threads, |t, i| {
            sm.authorize_purchase(&draw(t, i)).unwrap();
        })
    };
    line(
        "purchase authorisation (S2 + S3)",
        auth(&sm_sw, 1),
        auth(&sm_hsm, 1),
    );
    let full = |sm: &SecurityModule| {
        let mut cards: Vec<Card> = (0..16).map(test_card).collect();
        let sels: Vec<_> = cards
            .iter_mut()
            .map(|c| client::select(c).unwrap())
            .collect();
        let cards = std::sync::Mutex::new(cards);
        rate(1, |_, i| {
            let k = i as usize % sels.len();
            let x = Txn {
                purse: PurseId::Money,
                amount: 1,
                seq: i,
                date: BcdDate::parse("20261123").unwrap(),
                time: BcdTime::parse("120000").unwrap(),
            };
            client::purchase(&mut cards.lock().unwrap()[k], sm, &sels[k], x).unwrap();
        })
    };
    line("full purchase, in-memory card", full(&sm_sw), full(&sm_hsm));

    println!(
        "\n{:<40} {:>22} {:>20}",
        "purchase authorisations", "software", "pkcs11"
    );
    for threads in [1, 2, 4, 8] {
        line(
            &format!("{threads} thread(s)"),
            auth(&sm_sw, threads),
            auth(&sm_hsm, threads),
        );
    }
    println!("(pkcs11 sessions open at the end: {})", hsm.open_sessions());
}

fn softhsm_version() -> String {
    std::process::Command::new("softhsm2-util")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}
