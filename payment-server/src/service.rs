//! The payment service core: draw, complete, merchant queries, recovery and
//! suspicious-purchase reports. No HTTP here: handlers call these methods with
//! parsed messages and map [`PaymentError`] to JSON.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use purse::apdu::{Response, StatusWord};
use purse::command::{
    DebitResponse, InitializePurchaseResponse, LogKind, LogRecord, Request, SelectResponse,
};
use purse::crypto::mac_eq;
use purse::security_module::{PurchaseDraw, SecurityModule, SecurityModuleError, SoftwareKeys};
use purse::session::{self, label, Key32, Session, VerifyMode};
use purse::types::{BcdDate, BcdTime, CardId, Expiry, PurseId};
use purse::wire::{
    CompleteEnvelope, CompleteResponse, DebitCommand, DebitResponseMsg, DrawEnvelope, DrawRequest,
    DrawResponse, ExpectedS3, Hex, PurchaseStatus, ResultC, ResultM, SuspiciousAck,
    SuspiciousEnvelope, SuspiciousReport,
};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::config::{Config, MerchantEntry};
use crate::error::PaymentError;
use crate::store::Store;

/// Transaction states (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnState {
    Created,
    Drawn,
    Debited,
    Confirmed,
    Settled,
    Failed,
    Reversed,
    Unknown,
}

impl TxnState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Drawn => "drawn",
            Self::Debited => "debited",
            Self::Confirmed => "confirmed",
            Self::Settled => "settled",
            Self::Failed => "failed",
            Self::Reversed => "reversed",
            Self::Unknown => "unknown",
        }
    }
    pub fn parse(s: &str) -> Result<Self, PaymentError> {
        Ok(match s {
            "created" => Self::Created,
            "drawn" => Self::Drawn,
            "debited" => Self::Debited,
            "confirmed" => Self::Confirmed,
            "settled" => Self::Settled,
            "failed" => Self::Failed,
            "reversed" => Self::Reversed,
            "unknown" => Self::Unknown,
            _ => return Err(PaymentError::Internal(format!("bad state {s}"))),
        })
    }
    /// States in which the card's debit is proven (money captured).
    pub fn is_captured(self) -> bool {
        matches!(self, Self::Debited | Self::Confirmed | Self::Settled)
    }
}

fn mode_parse(s: &str) -> Result<VerifyMode, PaymentError> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| PaymentError::Internal(format!("bad mode {s}")))
}

/// Wall clock in Unix seconds (injectable for tests).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    })
}

/// A transaction as the merchant and operator see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnView {
    pub merchant_id: String,
    pub txn_id: String,
    pub state: TxnState,
    pub verify_mode: VerifyMode,
    pub amount: u32,
    pub currency: u16,
    pub exponent: u8,
    pub purse: PurseId,
    pub origin: String,
    /// Masked card id.
    pub card: String,
    pub atc: u16,
    pub seq: u32,
    pub created_at: u64,
    pub drawn_at: u64,
    pub debited_at: Option<u64>,
    pub confirmed_at: Option<u64>,
    pub updated_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    pub log: Vec<LogEntry>,
    pub suspicious_reports: Vec<SuspiciousEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub event: String,
    pub state: String,
    pub detail: String,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspiciousEntry {
    pub page_origin: String,
    pub reason: String,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspiciousListEntry {
    pub merchant_id: String,
    pub txn_id: String,
    pub page_origin: String,
    pub reason: String,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspiciousList {
    pub reports: Vec<SuspiciousListEntry>,
}

/// A transaction that needs recovery (drawn, never completed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryItem {
    pub merchant_id: String,
    pub txn_id: String,
    pub state: TxnState,
    pub amount: u32,
    pub currency: u16,
    pub card: String,
    pub atc: u16,
    pub seq: u32,
    pub drawn_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryList {
    pub transactions: Vec<RecoveryItem>,
}

/// Operator's resolution of a transaction in recovery, from the card's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// The card's log record (READ LOG, 29 bytes) of this transaction, if the
    /// card has one: then the debit happened.
    #[serde(default)]
    pub log_record: Option<Hex>,
    /// The card's current ATC (from a later INITIALIZE or the newest log record):
    /// with no log record, an ATC past the transaction's proves no debit came.
    pub card_atc: u16,
}

/// Merchant confirmation (and, in `merchant` mode, proof of debit by S3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    #[serde(default)]
    pub balance_after: Option<u32>,
    #[serde(default)]
    pub s3: Option<Hex>,
}

/// Who is asking on the merchant/operator API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Merchant(String),
    Operator,
}

/// The payment service.
pub struct PaymentService {
    merchants: BTreeMap<String, MerchantEntry>,
    sm: Arc<SecurityModule>,
    store: Store,
    clock: Clock,
    recovery_grace_secs: u64,
    operator_token: Option<String>,
}

impl core::fmt::Debug for PaymentService {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PaymentService")
            .field("merchants", &self.merchants.keys().collect::<Vec<_>>())
            .field("sm", &self.sm)
            .finish_non_exhaustive()
    }
}

fn random12() -> [u8; 12] {
    let mut n = [0u8; 12];
    getrandom::fill(&mut n).expect("OS random source");
    n
}

fn sha256(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

fn malformed(e: impl std::fmt::Display) -> PaymentError {
    PaymentError::Malformed(e.to_string())
}

/// What the store keeps of one transaction (only what the logic needs).
struct Row {
    state: TxnState,
    verify_mode: VerifyMode,
    amount: u32,
    currency: u16,
    exponent: u8,
    purse: PurseId,
    origin: String,
    card_id: CardId,
    card_expiry: Expiry,
    key_version: u8,
    atc: u16,
    card_random: [u8; 4],
    balance_before: u32,
    balance_after: u32,
    seq: u32,
    date: BcdDate,
    time: BcdTime,
    expected_s3: Vec<u8>,
    draw_hash: Vec<u8>,
    draw_response: String,
    complete_hash: Option<Vec<u8>>,
    complete_response: Option<String>,
}

fn load_row(c: &Connection, merchant_id: &str, txn_id: &str) -> Result<Option<Row>, PaymentError> {
    let r = qrow(c,
            "SELECT state, verify_mode, amount, currency, exponent, purse, origin, card_id, card_expiry,
                    key_version, atc, card_random, balance_before, balance_after, seq, date, time,
                    expected_s3, draw_hash, draw_response, complete_hash, complete_response
             FROM transactions WHERE merchant_id = ?1 AND txn_id = ?2",
            params![merchant_id, txn_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, u16>(3)?,
                    r.get::<_, u8>(4)?,
                    r.get::<_, u8>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, u8>(9)?,
                    r.get::<_, u16>(10)?,
                    r.get::<_, Vec<u8>>(11)?,
                    (
                        r.get::<_, u32>(12)?,
                        r.get::<_, u32>(13)?,
                        r.get::<_, u32>(14)?,
                        r.get::<_, String>(15)?,
                        r.get::<_, String>(16)?,
                        r.get::<_, Vec<u8>>(17)?,
                        r.get::<_, Vec<u8>>(18)?,
                        r.get::<_, String>(19)?,
                        r.get::<_, Option<Vec<u8>>>(20)?,
                        r.get::<_, Option<String>>(21)?,
                    ),
                ))
            },
        )
        .optional()?;
    let Some((
        state,
        mode,
        amount,
        currency,
        exponent,
        purse,
        origin,
        card,
        expiry,
        kv,
        atc,
        rnd,
        rest,
    )) = r
    else {
        return Ok(None);
    };
    let bad = |w: &str| PaymentError::Internal(format!("stored {w} invalid"));
    Ok(Some(Row {
        state: TxnState::parse(&state)?,
        verify_mode: mode_parse(&mode)?,
        amount,
        currency,
        exponent,
        purse: PurseId::from_p2(purse).map_err(|_| bad("purse"))?,
        origin,
        card_id: CardId::parse(&card).map_err(|_| bad("card"))?,
        card_expiry: Expiry::parse(&expiry).map_err(|_| bad("expiry"))?,
        key_version: kv,
        atc,
        card_random: rnd.try_into().map_err(|_| bad("random"))?,
        balance_before: rest.0,
        balance_after: rest.1,
        seq: rest.2,
        date: BcdDate::parse(&rest.3).map_err(|_| bad("date"))?,
        time: BcdTime::parse(&rest.4).map_err(|_| bad("time"))?,
        expected_s3: rest.5,
        draw_hash: rest.6,
        draw_response: rest.7,
        complete_hash: rest.8,
        complete_response: rest.9,
    }))
}

/// Statements run through SQLite's prepared-statement cache: the hot path
/// parses no SQL after warm-up.
fn exec<P: rusqlite::Params>(c: &Connection, sql: &str, p: P) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(p)
}

fn qrow<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(
    c: &Connection,
    sql: &str,
    p: P,
    f: F,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(p, f)
}

fn log_event(
    c: &Connection,
    merchant_id: &str,
    txn_id: &str,
    event: &str,
    state: TxnState,
    detail: &str,
    at: u64,
) -> Result<(), PaymentError> {
    exec(c,
        "INSERT INTO txn_log (merchant_id, txn_id, event, state, detail, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![merchant_id, txn_id, event, state.as_str(), detail, at],
    )?;
    Ok(())
}

fn set_state(
    c: &Connection,
    merchant_id: &str,
    txn_id: &str,
    state: TxnState,
    now: u64,
) -> Result<(), PaymentError> {
    let col = match state {
        TxnState::Debited => ", debited_at = ?4",
        TxnState::Confirmed => ", confirmed_at = ?4",
        _ => ", updated_at = ?4",
    };
    exec(c,
        &format!("UPDATE transactions SET state = ?3, updated_at = ?4{col} WHERE merchant_id = ?1 AND txn_id = ?2"),
        params![merchant_id, txn_id, state.as_str(), now],
    )?;
    Ok(())
}

fn next_seq(c: &Connection, terminal: &str) -> Result<u32, PaymentError> {
    exec(
        c,
        "INSERT INTO sm_counter (terminal, seq) VALUES (?1, 1)
         ON CONFLICT (terminal) DO UPDATE SET seq = seq + 1",
        params![terminal],
    )?;
    let seq: i64 = qrow(
        c,
        "SELECT seq FROM sm_counter WHERE terminal = ?1",
        params![terminal],
        |r| r.get(0),
    )?;
    u32::try_from(seq)
        .map_err(|_| PaymentError::Internal("security module sequence exhausted".into()))
}

fn sm_error(e: SecurityModuleError) -> PaymentError {
    match e {
        SecurityModuleError::UnknownKeyVersion(_) => PaymentError::UnknownKeyVersion,
        SecurityModuleError::CardExpired => PaymentError::CardExpired,
        SecurityModuleError::InsufficientFunds { .. } => PaymentError::InsufficientFunds,
        SecurityModuleError::S3Mismatch => PaymentError::S3Mismatch,
        other => PaymentError::Internal(format!("security module: {other}")),
    }
}

/// Keys of one verified session (DK and TSK), zeroized on drop.
struct SessionKeys {
    dk: Key32,
    tsk: Key32,
}

impl PaymentService {
    pub fn new(config: &Config, store: Store, clock: Clock) -> Self {
        let mut keys = SoftwareKeys::new();
        for k in &config.key_versions {
            keys.add_key_version(k.version, k.mkp.clone(), k.mkl.clone());
        }
        let sm = SecurityModule::software(config.terminal, keys);
        Self {
            merchants: config.merchants.clone(),
            sm: Arc::new(sm),
            store,
            clock,
            recovery_grace_secs: config.recovery_grace_secs,
            operator_token: config.operator_token.clone(),
        }
    }

    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    pub fn merchant(&self, id: &str) -> Result<&MerchantEntry, PaymentError> {
        self.merchants.get(id).ok_or(PaymentError::UnknownMerchant)
    }

    /// Check the session MAC and unwrap TSK. `check_expiry` only for the draw:
    /// a card debited just before expiry must still be completed.
    fn open_session(
        &self,
        s: &Session,
        session_mac: &[u8],
        etsk: &[u8],
        check_expiry: bool,
    ) -> Result<SessionKeys, PaymentError> {
        let id_ok = |v: &str| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        };
        if !id_ok(&s.txn_id) || !id_ok(&s.merchant_id) {
            return Err(PaymentError::Malformed(
                "txn_id and merchant_id: 1..128 of [A-Za-z0-9-_.:]".into(),
            ));
        }
        let m = self.merchant(&s.merchant_id)?;
        if !session::verify_session_mac(&m.key, s, etsk, session_mac) {
            return Err(PaymentError::BadMac);
        }
        if !m.verify_modes.contains(&s.verify_mode) {
            return Err(PaymentError::ModeNotAllowed);
        }
        if !m.origins.is_empty() && !m.origins.iter().any(|o| o == &s.origin) {
            return Err(PaymentError::OriginMismatch);
        }
        if s.terminal != self.sm.terminal() {
            return Err(PaymentError::TerminalMismatch);
        }
        if check_expiry && s.expires_at < self.now() {
            return Err(PaymentError::Expired);
        }
        let dk = session::derive_dk(&m.key, &s.txn_id, &s.merchant_id);
        let tsk = session::unwrap_tsk(&dk, &s.txn_id, etsk).map_err(|_| PaymentError::BadSeal)?;
        Ok(SessionKeys { dk, tsk })
    }

    /// `POST /v1/purchases/draw`.
    pub async fn draw(&self, env: DrawEnvelope) -> Result<DrawResponse, PaymentError> {
        let span = tracing::info_span!("draw", txn = %env.session.txn_id, merchant = %env.session.merchant_id);
        let r = self.draw_inner(env).instrument(span.clone()).await;
        span.in_scope(|| match &r {
            Ok(_) => tracing::info!("drawn"),
            Err(e) => tracing::warn!(code = e.code(), "draw refused"),
        });
        r
    }

    async fn draw_inner(&self, env: DrawEnvelope) -> Result<DrawResponse, PaymentError> {
        let s = env.session;
        let keys = self.open_session(&s, env.session_mac.as_slice(), env.etsk.as_slice(), true)?;
        let plain = session::open(
            &keys.tsk,
            &session::aad(label::DRAW_REQUEST, &s.txn_id),
            env.draw_request.as_slice(),
        )
        .map_err(|_| PaymentError::BadSeal)?;
        let dr: DrawRequest = serde_json::from_slice(&plain).map_err(malformed)?;
        if dr.txn_id != s.txn_id {
            return Err(PaymentError::TxnMismatch);
        }
        if dr.page_origin != s.origin {
            return Err(PaymentError::OriginMismatch);
        }
        if dr.amount != s.amount || dr.purse != s.purse {
            return Err(PaymentError::AmountMismatch);
        }
        let sel = SelectResponse::decode(dr.select.as_slice()).map_err(malformed)?;
        let init =
            InitializePurchaseResponse::decode(dr.initialize.as_slice()).map_err(malformed)?;
        let p = sel.purse(s.purse);
        if p.currency != s.currency || p.exponent != s.exponent {
            return Err(PaymentError::CurrencyMismatch);
        }
        if init.key_version != sel.key_version {
            return Err(PaymentError::Malformed(
                "key version differs between SELECT and INITIALIZE".into(),
            ));
        }
        if init.atc == 0 {
            return Err(PaymentError::Malformed(
                "ATC 0 is never returned by INITIALIZE".into(),
            ));
        }
        let draw_hash = sha256(&plain);
        let now = self.now();
        let sm = self.sm.clone();
        let merchant = s.merchant_id.clone();
        let txn = s.txn_id.clone();
        let card_id = sel.card_id;
        let expiry = sel.expiry;
        let date = BcdDate::from_unix(now);
        let time = BcdTime::from_unix(now);
        let SessionKeys { dk, tsk } = keys;
        self.store
            .run(move |c| {
                if let Some(row) = load_row(c, &merchant, &txn)? {
                    // A retry of the same draw gets the stored answer; anything else is a replay.
                    if row.state == TxnState::Drawn && row.draw_hash == draw_hash {
                        return serde_json::from_str(&row.draw_response).map_err(|e| PaymentError::Internal(e.to_string()));
                    }
                    return Err(PaymentError::Replay);
                }
                let used: Option<String> = qrow(c,
                        "SELECT txn_id FROM transactions WHERE card_id = ?1 AND atc = ?2",
                        params![card_id.full(), init.atc],
                        |r| r.get(0),
                    )
                    .optional()?;
                if used.is_some() {
                    return Err(PaymentError::Replay);
                }
                let seq = next_seq(c, &sm.terminal().to_string())?;
                let auth = sm
                    .authorize_purchase(&PurchaseDraw {
                        card_id,
                        expiry,
                        key_version: init.key_version,
                        purse: s.purse,
                        balance: init.balance,
                        atc: init.atc,
                        random: init.random,
                        amount: s.amount,
                        seq,
                        date,
                        time,
                    })
                    .map_err(sm_error)?;
                let apdu = Request::DebitPurchase(auth.debit).to_bytes();
                let one_trip = matches!(s.verify_mode, VerifyMode::Client | VerifyMode::Merchant);
                let cmd = DebitCommand {
                    txn_id: txn.clone(),
                    apdu: Hex(apdu),
                    amount: s.amount,
                    balance_after: auth.balance_after,
                    expected_s3: (s.verify_mode == VerifyMode::Client).then(|| Hex(auth.expected_s3.to_vec())),
                };
                let cmd_json = serde_json::to_vec(&cmd).map_err(|e| PaymentError::Internal(e.to_string()))?;
                let expected_s3_m = if one_trip {
                    let e = ExpectedS3 {
                        merchant_id: merchant.clone(),
                        txn_id: txn.clone(),
                        amount: s.amount,
                        currency: s.currency,
                        exponent: s.exponent,
                        purse: s.purse,
                        origin: s.origin.clone(),
                        card: card_id.masked(),
                        atc: init.atc,
                        seq,
                        balance_after: auth.balance_after,
                        expected_s3: Hex(auth.expected_s3.to_vec()),
                    };
                    let j = serde_json::to_vec(&e).map_err(|e| PaymentError::Internal(e.to_string()))?;
                    Some(Hex(session::seal(&dk, random12(), &session::aad(label::EXPECTED_S3, &txn), &j)))
                } else {
                    None
                };
                let resp = DrawResponse {
                    txn_id: txn.clone(),
                    verify_mode: s.verify_mode,
                    debit_command: Hex(session::seal(
                        &tsk,
                        random12(),
                        &session::aad(label::DEBIT_COMMAND, &txn),
                        &cmd_json,
                    )),
                    expected_s3_m,
                };
                let resp_json = serde_json::to_string(&resp).map_err(|e| PaymentError::Internal(e.to_string()))?;
                exec(c,
                    "INSERT INTO transactions (merchant_id, txn_id, state, verify_mode, amount, currency, exponent,
                        purse, origin, card_id, card_expiry, key_version, atc, card_random, balance_before,
                        balance_after, seq, date, time, expected_s3, draw_hash, draw_response,
                        created_at, drawn_at, updated_at)
                     VALUES (?1, ?2, 'drawn', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                        ?18, ?19, ?20, ?21, ?22, ?22, ?22)",
                    params![
                        merchant,
                        txn,
                        s.verify_mode.as_str(),
                        s.amount,
                        s.currency,
                        s.exponent,
                        s.purse.p2(),
                        s.origin,
                        card_id.full(),
                        String::from(expiry),
                        init.key_version,
                        init.atc,
                        init.random.to_vec(),
                        init.balance,
                        auth.balance_after,
                        seq,
                        String::from(date),
                        String::from(time),
                        auth.expected_s3.to_vec(),
                        draw_hash,
                        resp_json,
                        now,
                    ],
                )?;
                log_event(c, &merchant, &txn, "draw", TxnState::Drawn, &format!("card {card_id} atc {}", init.atc), now)?;
                Ok(resp)
            })
            .await
    }

    /// `POST /v1/purchases/complete`.
    pub async fn complete(&self, env: CompleteEnvelope) -> Result<CompleteResponse, PaymentError> {
        let span = tracing::info_span!("complete", txn = %env.session.txn_id, merchant = %env.session.merchant_id);
        let r = self.complete_inner(env).instrument(span.clone()).await;
        span.in_scope(|| match &r {
            Ok(c) => tracing::info!(status = ?c.status, "completed"),
            Err(e) => tracing::warn!(code = e.code(), "complete refused"),
        });
        r
    }

    async fn complete_inner(
        &self,
        env: CompleteEnvelope,
    ) -> Result<CompleteResponse, PaymentError> {
        let s = env.session;
        let keys = self.open_session(&s, env.session_mac.as_slice(), env.etsk.as_slice(), false)?;
        let plain = session::open(
            &keys.tsk,
            &session::aad(label::DEBIT_RESPONSE, &s.txn_id),
            env.debit_response.as_slice(),
        )
        .map_err(|_| PaymentError::BadSeal)?;
        let msg: DebitResponseMsg = serde_json::from_slice(&plain).map_err(malformed)?;
        if msg.txn_id != s.txn_id {
            return Err(PaymentError::TxnMismatch);
        }
        let card_resp = Response::parse(msg.response.as_slice()).map_err(malformed)?;
        let debit = if card_resp.sw == StatusWord::OK {
            Some(DebitResponse::decode(&card_resp.data).map_err(malformed)?)
        } else {
            None
        };
        let fingerprint = sha256(msg.response.as_slice());
        let now = self.now();
        let sm = self.sm.clone();
        let SessionKeys { dk, tsk } = keys;
        self.store
            .run(move |c| {
                let row = load_row(c, &s.merchant_id, &s.txn_id)?.ok_or(PaymentError::UnknownTxn)?;
                if row.complete_hash.as_deref() == Some(&fingerprint[..]) {
                    // The same request again: the stored answer.
                    let stored = row.complete_response.as_deref().unwrap_or_default();
                    return serde_json::from_str(stored).map_err(|e| PaymentError::Internal(e.to_string()));
                }
                // Captured by the merchant's confirm (modes client/merchant) before the
                // widget's background complete arrived: the same card answer gets its
                // results, with no second capture and no state change.
                let late_after_confirm = row.state.is_captured() && row.complete_hash.is_none() && debit.is_some();
                let may_complete = matches!(row.state, TxnState::Drawn | TxnState::Unknown)
                    || (row.state == TxnState::Failed && debit.is_some())
                    || late_after_confirm;
                if !may_complete {
                    return Err(PaymentError::Replay);
                }
                let (status, new_state, sw) = match &debit {
                    None => (PurchaseStatus::Failed, TxnState::Failed, Some(card_resp.sw)),
                    Some(d) => {
                        verify_s3(&sm, &row, d.balance_after, &d.s3)?;
                        (PurchaseStatus::Debited, TxnState::Debited, None)
                    }
                };
                let resp = build_results(&s, &row, status, sw, &dk, &tsk)?;
                let resp_json = serde_json::to_string(&resp).map_err(|e| PaymentError::Internal(e.to_string()))?;
                exec(c,
                    "UPDATE transactions SET complete_hash = ?3, complete_response = ?4, card_s3 = ?5, card_sw = ?6
                     WHERE merchant_id = ?1 AND txn_id = ?2",
                    params![
                        s.merchant_id,
                        s.txn_id,
                        fingerprint,
                        resp_json,
                        debit.as_ref().map(|d| d.s3.to_vec()),
                        card_resp.sw.0,
                    ],
                )?;
                let new_state = if late_after_confirm {
                    row.state
                } else {
                    set_state(c, &s.merchant_id, &s.txn_id, new_state, now)?;
                    new_state
                };
                let detail = match sw {
                    Some(sw) => format!("card refused: {:04X}", sw.0),
                    None => "S3 verified".into(),
                };
                log_event(c, &s.merchant_id, &s.txn_id, "complete", new_state, &detail, now)?;
                Ok(resp)
            })
            .await
    }

    /// `POST /v1/purchases/suspicious`: the shopper says "this is not my purchase".
    pub async fn suspicious(&self, env: SuspiciousEnvelope) -> Result<SuspiciousAck, PaymentError> {
        let s = env.session;
        let keys = self.open_session(&s, env.session_mac.as_slice(), env.etsk.as_slice(), false)?;
        let plain = session::open(
            &keys.tsk,
            &session::aad(label::SUSPICIOUS, &s.txn_id),
            env.report.as_slice(),
        )
        .map_err(|_| PaymentError::BadSeal)?;
        let rep: SuspiciousReport = serde_json::from_slice(&plain).map_err(malformed)?;
        if rep.txn_id != s.txn_id {
            return Err(PaymentError::TxnMismatch);
        }
        let reason: String = rep.reason.chars().take(500).collect();
        let origin: String = rep.page_origin.chars().take(200).collect();
        let now = self.now();
        tracing::warn!(txn = %s.txn_id, merchant = %s.merchant_id, "shopper reported a suspicious purchase");
        let txn = s.txn_id.clone();
        self.store
            .run(move |c| {
                exec(c,
                    "INSERT INTO suspicious_reports (merchant_id, txn_id, page_origin, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![s.merchant_id, s.txn_id, origin, reason, now],
                )?;
                Ok(())
            })
            .await?;
        Ok(SuspiciousAck {
            txn_id: txn,
            recorded: true,
        })
    }

    /// Authenticate a merchant/operator API request.
    pub fn authenticate(
        &self,
        method: &str,
        path: &str,
        headers: &axum::http::HeaderMap,
        body: &[u8],
    ) -> Result<Caller, PaymentError> {
        use merchant_kit::auth;
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        if let (Some(tok), Some(want)) = (h("authorization"), &self.operator_token) {
            let given = tok.strip_prefix("Bearer ").unwrap_or("");
            if mac_eq(given.as_bytes(), want.as_bytes()) {
                return Ok(Caller::Operator);
            }
            return Err(PaymentError::Unauthorized);
        }
        let (Some(mid), Some(ts), Some(sig)) = (
            h(auth::HEADER_MERCHANT),
            h(auth::HEADER_TIMESTAMP),
            h(auth::HEADER_SIGNATURE),
        ) else {
            return Err(PaymentError::Unauthorized);
        };
        let m = self.merchants.get(mid).ok_or(PaymentError::Unauthorized)?;
        let ts: u64 = ts.parse().map_err(|_| PaymentError::Unauthorized)?;
        if !auth::verify(&m.key, method, path, ts, self.now(), body, sig) {
            return Err(PaymentError::Unauthorized);
        }
        Ok(Caller::Merchant(m.id.clone()))
    }

    /// `GET /v1/transactions/{id}` (a merchant sees its own; the operator needs `merchant`).
    pub async fn transaction(
        &self,
        caller: Caller,
        merchant: Option<String>,
        txn_id: String,
    ) -> Result<TxnView, PaymentError> {
        let merchant_id = match caller {
            Caller::Merchant(m) => m,
            Caller::Operator => merchant
                .ok_or_else(|| PaymentError::Malformed("operator must name ?merchant=".into()))?,
        };
        self.store
            .run(move |c| load_view(c, &merchant_id, &txn_id))
            .await
    }

    /// `GET /v1/recovery`: drawn transactions older than the grace period, never completed.
    pub async fn recovery(&self, caller: Caller) -> Result<RecoveryList, PaymentError> {
        let cutoff = self.now().saturating_sub(self.recovery_grace_secs);
        let only = match caller {
            Caller::Merchant(m) => Some(m),
            Caller::Operator => None,
        };
        self.store
            .run(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT merchant_id, txn_id, state, amount, currency, card_id, atc, seq, drawn_at
                     FROM transactions WHERE state IN ('drawn', 'unknown') AND drawn_at <= ?1
                       AND (?2 IS NULL OR merchant_id = ?2) ORDER BY drawn_at",
                )?;
                let rows = stmt.query_map(params![cutoff, only], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, u32>(3)?,
                        r.get::<_, u16>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, u16>(6)?,
                        r.get::<_, u32>(7)?,
                        r.get::<_, u64>(8)?,
                    ))
                })?;
                let mut out = Vec::new();
                for r in rows {
                    let (merchant_id, txn_id, state, amount, currency, card, atc, seq, drawn_at) = r?;
                    out.push(RecoveryItem {
                        merchant_id,
                        txn_id,
                        state: TxnState::parse(&state)?,
                        amount,
                        currency,
                        card: CardId::parse(&card).map(|c| c.masked()).unwrap_or_default(),
                        atc,
                        seq,
                        drawn_at,
                    });
                }
                Ok(RecoveryList { transactions: out })
            })
            .await
    }

    /// `POST /v1/recovery/{merchant}/{txn}/resolve` (operator): the card's log
    /// and ATC decide whether the debit happened.
    pub async fn resolve(
        &self,
        caller: Caller,
        merchant_id: String,
        txn_id: String,
        req: ResolveRequest,
    ) -> Result<TxnView, PaymentError> {
        if caller != Caller::Operator {
            return Err(PaymentError::Unauthorized);
        }
        let record = match &req.log_record {
            Some(h) => Some(LogRecord::decode(h.as_slice()).map_err(malformed)?),
            None => None,
        };
        let now = self.now();
        let terminal = self.sm.terminal();
        self.store
            .run(move |c| {
                let row = load_row(c, &merchant_id, &txn_id)?.ok_or(PaymentError::UnknownTxn)?;
                if !matches!(row.state, TxnState::Drawn | TxnState::Unknown) {
                    return Err(PaymentError::WrongState);
                }
                let (state, how) = match record {
                    Some(r) => {
                        let matches = r.kind == LogKind::Purchase
                            && r.atc == row.atc
                            && r.amount == row.amount
                            && r.seq == row.seq
                            && r.terminal == terminal
                            && r.purse == row.purse
                            && r.balance_after == row.balance_after;
                        if !matches {
                            return Err(PaymentError::Malformed("log record is not this transaction's".into()));
                        }
                        (TxnState::Debited, "card log shows the debit")
                    }
                    None if req.card_atc > row.atc => (TxnState::Failed, "card moved past the ATC without a debit"),
                    None => (TxnState::Unknown, "card has not moved past the ATC: still unknown"),
                };
                exec(c,
                    "UPDATE transactions SET resolution = ?3 WHERE merchant_id = ?1 AND txn_id = ?2",
                    params![merchant_id, txn_id, how],
                )?;
                set_state(c, &merchant_id, &txn_id, state, now)?;
                log_event(c, &merchant_id, &txn_id, "resolve", state, how, now)?;
                load_view(c, &merchant_id, &txn_id)
            })
            .await
    }

    /// `POST /v1/transactions/{id}/confirm` (merchant): the merchant has released
    /// the goods. In `client`/`merchant` mode a drawn transaction needs the card's
    /// S3 here (checked like `complete`).
    pub async fn confirm(
        &self,
        caller: Caller,
        txn_id: String,
        req: ConfirmRequest,
    ) -> Result<TxnView, PaymentError> {
        let Caller::Merchant(merchant_id) = caller else {
            return Err(PaymentError::Unauthorized);
        };
        let now = self.now();
        let sm = self.sm.clone();
        self.store
            .run(move |c| {
                let row = load_row(c, &merchant_id, &txn_id)?.ok_or(PaymentError::UnknownTxn)?;
                match row.state {
                    TxnState::Confirmed | TxnState::Settled => {}
                    TxnState::Debited => {
                        set_state(c, &merchant_id, &txn_id, TxnState::Confirmed, now)?;
                        log_event(c, &merchant_id, &txn_id, "confirm", TxnState::Confirmed, "", now)?;
                    }
                    TxnState::Drawn | TxnState::Unknown => {
                        let (Some(bal), Some(s3)) = (req.balance_after, &req.s3) else {
                            return Err(PaymentError::WrongState);
                        };
                        let s3: [u8; 8] = s3.as_slice().try_into().map_err(|_| PaymentError::Malformed("s3 must be 8 bytes".into()))?;
                        verify_s3(&sm, &row, bal, &s3)?;
                        exec(c,
                            "UPDATE transactions SET card_s3 = ?3, card_sw = 36864 WHERE merchant_id = ?1 AND txn_id = ?2",
                            params![merchant_id, txn_id, s3.to_vec()],
                        )?;
                        set_state(c, &merchant_id, &txn_id, TxnState::Debited, now)?;
                        set_state(c, &merchant_id, &txn_id, TxnState::Confirmed, now)?;
                        log_event(c, &merchant_id, &txn_id, "confirm", TxnState::Confirmed, "S3 verified by merchant report", now)?;
                    }
                    _ => return Err(PaymentError::WrongState),
                }
                load_view(c, &merchant_id, &txn_id)
            })
            .await
    }

    /// `GET /v1/suspicious`: the shopper reports of a merchant (all of them for
    /// the operator), newest first, including those of sessions never drawn.
    pub async fn suspicious_reports(&self, caller: Caller) -> Result<SuspiciousList, PaymentError> {
        let only = match caller {
            Caller::Merchant(m) => Some(m),
            Caller::Operator => None,
        };
        self.store
            .run(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT merchant_id, txn_id, page_origin, reason, at FROM suspicious_reports
                     WHERE (?1 IS NULL OR merchant_id = ?1) ORDER BY id DESC LIMIT 1000",
                )?;
                let reports = stmt
                    .query_map(params![only], |r| {
                        Ok(SuspiciousListEntry {
                            merchant_id: r.get(0)?,
                            txn_id: r.get(1)?,
                            page_origin: r.get(2)?,
                            reason: r.get(3)?,
                            at: r.get(4)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(SuspiciousList { reports })
            })
            .await
    }

    /// Sum of captured amounts (debited, confirmed, settled) per merchant.
    pub async fn captured_total(&self, merchant_id: &str) -> Result<u64, PaymentError> {
        let m = merchant_id.to_string();
        self.store
            .run(move |c| {
                let v: i64 = qrow(
                    c,
                    "SELECT COALESCE(SUM(amount), 0) FROM transactions
                     WHERE merchant_id = ?1 AND state IN ('debited', 'confirmed', 'settled')",
                    params![m],
                    |r| r.get(0),
                )?;
                Ok(v as u64)
            })
            .await
    }
}

/// Compare the card's S3 by the session's verify mode: the security module
/// recomputes it (`security_module`), or the server compares with the S3 the
/// module handed out at the draw (all other modes).
fn verify_s3(
    sm: &SecurityModule,
    row: &Row,
    balance_after: u32,
    s3: &[u8; 8],
) -> Result<(), PaymentError> {
    match row.verify_mode {
        VerifyMode::SecurityModule => {
            let auth = sm
                .authorize_purchase(&PurchaseDraw {
                    card_id: row.card_id,
                    expiry: row.card_expiry,
                    key_version: row.key_version,
                    purse: row.purse,
                    balance: row.balance_before,
                    atc: row.atc,
                    random: row.card_random,
                    amount: row.amount,
                    seq: row.seq,
                    date: row.date,
                    time: row.time,
                })
                .map_err(sm_error)?;
            auth.verify_s3(balance_after, s3)
                .map(|_| ())
                .map_err(sm_error)
        }
        _ => {
            let ok = mac_eq(s3, &row.expected_s3) & (balance_after == row.balance_after);
            if ok {
                Ok(())
            } else {
                Err(PaymentError::S3Mismatch)
            }
        }
    }
}

fn build_results(
    s: &Session,
    row: &Row,
    status: PurchaseStatus,
    sw: Option<StatusWord>,
    dk: &Key32,
    tsk: &Key32,
) -> Result<CompleteResponse, PaymentError> {
    let ie = |e: serde_json::Error| PaymentError::Internal(e.to_string());
    let date = String::from(row.date);
    let time = String::from(row.time);
    let c = ResultC {
        txn_id: s.txn_id.clone(),
        status,
        merchant_name: s.merchant_name.clone(),
        amount: row.amount,
        currency: row.currency,
        exponent: row.exponent,
        balance_after: (status == PurchaseStatus::Debited).then_some(row.balance_after),
        card_sw: sw.map(|w| format!("{:04X}", w.0)),
        date: date.clone(),
        time: time.clone(),
    };
    let m = ResultM {
        merchant_id: s.merchant_id.clone(),
        txn_id: s.txn_id.clone(),
        status,
        amount: row.amount,
        currency: row.currency,
        exponent: row.exponent,
        purse: row.purse,
        origin: row.origin.clone(),
        verify_mode: row.verify_mode,
        card: row.card_id.masked(),
        atc: row.atc,
        seq: row.seq,
        date,
        time,
    };
    Ok(CompleteResponse {
        txn_id: s.txn_id.clone(),
        status,
        result_c: Hex(session::seal(
            tsk,
            random12(),
            &session::aad(label::RESULT_C, &s.txn_id),
            &serde_json::to_vec(&c).map_err(ie)?,
        )),
        result_m: Hex(session::seal(
            dk,
            random12(),
            &session::aad(label::RESULT_M, &s.txn_id),
            &serde_json::to_vec(&m).map_err(ie)?,
        )),
    })
}

fn load_view(c: &Connection, merchant_id: &str, txn_id: &str) -> Result<TxnView, PaymentError> {
    let v = qrow(
        c,
        "SELECT state, verify_mode, amount, currency, exponent, purse, origin, card_id, atc, seq,
                    created_at, drawn_at, debited_at, confirmed_at, updated_at, resolution
             FROM transactions WHERE merchant_id = ?1 AND txn_id = ?2",
        params![merchant_id, txn_id],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, u16>(3)?,
                r.get::<_, u8>(4)?,
                r.get::<_, u8>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, u16>(8)?,
                r.get::<_, u32>(9)?,
                (
                    r.get::<_, u64>(10)?,
                    r.get::<_, u64>(11)?,
                    r.get::<_, Option<u64>>(12)?,
                    r.get::<_, Option<u64>>(13)?,
                    r.get::<_, u64>(14)?,
                    r.get::<_, Option<String>>(15)?,
                ),
            ))
        },
    )
    .optional()?
    .ok_or(PaymentError::NotFound)?;
    let (state, mode, amount, currency, exponent, purse, origin, card, atc, seq, t) = v;
    let mut stmt = c.prepare_cached("SELECT event, state, detail, at FROM txn_log WHERE merchant_id = ?1 AND txn_id = ?2 ORDER BY id")?;
    let log = stmt
        .query_map(params![merchant_id, txn_id], |r| {
            Ok(LogEntry {
                event: r.get(0)?,
                state: r.get(1)?,
                detail: r.get(2)?,
                at: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = c.prepare_cached("SELECT page_origin, reason, at FROM suspicious_reports WHERE merchant_id = ?1 AND txn_id = ?2 ORDER BY id")?;
    let suspicious_reports = stmt
        .query_map(params![merchant_id, txn_id], |r| {
            Ok(SuspiciousEntry {
                page_origin: r.get(0)?,
                reason: r.get(1)?,
                at: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TxnView {
        merchant_id: merchant_id.into(),
        txn_id: txn_id.into(),
        state: TxnState::parse(&state)?,
        verify_mode: mode_parse(&mode)?,
        amount,
        currency,
        exponent,
        purse: PurseId::from_p2(purse).map_err(|_| PaymentError::Internal("purse".into()))?,
        origin,
        card: CardId::parse(&card).map(|c| c.masked()).unwrap_or_default(),
        atc,
        seq,
        created_at: t.0,
        drawn_at: t.1,
        debited_at: t.2,
        confirmed_at: t.3,
        updated_at: t.4,
        resolution: t.5,
        log,
        suspicious_reports,
    })
}
