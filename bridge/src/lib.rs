//! Cardpay bridge: the native-messaging host between the browser extension
//! and PC/SC. See `docs/bridge.md`.
//!
//! - [`framing`]: 4-byte LE length + UTF-8 JSON, 1 MB cap (sans-IO decoder);
//! - [`protocol`]: request/reply/event JSON and stable error codes;
//! - [`guard`]: origin allowlist and APDU rules (sans-IO);
//! - [`host`]: the message loop (stdin reader, PC/SC worker, event monitor);
//! - [`service`]: the PC/SC backend, readiness status and card-event monitor;
//! - [`install`], [`config`], [`doctor`]: shopper-facing setup.

pub mod config;
pub mod doctor;
pub mod framing;
pub mod guard;
pub mod host;
pub mod install;
pub mod protocol;
pub mod service;
