//! Fuzz the bridge's input path: the native-messaging stream read in
//! arbitrary chunks by `bridge::stdio` (the `native_messaging` crate's
//! decoder plus our skipping of refused frames), then the request parser and
//! the guard on every message. Nothing may panic, and no message over the cap
//! may come through.
#![no_main]

use std::io::Read;
use std::time::Instant;

use bridge::guard::{Allowlist, Guard, GuardConfig};
use bridge::protocol::{parse_request, Body};
use bridge::stdio::{read_frame, Frame, MAX_MESSAGE};
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
    let now = Instant::now();
    let mut r = Chunked(stream, chunk);
    while let Ok(Some(f)) = read_frame(&mut r) {
        let Frame::Message(m) = f else { continue };
        assert!(m.len() <= MAX_MESSAGE);
        if let Ok(req) = parse_request(m.as_bytes()) {
            let _ = allow.check(req.origin.as_deref());
            if let Body::Transmit { handle, apdu } = req.body {
                let o = req.origin.as_deref().unwrap_or("");
                if guard.check(handle, o, &apdu, now).is_ok() {
                    guard.observe(handle, &apdu, &[0x90, 0x00]);
                }
            }
        }
    }
});
