//! Every refusal of the payment API, with a stable code and an HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use purse::wire::{ApiCode, ErrorBody, ErrorDetail};

/// A refusal (or failure) of the payment service. [`PaymentError::code`] is part
/// of the API: clients match on it, so codes never change meaning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("request body too large")]
    BodyTooLarge,
    #[error("unknown merchant")]
    UnknownMerchant,
    #[error("session MAC does not verify")]
    BadMac,
    #[error("verify mode not allowed for this merchant")]
    ModeNotAllowed,
    #[error("session expired")]
    Expired,
    #[error("sealed message does not open under the session keys")]
    BadSeal,
    #[error("message is for another transaction")]
    TxnMismatch,
    #[error("amount or purse differs from the session")]
    AmountMismatch,
    #[error("card currency differs from the session")]
    CurrencyMismatch,
    #[error("page origin differs from the session or is not registered for the merchant")]
    OriginMismatch,
    #[error("session terminal is not this security module")]
    TerminalMismatch,
    #[error("card key version unknown to the security module")]
    UnknownKeyVersion,
    #[error("card expired")]
    CardExpired,
    #[error("insufficient funds on the card")]
    InsufficientFunds,
    #[error("transaction already used (replay)")]
    Replay,
    #[error("unknown transaction")]
    UnknownTxn,
    #[error("card signature S3 does not match")]
    S3Mismatch,
    #[error("a card log record does not verify (forged, or of another card or transaction)")]
    BadLogRecord,
    #[error("the order is already paid by another transaction")]
    OrderPaid,
    #[error("another payment attempt for this order is still being decided")]
    OrderInFlight,
    #[error("transaction is not in a state that allows this")]
    WrongState,
    #[error("unknown bank")]
    UnknownBank,
    #[error("card signature S1 does not verify")]
    S1Mismatch,
    #[error("the load would exceed the card's maximum balance")]
    OverMaxBalance,
    #[error("this bank may not load this purse")]
    PurseNotAllowed,
    #[error("the card's proof does not fit this load (refused whole, nothing changed)")]
    BadProof,
    #[error("missing or invalid merchant/operator authentication")]
    Unauthorized,
    #[error("not found")]
    NotFound,
    #[error("internal error")]
    Internal(String),
}

impl PaymentError {
    /// The stable code clients match on.
    pub fn code(&self) -> ApiCode {
        match self {
            Self::Malformed(_) => ApiCode::Malformed,
            Self::BodyTooLarge => ApiCode::BodyTooLarge,
            Self::UnknownMerchant => ApiCode::UnknownMerchant,
            Self::BadMac => ApiCode::BadMac,
            Self::ModeNotAllowed => ApiCode::ModeNotAllowed,
            Self::Expired => ApiCode::Expired,
            Self::BadSeal => ApiCode::BadSeal,
            Self::TxnMismatch => ApiCode::TxnMismatch,
            Self::AmountMismatch => ApiCode::AmountMismatch,
            Self::CurrencyMismatch => ApiCode::CurrencyMismatch,
            Self::OriginMismatch => ApiCode::OriginMismatch,
            Self::TerminalMismatch => ApiCode::TerminalMismatch,
            Self::UnknownKeyVersion => ApiCode::UnknownKeyVersion,
            Self::CardExpired => ApiCode::CardExpired,
            Self::InsufficientFunds => ApiCode::InsufficientFunds,
            Self::Replay => ApiCode::Replay,
            Self::UnknownTxn => ApiCode::UnknownTxn,
            Self::S3Mismatch => ApiCode::S3Mismatch,
            Self::BadLogRecord => ApiCode::BadLogRecord,
            Self::OrderPaid => ApiCode::OrderPaid,
            Self::OrderInFlight => ApiCode::OrderInFlight,
            Self::WrongState => ApiCode::WrongState,
            Self::UnknownBank => ApiCode::UnknownBank,
            Self::S1Mismatch => ApiCode::S1Mismatch,
            Self::OverMaxBalance => ApiCode::OverMaxBalance,
            Self::PurseNotAllowed => ApiCode::PurseNotAllowed,
            Self::BadProof => ApiCode::BadProof,
            Self::Unauthorized => ApiCode::Unauthorized,
            Self::NotFound => ApiCode::NotFound,
            Self::Internal(_) => ApiCode::Internal,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Malformed(_) | Self::TxnMismatch => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnknownMerchant
            | Self::UnknownBank
            | Self::BadMac
            | Self::BadSeal
            | Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::ModeNotAllowed
            | Self::PurseNotAllowed
            | Self::OriginMismatch
            | Self::TerminalMismatch => StatusCode::FORBIDDEN,
            Self::UnknownTxn | Self::NotFound => StatusCode::NOT_FOUND,
            Self::Replay | Self::WrongState | Self::OrderPaid | Self::OrderInFlight => {
                StatusCode::CONFLICT
            }
            Self::Expired => StatusCode::GONE,
            Self::AmountMismatch
            | Self::CurrencyMismatch
            | Self::UnknownKeyVersion
            | Self::CardExpired
            | Self::InsufficientFunds
            | Self::S3Mismatch
            | Self::S1Mismatch
            | Self::OverMaxBalance
            | Self::BadProof
            | Self::BadLogRecord => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What happened, an internal error's detail included: for the server's
    /// own log and its start-up errors, never for a client ([`Self::body`]).
    pub fn detail(&self) -> String {
        match self {
            Self::Internal(d) => format!("internal error: {d}"),
            e => e.to_string(),
        }
    }

    pub fn body(&self) -> ErrorBody {
        let message = match self {
            // Internal details stay in the server log.
            Self::Internal(_) => "internal error".to_string(),
            e => e.to_string(),
        };
        ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message,
            },
        }
    }
}

impl From<rusqlite::Error> for PaymentError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Internal(format!("sqlite: {e}"))
    }
}

impl IntoResponse for PaymentError {
    fn into_response(self) -> Response {
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        (self.status(), axum::Json(self.body())).into_response()
    }
}
