//! The purchase protocol (DESIGN §4), one file per message: its type, its
//! sealing label and the checks both ends run. The widget, the test kit and the
//! payment server all use these, so a step is written once.
//!
//! # Layout
//! ```text
//! session.rs    (crate::session) what the merchant renders: Session, session MAC, ETSK
//! bundle.rs     WidgetSession: {session, session_mac, etsk, tsk} the page hands the widget
//! draw.rs       SELECT (+ READ LOG) + INITIALIZE → draw request → debit command
//! complete.rs   DEBIT answer → complete → result C (shopper) and result M (merchant)
//! recover.rs    a torn DEBIT: the card's log records → recover → the server's decision
//! suspicious.rs "this is not my purchase"
//! client.rs     the client half as a sans-IO state machine (widget, test kit, benches)
//! ```
//!
//! # Flow
//! 1. `POST /v1/purchases/draw` [`draw::DrawEnvelope`] → [`draw::DrawResponse`]
//!    carrying a sealed [`draw::DebitCommand`];
//! 2. the widget checks the debit amount ([`draw::DebitCommand::check`]) and
//!    sends DEBIT; the card answers balance after + S3;
//! 3. `POST /v1/purchases/complete` [`complete::CompleteEnvelope`] →
//!    [`complete::CompleteResponse`] (modes `payment_server`, `security_module`;
//!    in `client` and `merchant` mode the widget posts the card's S3 to the
//!    merchant and still calls `complete` in the background);
//! 4. if DEBIT's answer was lost: `POST /v1/purchases/recover`
//!    [`recover::RecoverEnvelope`] → [`recover::RecoverResponse`].
//!
//! Every sealed body is AES-256-GCM `nonce(12) || ciphertext || tag(16)` under
//! TSK (widget ⇄ server) or DK (server → merchant), with associated data
//! `"cardpay/" label "/" txn id` ([`crate::session::aad`]): a message can be
//! neither moved to another transaction nor read as another kind.

pub mod bundle;
pub mod client;
pub mod complete;
pub mod draw;
pub mod recover;
pub mod suspicious;

pub use bundle::WidgetSession;
pub use complete::{
    CompleteEnvelope, CompleteResponse, DebitResponseMsg, MerchantResult, PurchaseStatus, ResultC,
    ResultM,
};
pub use draw::{check_value, DebitCommand, DrawEnvelope, DrawRequest, DrawResponse, ExpectedS3};
pub use recover::{RecoverEnvelope, RecoverRequest, RecoverResponse, RecoverStatus};
pub use suspicious::{SuspiciousAck, SuspiciousEnvelope, SuspiciousReport};

/// Paths of the purchase API on the payment origin.
pub const PATH_DRAW: &str = "/v1/purchases/draw";
pub const PATH_COMPLETE: &str = "/v1/purchases/complete";
pub const PATH_RECOVER: &str = "/v1/purchases/recover";
pub const PATH_SUSPICIOUS: &str = "/v1/purchases/suspicious";

/// How many of the card's newest log records a draw or recover request may
/// carry: the card keeps 10.
pub const MAX_LOG_RECORDS: usize = crate::command::LOG_SIZE as usize;
