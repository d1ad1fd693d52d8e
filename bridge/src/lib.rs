//! Cardpay bridge: the native-messaging host between the browser extension
//! and PC/SC. See `docs/bridge.md`.
//!
//! - [`stdio`]: native-messaging frames (the `native_messaging` crate), 1 MB cap;
//! - [`protocol`]: request/reply/event JSON and stable error codes;
//! - [`guard`]: origin allowlist and APDU rules (sans-IO);
//! - [`host`]: the message loop (stdin reader, PC/SC worker, event monitor);
//! - [`service`]: the PC/SC backend, readiness status and card-event monitor;
//! - [`install`], [`config`], [`doctor`]: shopper-facing setup.

pub mod config;
pub mod doctor;
pub mod guard;
pub mod host;
pub mod install;
pub mod protocol;
pub mod service;
pub mod stdio;
