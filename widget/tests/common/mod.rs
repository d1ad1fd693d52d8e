//! Shared by the native and the wasm tests: a payment server in miniature and the
//! world that wires widget, card and server by hand.
#![allow(dead_code)]

use purse::command::{DebitResponse, InitializePurchaseResponse, Request, SelectResponse};
use purse::crypto::DesKey;
use purse::security_module::{PurchaseDraw, SecurityModule, SoftwareKeys};
use purse::session::{
    aad, derive_dk, label, open, seal, session_mac, unwrap_tsk, wrap_tsk, Key32, Session,
    VerifyMode,
};
use purse::{BcdDate, BcdTime, PurseId, Terminal};
use serde_json::{json, Value};
use widget::api::{self, Bundle};
use widget::flow::{BridgeError, Screen};
use widget::keypad::{Key, SplitMix};
use widget::{Action, Config, Effect, Flow, Input, ParentEvent};

pub const READER: &str = "Virtual PCD 00 00";
pub const ORIGIN: &str = "http://127.0.0.1:8080";
pub const MKP: &str = "404142434445464748494A4B4C4D4E4F";
pub const MKL: &str = "505152535455565758595A5B5C5D5E5F";

/// The card in the reader: the real purse application natively, a small stand-in in wasm.
pub trait Chip {
    fn process(&mut self, apdu: &[u8]) -> Vec<u8>;
    fn reset(&mut self);
    fn balance(&self) -> u32;
    fn pin_tries_left(&self) -> u8;
}

/// A payment server in miniature, following DESIGN §4 with the widget's wire format.
pub struct Server {
    pub k_mp: Key32,
    pub sm: SecurityModule,
    pub seq: u32,
    pub drawn: Option<(String, purse::security_module::PurchaseAuthorization, Key32)>,
    pub debited: Vec<(String, u32)>,
    pub reports: Vec<String>,
    pub completes: u32,
    pub down: bool,
    /// Network goes down for `complete` once this many draws were answered.
    pub down_after_draws: u32,
    /// A hostile server: claims this much more than the session amount.
    pub skim: u32,
}

impl Server {
    pub fn new() -> Self {
        let mut keys = SoftwareKeys::new();
        keys.add_key_version(
            1,
            DesKey::from_hex(MKP).unwrap(),
            DesKey::from_hex(MKL).unwrap(),
        );
        let sm = SecurityModule::software(Terminal([0, 0, 0, 0, 0, 1]), keys);
        Server {
            k_mp: Key32::new([0x11; 32]),
            sm,
            seq: 0,
            drawn: None,
            debited: vec![],
            reports: vec![],
            completes: 0,
            down: false,
            down_after_draws: u32::MAX,
            skim: 0,
        }
    }

    pub fn bundle(&self, txn: &str, amount: u32, mode: VerifyMode) -> Bundle {
        let session = Session {
            merchant_id: "demo-store".into(),
            merchant_name: "Demo <Store>".into(),
            txn_id: txn.into(),
            order_ref: String::new(),
            amount,
            currency: 978,
            exponent: 2,
            purse: PurseId::Money,
            expires_at: 1_900_000_000,
            verify_mode: mode,
            result_url: format!("{ORIGIN}/orders/1/result"),
            origin: ORIGIN.into(),
            terminal: Terminal([0, 0, 0, 0, 0, 1]),
        };
        let dk = derive_dk(&self.k_mp, txn, "demo-store");
        let tsk = Key32::new([0x22; 32]);
        let etsk = wrap_tsk(&dk, [7; 12], txn, &tsk);
        let mac = session_mac(&self.k_mp, &session, &etsk);
        Bundle {
            session,
            session_mac: api::Hex(mac.to_vec()),
            etsk: api::Hex(etsk),
            tsk: hex::encode(tsk.bytes()),
        }
    }

    fn tsk_of(&self, s: &Session, etsk: &api::Hex) -> Key32 {
        let dk = derive_dk(&self.k_mp, &s.txn_id, &s.merchant_id);
        unwrap_tsk(&dk, &s.txn_id, etsk.as_slice()).unwrap()
    }

    fn post(&mut self, path: &str, body: &str) -> Result<(u16, String), String> {
        use api::Hex;
        if self.down {
            return Err("network down".into());
        }
        if path == api::PATH_COMPLETE && self.seq >= self.down_after_draws {
            self.down = true;
            return Err("network down".into());
        }
        let err = |code: &str| {
            Ok((
                402,
                json!({"error": {"code": code, "message": code}}).to_string(),
            ))
        };
        match path {
            api::PATH_DRAW => {
                let b: api::DrawEnvelope = serde_json::from_str(body).unwrap();
                let s = &b.session;
                assert!(purse::session::verify_session_mac(
                    &self.k_mp,
                    s,
                    b.etsk.as_slice(),
                    b.session_mac.as_slice()
                ));
                let tsk = self.tsk_of(s, &b.etsk);
                let plain = open(
                    &tsk,
                    &aad(label::DRAW_REQUEST, &s.txn_id),
                    b.draw_request.as_slice(),
                )
                .unwrap();
                let d: api::DrawRequest = serde_json::from_slice(&plain).unwrap();
                assert_eq!(d.page_origin, ORIGIN);
                assert_eq!(d.amount, s.amount);
                let sel = SelectResponse::decode(d.select.as_slice()).unwrap();
                let init = InitializePurchaseResponse::decode(d.initialize.as_slice()).unwrap();
                self.seq += 1;
                let draw = PurchaseDraw {
                    card_id: sel.card_id,
                    expiry: sel.expiry,
                    key_version: init.key_version,
                    purse: s.purse,
                    balance: init.balance,
                    atc: init.atc,
                    random: init.random,
                    amount: s.amount,
                    seq: self.seq,
                    date: BcdDate::from_ymd(2026, 11, 23).unwrap(),
                    time: BcdTime::from_hms(20, 0, 0).unwrap(),
                };
                let auth = match self.sm.authorize_purchase(&draw) {
                    Ok(a) => a,
                    Err(_) => return err("insufficient_funds"),
                };
                let one_trip = matches!(s.verify_mode, VerifyMode::Client | VerifyMode::Merchant);
                let cmd = api::DebitCommand {
                    txn_id: s.txn_id.clone(),
                    apdu: Hex(Request::DebitPurchase(auth.debit).to_bytes()),
                    amount: s.amount + self.skim,
                    balance_after: auth.balance_after,
                    check_value: (s.verify_mode == VerifyMode::Client).then(|| {
                        Hex(purse::purchase::check_value(
                            &s.txn_id,
                            auth.balance_after,
                            &auth.expected_s3,
                        )
                        .to_vec())
                    }),
                };
                let sealed = seal(
                    &tsk,
                    [3; 12],
                    &aad(label::DEBIT_COMMAND, &s.txn_id),
                    &serde_json::to_vec(&cmd).unwrap(),
                );
                // Stand-in for the DK-sealed ExpectedS3 (the widget passes it on untouched).
                let exp_m = one_trip.then(|| Hex(auth.expected_s3.to_vec()));
                self.drawn = Some((s.txn_id.clone(), auth, tsk));
                Ok((
                    200,
                    serde_json::to_string(&api::DrawResponse {
                        txn_id: s.txn_id.clone(),
                        verify_mode: s.verify_mode,
                        debit_command: Hex(sealed),
                        expected_s3_m: exp_m,
                    })
                    .unwrap(),
                ))
            }
            api::PATH_COMPLETE => {
                let b: api::CompleteEnvelope = serde_json::from_str(body).unwrap();
                let (txn, auth, tsk) = self.drawn.as_ref().unwrap();
                assert_eq!(&b.session.txn_id, txn);
                let plain = open(
                    tsk,
                    &aad(label::DEBIT_RESPONSE, txn),
                    b.debit_response.as_slice(),
                )
                .unwrap();
                let m: api::DebitResponseMsg = serde_json::from_slice(&plain).unwrap();
                let rapdu = purse::apdu::Response::parse(m.response.as_slice()).unwrap();
                self.completes += 1;
                let status = if rapdu.sw.is_ok() {
                    let r = DebitResponse::decode(&rapdu.data).unwrap();
                    auth.verify_s3(r.balance_after, &r.s3).unwrap();
                    if !self.debited.iter().any(|(t, _)| t == txn) {
                        self.debited.push((txn.clone(), auth.debit.amount));
                    }
                    api::PurchaseStatus::Debited
                } else {
                    api::PurchaseStatus::Failed
                };
                let rc = api::ResultC {
                    txn_id: txn.clone(),
                    status,
                    merchant_name: "Demo <Store>".into(),
                    amount: auth.debit.amount,
                    currency: 978,
                    exponent: 2,
                    balance_after: Some(auth.balance_after),
                    card_sw: None,
                    date: "20261123".into(),
                    time: "200000".into(),
                };
                let rc = seal(
                    tsk,
                    [4; 12],
                    &aad(label::RESULT_C, txn),
                    &serde_json::to_vec(&rc).unwrap(),
                );
                Ok((
                    200,
                    serde_json::to_string(&api::CompleteResponse {
                        txn_id: txn.clone(),
                        status,
                        result_c: Hex(rc),
                        result_m: Hex(vec![0; 40]),
                    })
                    .unwrap(),
                ))
            }
            api::PATH_SUSPICIOUS => {
                let b: api::SuspiciousEnvelope = serde_json::from_str(body).unwrap();
                let tsk = self.tsk_of(&b.session, &b.etsk);
                let plain = open(
                    &tsk,
                    &aad(label::SUSPICIOUS, &b.session.txn_id),
                    b.report.as_slice(),
                )
                .unwrap();
                let r: api::SuspiciousReport = serde_json::from_slice(&plain).unwrap();
                assert_eq!(r.page_origin, ORIGIN);
                self.reports.push(r.txn_id);
                Ok((
                    200,
                    json!({"txn_id": b.session.txn_id, "recorded": true}).to_string(),
                ))
            }
            _ => Ok((404, "{}".into())),
        }
    }
}

/// The widget, the card in the reader (or not) and the server, wired by hand.
pub struct World<C: Chip> {
    pub flow: Flow,
    pub card: C,
    pub inserted: bool,
    pub server: Server,
    pub events: Vec<ParentEvent>,
    pub screen: Screen,
    pub extension: bool,
    /// Pull the card when the next APDU with this INS is sent.
    pub pull_on_ins: Option<u8>,
    /// With `pull_on_ins`: the card leaves before it processed the command.
    pub pull_before_processing: bool,
    /// The bridge's guard refuses the next APDUs with this INS (nothing reaches
    /// the card) with these errors, one per APDU, in order.
    pub refuse_on_ins: Option<(u8, Vec<BridgeError>)>,
    pub queue: std::collections::VecDeque<Input>,
}

impl<C: Chip> World<C> {
    pub fn new(card: C, amount: u32, mode: VerifyMode) -> Self {
        let server = Server::new();
        let bundle = server.bundle("T-1", amount, mode);
        let cfg = Config {
            timeout_ms: 120_000,
            ..Config::default()
        };
        let flow = Flow::new(cfg, bundle, ORIGIN, Box::new(SplitMix(42))).unwrap();
        let screen = flow.view().screen;
        World {
            flow,
            card,
            inserted: true,
            server,
            events: vec![],
            screen,
            extension: true,
            pull_on_ins: None,
            refuse_on_ins: None,
            pull_before_processing: false,
            queue: Default::default(),
        }
    }

    pub fn feed(&mut self, input: Input) {
        self.queue.push_back(input);
        while let Some(i) = self.queue.pop_front() {
            let fx = self.flow.handle(i);
            for e in fx {
                self.run(e);
            }
        }
    }

    fn run(&mut self, e: Effect) {
        match e {
            Effect::Render(v) => {
                // Every view renders.
                let html = widget::view::render(&v);
                assert!(html.contains("cp-widget"));
                self.screen = v.screen;
            }
            Effect::Parent(ev) => self.events.push(ev),
            Effect::StartTimer(..) | Effect::StopTimer(_) => {}
            Effect::Http { id, path, body } => {
                let result = self.server.post(path, &body);
                self.queue.push_back(Input::Http { id, result });
            }
            Effect::Bridge { id, msg } => {
                if !self.extension {
                    return; // nobody answers; the Hello timer decides
                }
                let result = self.bridge(&msg);
                if msg["type"] != "disconnect" {
                    self.queue.push_back(Input::BridgeReply { id, result });
                }
            }
        }
    }

    fn bridge(&mut self, msg: &Value) -> Result<Value, BridgeError> {
        let err = |c: &str| {
            Err(BridgeError {
                code: c.into(),
                message: c.into(),
            })
        };
        match msg["type"].as_str().unwrap() {
            "hello" => Ok(json!({"version": 1})),
            "readers" => Ok(json!([{"name": READER, "card_present": self.inserted}])),
            "connect" => {
                if !self.inserted {
                    return err("no_card");
                }
                self.card.reset();
                Ok(json!({"handle": 1, "atr": "3B00"}))
            }
            "transmit" => {
                if !self.inserted {
                    return err("card_removed");
                }
                let apdu = hex::decode(msg["apdu"].as_str().unwrap()).unwrap();
                if let Some((ins, errors)) = &mut self.refuse_on_ins {
                    if *ins == apdu[1] && !errors.is_empty() {
                        return Err(errors.remove(0));
                    }
                }
                if self.pull_on_ins == Some(apdu[1]) {
                    self.pull_on_ins = None;
                    // The card processes the command, then leaves the reader before answering.
                    if !self.pull_before_processing {
                        self.card.process(&apdu);
                    }
                    self.inserted = false;
                    return err("card_removed");
                }
                Ok(json!({"rapdu": hex::encode(self.card.process(&apdu))}))
            }
            _ => Ok(json!({})),
        }
    }

    pub fn press(&mut self, a: Action) {
        self.feed(Input::User(a));
    }

    /// Type a PIN by finding each digit's button on the current keypad.
    pub fn type_pin(&mut self, pin: &str) {
        let Screen::Pin { layout, .. } = self.screen.clone() else {
            panic!("not on PIN screen: {:?}", self.screen)
        };
        for c in pin.chars() {
            let d = c.to_digit(10).unwrap() as u8;
            assert!(layout.keys.iter().any(|k| k.key == Key::Digit(d)));
            self.press(Action::Digit(d));
        }
        self.press(Action::SubmitPin);
    }

    pub fn balance(&self) -> u32 {
        self.card.balance()
    }

    pub fn last_event(&self) -> &ParentEvent {
        self.events.last().unwrap()
    }
}
