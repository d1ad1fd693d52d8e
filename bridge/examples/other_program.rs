//! "Another program" on the shopper's machine, for the browser tests: a
//! plain PC/SC client with no guard, connected (shared) to a reader. Prints
//! `{"ready":true}` once connected, then reads commands on stdin and answers
//! one JSON line each (a command waits as long as PC/SC makes it wait):
//!
//! - `send HEX`: transmit the APDU → `{"ok":true,"sw":"9000"}` or `{"ok":false,"error":"…"}`;
//! - `reconnect`: reconnect after a reset (leave the card) → `{"ok":true}`.
//!
//! `cargo run -p bridge --example other_program -- "Virtual PCD 00 00"`

use std::io::BufRead;

use pcsc::{Context, Disposition, Protocols, Scope, ShareMode};

fn main() {
    let reader = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "Virtual PCD 00 00".into());
    let ctx = Context::establish(Scope::User).expect("pcscd");
    let name = std::ffi::CString::new(reader).expect("reader name");
    let mut card = match ctx.connect(&name, ShareMode::Shared, Protocols::ANY) {
        Ok(c) => c,
        Err(e) => {
            println!(
                "{}",
                serde_json::json!({"ready": false, "error": e.to_string()})
            );
            std::process::exit(1);
        }
    };
    println!("{}", serde_json::json!({"ready": true}));
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        let out = if let Some(h) = line.strip_prefix("send ") {
            match hex::decode(h.replace(' ', "")) {
                Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
                Ok(apdu) => {
                    let mut buf = [0u8; 300];
                    match card.transmit(&apdu, &mut buf) {
                        Ok(r) if r.len() >= 2 => {
                            serde_json::json!({"ok": true, "sw": hex::encode_upper(&r[r.len() - 2..])})
                        }
                        Ok(r) => {
                            serde_json::json!({"ok": false, "error": format!("short answer {r:02X?}")})
                        }
                        Err(e) => serde_json::json!({"ok": false, "error": format!("{e:?}")}),
                    }
                }
            }
        } else if line == "reconnect" {
            match card.reconnect(ShareMode::Shared, Protocols::ANY, Disposition::LeaveCard) {
                Ok(()) => serde_json::json!({"ok": true}),
                Err(e) => serde_json::json!({"ok": false, "error": format!("{e:?}")}),
            }
        } else if line.is_empty() {
            continue;
        } else {
            serde_json::json!({"ok": false, "error": format!("unknown command {line}")})
        };
        println!("{out}");
    }
}
