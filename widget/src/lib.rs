//! Cardpay checkout widget.
//!
//! The purchase flow ([`flow::Flow`]) is a sans-IO state machine: it takes inputs
//! (extension replies, card events, HTTP answers, clicks, timers) and returns
//! effects. The views ([`view::render`]) are pure HTML builders. Only the `web`
//! module (wasm32) touches the browser: it runs the effects with web-sys,
//! gloo-net and `postMessage`, and feeds the results back.

pub mod api;
pub mod flow;
pub mod i18n;
pub mod keypad;
pub mod money;
pub mod view;

#[cfg(target_arch = "wasm32")]
mod web;

pub use flow::{Action, Capability, Config, Effect, Flow, Input, ParentEvent, Timer};
