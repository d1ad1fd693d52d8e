//! The payment service: the purchase rules of DESIGN §4, one module per step.
//! No HTTP here (handlers in [`crate::http`] call these with parsed messages)
//! and no SQL (the [`crate::store`] runs it); crypto, sealing and JSON run on
//! the caller's task, so the store's writer does only SQL.
//!
//! - [`draw`]: session checks, settling the card's undecided transactions from
//!   the log it carries, one undecided attempt per order, the security
//!   module's debit command;
//! - [`complete`]: capture only on the card's own S3 ([`S3Verified`]);
//!   the merchant's confirm;
//! - [`recover`]: the card's log records decide torn purchases; the sweeper;
//! - [`suspicious`]: the shopper's "not my purchase".

pub mod complete;
pub mod draw;
pub mod recover;
pub mod results;
pub mod suspicious;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use purse::merchant_api::{RecoveryList, ReportsPage, SuspiciousList, TxnState, TxnView};
use purse::security_module::{S3Verified, SecurityModule, SecurityModuleError, SoftwareKeys};
use purse::session::{self, Key32, Session, VerifyMode};
use purse::wire::SealError;
use tokio::sync::Notify;

use crate::config::{BankEntry, Config, KeyStore, MerchantEntry};
use crate::error::PaymentError;
use crate::ids;
use crate::store::{Store, Transition, TxnRow};

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

/// Who is asking on the merchant/operator API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Merchant(String),
    Operator,
}

/// How many security module sequence numbers one reservation takes: a
/// restart skips the rest of a block (seq must be unique, not dense).
const SEQ_BLOCK: u32 = 1000;

/// The payment service.
pub struct PaymentService {
    pub(crate) merchants: BTreeMap<String, MerchantEntry>,
    /// Banks of the load server ([`crate::load`]).
    pub(crate) banks: BTreeMap<String, BankEntry>,
    pub(crate) sm: Arc<SecurityModule>,
    pub(crate) store: Store,
    clock: Clock,
    pub(crate) recovery_grace_secs: u64,
    pub(crate) operator_token: Option<String>,
    /// Reserved, unused sequence numbers: (next, end exclusive).
    seq: Mutex<(u32, u32)>,
    /// Woken when a webhook is queued.
    pub(crate) webhooks: Arc<Notify>,
}

impl core::fmt::Debug for PaymentService {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PaymentService")
            .field("merchants", &self.merchants.keys().collect::<Vec<_>>())
            .field("sm", &self.sm)
            .finish_non_exhaustive()
    }
}

pub(crate) fn random12() -> [u8; 12] {
    let mut n = [0u8; 12];
    getrandom::fill(&mut n).expect("OS random source");
    n
}

/// The draw request against its session (purchase or load), as an API error.
pub(crate) fn draw_mismatch(e: purse::purchase::draw::DrawMismatch) -> PaymentError {
    use purse::purchase::draw::DrawMismatch;
    match e {
        DrawMismatch::Origin => PaymentError::OriginMismatch,
        DrawMismatch::Amount => PaymentError::AmountMismatch,
        DrawMismatch::LogTooLong => PaymentError::Malformed(e.to_string()),
    }
}

/// The card's SELECT and INITIALIZE answers against the session (purchase or
/// load): the purse's currency and exponent are the session's, one key
/// version in both answers, and an ATC the card can have given.
pub(crate) fn check_card_answers(
    sel: &purse::command::SelectResponse,
    (purse, currency, exponent): (purse::types::PurseId, u16, u8),
    (key_version, atc): (u8, u16),
) -> Result<(), PaymentError> {
    let p = sel.purse(purse);
    if p.currency != currency || p.exponent != exponent {
        return Err(PaymentError::CurrencyMismatch);
    }
    if key_version != sel.key_version {
        return Err(PaymentError::Malformed(
            "key version differs between SELECT and INITIALIZE".into(),
        ));
    }
    if atc == 0 {
        return Err(PaymentError::Malformed(
            "ATC 0 is never returned by INITIALIZE".into(),
        ));
    }
    Ok(())
}

pub(crate) fn malformed(e: impl std::fmt::Display) -> PaymentError {
    PaymentError::Malformed(e.to_string())
}

pub(crate) fn sealed_error(e: SealError) -> PaymentError {
    match e {
        SealError::Open => PaymentError::BadSeal,
        SealError::Json(m) => PaymentError::Malformed(m),
        SealError::TxnMismatch => PaymentError::TxnMismatch,
    }
}

pub(crate) fn sm_error(e: SecurityModuleError) -> PaymentError {
    match e {
        SecurityModuleError::UnknownKeyVersion(_) => PaymentError::UnknownKeyVersion,
        SecurityModuleError::CardExpired => PaymentError::CardExpired,
        SecurityModuleError::InsufficientFunds { .. } => PaymentError::InsufficientFunds,
        SecurityModuleError::S3Mismatch => PaymentError::S3Mismatch,
        other => PaymentError::Internal(format!("security module: {other}")),
    }
}

/// The issuer's security module the config names: software keys, or the
/// PKCS#11 token (the payment server, the load server and clearing all use this).
pub fn security_module(config: &Config) -> Result<SecurityModule, PaymentError> {
    let sm = match &config.keys {
        KeyStore::Software(versions) => {
            let mut keys = SoftwareKeys::new();
            for k in versions {
                keys.add_key_version(k.version, k.mkp.clone(), k.mkl.clone());
            }
            SecurityModule::software(config.terminal, keys)
        }
        KeyStore::Pkcs11(p) => {
            let keys = cardpay_pkcs11::Pkcs11Keys::open(p)
                .map_err(|e| PaymentError::Internal(format!("security module token: {e}")))?;
            SecurityModule::new(config.terminal, Box::new(keys))
        }
    };
    if sm.key_versions().is_empty() {
        return Err(PaymentError::Internal(
            "the security module holds no master keys (payment-server hsm import)".into(),
        ));
    }
    Ok(sm)
}

/// An answer as the JSON text stored with the state change it reports:
/// serialized once, and a retry gets the same bytes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJson(pub String);

/// Keys of one verified session (DK and TSK), zeroized on drop.
pub(crate) struct SessionKeys {
    pub dk: Key32,
    pub tsk: Key32,
}

impl PaymentService {
    /// A service with the security module of the config (software keys, or
    /// the PKCS#11 token it names).
    pub fn new(config: &Config, store: Store, clock: Clock) -> Result<Self, PaymentError> {
        let sm = security_module(config)?;
        Ok(Self::with_security_module(config, store, clock, sm))
    }

    /// A service over any security module (software, PKCS#11).
    pub fn with_security_module(
        config: &Config,
        store: Store,
        clock: Clock,
        sm: SecurityModule,
    ) -> Self {
        Self {
            merchants: config.merchants.clone(),
            banks: config.banks.clone(),
            sm: Arc::new(sm),
            store,
            clock,
            recovery_grace_secs: config.recovery_grace_secs,
            operator_token: config.operator_token.clone(),
            seq: Mutex::new((0, 0)),
            webhooks: Arc::new(Notify::new()),
        }
    }

    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn merchant(&self, id: &str) -> Result<&MerchantEntry, PaymentError> {
        self.merchants.get(id).ok_or(PaymentError::UnknownMerchant)
    }

    /// Check the session MAC and unwrap TSK. `check_expiry` only for the draw:
    /// a card debited just before expiry must still be completed.
    pub(crate) fn open_session(
        &self,
        s: &Session,
        session_mac: &[u8],
        etsk: &[u8],
        check_expiry: bool,
    ) -> Result<SessionKeys, PaymentError> {
        if !ids::ok(&s.txn_id) || !ids::ok(&s.merchant_id) || !ids::ok_or_empty(&s.order_ref) {
            return Err(PaymentError::Malformed(format!(
                "txn_id, merchant_id and order_ref: {}",
                ids::RULE
            )));
        }
        let m = self.merchant(&s.merchant_id)?;
        if !session::verify_session_mac(&m.key, s, etsk, session_mac) {
            return Err(PaymentError::BadMac);
        }
        if !m.verify_modes.contains(&s.verify_mode) {
            return Err(PaymentError::ModeNotAllowed);
        }
        if !m.origins.iter().any(|o| o == &s.origin) {
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

    /// The next security module sequence number (reserved in blocks).
    pub(crate) async fn next_seq(&self) -> Result<u32, PaymentError> {
        {
            let mut s = self.seq.lock().expect("seq lock");
            if s.0 < s.1 {
                s.0 += 1;
                return Ok(s.0 - 1);
            }
        }
        let terminal = self.sm.terminal().to_string();
        let first = self.store.reserve_seq(terminal, SEQ_BLOCK).await?;
        let mut s = self.seq.lock().expect("seq lock");
        if s.0 >= s.1 {
            *s = (first, first + SEQ_BLOCK);
        }
        // Another task may have refilled meanwhile: either block is fresh.
        s.0 += 1;
        Ok(s.0 - 1)
    }

    /// The card's S3 (from DEBIT or from a log record) against what the
    /// security module expects: recomputed by the module (`security_module`
    /// mode) or compared with the S3 it handed out at the draw, which the
    /// client never saw (all other modes). The only way to a capture.
    pub(crate) fn verify_s3(
        &self,
        row: &TxnRow,
        balance_after: u32,
        s3: &[u8; 8],
    ) -> Result<S3Verified, PaymentError> {
        match row.verify_mode {
            VerifyMode::SecurityModule => self
                .sm
                .verify_purchase_s3(&row.draw(), balance_after, s3)
                .map_err(sm_error),
            _ => row
                .authorization()
                .verify_s3(balance_after, s3)
                .map_err(sm_error),
        }
    }

    /// The webhook for a change, when the merchant has a webhook URL.
    pub(crate) fn webhook_for(
        &self,
        row: &TxnRow,
        kind: purse::webhook::EventKind,
        state: TxnState,
        detail: &str,
        now: u64,
    ) -> Option<purse::webhook::WebhookEvent> {
        self.merchants
            .get(&row.merchant_id)
            .and_then(|m| m.webhook_url.as_ref())
            .map(|_| row.event(self.store.card_ref_key(), kind, state, detail, now))
    }

    /// Apply state changes in one database transaction; returns which applied.
    pub(crate) async fn apply(&self, changes: Vec<Transition>) -> Result<Vec<bool>, PaymentError> {
        let any_webhook = changes.iter().any(|t| t.webhook.is_some());
        let applied = self.store.apply(changes).await?;
        if any_webhook {
            self.webhooks.notify_one();
        }
        Ok(applied)
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
        self.store.view(&merchant_id, &txn_id).await
    }

    /// `GET /v1/recovery`: drawn and silent past the grace period, or unknown.
    pub async fn recovery(&self, caller: Caller) -> Result<RecoveryList, PaymentError> {
        let cutoff = self.now().saturating_sub(self.recovery_grace_secs);
        let only = match caller {
            Caller::Merchant(m) => Some(m),
            Caller::Operator => None,
        };
        let transactions = self.store.recovery_list(cutoff, only.as_deref()).await?;
        Ok(RecoveryList { transactions })
    }

    /// `GET /v1/suspicious`: the shopper reports of a merchant (all of them for
    /// the operator), newest first, including those of sessions never drawn, a
    /// page at a time (`next` names the older page).
    pub async fn suspicious_reports(
        &self,
        caller: Caller,
        page: ReportsPage,
    ) -> Result<SuspiciousList, PaymentError> {
        let only = match caller {
            Caller::Merchant(m) => Some(m),
            Caller::Operator => None,
        };
        self.store.suspicious_list(only.as_deref(), page).await
    }

    /// Sum of captured amounts (debited, confirmed, settled) of a merchant.
    pub async fn captured_total(&self, merchant_id: &str) -> Result<u64, PaymentError> {
        self.store.captured_total(merchant_id).await
    }

    /// A round trip through the writer: it and the database are alive.
    pub async fn health(&self) -> Result<(), PaymentError> {
        self.store.health().await
    }
}
