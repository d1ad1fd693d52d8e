//! Cardpay bridge: the native-messaging host between the browser extension
//! and PC/SC. See `docs/bridge.md`.
//!
//! # Layout
//!
//! The messages are `purse::bridge_msg` (shared with the widget).
//!
//! - [`stdio`]: native-messaging frames (the `native_messaging` crate), 1 MB cap;
//! - [`protocol`]: requests parsed from JSON (keeping the `id` of a refused one), replies written;
//! - [`host`]: the message loop (stdin reader, PC/SC worker, event monitor, timeouts);
//! - [`guard`]: origin allowlist and APDU rules (sans-IO);
//! - [`budget`]: token buckets per origin and per card, wall-clock stamped (sans-IO);
//! - [`store`]: those budgets in a crash-safe state file shared by bridge processes;
//! - [`reserve`]: a card transaction reserved at SELECT, off the INITIALIZE's path (sans-IO);
//! - [`exclusive`]: when to hold a PC/SC transaction and select again (sans-IO);
//! - [`pcsc`]: the PC/SC backend that applies all of the above, and `map_pcsc`;
//! - [`readiness`]: readiness of a card and reader events from what PC/SC reports (sans-IO);
//! - [`monitor`]: the card-event thread (I/O only);
//! - [`pin`]: `bridge pin`, the shopper's own PIN prompt that restores the tries;
//! - [`install`], [`config`], [`doctor`]: shopper-facing setup.

pub mod budget;
pub mod config;
pub mod doctor;
pub mod exclusive;
pub mod guard;
pub mod host;
pub mod install;
pub mod monitor;
pub mod pcsc;
pub mod pin;
pub mod protocol;
pub mod readiness;
pub mod reserve;
pub mod stdio;
pub mod store;
