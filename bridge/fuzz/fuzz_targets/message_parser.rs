//! Fuzz the bridge's input path: the native-messaging stream read in
//! arbitrary chunks by `bridge::stdio` (the `native_messaging` crate's
//! decoder plus our skipping of refused frames), then the request parser and
//! the guard on every message. Nothing may panic, and no message over the cap
//! may come through.
#![no_main]

use std::io::Read;

use bridge::budget::{Budgets, Rate, Rates};
use bridge::exclusive::Sessions;
use bridge::guard::{Allowlist, Guard, GuardConfig, Kind};
use bridge::protocol::parse_request;
use bridge::stdio::{read_frame, Frame, MAX_MESSAGE};
use purse::bridge_msg::{BridgeRequest, Limit};
use libfuzzer_sys::fuzz_target;

/// A reader that hands out at most `chunk` bytes per call.
struct Chunked<'a>(&'a [u8], usize);
impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(buf.len()).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    // whole input as one message payload
    let _ = parse_request(data);

    // first byte picks a chunk size; the rest is a native-messaging stream
    let (chunk, stream) = match data.split_first() {
        Some((c, rest)) => ((*c as usize % 17) + 1, rest),
        None => return,
    };
    let allow = Allowlist::new(&["http://127.0.0.1:*", "https://pay.example"]).unwrap();
    let mut guard = Guard::new(GuardConfig::default());
    guard.opened(1, "https://pay.example");
    let mut sessions = Sessions::new(15_000);
    sessions.opened(1, "R");
    let rates = Rates {
        apdu: Rate::per_sec(200.0, 50.0),
        verify: Rate::per_sec(3.0, 0.05),
        initialize: Rate::per_hour(30.0, 30.0),
    };
    let mut budgets = Budgets::default();
    let mut now: u64 = 1_700_000_000_000;
    let mut r = Chunked(stream, chunk);
    while let Ok(Some(f)) = read_frame(&mut r) {
        let Frame::Message(m) = f else { continue };
        assert!(m.len() <= MAX_MESSAGE);
        if let Ok(req) = parse_request(m.as_bytes()) {
            let _ = allow.check(req.origin.as_deref());
            if let BridgeRequest::Transmit { handle, apdu } = req.body {
                let o = req.origin.as_deref().unwrap_or("");
                now += u64::from(apdu.0.first().copied().unwrap_or(0));
                if let Ok(kind) = guard.check(handle, o, &apdu.0) {
                    let _ = budgets.take(Limit::Apdu, o, &rates, now);
                    let plan = sessions.plan(handle, guard.is_selected(handle), kind == Kind::Select);
                    if plan.begin {
                        sessions.began(handle, now);
                    }
                    // the card answers like the demo card would to a SELECT
                    let answer = hex::decode(
                        "6280000000000001301231010103D20200002710000186A003E700000001F4000F42409000",
                    )
                    .unwrap();
                    guard.observe(handle, &apdu.0, &answer);
                    sessions.sent(handle, now, (kind == Kind::Select).then(|| guard.is_selected(handle)));
                    for h in sessions.expired(now) {
                        sessions.ended(h);
                    }
                    let mut saved: Budgets =
                        serde_json::from_slice(&serde_json::to_vec(&budgets).unwrap()).unwrap();
                    saved.merge(&budgets, &rates, now);
                    saved.prune(&rates, now);
                }
            }
        }
    }
});
