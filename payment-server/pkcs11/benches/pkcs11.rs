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

/// Run `op(thread, i)` on `threads` threads for the bench time; ops/s.
fn rate(threads: usize, op: impl Fn(usize, u32) + Sync) -> f64 {
    let d = secs();
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
    total as f64 / start.elapsed().as_secs_f64()
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
    let cfg = token.config();
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
    let backends: [(&str, &(dyn SessionMacs + Sync)); 2] = [("software", &sw), ("pkcs11", &hsm)];
    println!(
        "\n{:<58} {:>12} {:>12}",
        "operation (1 thread)", "software/s", "pkcs11/s"
    );
    let row = |name: &str, f: &(dyn Fn(&dyn SessionMacs, usize, u32) + Sync)| {
        let r: Vec<f64> = backends
            .iter()
            .map(|(_, b)| rate(1, |t, i| f(*b, t, i)))
            .collect();
        println!("{name:<58} {:>12.0} {:>12.0}", r[0], r[1]);
    };
    row("derive SK + 1 MAC (S2-sized)", &|b, _, i| {
        b.session_macs(KeyUse::Purchase, 1, &id, [0, 0, 0, 0], i as u16, &[&msg23])
            .unwrap();
    });
    let per_call = |b: &dyn SessionMacs| {
        16.0 * rate(1, |_, i| {
            b.session_macs(KeyUse::Purchase, 1, &id, [1, 1, 1, 1], i as u16, &sixteen)
                .unwrap();
        })
    };
    println!(
        "{:<58} {:>12.0} {:>12.0}",
        "MACs under one SK (16 per derive), MACs",
        per_call(&sw),
        per_call(&hsm)
    );

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
    println!(
        "{:<58} {:>12.0} {:>12.0}",
        "purchase authorisation (S2 + expected S3)",
        auth(&sm_sw, 1),
        auth(&sm_hsm, 1)
    );
    let full = |sm: &SecurityModule| {
        let mut cards: Vec<Card> = (0..16).map(test_card).collect();
        let sels: Vec<_> = cards
            .iter_mut()
            .map(|c| client::select(c).unwrap())
            .collect();
        let mut i = 0usize;
        let start = Instant::now();
        while start.elapsed() < secs() {
            let k = i % cards.len();
            let x = Txn {
                purse: PurseId::Money,
                amount: 1,
                seq: i as u32,
                date: BcdDate::parse("20261123").unwrap(),
                time: BcdTime::parse("120000").unwrap(),
            };
            client::purchase(&mut cards[k], sm, &sels[k], x).unwrap();
            i += 1;
        }
        i as f64 / start.elapsed().as_secs_f64()
    };
    println!(
        "{:<58} {:>12.0} {:>12.0}",
        "full purchase vs in-memory card (INIT, authorise, DEBIT, S3)",
        full(&sm_sw),
        full(&sm_hsm)
    );

    println!(
        "\n{:<58} {:>12} {:>12}",
        "purchase authorisations/s by threads", "software/s", "pkcs11/s"
    );
    for threads in [1, 2, 4, 8] {
        println!(
            "{:<58} {:>12.0} {:>12.0}",
            format!("{threads} thread(s)"),
            auth(&sm_sw, threads),
            auth(&sm_hsm, threads)
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
