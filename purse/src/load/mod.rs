//! The load protocol (DESIGN §4, seed figures 17–18): value goes from a bank
//! account onto the card through the load server, whose HSM verifies the
//! card's S1, authorises the CREDIT with S2 and verifies the card's S3. One
//! file per message: its type, its sealing label and the checks both ends
//! run; the widget, the test kit and the load server all use these.
//!
//! # Layout
//! ```text
//! session.rs   what the bank renders: LoadSession, its MAC under K_bl, the widget bundle
//! draw.rs      SELECT + READ LOG + INITIALIZE FOR LOAD (S1) → load request → credit command (S2)
//! complete.rs  CREDIT answer (S3) → complete → result C (shopper), result B (bank), BankResult
//! recover.rs   negative or missing result: zero-value INITIALIZE FOR LOAD (fresh S1) + log → decision
//! bank_api.rs  the bank's signed calls (view, void), load states, signed load webhooks
//! client.rs    the client half as a sans-IO state machine (widget, test kit, benches)
//! ```
//!
//! # Flow
//! 1. The bank checks the shopper's account, **holds** the amount and renders
//!    a [`LoadWidgetSession`] (session MACed with `K_bl`).
//! 2. `POST /v1/loads/draw` [`LoadEnvelope`] → [`LoadDrawResponse`] carrying
//!    a sealed [`CreditCommand`]; the widget checks it ([`CreditCommand::check`])
//!    and sends CREDIT; the card answers result, balance after, S3.
//! 3. `POST /v1/loads/complete` [`LoadCompleteEnvelope`] →
//!    [`LoadCompleteResponse`]: result B sealed under DK for the bank, which
//!    posts the held amount on `credited` (once per txn id).
//! 4. A negative result (card refused CREDIT, or result ≠ 00) or a lost
//!    answer: `POST /v1/loads/recover` [`LoadRecoverEnvelope`] with a
//!    zero-value INITIALIZE FOR LOAD and the card's log → the HSM decides;
//!    `not_credited` releases the hold.
//! 5. The bank also learns every decision from signed webhooks
//!    ([`bank_api::LoadEvent`]) and can ask or void a load
//!    (`/v1/bank/loads/{txn}`).
//!
//! Every sealed body is AES-256-GCM `nonce(12) || ciphertext || tag(16)` under
//! TSK (widget ⇄ load server) or DK (load server → bank), with associated data
//! `"cardpay/" label "/" txn id`.

pub mod bank_api;
pub mod client;
pub mod complete;
pub mod draw;
pub mod recover;
pub mod session;

pub use complete::{
    BankResult, CreditResponseMsg, LoadCompleteEnvelope, LoadCompleteResponse, LoadResultB,
    LoadResultC, LoadStatus,
};
pub use draw::{CreditCommand, LoadDrawRequest, LoadDrawResponse, LoadEnvelope};
pub use recover::{
    LoadRecoverEnvelope, LoadRecoverRequest, LoadRecoverResponse, LoadRecoverStatus,
};
pub use session::{LoadSession, LoadWidgetSession};

/// Paths of the load API on the payment origin (the widget's calls).
pub const PATH_LOAD_DRAW: &str = "/v1/loads/draw";
pub const PATH_LOAD_COMPLETE: &str = "/v1/loads/complete";
pub const PATH_LOAD_RECOVER: &str = "/v1/loads/recover";

/// How many of the card's newest log records a request may carry.
pub const MAX_LOG_RECORDS: usize = crate::command::LOG_SIZE as usize;
