//! The native-messaging host loop.
//!
//! Threads: one reads stdin frames, one (the backend worker) does all PC/SC
//! work, one (optional) watches card events; this loop owns stdout and never
//! waits on the card. A request the worker has not answered within the
//! timeout gets a `timeout` error; a late answer is then dropped. Between
//! requests the worker wakes for the backend's own deadlines (the idle end
//! of an exclusive session, saving budgets); when stdin closes it lets the
//! backend finish (end sessions, save budgets) before the host returns.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use purse::bridge_msg::{BridgeError, BridgeRequest, BridgeResult, ErrorCode, Hello, Id};
use serde_json::Value;

use crate::guard::Allowlist;
use crate::protocol::{self, PROTOCOL_VERSION};
use crate::stdio::{self, Frame};

/// Does the PC/SC work; runs on its own thread.
pub trait Backend: Send + 'static {
    fn handle(&mut self, origin: &str, req: BridgeRequest) -> Result<BridgeResult, BridgeError>;
    /// How long until the backend has something to do on its own.
    fn poll_timeout(&self) -> Option<Duration> {
        None
    }
    /// Do what is due (called after a request, or when `poll_timeout` passed).
    fn handle_timeout(&mut self) {}
    /// The host is ending (stdin closed).
    fn finish(&mut self) {}
}

/// Who may ask what.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Payment origins: every request type.
    pub allowlist: Allowlist,
    /// The extension itself (`chrome-extension://ID`, from the browser's argv):
    /// `hello`, `status` and `readers` only (the toolbar popup). An entry
    /// ending in `*` is a prefix: Firefox names the caller by add-on id, and
    /// its extension pages have a per-install `moz-extension://UUID` origin,
    /// so a Firefox host admits `moz-extension://*`.
    pub extension_origins: Vec<String>,
    pub request_timeout: Duration,
}

/// Sends events (`{"event": ..}`) to the browser; `false` once the host is gone.
#[derive(Clone)]
pub struct EventSink(Sender<Input>);

impl EventSink {
    pub fn send(&self, event: Value) -> bool {
        self.0.send(Input::Event(event)).is_ok()
    }
}

pub enum Input {
    Frame(io::Result<Option<Frame>>),
    Done(u64, Result<BridgeResult, BridgeError>),
    Event(Value),
}

fn write_msg<W: Write>(out: &mut W, v: &Value) -> io::Result<()> {
    stdio::write_msg(out, v, || {
        let err = BridgeError::new(ErrorCode::CardError, "answer too large");
        protocol::error_reply(None, &err)
    })
}

fn normalise(o: &str) -> &str {
    o.strip_suffix('/').unwrap_or(o)
}

pub fn hello() -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        bridge: env!("CARGO_PKG_VERSION").into(),
        capabilities: [
            "status",
            "readers",
            "connect",
            "transmit",
            "release",
            "disconnect",
            "events",
        ]
        .map(String::from)
        .to_vec(),
    }
}

/// The worker: requests in order, the backend's deadlines in between.
fn work<B: Backend>(
    mut backend: B,
    jobs: Receiver<(u64, String, BridgeRequest)>,
    done: Sender<Input>,
) {
    loop {
        let job = match backend.poll_timeout() {
            Some(wait) => match jobs.recv_timeout(wait) {
                Ok(j) => Some(j),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match jobs.recv() {
                Ok(j) => Some(j),
                Err(_) => break,
            },
        };
        if let Some((seq, origin, req)) = job {
            let (name, t0) = (req.name(), Instant::now());
            let r = backend.handle(&origin, req);
            tracing::debug!("{name}: {} µs", t0.elapsed().as_micros());
            if done.send(Input::Done(seq, r)).is_err() {
                break;
            }
        }
        let t0 = Instant::now();
        backend.handle_timeout();
        let spent = t0.elapsed();
        if spent > Duration::from_millis(1) {
            // saving budgets, ending an idle session: a request waits meanwhile
            tracing::debug!("own deadlines: {} µs", spent.as_micros());
        }
    }
    backend.finish();
}

/// Run the host until stdin closes. `start_events` is called once with a sink
/// for card events (pass `|_| ()` for none).
pub fn run<R, W, B>(
    input: R,
    mut output: W,
    opts: HostOptions,
    backend: B,
    start_events: impl FnOnce(EventSink),
) -> io::Result<()>
where
    R: Read + Send + 'static,
    W: Write,
    B: Backend,
{
    let (tx, rx): (Sender<Input>, Receiver<Input>) = mpsc::channel();

    let tx_in = tx.clone();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut r = input;
            loop {
                let f = stdio::read_frame(&mut r);
                let end = !matches!(f, Ok(Some(_)));
                if tx_in.send(Input::Frame(f)).is_err() || end {
                    break;
                }
            }
        })?;

    let (job_tx, job_rx) = mpsc::channel::<(u64, String, BridgeRequest)>();
    let tx_done = tx.clone();
    let (finished_tx, finished_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("pcsc".into())
        .spawn(move || {
            work(backend, job_rx, tx_done);
            let _ = finished_tx.send(());
        })?;

    start_events(EventSink(tx.clone()));
    drop(tx);

    let r = serve(&rx, &mut output, &opts, &job_tx);
    // let the worker end its sessions and save budgets (bounded: a card
    // that hangs must not keep the host alive)
    drop(job_tx);
    let _ = finished_rx.recv_timeout(Duration::from_secs(3));
    r
}

fn serve<W: Write>(
    rx: &Receiver<Input>,
    output: &mut W,
    opts: &HostOptions,
    job_tx: &Sender<(u64, String, BridgeRequest)>,
) -> io::Result<()> {
    let ext: Vec<String> = opts
        .extension_origins
        .iter()
        .map(|o| normalise(o).to_owned())
        .collect();
    // the request's id, its deadline, and when its frame was read
    let mut pending: HashMap<u64, (Id, Instant, Instant)> = HashMap::new();
    let mut seq: u64 = 0;

    loop {
        let now = Instant::now();
        let next_deadline = pending.values().map(|(_, d, _)| *d).min();
        let msg = match next_deadline {
            Some(d) => match rx.recv_timeout(d.saturating_duration_since(now)) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            },
            None => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return Ok(()),
            },
        };
        // expire overdue requests
        let now = Instant::now();
        let overdue: Vec<u64> = pending
            .iter()
            .filter(|(_, (_, d, _))| *d <= now)
            .map(|(s, _)| *s)
            .collect();
        for s in overdue {
            if let Some((id, _, _)) = pending.remove(&s) {
                let e = BridgeError::new(
                    ErrorCode::Timeout,
                    "the card or reader did not answer in time",
                );
                write_msg(output, &protocol::error_reply(Some(&id), &e))?;
            }
        }
        let Some(msg) = msg else { continue };
        match msg {
            Input::Frame(Ok(None)) => {
                tracing::info!("browser closed the port");
                return Ok(());
            }
            Input::Frame(Err(e)) => {
                tracing::warn!("stdin: {e}");
                return Ok(());
            }
            Input::Frame(Ok(Some(Frame::Refused(e)))) => {
                write_msg(
                    output,
                    &protocol::error_reply(None, &BridgeError::bad_request(e)),
                )?;
            }
            Input::Frame(Ok(Some(Frame::Message(bytes)))) => {
                let req = match protocol::parse_request(bytes.as_bytes()) {
                    Ok(r) => r,
                    Err(f) => {
                        write_msg(output, &protocol::error_reply(f.id.as_ref(), &f.error))?;
                        continue;
                    }
                };
                let origin = req.origin.as_deref().map(normalise);
                let is_ext = origin.is_some_and(|o| {
                    ext.iter().any(|e| match e.strip_suffix('*') {
                        Some(prefix) => o.starts_with(prefix) && o.len() > prefix.len(),
                        None => e == o,
                    })
                });
                let allowed = if is_ext {
                    req.body
                        .is_status_only()
                        .then_some(origin.unwrap_or_default())
                        .ok_or_else(|| {
                            BridgeError::new(
                                ErrorCode::ForbiddenOrigin,
                                "the extension's own pages may only ask for status",
                            )
                        })
                } else {
                    opts.allowlist.check(origin)
                };
                let origin = match allowed {
                    Ok(o) => o.to_owned(),
                    Err(e) => {
                        tracing::warn!("refused {} from {:?}", req.body.name(), req.origin);
                        write_msg(output, &protocol::error_reply(Some(&req.id), &e))?;
                        continue;
                    }
                };
                if req.body == BridgeRequest::Hello {
                    let hello = BridgeResult::Hello(hello());
                    write_msg(output, &protocol::reply(&req.id, &hello))?;
                    continue;
                }
                seq += 1;
                let now = Instant::now();
                pending.insert(seq, (req.id, now + opts.request_timeout, now));
                if job_tx.send((seq, origin, req.body)).is_err() {
                    return Ok(());
                }
            }
            Input::Done(s, result) => {
                if let Some((id, _, read)) = pending.remove(&s) {
                    let v = match result {
                        Ok(v) => protocol::reply(&id, &v),
                        Err(e) => protocol::error_reply(Some(&id), &e),
                    };
                    write_msg(output, &v)?;
                    // frame read → answer written: the bridge's whole share
                    tracing::debug!(
                        "request {s}: answered {} µs after its frame",
                        read.elapsed().as_micros()
                    );
                }
            }
            Input::Event(ev) => write_msg(output, &ev)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stdio::encode;
    use std::sync::{Arc, Mutex};

    use purse::bridge_msg::{ApduHex, Event, ReaderInfo, Readers, Transmitted};
    use serde_json::json;

    /// A backend that answers `readers` at once (naming the origin as the
    /// reader) and sleeps on `transmit`.
    struct Slow;
    impl Backend for Slow {
        fn handle(
            &mut self,
            origin: &str,
            req: BridgeRequest,
        ) -> Result<BridgeResult, BridgeError> {
            match req {
                BridgeRequest::Transmit { .. } => {
                    std::thread::sleep(Duration::from_millis(400));
                    Ok(BridgeResult::Transmitted(Transmitted {
                        rapdu: ApduHex(vec![0x90, 0x00]),
                    }))
                }
                BridgeRequest::Readers => Ok(BridgeResult::Readers(Readers {
                    readers: vec![ReaderInfo {
                        name: origin.into(),
                        card_present: false,
                    }],
                })),
                _ => Err(BridgeError::new(ErrorCode::NoCard, "none")),
            }
        }
    }

    /// A backend with a deadline every 50 ms, counting wake-ups and noting the end.
    struct Ticking(Arc<Mutex<(u32, bool)>>);
    impl Backend for Ticking {
        fn handle(&mut self, _: &str, _: BridgeRequest) -> Result<BridgeResult, BridgeError> {
            Err(BridgeError::new(ErrorCode::NoCard, "none"))
        }
        fn poll_timeout(&self) -> Option<Duration> {
            Some(Duration::from_millis(50))
        }
        fn handle_timeout(&mut self) {
            self.0.lock().unwrap().0 += 1;
        }
        fn finish(&mut self) {
            self.0.lock().unwrap().1 = true;
        }
    }

    #[test]
    fn the_worker_wakes_for_deadlines_and_finishes_before_the_host_returns() {
        let seen = Arc::new(Mutex::new((0, false)));
        let script = Script::new(vec![(400, vec![])]);
        run(
            script,
            Shared::default(),
            opts(1000),
            Ticking(seen.clone()),
            |_| (),
        )
        .unwrap();
        let (ticks, finished) = *seen.lock().unwrap();
        assert!((4..=12).contains(&ticks), "{ticks} wake-ups in 400 ms");
        assert!(finished, "finish() ran before run() returned");
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// stdin that yields the given chunks with a pause before each, then EOF
    /// (an empty chunk is an EOF after its pause).
    struct Script(Vec<(u64, Vec<u8>)>, usize, usize);
    impl Script {
        fn new(chunks: Vec<(u64, Vec<u8>)>) -> Self {
            Script(chunks, 0, 0)
        }
    }
    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((delay, bytes)) = self.0.get(self.1) else {
                return Ok(0);
            };
            if self.2 == 0 {
                std::thread::sleep(Duration::from_millis(*delay));
            }
            let n = (bytes.len() - self.2).min(buf.len());
            buf[..n].copy_from_slice(&bytes[self.2..self.2 + n]);
            self.2 += n;
            if self.2 == bytes.len() {
                self.1 += 1;
                self.2 = 0;
            }
            Ok(n)
        }
    }

    fn msgs(out: &Shared) -> Vec<Value> {
        let bytes = out.0.lock().unwrap().clone();
        let mut r = io::Cursor::new(bytes);
        let mut v = vec![];
        while let Ok(Some(Frame::Message(m))) = stdio::read_frame(&mut r) {
            v.push(serde_json::from_str(&m).unwrap());
        }
        v
    }

    fn opts(timeout_ms: u64) -> HostOptions {
        HostOptions {
            allowlist: Allowlist::new(&["http://127.0.0.1:*"]).unwrap(),
            extension_origins: vec!["chrome-extension://abc/".into()],
            request_timeout: Duration::from_millis(timeout_ms),
        }
    }

    fn f(s: &str) -> Vec<u8> {
        encode(s)
    }

    #[test]
    fn slow_card_does_not_block_other_requests_and_times_out() {
        let o = r#""origin":"http://127.0.0.1:9""#;
        let script = Script::new(vec![
            (
                0,
                f(&format!(
                    r#"{{"id":1,"type":"transmit","handle":1,"apdu":"805C000004",{o}}}"#
                )),
            ),
            (50, f(&format!(r#"{{"id":2,"type":"hello",{o}}}"#))),
            (0, f(&format!(r#"{{"id":3,"type":"readers",{o}}}"#))),
            (600, vec![]),
        ]);
        // the last entry is an empty read = EOF after 600 ms
        let out = Shared::default();
        run(script, out.clone(), opts(200), Slow, |_| ()).unwrap();
        let m = msgs(&out);
        // hello answered while transmit is still on the card
        assert_eq!(m[0]["id"], 2);
        assert_eq!(m[0]["result"]["version"], PROTOCOL_VERSION);
        // transmit times out after 200 ms; readers queued behind it gets its turn later
        let t = m.iter().find(|v| v["id"] == 1).unwrap();
        assert_eq!(t["error"]["code"], "timeout");
        let r = m.iter().find(|v| v["id"] == 3).unwrap();
        assert!(r["result"]["readers"].is_array() || r["error"]["code"] == "timeout");
        // the late transmit answer is dropped: id 1 appears once
        assert_eq!(m.iter().filter(|v| v["id"] == 1).count(), 1);
    }

    #[test]
    fn origins_are_enforced_and_bad_frames_answered() {
        let script = Script::new(vec![
            (
                0,
                f(r#"{"id":1,"type":"readers","origin":"http://evil.example"}"#),
            ),
            (0, f(r#"{"id":2,"type":"readers"}"#)),
            (
                0,
                f(r#"{"id":3,"type":"readers","origin":"chrome-extension://abc"}"#),
            ),
            (
                0,
                f(r#"{"id":4,"type":"connect","reader":"x","origin":"chrome-extension://abc"}"#),
            ),
            (0, 0u32.to_ne_bytes().to_vec()),
            (0, f("\u{1}not json")),
            (0, {
                let mut v = 3u32.to_ne_bytes().to_vec();
                v.extend([0xff, 0xfe, 0xfd]);
                v
            }),
            (
                0,
                f(r#"{"id":5,"type":"readers","origin":"http://127.0.0.1:4000"}"#),
            ),
            (100, vec![]),
        ]);
        let out = Shared::default();
        run(script, out.clone(), opts(5000), Slow, |_| ()).unwrap();
        let m = msgs(&out);
        assert_eq!(m.len(), 8, "{m:?}");
        let by_id = |id: u64| m.iter().find(|v| v["id"] == id).unwrap();
        assert_eq!(by_id(1)["error"]["code"], "forbidden_origin");
        assert_eq!(by_id(2)["error"]["code"], "forbidden_origin");
        assert_eq!(
            by_id(3)["result"]["readers"][0]["name"],
            "chrome-extension://abc"
        );
        assert_eq!(by_id(4)["error"]["code"], "forbidden_origin");
        let anon: Vec<_> = m.iter().filter(|v| v["id"].is_null()).collect();
        assert_eq!(anon.len(), 3);
        for v in anon {
            assert_eq!(v["error"]["code"], "bad_request");
        }
        assert_eq!(
            by_id(5)["result"]["readers"][0]["name"],
            "http://127.0.0.1:4000"
        );
    }

    #[test]
    fn firefox_extension_pages_may_ask_for_status_only() {
        let mut o = opts(5000);
        o.extension_origins = vec!["moz-extension://*".into()];
        let script = Script::new(vec![
            (
                0,
                f(r#"{"id":1,"type":"readers","origin":"moz-extension://0f1e-uuid"}"#),
            ),
            (
                0,
                f(r#"{"id":2,"type":"connect","reader":"x","origin":"moz-extension://0f1e-uuid"}"#),
            ),
            (
                0,
                f(r#"{"id":3,"type":"readers","origin":"moz-extension://"}"#),
            ),
            (
                0,
                f(r#"{"id":4,"type":"readers","origin":"chrome-extension://abc"}"#),
            ),
            (100, vec![]),
        ]);
        let out = Shared::default();
        run(script, out.clone(), o, Slow, |_| ()).unwrap();
        let m = msgs(&out);
        let by_id = |id: u64| m.iter().find(|v| v["id"] == id).unwrap().clone();
        assert_eq!(
            by_id(1)["result"]["readers"][0]["name"],
            "moz-extension://0f1e-uuid"
        );
        assert_eq!(by_id(2)["error"]["code"], "forbidden_origin");
        assert_eq!(by_id(3)["error"]["code"], "forbidden_origin");
        assert_eq!(by_id(4)["error"]["code"], "forbidden_origin");
    }

    #[test]
    fn events_are_forwarded() {
        let script = Script::new(vec![(200, vec![])]);
        let out = Shared::default();
        run(script, out.clone(), opts(1000), Slow, |sink| {
            sink.send(protocol::event(&Event::CardInserted { reader: "R".into() }));
        })
        .unwrap();
        assert_eq!(
            msgs(&out),
            vec![json!({"event":"card_inserted","reader":"R"})]
        );
    }
}
