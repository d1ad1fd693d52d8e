//! A reference terminal: drives SELECT, VERIFY, a purchase and a load through
//! any APDU [`Transport`] (the in-memory [`Card`], PC/SC, ...), with the
//! issuer's [`SecurityModule`] building S2 and checking S1/S3. Used by the
//! tests, the benchmark and the docs' worked example.

use purse::command::{
    CreditResponse, DebitResponse, InitializeLoad, InitializeLoadResponse, InitializePurchase,
    InitializePurchaseResponse, LogRecord, ReadLog, Request, Select, SelectResponse, Verify,
    LOG_SIZE,
};
use purse::security_module::{
    LoadAuthorization, LoadRequest, PurchaseAuthorization, PurchaseDraw, SecurityModule,
    SecurityModuleError,
};
use purse::{ApduError, BcdDate, BcdTime, PurseId, Response, StatusWord, AID};

use crate::Card;

/// Something that carries one command APDU to a card and back.
pub trait Transport {
    /// Transport failure.
    type Error: std::fmt::Debug;
    /// Send a command APDU, get the response APDU.
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, Self::Error>;
}

impl Transport for Card {
    type Error = std::convert::Infallible;
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, Self::Error> {
        Ok(self.process(apdu))
    }
}

/// Why a terminal operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError<E: std::fmt::Debug> {
    /// The transport failed.
    #[error("transport: {0:?}")]
    Transport(E),
    /// The card answered a non-9000 status word.
    #[error("{step}: card answered {sw}")]
    Status {
        /// Which command.
        step: &'static str,
        /// The status word.
        sw: StatusWord,
    },
    /// The response did not decode.
    #[error("{0}")]
    Decode(#[from] ApduError),
    /// The security module refused (bad S1/S3, expired, ...).
    #[error("security module: {0}")]
    SecurityModule(#[from] SecurityModuleError),
}

/// Send a typed request; Ok(data) on 9000.
pub fn send<T: Transport>(
    t: &mut T,
    step: &'static str,
    req: &Request,
) -> Result<Vec<u8>, ClientError<T::Error>> {
    let raw = t
        .transmit(&req.to_bytes())
        .map_err(ClientError::Transport)?;
    let r = Response::parse(&raw)?;
    if r.sw != StatusWord::OK {
        return Err(ClientError::Status { step, sw: r.sw });
    }
    Ok(r.data)
}

/// SELECT the purse.
pub fn select<T: Transport>(t: &mut T) -> Result<SelectResponse, ClientError<T::Error>> {
    let d = send(t, "SELECT", &Request::Select(Select { aid: AID.to_vec() }))?;
    Ok(SelectResponse::decode(&d)?)
}

/// VERIFY a PIN.
pub fn verify<T: Transport>(t: &mut T, pin: &str) -> Result<(), ClientError<T::Error>> {
    send(
        t,
        "VERIFY",
        &Request::Verify(Verify {
            pin: Some(pin.as_bytes().to_vec()),
        }),
    )
    .map(|_| ())
}

/// What a completed purchase gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseOutcome {
    /// The card's INITIALIZE answer.
    pub init: InitializePurchaseResponse,
    /// What the security module drew on (it verifies the card's log record with it).
    pub draw: PurchaseDraw,
    /// The security module's authorisation (DEBIT command, expected S3).
    pub auth: PurchaseAuthorization,
    /// The card's DEBIT answer (S3 verified).
    pub debit: DebitResponse,
}

/// Parameters of one purchase besides the card.
#[derive(Debug, Clone, Copy)]
pub struct Txn {
    /// Purse.
    pub purse: PurseId,
    /// Amount.
    pub amount: u32,
    /// Security module sequence number (purchases).
    pub seq: u32,
    /// Date.
    pub date: BcdDate,
    /// Time.
    pub time: BcdTime,
}

/// INITIALIZE FOR PURCHASE + security module draw + DEBIT + S3 check.
/// `sel` is the card's SELECT answer of this selection.
pub fn purchase<T: Transport>(
    t: &mut T,
    sm: &SecurityModule,
    sel: &SelectResponse,
    x: Txn,
) -> Result<PurchaseOutcome, ClientError<T::Error>> {
    let d = send(
        t,
        "INITIALIZE FOR PURCHASE",
        &Request::InitializePurchase(InitializePurchase {
            purse: x.purse,
            amount: x.amount,
            terminal: sm.terminal(),
        }),
    )?;
    let init = InitializePurchaseResponse::decode(&d)?;
    let draw = PurchaseDraw {
        card_id: sel.card_id,
        expiry: sel.expiry,
        key_version: init.key_version,
        purse: x.purse,
        balance: init.balance,
        atc: init.atc,
        random: init.random,
        amount: x.amount,
        seq: x.seq,
        date: x.date,
        time: x.time,
    };
    let auth = sm.authorize_purchase(&draw)?;
    let d = send(t, "DEBIT", &Request::DebitPurchase(auth.debit))?;
    let debit = DebitResponse::decode(&d)?;
    auth.verify_s3(debit.balance_after, &debit.s3)?;
    Ok(PurchaseOutcome {
        init,
        draw,
        auth,
        debit,
    })
}

/// What a completed load gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOutcome {
    /// The card's INITIALIZE FOR LOAD answer (S1 verified).
    pub init: InitializeLoadResponse,
    /// The HSM's authorisation (CREDIT command, expected S3).
    pub auth: LoadAuthorization,
    /// The card's CREDIT answer (S3 verified).
    pub credit: CreditResponse,
}

/// INITIALIZE FOR LOAD + S1 check + CREDIT + S3 check.
pub fn load<T: Transport>(
    t: &mut T,
    sm: &SecurityModule,
    sel: &SelectResponse,
    x: Txn,
) -> Result<LoadOutcome, ClientError<T::Error>> {
    let d = send(
        t,
        "INITIALIZE FOR LOAD",
        &Request::InitializeLoad(InitializeLoad {
            purse: x.purse,
            amount: x.amount,
            terminal: sm.terminal(),
        }),
    )?;
    let init = InitializeLoadResponse::decode(&d)?;
    let auth = sm.authorize_load(&LoadRequest {
        card_id: sel.card_id,
        expiry: sel.expiry,
        key_version: init.key_version,
        purse: x.purse,
        balance: init.balance,
        max_balance: sel.purse(x.purse).max_balance,
        atc: init.atc,
        random: init.random,
        amount: x.amount,
        s1: init.s1,
        date: x.date,
        time: x.time,
    })?;
    let d = send(t, "CREDIT", &Request::CreditLoad(auth.credit))?;
    let credit = CreditResponse::decode(&d)?;
    auth.verify_s3(&credit)?;
    Ok(LoadOutcome { init, auth, credit })
}

/// READ LOG of every record the card holds, newest first.
pub fn read_log<T: Transport>(t: &mut T) -> Result<Vec<LogRecord>, ClientError<T::Error>> {
    let mut out = Vec::new();
    for record in 1..=LOG_SIZE {
        match send(t, "READ LOG", &Request::ReadLog(ReadLog { record })) {
            Ok(d) => out.push(LogRecord::decode(&d)?),
            Err(ClientError::Status { sw, .. }) if sw == crate::app::SW_RECORD_NOT_FOUND => break,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
