//! Sans-IO core of Cardpay.
//!
//! Everything here is plain data and pure functions over bytes: the APDU codec,
//! the purse command set of the card, the card's cryptography (retail MAC, key
//! diversification, session keys, S1/S2/S3), the issuer's security module and the
//! network-protocol crypto (session MAC, HKDF-derived keys, AES-256-GCM sealing).
//! No sockets, files, clocks or randomness: callers pass those in, so the same
//! code runs in the virtual card, the bridge tests, the wasm widget and the server.
//!
//! Also [`bridge_msg`], the messages between the widget, the extension and the bridge
//! (requests, replies, events, stable error codes), shared by both ends; the client
//! halves of the purchase and the load ([`purchase::client`], [`load::client`]) with
//! what they share in [`client`] (request plumbing, deadlines, sealing and envelopes,
//! the SELECT + READ LOG card read); and [`json`], their JSON (serde_json natively, a
//! small byte-identical format in the browser).

#![forbid(unsafe_code)]
// In the browser without std: the widget's wasm then leaves std's panic machinery, and
// most of `core::fmt`, out of the download (docs/widget.md, "no_std"). Natively std.
#![cfg_attr(all(target_arch = "wasm32", not(test)), no_std)]

extern crate alloc;

/// What std's prelude gives and `no_std` does not; the modules that need it import it.
mod prelude {
    pub use alloc::boxed::Box;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec::Vec;
    pub use alloc::{format, vec};
}

pub mod apdu;
pub mod bridge_msg;
pub mod client;
pub mod command;
pub mod crypto;
pub mod json;
pub mod load;
pub mod merchant_api;
pub mod purchase;
#[cfg(not(target_arch = "wasm32"))]
pub mod security_module;
pub mod session;
pub mod types;
pub mod webhook;
pub mod wire;

/// Application identifier of the Cardpay purse: `F0` + ASCII "CARDPAY".
pub const AID: [u8; 8] = [0xF0, 0x43, 0x41, 0x52, 0x44, 0x50, 0x41, 0x59];

pub use apdu::{ApduError, Command, Response, StatusWord};
pub use types::{BcdDate, BcdTime, CardId, Expiry, PurseId, Terminal, TypeError};
