//! The world of the native widget tests: the checkout against the real
//! payment server (payment-testkit's `TestServer`: axum on a loopback port,
//! SQLite in a temp dir) and the real card application (`card::Card`). The
//! test plays only what a browser would carry: the extension's replies and
//! events (typed `purse::bridge_msg` messages, the card behind them) and
//! the `fetch`es to the payment origin; faults are injected there.
#![allow(dead_code)]

use std::collections::VecDeque;

use card::Card;
use payment_testkit::{Api, TestServer};
use purse::bridge_msg::{
    ApduHex, BridgeError, BridgeRequest, BridgeResult, Connected, Done, ErrorCode, Event, Hello,
    Id, ReaderInfo, Readers, Reply, Request, Transmitted,
};
use purse::purchase::{DebitCommand, DrawResponse, PATH_COMPLETE, PATH_DRAW};
use purse::session::Key32;
use purse::wire::{Hex, Sealed};
use widget::keypad::SplitMix;
use widget::view::Screen;
use widget::{Action, Checkout, Config, Effect, Input, Mode, ParentEvent};

pub const READER: &str = "Virtual PCD 00 00";

pub struct World {
    pub api: Api,
    pub card: Card,
    pub inserted: bool,
    pub co: Checkout,
    /// The test's clock (ms).
    pub now: u64,
    pub events: Vec<ParentEvent>,
    pub screen: Screen,
    /// The extension is installed and answers.
    pub extension: bool,
    /// The bridge refuses commands with this INS, one error per command.
    pub refuse_on_ins: Option<(u8, Vec<BridgeError>)>,
    /// The card is pulled during the next command with this INS: after it
    /// applied it, or (`pull_before_processing`) before.
    pub pull_on_ins: Option<u8>,
    pub pull_before_processing: bool,
    /// No answer from the payment origin.
    pub server_down: bool,
    /// The network goes down before `complete` reaches the server.
    pub complete_down: bool,
    /// A hostile network raises the debit command's amount by this much.
    pub skim: u32,
    /// Every POST made, in order.
    pub posts: Vec<&'static str>,
    /// The handles the page closed (`disconnect`), in order.
    pub disconnected: Vec<u32>,
    /// The connection the card is on.
    pub handle: u32,
    tsk: Key32,
    txn_id: String,
    queue: VecDeque<Input>,
}

pub fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("json")
}

impl World {
    /// A checkout for `session` (a `WidgetSession` or `LoadWidgetSession`),
    /// embedded by the session's own origin, with the card in the reader.
    pub fn new<S: serde::Serialize>(
        srv: &TestServer,
        card: Card,
        mode: Mode,
        session: &S,
        cfg: Config,
        seed: u64,
    ) -> Self {
        let v = serde_json::to_value(session).expect("session");
        let origin = v["session"]["origin"].as_str().expect("origin").to_string();
        let txn_id = v["session"]["txn_id"].as_str().expect("txn").to_string();
        let tsk: Hex = serde_json::from_value(v["tsk"].clone()).expect("tsk");
        let co = Checkout::new(cfg, mode, &json(session), &origin, Box::new(SplitMix(seed)))
            .expect("session accepted");
        World {
            api: srv.api(),
            card,
            inserted: true,
            co,
            now: 0,
            events: Vec::new(),
            screen: Screen::Cancelled("not started"),
            extension: true,
            refuse_on_ins: None,
            pull_on_ins: None,
            pull_before_processing: false,
            server_down: false,
            complete_down: false,
            skim: 0,
            posts: Vec::new(),
            disconnected: Vec::new(),
            tsk: Key32::from_slice(tsk.as_slice()).expect("32 bytes"),
            txn_id,
            handle: 0,
            queue: VecDeque::new(),
        }
    }

    pub async fn feed(&mut self, input: Input) {
        self.queue.push_back(input);
        while let Some(i) = self.queue.pop_front() {
            let fx = self.co.handle(i, self.now);
            for e in fx {
                self.effect(e).await;
            }
        }
    }

    pub async fn start(&mut self) {
        self.feed(Input::Start).await;
    }

    pub async fn press(&mut self, a: Action) {
        self.feed(Input::User(a)).await;
    }

    /// Type a PIN on the keypad (by its digits, as clicks would) and press OK.
    pub async fn type_pin(&mut self, pin: &str) {
        for d in pin.bytes() {
            self.press(Action::Digit(d - b'0')).await;
        }
        self.press(Action::SubmitPin).await;
    }

    /// Move the clock by `ms` and let the checkout's timer fire.
    pub async fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.feed(Input::Tick).await;
    }

    pub async fn insert(&mut self) {
        self.inserted = true;
        let ev = json(&Event::CardInserted {
            reader: READER.into(),
        });
        self.feed(Input::Extension(ev)).await;
    }

    pub async fn remove(&mut self) {
        self.inserted = false;
        let ev = json(&Event::CardRemoved {
            reader: READER.into(),
        });
        self.feed(Input::Extension(ev)).await;
    }

    pub fn last_event(&self) -> &ParentEvent {
        self.events.last().expect("an event")
    }

    pub fn html(&self) -> String {
        widget::view::render(&self.co.view())
    }

    pub fn balance(&self) -> u32 {
        payment_testkit::balance(&self.card)
    }

    pub fn pin_tries_left(&self) -> u8 {
        self.card.state().pin_tries_left
    }

    async fn effect(&mut self, e: Effect) {
        match e {
            Effect::Render(v) => self.screen = v.screen,
            Effect::Parent(ev) => self.events.push(ev),
            Effect::Bridge { msg, .. } => {
                for r in self.extension_answers(&msg) {
                    self.queue.push_back(Input::Extension(r));
                }
            }
            // The browser's WebCrypto in the shipped widget; RustCrypto here.
            Effect::Crypto { id, job } => {
                let out = job.perform();
                self.queue.push_back(Input::Crypto { id, out });
            }
            Effect::Http { id, path, body } => {
                self.posts.push(path);
                let result = self.post(path, body).await;
                self.queue.push_back(Input::Http {
                    id,
                    result: result.ok(),
                });
            }
        }
    }

    async fn post(&mut self, path: &'static str, body: String) -> Result<(u16, String), String> {
        if self.server_down || (path == PATH_COMPLETE && self.complete_down) {
            return Err("network down".into());
        }
        let (status, text) = self.api.post_raw(path, body).await?;
        if path == PATH_DRAW && status == 200 && self.skim > 0 {
            return Ok((status, self.skimmed(&text)));
        }
        Ok((status, text))
    }

    /// The draw answer with a debit command for more than the session's amount.
    fn skimmed(&self, text: &str) -> String {
        let mut a: DrawResponse = serde_json::from_str(text).expect("draw answer");
        let mut cmd =
            DebitCommand::open(&self.tsk, &self.txn_id, a.debit_command.as_slice()).expect("opens");
        cmd.amount += self.skim;
        a.debit_command = cmd.seal(&self.tsk, [9; 12]);
        json(&a)
    }

    /// What the extension (and the bridge and card behind it) answers.
    fn extension_answers(&mut self, msg: &str) -> Vec<String> {
        let req: Request = serde_json::from_str(msg).expect("a typed bridge request");
        assert!(req.origin.is_none(), "the page never names its origin");
        if !self.extension {
            return vec![];
        }
        let id = req.id;
        let err = |id: &Id, code: ErrorCode| {
            json(&Reply::<BridgeResult>::error(
                Some(id.clone()),
                BridgeError::new(code, code.as_str()),
            ))
        };
        let ok = |id: &Id, r: BridgeResult| json(&Reply::result(id.clone(), r));
        match req.body {
            BridgeRequest::Hello => vec![ok(
                &id,
                BridgeResult::Hello(Hello {
                    version: 1,
                    bridge: "0.1.0".into(),
                    capabilities: vec!["transmit".into(), "events".into()],
                }),
            )],
            BridgeRequest::Readers => vec![ok(
                &id,
                BridgeResult::Readers(Readers {
                    readers: vec![ReaderInfo {
                        name: READER.into(),
                        card_present: self.inserted,
                    }],
                }),
            )],
            BridgeRequest::Connect { reader } => {
                if reader != READER || !self.inserted {
                    return vec![err(&id, ErrorCode::NoCard)];
                }
                self.handle += 1;
                self.card.reset();
                vec![ok(
                    &id,
                    BridgeResult::Connected(Connected {
                        handle: self.handle,
                        atr: ApduHex(vec![0x3B, 0x80]),
                    }),
                )]
            }
            BridgeRequest::Transmit { handle, apdu } => {
                if !self.inserted || handle != self.handle {
                    return vec![err(&id, ErrorCode::CardRemoved)];
                }
                let ins = apdu.0.get(1).copied().unwrap_or(0);
                if let Some((i, errs)) = &mut self.refuse_on_ins {
                    if *i == ins && !errs.is_empty() {
                        let e = errs.remove(0);
                        return vec![json(&Reply::<BridgeResult>::error(Some(id), e))];
                    }
                }
                if self.pull_on_ins == Some(ins) {
                    self.pull_on_ins = None;
                    if !self.pull_before_processing {
                        let _ = self.card.process(&apdu.0);
                    }
                    self.inserted = false;
                    return vec![
                        err(&id, ErrorCode::CardRemoved),
                        json(&Event::CardRemoved {
                            reader: READER.into(),
                        }),
                    ];
                }
                let rapdu = self.card.process(&apdu.0);
                vec![ok(
                    &id,
                    BridgeResult::Transmitted(Transmitted {
                        rapdu: ApduHex(rapdu),
                    }),
                )]
            }
            BridgeRequest::Disconnect { handle } => {
                self.disconnected.push(handle);
                vec![ok(&id, BridgeResult::Done(Done {}))]
            }
            BridgeRequest::Release { .. } => vec![ok(&id, BridgeResult::Done(Done {}))],
            BridgeRequest::Status { .. } => vec![],
        }
    }
}

/// A bridge error as the bridge sends it.
pub fn bridge_err(code: ErrorCode, message: &str) -> BridgeError {
    BridgeError::new(code, message)
}
