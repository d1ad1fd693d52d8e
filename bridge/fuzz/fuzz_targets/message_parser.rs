//! Fuzz the bridge's input path: the frame decoder fed in arbitrary chunks,
//! then the request parser and the guard on every frame. Nothing may panic,
//! and the decoder must never buffer more than one frame's worth.
#![no_main]

use std::time::Instant;

use bridge::framing::{Frame, FrameDecoder, MAX_MESSAGE};
use bridge::guard::{Allowlist, Guard, GuardConfig};
use bridge::protocol::{parse_request, Body};
use libfuzzer_sys::fuzz_target;

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
    let mut dec = FrameDecoder::new();
    for piece in stream.chunks(chunk) {
        dec.push(piece);
        while let Some(f) = dec.next_frame() {
            if let Frame::Message(m) = f {
                assert!(!m.is_empty() && m.len() <= MAX_MESSAGE);
                if let Ok(req) = parse_request(&m) {
                    let _ = allow.check(req.origin.as_deref());
                    if let Body::Transmit { handle, apdu } = req.body {
                        let o = req.origin.as_deref().unwrap_or("");
                        if guard.check(handle, o, &apdu, now).is_ok() {
                            guard.observe(handle, &apdu, &[0x90, 0x00]);
                        }
                    }
                }
            }
        }
        assert!(dec.pending() <= MAX_MESSAGE + 4 + chunk);
    }
});
