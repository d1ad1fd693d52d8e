//! The widget's part, in Rust, against a virtual [`card::Card`]: used by the
//! integration tests and the benchmark (and a reference for the wasm widget).
//! Also test fixtures with the team's clearly marked TEST keys.

use std::net::SocketAddr;
use std::sync::Arc;

use card::personalise::Personalisation;
use card::Card;
use merchant_kit::{Merchant, WidgetSession};
use purse::apdu::{Response, StatusWord};
use purse::command::{InitializePurchase, Request, Select, SelectResponse, Verify};
use purse::crypto::{mac_eq, DesKey};
use purse::session::{self, label, Key32, VerifyMode};
use purse::types::{CardId, Expiry, PurseId, Terminal};
use purse::wire::{
    CompleteEnvelope, CompleteResponse, DebitCommand, DebitResponseMsg, DrawEnvelope, DrawRequest,
    DrawResponse, ErrorBody, Hex, MerchantResult, ResultC,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use payment_server::config::Config;
use payment_server::service::{system_clock, PaymentService};

/// TEST KEY (docs/TEAM.md): purchase master key MKP, key version 1.
pub const TEST_MKP: &str = "404142434445464748494A4B4C4D4E4F";
/// TEST KEY: load master key MKL, key version 1.
pub const TEST_MKL: &str = "505152535455565758595A5B5C5D5E5F";
/// Security module terminal id of the test setup.
pub const TEST_TERMINAL: Terminal = Terminal([0, 0, 0, 0, 0, 1]);
pub const TEST_PIN: &str = "1234";

/// A personalised test card (EUR, exponent 2, expiry 2030-12-31, PIN 1234).
pub fn test_card(card_digits: &str, balance: u32) -> Card {
    let state = Personalisation {
        card_id: CardId::parse(card_digits).expect("16 digits"),
        expiry: Expiry::parse("301231").expect("valid"),
        currency: 978,
        exponent: 2,
        balance,
        max_balance: 1_000_000,
        points: 0,
        points_max: 100_000,
        pin: TEST_PIN.into(),
        no_pin_limit: 1_000_000,
        key_version: 1,
        mkp: DesKey::from_hex(TEST_MKP).expect("hex"),
        mkl: DesKey::from_hex(TEST_MKL).expect("hex"),
    }
    .build()
    .expect("valid personalisation");
    Card::new(state)
}

/// Money balance of a card.
pub fn balance(card: &Card) -> u32 {
    card.state().purses[0].balance
}

/// A merchant for the config and its merchant-kit side.
#[derive(Clone)]
pub struct TestMerchant {
    pub id: String,
    pub key_hex: String,
    pub origin: String,
    pub modes: Vec<VerifyMode>,
}

impl TestMerchant {
    pub fn new(id: &str, key_byte: u8) -> Self {
        Self {
            id: id.into(),
            key_hex: hex::encode([key_byte; 32]),
            origin: format!("http://{id}.test"),
            modes: vec![],
        }
    }
    pub fn kit(&self) -> Merchant {
        Merchant::new(
            self.id.clone(),
            format!("{} shop", self.id),
            Key32::from_hex(&self.key_hex).expect("hex"),
        )
    }
    /// A session for `amount` cents under `mode`, expiring at `expires_at`.
    pub fn session(
        &self,
        txn_id: &str,
        amount: u32,
        mode: VerifyMode,
        expires_at: u64,
    ) -> WidgetSession {
        self.kit()
            .build_session(merchant_kit::SessionParams {
                txn_id: txn_id.into(),
                amount,
                currency: 978,
                exponent: 2,
                purse: PurseId::Money,
                expires_at,
                verify_mode: mode,
                result_url: format!("{}/result", self.origin),
                origin: self.origin.clone(),
                terminal: TEST_TERMINAL,
            })
            .expect("session")
    }
}

/// A config TOML for tests (TEST keys only).
pub fn test_config_toml(
    db_path: &std::path::Path,
    merchants: &[TestMerchant],
    grace: u64,
) -> String {
    let mut t = format!(
        "listen = \"127.0.0.1:0\"\ndb_path = {:?}\nrecovery_grace_secs = {grace}\noperator_token = \"test-operator-token\"\n\
         [security_module]\nterminal = \"000000000001\"\n[[security_module.keys]]\nversion = 1\nmkp = \"{TEST_MKP}\"\nmkl = \"{TEST_MKL}\"\n",
        db_path.display().to_string()
    );
    for m in merchants {
        let modes: Vec<String> = m
            .modes
            .iter()
            .map(|v| format!("\"{}\"", v.as_str()))
            .collect();
        t.push_str(&format!(
            "[[merchants]]\nid = \"{}\"\nname = \"{} shop\"\nkey = \"{}\"\norigins = [\"{}\"]\nverify_modes = [{}]\n",
            m.id,
            m.id,
            m.key_hex,
            m.origin,
            modes.join(", ")
        ));
    }
    t
}

/// Start a payment server on an ephemeral loopback port on the current runtime.
pub async fn spawn_server(config: &Config) -> (SocketAddr, Arc<PaymentService>) {
    let (service, app) = payment_server::build(config, system_clock()).expect("server builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (addr, service)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WidgetError {
    /// The payment server refused with this HTTP status and error code.
    Api {
        status: u16,
        code: String,
    },
    /// The card answered this status word.
    Card(StatusWord),
    Http(String),
    /// The widget's own checks failed (amount changed, S3 mismatch in client mode …).
    Check(&'static str),
}

impl WidgetError {
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Send an APDU to the card and split the answer.
pub fn transmit(card: &mut Card, req: &Request) -> Response {
    let r = card.process(&req.to_bytes());
    Response::parse(&r).expect("card answers a valid response APDU")
}

fn seal<T: Serialize>(key: &Key32, lab: &str, txn: &str, msg: &T) -> Hex {
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).expect("random");
    Hex(session::seal(
        key,
        nonce,
        &session::aad(lab, txn),
        &serde_json::to_vec(msg).expect("json"),
    ))
}

fn open<T: DeserializeOwned>(
    key: &Key32,
    lab: &str,
    txn: &str,
    sealed: &Hex,
) -> Result<T, WidgetError> {
    let p = session::open(key, &session::aad(lab, txn), sealed.as_slice())
        .map_err(|_| WidgetError::Check("seal"))?;
    serde_json::from_slice(&p).map_err(|_| WidgetError::Check("json"))
}

/// SELECT, VERIFY (with `pin`), INITIALIZE FOR PURCHASE: the draw request.
pub fn card_draw_request(
    card: &mut Card,
    ws: &WidgetSession,
    page_origin: &str,
    pin: Option<&str>,
) -> Result<DrawRequest, WidgetError> {
    card.reset();
    let sel = transmit(
        card,
        &Request::Select(Select {
            aid: purse::AID.to_vec(),
        }),
    );
    if !sel.sw.is_ok() {
        return Err(WidgetError::Card(sel.sw));
    }
    let info = SelectResponse::decode(&sel.data).map_err(|_| WidgetError::Check("select"))?;
    let s = &ws.session;
    if info.purse(s.purse).currency != s.currency {
        return Err(WidgetError::Check("currency"));
    }
    let mut pin_verified = false;
    if let Some(pin) = pin {
        let v = transmit(
            card,
            &Request::Verify(Verify {
                pin: Some(pin.as_bytes().to_vec()),
            }),
        );
        if !v.sw.is_ok() {
            return Err(WidgetError::Card(v.sw));
        }
        pin_verified = true;
    }
    let init = transmit(
        card,
        &Request::InitializePurchase(InitializePurchase {
            purse: s.purse,
            amount: s.amount,
            terminal: s.terminal,
        }),
    );
    if !init.sw.is_ok() {
        return Err(WidgetError::Card(init.sw));
    }
    Ok(DrawRequest {
        txn_id: s.txn_id.clone(),
        page_origin: page_origin.into(),
        amount: s.amount,
        purse: s.purse,
        select: Hex(sel.data),
        initialize: Hex(init.data),
        pin_verified,
    })
}

pub fn draw_envelope(ws: &WidgetSession, dr: &DrawRequest) -> DrawEnvelope {
    DrawEnvelope {
        session: ws.session.clone(),
        session_mac: ws.session_mac.clone(),
        etsk: ws.etsk.clone(),
        draw_request: seal(&ws.tsk(), label::DRAW_REQUEST, &ws.session.txn_id, dr),
    }
}

/// Open the debit command and check its amount against the session (the widget's check).
pub fn open_debit(ws: &WidgetSession, d: &DrawResponse) -> Result<DebitCommand, WidgetError> {
    let cmd: DebitCommand = open(
        &ws.tsk(),
        label::DEBIT_COMMAND,
        &ws.session.txn_id,
        &d.debit_command,
    )?;
    let parsed =
        purse::apdu::Command::parse(cmd.apdu.as_slice()).map_err(|_| WidgetError::Check("apdu"))?;
    let amount = u32::from_be_bytes(
        parsed
            .data
            .get(..4)
            .and_then(|a| a.try_into().ok())
            .ok_or(WidgetError::Check("apdu"))?,
    );
    if cmd.amount != ws.session.amount
        || amount != ws.session.amount
        || cmd.txn_id != ws.session.txn_id
    {
        return Err(WidgetError::Check("debit amount differs from the session"));
    }
    Ok(cmd)
}

pub fn complete_envelope(ws: &WidgetSession, card_response: &[u8]) -> CompleteEnvelope {
    let msg = DebitResponseMsg {
        txn_id: ws.session.txn_id.clone(),
        response: Hex(card_response.to_vec()),
    };
    CompleteEnvelope {
        session: ws.session.clone(),
        session_mac: ws.session_mac.clone(),
        etsk: ws.etsk.clone(),
        debit_response: seal(&ws.tsk(), label::DEBIT_RESPONSE, &ws.session.txn_id, &msg),
    }
}

pub fn open_result_c(ws: &WidgetSession, c: &CompleteResponse) -> Result<ResultC, WidgetError> {
    open(&ws.tsk(), label::RESULT_C, &ws.session.txn_id, &c.result_c)
}

/// HTTP side of the widget.
#[derive(Clone)]
pub struct Widget {
    pub http: reqwest::Client,
    pub base: String,
}

/// What a finished purchase gives the widget.
#[derive(Debug, Clone)]
pub struct Purchase {
    pub draw: DrawResponse,
    pub card_response: Vec<u8>,
    pub complete: Option<CompleteResponse>,
    pub result_c: Option<ResultC>,
    /// What the widget posts to the merchant's result URL.
    pub merchant_result: MerchantResult,
}

impl Widget {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
        }
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, WidgetError> {
        self.finish(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn draw(&self, env: &DrawEnvelope) -> Result<DrawResponse, WidgetError> {
        self.post("/v1/purchases/draw", env).await
    }

    pub async fn complete(&self, env: &CompleteEnvelope) -> Result<CompleteResponse, WidgetError> {
        self.post("/v1/purchases/complete", env).await
    }

    /// A whole purchase as the widget runs it. In `client`/`merchant` mode,
    /// `background_complete` also posts `complete` (capture without the merchant).
    pub async fn purchase(
        &self,
        card: &mut Card,
        ws: &WidgetSession,
        page_origin: &str,
        background_complete: bool,
    ) -> Result<Purchase, WidgetError> {
        let dr = card_draw_request(card, ws, page_origin, Some(TEST_PIN))?;
        let draw = self.draw(&draw_envelope(ws, &dr)).await?;
        let cmd = open_debit(ws, &draw)?;
        let card_response = card.process(cmd.apdu.as_slice());
        let resp =
            Response::parse(&card_response).map_err(|_| WidgetError::Check("card response"))?;
        let txn_id = ws.session.txn_id.clone();
        match ws.session.verify_mode {
            VerifyMode::PaymentServer | VerifyMode::SecurityModule => {
                let complete = self
                    .complete(&complete_envelope(ws, &card_response))
                    .await?;
                let result_c = open_result_c(ws, &complete)?;
                if !resp.sw.is_ok() {
                    return Err(WidgetError::Card(resp.sw));
                }
                Ok(Purchase {
                    merchant_result: MerchantResult::ResultM {
                        txn_id,
                        result_m: complete.result_m.clone(),
                    },
                    draw,
                    card_response,
                    complete: Some(complete),
                    result_c: Some(result_c),
                })
            }
            VerifyMode::Client | VerifyMode::Merchant => {
                if !resp.sw.is_ok() {
                    return Err(WidgetError::Card(resp.sw));
                }
                let d = purse::command::DebitResponse::decode(&resp.data)
                    .map_err(|_| WidgetError::Check("debit response"))?;
                if ws.session.verify_mode == VerifyMode::Client {
                    let exp = cmd
                        .expected_s3
                        .as_ref()
                        .ok_or(WidgetError::Check("no expected S3"))?;
                    if !mac_eq(exp.as_slice(), &d.s3) || d.balance_after != cmd.balance_after {
                        return Err(WidgetError::Check("S3 mismatch"));
                    }
                }
                let (complete, result_c) = if background_complete {
                    let c = self
                        .complete(&complete_envelope(ws, &card_response))
                        .await?;
                    let rc = open_result_c(ws, &c)?;
                    (Some(c), Some(rc))
                } else {
                    (None, None)
                };
                Ok(Purchase {
                    merchant_result: MerchantResult::S3 {
                        txn_id,
                        balance_after: d.balance_after,
                        s3: Hex(d.s3.to_vec()),
                        expected_s3_m: draw
                            .expected_s3_m
                            .clone()
                            .ok_or(WidgetError::Check("no expected_s3_m"))?,
                    },
                    draw,
                    card_response,
                    complete,
                    result_c,
                })
            }
        }
    }

    /// A signed merchant API call (GET with empty body, or POST with JSON).
    pub async fn merchant_call<T: DeserializeOwned>(
        &self,
        m: &Merchant,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, WidgetError> {
        let bytes = body
            .map(|b| serde_json::to_vec(b).expect("json"))
            .unwrap_or_default();
        let url = format!("{}{path}", self.base);
        let mut rb = if method == "GET" {
            self.http.get(url)
        } else {
            self.http.post(url).body(bytes.clone())
        };
        for (k, v) in merchant_kit::auth::sign(m, method, path, now(), &bytes) {
            rb = rb.header(k, v);
        }
        self.finish(rb).await
    }

    /// An operator call with the test operator token.
    pub async fn operator_call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, WidgetError> {
        let url = format!("{}{path}", self.base);
        let mut rb = if method == "GET" {
            self.http.get(url)
        } else {
            self.http
                .post(url)
                .json(body.unwrap_or(&serde_json::Value::Null))
        };
        rb = rb.header("authorization", "Bearer test-operator-token");
        self.finish(rb).await
    }

    async fn finish<T: DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<T, WidgetError> {
        let r = rb
            .send()
            .await
            .map_err(|e| WidgetError::Http(e.to_string()))?;
        let status = r.status().as_u16();
        let bytes = r
            .bytes()
            .await
            .map_err(|e| WidgetError::Http(e.to_string()))?;
        if status == 200 {
            serde_json::from_slice(&bytes).map_err(|e| WidgetError::Http(format!("bad JSON: {e}")))
        } else {
            let code = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error.code)
                .unwrap_or_else(|_| "?".into());
            Err(WidgetError::Api { status, code })
        }
    }
}
