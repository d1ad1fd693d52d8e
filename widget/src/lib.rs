//! Cardpay checkout widget: the iframe the merchant's (or the bank's) page
//! mounts with `Cardpay.mount(el, {session, mode})`.
//!
//! # Layout
//! ```text
//! checkout.rs  the UI state around one client: purse::purchase::client::Client
//!              (checkout/pay.rs), or purse::load::client::LoadClient in load mode
//!              (checkout/load.rs); every protocol step is theirs
//! features     `purchase` and `load` (both by default): each mode's client, screens
//!              (view/pay.rs, view/load.rs), words (i18n/pay.rs, i18n/load.rs) and
//!              problems; the checkout's wasm is built with `purchase` only, the bank's
//!              load page's with `load` only (docs/widget.md, "Build"); and `en`, `de`
//!              (both by default): the shopper's languages, one per shipped wasm
//! bridge.rs    capability detection and the card connection through the extension and
//!              bridge (hello, readers, connect, transmit, card events; purse::bridge_msg)
//! problem.rs   one map from the clients' and the bridge's problems to codes and plain words
//! view.rs      every screen as escaped HTML (pure); keypad.rs the scrambled PIN pad
//! i18n.rs      the words (English, German); money.rs amounts
//! web.rs       browser glue (wasm32 only): postMessage, fetch, DOM, one setTimeout
//! ```
//!
//! Sans-IO: [`checkout::Checkout::handle`] takes an input and the time and
//! returns effects, so the whole checkout runs natively in tests against the
//! real payment server and the real card application.

// In the browser without std (docs/widget.md, "no_std"): the shipped wasm
// (feature `trap-on-panic`) leaves std's panic machinery, and most of `core::fmt`, out.
#![cfg_attr(all(target_arch = "wasm32", not(test)), no_std)]

extern crate alloc;
// Builds without `trap-on-panic` (tests, `cargo build`) link std as before, for its
// panic handler.
#[cfg(all(target_arch = "wasm32", not(test), not(feature = "trap-on-panic")))]
extern crate std;

/// What std's prelude gives and `no_std` does not; the modules that need it import it.
mod prelude {
    pub use alloc::boxed::Box;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec::Vec;
}

/// The shipped wasm's panic handler: trap. A panic is a bug (the checkout's errors are
/// values); the page sees the frame stop and its `error` event never comes, as with
/// std's handler, which only printed the message to a console nobody reads.
#[cfg(all(target_arch = "wasm32", feature = "trap-on-panic"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

/// The allocator of the wasm (one thread): lol_alloc's free list, made for small wasm
/// (first fit, free blocks kept in address order and merged): 0.5 KB less to download
/// than talc, and 3 KB less than std's dlmalloc (docs/widget.md, "Figures"). The frame
/// holds a few hundred small blocks at most, so a walk of the list is short; a growing
/// buffer is copied into a new block.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
#[global_allocator]
// SAFETY: the wasm runs on one thread (no `atomics`: no shared memory, no workers
// running this module), which is what `AssumeSingleThreaded` asks of its user.
static ALLOC: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

pub mod bridge;
pub mod checkout;
pub mod i18n;
pub mod keypad;
pub mod money;
pub mod problem;
pub mod view;

#[cfg(target_arch = "wasm32")]
mod web;

pub use bridge::Capability;
pub use checkout::{Action, Checkout, Config, Effect, Input, Mode, Outcome, ParentEvent};
