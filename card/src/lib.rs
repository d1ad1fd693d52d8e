//! The Cardpay virtual stored-value card.
//!
//! - [`app::Card`]: the purse application of DESIGN §3 as a sans-IO state
//!   machine (`process(&[u8]) -> Vec<u8>`, never panics);
//! - [`state`]: what the card keeps across power cycles, as JSON;
//! - [`store::Store`]: atomic, durable persistence (temp file, fsync, rename,
//!   fsync dir);
//! - [`personalise`]: a fresh card from issuer master keys;
//! - [`decoy`]: opt-in test personalities (a second application, strict Le);
//! - [`vpcd`]: the connector that plugs the card into pcscd's
//!   `vsmartcard-vpcd` reader.
//!
//! Byte layouts and a worked example: `docs/card.md`.

pub mod app;
pub mod client;
pub mod decoy;
pub mod personalise;
pub mod state;
pub mod store;
pub mod vpcd;

pub use app::{Card, FixedRandom, OsRandom, Random};
pub use state::CardState;
pub use store::{Store, StoreError};
