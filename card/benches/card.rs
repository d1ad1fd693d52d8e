//! `cargo bench -p card`: prints
//! 1. APDUs/s of full purchases (SELECT, INITIALIZE, DEBIT) through the
//!    sans-IO card, in memory (card time only; the security module's S2 is
//!    computed outside the timed region), and with the durable store (fsync);
//! 2. round-trip time of one APDU (GET BALANCE) through
//!    libpcsclite → pcscd → vpcd → `card run` (p50/p99), and of a full
//!    purchase over PC/SC.
//!
//! Set `CARDPAY_BENCH_SKIP_PCSC=1` to skip part 2 (it needs pcscd + vpcd).

use std::time::{Duration, Instant};

use card::client::{self, Transport, Txn};
use card::personalise::Personalisation;
use card::{Card, OsRandom, Store};
use purse::command::{
    DebitResponse, InitializePurchase, InitializePurchaseResponse, Request, SelectResponse,
};
use purse::crypto::DesKey;
use purse::security_module::{PurchaseDraw, SecurityModule, SoftwareKeys};
use purse::{BcdDate, BcdTime, CardId, Expiry, PurseId, Terminal};

const MKP: &str = "404142434445464748494A4B4C4D4E4F";
const MKL: &str = "505152535455565758595A5B5C5D5E5F";
const SELECT: [u8; 14] = [
    0x00, 0xA4, 0x04, 0x00, 0x08, 0xF0, 0x43, 0x41, 0x52, 0x44, 0x50, 0x41, 0x59, 0x00,
];

fn sm() -> SecurityModule {
    let mut keys = SoftwareKeys::new();
    keys.add_key_version(
        1,
        DesKey::from_hex(MKP).unwrap(),
        DesKey::from_hex(MKL).unwrap(),
    );
    SecurityModule::software(Terminal([0, 0, 0, 0, 0, 1]), keys)
}

fn card() -> Card {
    let st = Personalisation {
        card_id: CardId::parse("6280000000000001").unwrap(),
        expiry: Expiry::parse("301231").unwrap(),
        currency: 978,
        exponent: 2,
        balance: 4_000_000_000,
        max_balance: 4_000_000_000,
        points: 0,
        points_max: 0,
        pin: "1234".into(),
        no_pin_limit: 100,
        key_version: 1,
        mkp: DesKey::from_hex(MKP).unwrap(),
        mkl: DesKey::from_hex(MKL).unwrap(),
    }
    .build()
    .unwrap();
    Card::with_random(st, Box::new(OsRandom))
}

/// One purchase; returns the time spent inside the card.
fn purchase(
    c: &mut Card,
    sm: &SecurityModule,
    seq: u32,
    commit: &mut dyn FnMut(&card::CardState),
) -> Duration {
    let (date, time) = (
        BcdDate::parse("20261123").unwrap(),
        BcdTime::parse("120000").unwrap(),
    );
    let mut in_card = Duration::ZERO;
    let mut run = |c: &mut Card, apdu: &[u8]| {
        let t = Instant::now();
        let r = c.process_with(apdu, |s| {
            commit(s);
            Ok::<(), ()>(())
        });
        in_card += t.elapsed();
        assert_eq!(&r[r.len() - 2..], &[0x90, 0x00]);
        r[..r.len() - 2].to_vec()
    };
    let sel = SelectResponse::decode(&run(c, &SELECT)).unwrap();
    let init = Request::InitializePurchase(InitializePurchase {
        purse: PurseId::Money,
        amount: 1,
        terminal: sm.terminal(),
    })
    .to_bytes();
    let i = InitializePurchaseResponse::decode(&run(c, &init)).unwrap();
    let auth = sm
        .authorize_purchase(&PurchaseDraw {
            card_id: sel.card_id,
            expiry: sel.expiry,
            key_version: i.key_version,
            purse: PurseId::Money,
            balance: i.balance,
            atc: i.atc,
            random: i.random,
            amount: 1,
            seq,
            date,
            time,
        })
        .unwrap();
    let d = DebitResponse::decode(&run(c, &Request::DebitPurchase(auth.debit).to_bytes())).unwrap();
    auth.verify_s3(d.balance_after, &d.s3).unwrap();
    in_card
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    // cargo bench passes --bench; ignore arguments.
    let sm = sm();

    // 1a. in memory
    let mut c = card();
    for s in 0..100 {
        purchase(&mut c, &sm, s, &mut |_| {});
    }
    let n = 5_000u32;
    let mut in_card = Duration::ZERO;
    let t = Instant::now();
    for s in 0..n {
        in_card += purchase(&mut c, &sm, s, &mut |_| {});
    }
    let wall = t.elapsed();
    let apdus = f64::from(n * 3);
    println!(
        "sans-IO card, in memory: {n} purchases (3 APDUs each) in {:.3} s card time: {:.0} APDUs/s, {:.0} purchases/s ({:.1} µs/APDU); wall incl. security module {:.3} s",
        in_card.as_secs_f64(),
        apdus / in_card.as_secs_f64(),
        f64::from(n) / in_card.as_secs_f64(),
        in_card.as_secs_f64() * 1e6 / apdus,
        wall.as_secs_f64()
    );

    // 1b. with the durable store (temp file + fsync + rename + fsync dir per change)
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("card.json"));
    let mut c = card();
    let n = 200u32;
    let mut in_card = Duration::ZERO;
    for s in 0..n {
        in_card += purchase(&mut c, &sm, s, &mut |st| store.save(st).unwrap());
    }
    println!(
        "sans-IO card + durable store: {n} purchases: {:.0} APDUs/s, {:.2} ms/purchase (2 fsynced writes each)",
        f64::from(n * 3) / in_card.as_secs_f64(),
        in_card.as_secs_f64() * 1e3 / f64::from(n)
    );

    if std::env::var_os("CARDPAY_BENCH_SKIP_PCSC").is_some() {
        return;
    }
    // 2. through pcscd + vpcd
    let stack = match testbed::Stack::builder()
        .card_bin(env!("CARGO_BIN_EXE_card"))
        .balance(100_000)
        .no_pin_limit(100_000)
        .start()
    {
        Ok(s) => s,
        Err(e) => {
            println!("pcscd + vpcd round trip: skipped ({e})");
            return;
        }
    };
    let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
    let h = ctx
        .connect(
            &stack.reader_cstr(),
            pcsc::ShareMode::Shared,
            pcsc::Protocols::ANY,
        )
        .unwrap();
    let mut buf = [0u8; 300];
    h.transmit(&SELECT, &mut buf).unwrap();
    for _ in 0..200 {
        h.transmit(&[0x80, 0x5C, 0, 0, 4], &mut buf).unwrap();
    }
    let mut rtt: Vec<Duration> = (0..3_000)
        .map(|_| {
            let t = Instant::now();
            let r = h.transmit(&[0x80, 0x5C, 0, 0, 4], &mut buf).unwrap();
            let e = t.elapsed();
            assert_eq!(&r[4..], &[0x90, 0x00]);
            e
        })
        .collect();
    rtt.sort();
    println!(
        "pcscd + vpcd APDU round trip (GET BALANCE, {} samples): p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        rtt.len(),
        percentile(&rtt, 0.5).as_secs_f64() * 1e6,
        percentile(&rtt, 0.99).as_secs_f64() * 1e6,
        rtt.last().unwrap().as_secs_f64() * 1e6
    );

    struct P<'a>(&'a pcsc::Card);
    impl Transport for P<'_> {
        type Error = pcsc::Error;
        fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, pcsc::Error> {
            let mut b = [0u8; 300];
            self.0.transmit(apdu, &mut b).map(|r| r.to_vec())
        }
    }
    let mut t = P(&h);
    let mut full: Vec<Duration> = (0..200u32)
        .map(|seq| {
            let t0 = Instant::now();
            let sel = client::select(&mut t).unwrap();
            let x = Txn {
                purse: PurseId::Money,
                amount: 1,
                seq,
                date: BcdDate::parse("20261123").unwrap(),
                time: BcdTime::parse("120000").unwrap(),
            };
            client::purchase(&mut t, &sm, &sel, x).unwrap();
            t0.elapsed()
        })
        .collect();
    full.sort();
    println!(
        "full purchase over PC/SC (SELECT, INITIALIZE, DEBIT, durable): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&full, 0.5).as_secs_f64() * 1e3,
        percentile(&full, 0.99).as_secs_f64() * 1e3
    );
}
