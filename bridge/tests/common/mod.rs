//! The bridge process driven over stdio, for the tests on the real stack.
#![allow(dead_code)]

pub mod sm;

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use bridge::stdio::{self, Frame};
use purse::command::SelectResponse;
use serde_json::{json, Value};

pub const ORIGIN: &str = "http://127.0.0.1:4242";
pub const EXT: &str = "chrome-extension://balkbpnchocdfjmodhmppaobcgfpdlih/";

/// The bridge under test (`CARDPAY_BRIDGE_BIN` runs the same tests against
/// another build, e.g. an older one to see a test fail without its fix).
pub fn bridge_bin() -> String {
    std::env::var("CARDPAY_BRIDGE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_bridge").into())
}

pub struct Bridge {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub rx: Receiver<Value>,
    next: u64,
    pub events: Vec<Value>,
}

impl Bridge {
    pub fn start(dir: &std::path::Path) -> Bridge {
        Self::start_with(dir, true)
    }

    /// Write `config` as the bridge's settings, then start it.
    pub fn start_config(dir: &std::path::Path, config: Value) -> Bridge {
        std::fs::write(dir.join("bridge.json"), config.to_string()).unwrap();
        Self::start_with(dir, false)
    }

    /// Close stdin and wait for a clean exit (the browser closed the port).
    pub fn close(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status}");
                return;
            }
            assert!(Instant::now() < deadline, "bridge did not exit on EOF");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn start_with(dir: &std::path::Path, write_config: bool) -> Bridge {
        let cfg = dir.join("bridge.json");
        if write_config {
            std::fs::write(
            &cfg,
            json!({"origins": [ORIGIN], "verify_burst": 10, "apdu_burst": 60, "apdu_per_sec": 20, "request_timeout_ms": 10000}).to_string(),
        )
        .unwrap();
        }
        let mut child = Command::new(bridge_bin())
            .args(["host", "--config"])
            .arg(&cfg)
            .arg(EXT)
            .env("CARDPAY_BRIDGE_LOG", "debug")
            .env("CARDPAY_BRIDGE_LOG_FILE", dir.join("bridge.log"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start bridge");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = stdout;
            while let Ok(Some(Frame::Message(m))) = stdio::read_frame(&mut r) {
                let v: Value = serde_json::from_str(&m).expect("bridge sends JSON");
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Bridge {
            child,
            stdin: Some(stdin),
            rx,
            next: 1,
            events: vec![],
        }
    }

    pub fn send(&mut self, mut msg: Value) -> u64 {
        let id = self.next;
        self.next += 1;
        msg["id"] = json!(id);
        if msg.get("origin").is_none() {
            msg["origin"] = json!(ORIGIN);
        }
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(&stdio::encode(&msg.to_string())).unwrap();
        stdin.flush().unwrap();
        id
    }

    /// Send and wait for the answer; events arriving meanwhile are kept.
    pub fn call(&mut self, msg: Value) -> Value {
        let id = self.send(msg);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.rx.recv_timeout(left).expect("bridge answered in time");
            if v.get("event").is_some() {
                self.events.push(v);
            } else if v["id"] == id {
                return v;
            } else {
                panic!("unexpected message {v}");
            }
        }
    }

    pub fn ok(&mut self, msg: Value) -> Value {
        let v = self.call(msg.clone());
        assert!(v.get("error").is_none(), "{msg} → {v}");
        v["result"].clone()
    }

    pub fn err(&mut self, msg: Value) -> String {
        let v = self.call(msg.clone());
        v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{msg} → {v}"))
            .to_owned()
    }

    pub fn apdu(&mut self, handle: u64, apdu: &[u8]) -> Vec<u8> {
        let r = self.ok(json!({"type": "transmit", "handle": handle, "apdu": hex::encode(apdu)}));
        hex::decode(r["rapdu"].as_str().unwrap()).unwrap()
    }

    pub fn apdu_err(&mut self, handle: u64, apdu: &[u8]) -> String {
        self.err(json!({"type": "transmit", "handle": handle, "apdu": hex::encode(apdu)}))
    }

    /// Wait until an event with this name (and reader) has been seen.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = self.events.iter().position(|e| e["event"] == name) {
                return self.events.remove(pos);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) if v.get("event").is_some() => self.events.push(v),
                Ok(v) => panic!("unexpected message {v}"),
                Err(_) => panic!(
                    "no `{name}` event within {timeout:?}; saw {:?}",
                    self.events
                ),
            }
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn select_apdu() -> Vec<u8> {
    let mut a = vec![0x00, 0xA4, 0x04, 0x00, 0x08];
    a.extend_from_slice(&purse::AID);
    a.push(0);
    a
}

pub fn sw(r: &[u8]) -> u16 {
    u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]])
}

pub fn data(r: &[u8]) -> &[u8] {
    &r[..r.len() - 2]
}

pub fn connect_and_select(b: &mut Bridge) -> (u64, SelectResponse) {
    let c = b.ok(json!({"type": "connect", "reader": testbed::READER}));
    let h = c["handle"].as_u64().unwrap();
    assert!(!c["atr"].as_str().unwrap().is_empty());
    let r = b.apdu(h, &select_apdu());
    assert_eq!(sw(&r), 0x9000);
    (h, SelectResponse::decode(data(&r)).unwrap())
}

/// Another PC/SC program on the same machine.
pub fn other_program(stack: &testbed::Stack) -> (pcsc::Context, pcsc::Card) {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
    let card = ctx
        .connect(
            &stack.reader_cstr(),
            pcsc::ShareMode::Shared,
            pcsc::Protocols::ANY,
        )
        .unwrap();
    (ctx, card)
}

/// The other program reconnects after a reset (as PC/SC programs must).
pub fn reconnect(card: &mut pcsc::Card) {
    card.reconnect(
        pcsc::ShareMode::Shared,
        pcsc::Protocols::ANY,
        pcsc::Disposition::LeaveCard,
    )
    .unwrap();
}

pub fn other_transmit(card: &pcsc::Card, apdu: &[u8]) -> Result<u16, pcsc::Error> {
    let mut buf = [0u8; 300];
    card.transmit(apdu, &mut buf).map(sw)
}
