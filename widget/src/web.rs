//! Browser glue (wasm32 only): runs the checkout's effects and feeds back what
//! happens; one `setTimeout`, armed for [`Checkout::poll_timeout`].
//!
//! - merchant page ↔ iframe: `window.postMessage`; the init message is accepted only
//!   from `window.parent`, and the origin the *browser* reports for it becomes the
//!   only target of every event we post back (and must equal the session's origin);
//! - iframe ↔ extension: `window.postMessage` to this frame itself, in the
//!   `{channel: "cardpay", dir: "to-extension" | "from-extension"}` envelope of
//!   docs/bridge.md;
//! - payment server: `fetch` (web-sys), same origin;
//! - DOM: [`crate::view::skeleton`] once into the root (heading, screen container, live
//!   region), then each view's HTML into the screen container; clicks by delegation;
//!   keyboard: typed digits never become PIN digits, arrows/Tab move over the keypad,
//!   Enter/Space press the focused key (a native button click);
//! - size: a `ResizeObserver` on the root posts the height to the page whenever it
//!   changes (content, language, a narrow screen), and refits the keypad to the width;
//! - clickjacking: Approve (its click, and the press or key that asks the card's proof)
//!   counts only once the whole frame has been seen, unobscured and opaque, for
//!   [`MIN_SHOWN_MS`] ([`on_visibility`]): a page that hides our frame (opacity 0,
//!   covered, filtered) and moves it under the shopper's pointer, or clips it down to
//!   Approve so the amount is not seen, gets nothing.

use crate::prelude::*;
use core::cell::RefCell;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{
    Element, HtmlElement, IntersectionObserver, IntersectionObserverInit, KeyboardEvent,
    MessageEvent, MouseEvent, ResizeObserver,
};

use crate::checkout::{Action, Checkout, Config, Effect, Input, Mode, ParentEvent};
use crate::i18n::Lang;
use crate::view::View;
use purse::client::{Cipher, Crypto, Entropy};
use purse::session::{NONCE_LEN, TAG_LEN};
use zeroize::Zeroizing;

struct WebEntropy;

impl Entropy for WebEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        // No `expect`: it would format getrandom's error, code the download does not need.
        if getrandom::fill(buf).is_err() {
            panic!("crypto.getRandomValues is unavailable");
        }
    }
}

struct App {
    cfg: Config,
    mode: Mode,
    checkout: Option<Checkout>,
    root: Element,
    /// Merchant page origin, as the browser reported it for the init message.
    parent_origin: Option<String>,
    /// The mount's nonce (from our URL): ties the messages to one `Cardpay.mount`.
    nonce: String,
    /// The one running `setTimeout`: its deadline and handle.
    timer: Option<(u64, i32)>,
    last_html: String,
    /// The last view (re-rendered when the width changes: the keypad is fitted to it).
    last_view: Option<View>,
    on_pin: bool,
    /// What the live region says now (set only when it changes).
    last_announce: String,
    /// The height last posted to the page, and the width the keypad was fitted to.
    last_height: i32,
    last_width: i32,
    /// The view to draw next ([`show`]), the latest one.
    pending_view: Option<View>,
    /// A task to draw `pending_view` is queued.
    render_queued: bool,
    /// A progress view waits until then (ms, [`now`]) before it is drawn ([`show`]).
    hold_until: Option<u64>,
    /// The view on screen is a progress view.
    on_progress: bool,
    /// What a waiting progress view says, for the live region in the next task.
    pending_announce: Option<String>,
    /// A progress view waited and was never drawn: the next view is a new screen for
    /// focus, as if it had been.
    skipped_progress: bool,
    /// The page's theme, until the first view applies it.
    theme: Option<JsValue>,
    /// Watches the root's size from the first view on ([`ensure_skeleton`]).
    resize: Option<ResizeObserver>,
    /// Since when (ms, [`now`]) the whole frame has been seen on screen, unobscured and
    /// opaque, at its present size; none while it is not ([`on_visibility`]).
    shown_since: Option<u64>,
    /// Reports whether the frame is seen ([`watch_approve`]); none: the browser has no
    /// IntersectionObserver, and Approve counts at once.
    visibility: Option<IntersectionObserver>,
    /// `visibility` observes us: Approve is on screen.
    watching: bool,
    /// Toggled so that a repeated hint is announced again.
    #[cfg(feature = "purchase")]
    hint_toggle: bool,
}

/// The one checkout of this frame. `no_std` has no `thread_local!`; a static needs
/// `Sync`, which this wasm (one thread, built without atomics) grants the cell.
struct AppCell(RefCell<Option<App>>);

// SAFETY: wasm32-unknown-unknown without the `atomics` target feature has one thread,
// so the cell is never reached from two threads.
#[cfg(not(target_feature = "atomics"))]
unsafe impl Sync for AppCell {}

static APP: AppCell = AppCell(RefCell::new(None));

impl AppCell {
    /// As `LocalKey::with` of the `thread_local!` this replaces.
    fn with<R>(&'static self, f: impl FnOnce(&RefCell<Option<App>>) -> R) -> R {
        f(&self.0)
    }
}

#[wasm_bindgen]
extern "C" {
    /// The frame's window, read once: not web_sys::window(), whose search of
    /// `globalThis`/`self`/`window`/`global` and `instanceof Window` check the widget
    /// does not need (it only ever runs in a window).
    #[wasm_bindgen(thread_local_v2, js_name = window)]
    static WINDOW: web_sys::Window;
}

fn window() -> web_sys::Window {
    WINDOW.with(web_sys::Window::clone)
}

/// DOM calls that cannot throw as the widget makes them, bound without web-sys's
/// `catch` (its bindings mark nearly every call as throwing): no try/catch around each
/// in the glue, no `Result` to build and drop in the wasm. The standards define no
/// exception for them, or only for arguments the widget never passes (an invalid
/// selector or attribute name: the widget's are literals, or values of its own
/// markup). The calls that can throw on what they are given (`postMessage` to the
/// parent's origin, `JSON.stringify` of what a page posted, WebCrypto, the
/// IntersectionObserver) keep web-sys's. Called on any DOM object through [`dom`].
#[wasm_bindgen]
extern "C" {
    type Dom;
    #[wasm_bindgen(method, js_name = focus)]
    fn focus(this: &Dom);
    #[wasm_bindgen(method, js_name = hasFocus)]
    fn has_focus(this: &Dom) -> bool;
    #[wasm_bindgen(method, js_name = removeAttribute)]
    fn remove_attribute(this: &Dom, name: &str);
    #[wasm_bindgen(method, js_name = addEventListener)]
    fn listen(this: &Dom, kind: &str, f: &js_sys::Function);
    #[wasm_bindgen(method, js_name = setTimeout)]
    fn set_timeout(this: &Dom, f: &js_sys::Function, ms: i32) -> i32;
    /// A window's parent window (itself at the top).
    #[wasm_bindgen(method, getter)]
    fn parent(this: &Dom) -> Option<web_sys::Window>;
    /// Of the frame's own location (same origin: no security error).
    #[wasm_bindgen(method, getter)]
    fn origin(this: &Dom) -> String;
    #[wasm_bindgen(method, getter)]
    fn search(this: &Dom) -> String;
    /// A response's body as text: a promise, which rejects where the body cannot be read.
    #[wasm_bindgen(method)]
    fn text(this: &Dom) -> js_sys::Promise;
    /// `this[name]`, of an object: every value the widget reads a member of is one (a
    /// message checked as an object, an observer's entry, a settled promise's
    /// outcome, JSON it parsed from its own writing).
    #[wasm_bindgen(method, structural, indexing_getter)]
    fn at(this: &Dom, name: &str) -> JsValue;
    /// `this[name] = value`, on an object the widget made.
    #[wasm_bindgen(method, structural, indexing_setter)]
    fn put(this: &Dom, name: &str, value: &JsValue);
    #[wasm_bindgen(method, js_name = querySelector)]
    fn find_in(this: &Dom, selector: &str) -> Option<Element>;
    #[wasm_bindgen(method, js_name = querySelectorAll)]
    fn find_all(this: &Dom, selector: &str) -> web_sys::NodeList;
    #[wasm_bindgen(method)]
    fn closest(this: &Dom, selector: &str) -> Option<Element>;
    #[wasm_bindgen(method, js_name = setAttribute)]
    fn set_attr(this: &Dom, name: &str, value: &str);
    /// A ResizeObserver (its constructor throws only for a callback that is not a
    /// function, and where there is none: then `run` fails either way).
    #[wasm_bindgen(js_name = ResizeObserver)]
    type Resize;
    #[wasm_bindgen(constructor, js_class = "ResizeObserver")]
    fn new(f: &js_sys::Function) -> Resize;
    /// JSON the widget wrote itself (`purse::json::lite`), which always parses.
    #[wasm_bindgen(js_namespace = JSON, js_name = parse)]
    fn parse_own(text: &str) -> JsValue;
    /// Of an element's `style` (writable).
    #[wasm_bindgen(method, js_name = setProperty)]
    fn set_property(this: &Dom, name: &str, value: &str);
    /// The query of a URL, read.
    #[wasm_bindgen(js_name = URLSearchParams)]
    type Params;
    #[wasm_bindgen(constructor, js_class = "URLSearchParams")]
    fn new(search: &str) -> Params;
    #[wasm_bindgen(method, js_class = "URLSearchParams")]
    fn get(this: &Params, name: &str) -> Option<String>;
}

/// `v` for the calls of [`Dom`].
fn dom(v: &impl AsRef<JsValue>) -> &Dom {
    v.as_ref().unchecked_ref()
}

fn now() -> u64 {
    window().performance().map(|p| p.now() as u64).unwrap_or(0)
}

/// A whole number written in decimal (an attribute, a parameter): JSON's reader
/// (no sign, no leading zero), not `str::parse`, which is one more parser in the wasm.
fn number<T: purse::json::lite::Decode>(s: &str) -> Option<T> {
    purse::json::lite::decode(s.as_bytes()).ok()
}

fn get(v: &JsValue, k: &str) -> JsValue {
    dom(v).at(k)
}

fn set(v: &JsValue, k: &str, val: impl Into<JsValue>) {
    dom(v).put(k, &val.into());
}

/// Feed one input and run the effects (never re-entrant: effects only schedule work).
fn feed(input: Input) {
    let effects = APP.with(|a| {
        let mut a = a.borrow_mut();
        let app = a.as_mut()?;
        Some(app.checkout.as_mut()?.handle(input, now()))
    });
    let effects = effects.unwrap_or_default();
    // A batch that posts nothing (a PIN digit, a timer's warning) is drawn at once:
    // nothing has to go first, and the DOM is current when the next input comes.
    let posts = effects.iter().any(|e| !matches!(e, Effect::Render(_)));
    for e in effects {
        run_effect(e, !posts);
    }
    arm_timer();
}

/// One `setTimeout` for the checkout's next deadline.
fn arm_timer() {
    APP.with(|a| {
        let mut a = a.borrow_mut();
        let Some(app) = a.as_mut() else { return };
        let next = app.checkout.as_ref().and_then(Checkout::poll_timeout);
        if app.timer.map(|t| t.0) == next {
            return;
        }
        if let Some((_, h)) = app.timer.take() {
            window().clear_timeout_with_handle(h);
        }
        let Some(at) = next else { return };
        let cb = Closure::once_into_js(on_timer as fn());
        let wait = at.saturating_sub(now()).min(i32::MAX as u64) as i32;
        let handle = dom(&window()).set_timeout(cb.unchecked_ref(), wait);
        app.timer = Some((at, handle));
    });
}

/// The checkout's deadline came ([`arm_timer`]). (A plain `fn`, as [`after`] takes:
/// one closure type, one set of shims in the download.)
fn on_timer() {
    APP.with(|a| {
        if let Some(app) = a.borrow_mut().as_mut() {
            app.timer = None;
        }
    });
    feed(Input::Tick);
}

/// Post `msg` (an object) to the page, with the mount's nonce, to the page's origin only.
fn post_parent_js(msg: JsValue) {
    APP.with(|a| {
        let a = a.borrow();
        let Some(app) = a.as_ref() else { return };
        let Some(origin) = app.parent_origin.as_deref() else {
            return;
        };
        set(&msg, "nonce", app.nonce.as_str());
        if let Some(parent) = dom(&window()).parent() {
            let _ = parent.post_message(&msg, origin);
        }
    });
}

fn parent_event(ev: &ParentEvent) {
    let msg = parse_own(&purse::json::lite::encode(ev));
    let name = get(&msg, "event")
        .as_string()
        .unwrap_or_else(|| "error".into());
    set(&msg, "type", ["cardpay:", &name].concat());
    post_parent_js(msg);
}

/// Run one effect; `draw_at_once`: its batch posts nothing ([`show`]).
fn run_effect(e: Effect, draw_at_once: bool) {
    match e {
        Effect::Bridge { msg, .. } => {
            let msg = parse_own(&msg);
            set(&msg, "channel", "cardpay");
            set(&msg, "dir", "to-extension");
            let w = window();
            let own = dom(&w.location()).origin();
            let _ = w.post_message(&msg, &own);
        }
        Effect::Http { id, path, body } => {
            // The request goes out now, before the render that follows it in the same
            // batch of effects; only its answer is awaited.
            let sent = post_json(path, &body);
            read_answer(sent, move |result| feed(Input::Http { id, result }));
        }
        Effect::Crypto { id, job } => cipher(job, move |out| feed(Input::Crypto { id, out })),
        Effect::Render(view) => show(view, draw_at_once),
        Effect::Parent(ev) => parent_event(&ev),
    }
}

/// AES-256-GCM and SHA-256 by the browser's WebCrypto, so that the wasm carries
/// neither (docs/widget.md, "Code"): import the key for this one operation, then
/// encrypt or decrypt; or hash. `then` gets the bytes in a later microtask, or
/// nothing when the message does not open. Sealed bytes are `nonce || ciphertext ||
/// tag`, as the servers' RustCrypto makes them; WebCrypto's own output is
/// `ciphertext || tag`.
fn cipher(job: Crypto, then: impl FnOnce(Cipher) + 'static) {
    let (key, usage) = match &job {
        Crypto::Seal { key, .. } => (key, "encrypt"),
        Crypto::Open { key, .. } => (key, "decrypt"),
        Crypto::Digest { data } => {
            let hashed = digest("SHA-256", data);
            return settled(&hashed, move |r| then(bytes_after(Vec::new(), r)));
        }
    };
    // WebCrypto copies every buffer it is given before its call returns.
    let imported = import_key(
        "raw",
        key.bytes(),
        "AES-GCM",
        false,
        &js_sys::Array::of1(&usage.into()),
    );
    settled(&imported, move |key| {
        let Ok(key) = key else {
            return then(Cipher(None));
        };
        let (nonce, aad, data, seal) = match &job {
            Crypto::Seal {
                nonce, aad, plain, ..
            } => (&nonce[..], aad, &plain[..], true),
            Crypto::Open { aad, sealed, .. } if sealed.len() >= NONCE_LEN + TAG_LEN => {
                let (nonce, data) = sealed.split_at(NONCE_LEN);
                (nonce, aad, data, false)
            }
            _ => return then(Cipher(None)),
        };
        let alg = js_sys::Object::new();
        set(&alg, "name", "AES-GCM");
        set(&alg, "iv", js_sys::Uint8Array::from(nonce));
        set(&alg, "additionalData", js_sys::Uint8Array::from(&aad[..]));
        let done = if seal {
            encrypt(&alg, &key, data)
        } else {
            decrypt(&alg, &key, data)
        };
        let prefix = if seal { nonce.to_vec() } else { Vec::new() };
        settled(&done, move |r| then(bytes_after(prefix, r)));
    });
}

/// `prefix`, then the bytes of the `ArrayBuffer` a WebCrypto call gave (none if it failed).
fn bytes_after(prefix: Vec<u8>, r: Result<JsValue, JsValue>) -> Cipher {
    Cipher(r.ok().map(|buf| {
        let mut out = Zeroizing::new(prefix);
        out.extend_from_slice(&js_sys::Uint8Array::new(&buf).to_vec());
        out
    }))
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = importKey)]
    fn import_key(
        format: &str,
        key: &[u8],
        algorithm: &str,
        extractable: bool,
        usages: &js_sys::Array,
    ) -> js_sys::Promise;
    #[wasm_bindgen(js_namespace = ["crypto", "subtle"])]
    fn encrypt(algorithm: &js_sys::Object, key: &JsValue, data: &[u8]) -> js_sys::Promise;
    #[wasm_bindgen(js_namespace = ["crypto", "subtle"])]
    fn decrypt(algorithm: &js_sys::Object, key: &JsValue, data: &[u8]) -> js_sys::Promise;
    #[wasm_bindgen(js_namespace = ["crypto", "subtle"])]
    fn digest(algorithm: &str, data: &[u8]) -> js_sys::Promise;
}

/// Start `POST path` with a JSON body on our own origin (no HTTP library: `fetch`
/// through web-sys is all it needs).
fn post_json(path: &str, body: &str) -> js_sys::Promise {
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(body));
    // A plain object is a HeadersInit: no `Headers` to build.
    let headers = js_sys::Object::new();
    set(&headers, "content-type", "application/json");
    init.set_headers(&headers);
    window().fetch_with_str_and_init(path, &init)
}

/// The answer to a request from [`post_json`], (status, body text), or `None` where the
/// network failed (the checkout only needs to know that it did), handed to `then` in a
/// later microtask (never at once: `then` feeds the checkout).
/// Promise callbacks, not Rust futures: the futures executor cost 2.7 KB gz of the
/// download (docs/widget.md, "no_std").
fn read_answer(sent: js_sys::Promise, then: impl FnOnce(Option<(u16, String)>) + 'static) {
    settled(&sent, move |resp| {
        let resp: web_sys::Response = match resp {
            Ok(resp) => resp.unchecked_into(),
            Err(_) => return then(None),
        };
        let status = resp.status();
        settled(&dom(&resp).text(), move |text| {
            then(
                text.ok()
                    .map(|t| (status, t.as_string().unwrap_or_default())),
            )
        });
    });
}

/// Call `f` once `p` settles: `Ok(value)` or `Err(reason)`. One JS function for both
/// outcomes (`Promise.allSettled`), so the closure is called, and freed, exactly once.
fn settled(p: &js_sys::Promise, f: impl FnOnce(Result<JsValue, JsValue>) + 'static) {
    settled_boxed(p, Box::new(f));
}

/// [`settled`] with `f` boxed. wasm-bindgen makes a closure's shims per closure type:
/// through here every caller's callback is one type, so the download holds one set of
/// shims, not one per caller (with the event listeners' one signature, 1 KB gz less:
/// docs/widget.md, "Figures").
fn settled_boxed(p: &js_sys::Promise, f: Box<dyn FnOnce(Result<JsValue, JsValue>)>) {
    let cb = Closure::once_into_js(move |all: JsValue| {
        let r = all.unchecked_into::<js_sys::Array>().get(0);
        f(
            if get(&r, "status").as_string().as_deref() == Some("fulfilled") {
                Ok(get(&r, "value"))
            } else {
                Err(get(&r, "reason"))
            },
        )
    });
    all_settled(&js_sys::Array::of1(p)).then(&cb);
}

#[wasm_bindgen]
extern "C" {
    /// What `Promise.allSettled` returns: `then` takes any JS function here.
    type Settled;
    #[wasm_bindgen(js_namespace = Promise, js_name = allSettled)]
    fn all_settled(promises: &js_sys::Array) -> Settled;
    #[wasm_bindgen(method)]
    fn then(this: &Settled, f: &JsValue);
}

/// A key identifying the focused control across re-renders (same button, new DOM).
fn focus_key(el: &Element) -> Option<String> {
    let action = el.get_attribute("data-action")?;
    Some(match el.get_attribute("data-digit") {
        Some(d) => [
            r#"[data-action=""#,
            &action,
            r#""][data-digit=""#,
            &d,
            r#""]"#,
        ]
        .concat(),
        None => [r#"[data-action=""#, &action, r#""]"#].concat(),
    })
}

/// One of the frame's own elements. (Every element the widget looks up or is handed
/// is of its own markup, which is HTML only: they are taken as `HtmlElement` without
/// an `instanceof` check; event targets, which need not be elements, are checked.)
fn by_id(id: &str) -> Option<HtmlElement> {
    Some(window().document()?.get_element_by_id(id)?.unchecked_into())
}

/// Width the keypad may take: the screen container's content box.
fn available_width() -> i32 {
    by_id("cp-screen").map(|e| e.client_width()).unwrap_or(0)
}

/// Fit the PIN pad on screen, if any, to the width it may take; that width (0: none).
fn fit_keypad(view: &mut View) -> i32 {
    // Measuring forces a layout: only the keypad needs the width.
    #[cfg(feature = "purchase")]
    if let crate::view::Screen::Pin { layout, .. } = &mut view.screen {
        let width = available_width();
        if width > 0 {
            *layout = layout.fitted(width as u32);
        }
        return width;
    }
    let _ = view;
    0
}

/// Run `f` in a task of its own, after the current one and after the messages it
/// posted (the extension's content script and the page get theirs first: in our
/// traces a zero timer queued after a `postMessage` ran after its delivery).
/// (A plain `fn`: one closure type, one set of shims in the download.)
fn next_task(f: fn()) {
    after(0, f);
}

/// Run `f` in a task of its own once `ms` have passed.
fn after(ms: i32, f: fn()) {
    let cb = Closure::once_into_js(f);
    dom(&window()).set_timeout(cb.unchecked_ref(), ms);
}

/// Put `view` on screen: `at_once`, or in the next task (the last view queued before
/// that task runs is drawn), or, a progress view, only once the progress lasts.
///
/// - **The next task**, when the batch of effects that produced the view posts
///   something: the messages go first — the extension's content script runs on this
///   frame's main thread, and so does a same-site page — and the drawing, with the
///   layout that focusing a control forces, runs while they travel (a Chromium trace
///   showed the first bridge request, INITIALIZE and DEBIT each waiting 2–5 ms behind
///   the render before the content script could pass them on).
/// - **Progress waits [`PROGRESS_AFTER_MS`]**: a progress view that would replace
///   another kind of view (the placeholder, the amount to approve, the PIN pad) is drawn
///   only if no other view has come by then. Detecting the card takes two bridge round
///   trips and a payment four card and server steps, ≈ 5 ms each with the card in the
///   reader: their progress views only flashed by, and drawing each (skeleton, layout,
///   paint: up to 7 ms in a trace) held up the very answers they announced, on the
///   thread that delivers them. A slow step (the bridge starting, a PIN check, a slow
///   server) still shows its progress; once one is on screen, the next steps' are drawn
///   as they come.
fn show(view: View, at_once: bool) {
    let now = now();
    let queue = APP.with(|a| {
        let mut a = a.borrow_mut();
        let app = a.as_mut()?;
        let wait = view.screen.is_progress() && !app.on_progress;
        if wait {
            // Screen readers hear each step as before: only the drawing waits.
            let say = crate::view::announce(&view);
            let first_say = app.pending_announce.is_none();
            app.pending_announce = Some(say);
            app.pending_view = Some(view);
            if app.hold_until.is_some() {
                return first_say.then_some(After::Announce);
            }
            app.hold_until = Some(now + PROGRESS_AFTER_MS as u64);
            return Some(After::Hold {
                announce: first_say,
            });
        }
        app.pending_view = Some(view);
        app.skipped_progress |= app.hold_until.take().is_some();
        if at_once {
            return Some(After::Now);
        }
        if core::mem::replace(&mut app.render_queued, true) {
            return None;
        }
        Some(After::NextTask)
    });
    match queue {
        Some(After::Hold { announce }) => {
            after(PROGRESS_AFTER_MS, end_hold);
            if announce {
                next_task(announce_pending);
            }
        }
        Some(After::Announce) => next_task(announce_pending),
        Some(After::NextTask) => next_task(render_pending),
        Some(After::Now) => render_pending(),
        None => {}
    }
}

enum After {
    Now,
    NextTask,
    Hold { announce: bool },
    Announce,
}

/// Say what the waiting progress view would say (unless a view was drawn meanwhile).
/// Before the first view there is no live region yet: the view says it if drawn.
fn announce_pending() {
    let live = by_id("cp-live").is_some();
    let say = APP.with(|a| {
        let mut a = a.borrow_mut();
        let app = a.as_mut()?;
        let say = app.pending_announce.take()?;
        (live && say != app.last_announce).then(|| {
            app.last_announce = say.clone();
            say
        })
    });
    if let Some(text) = say {
        set_live(&text);
    }
}

/// How long a progress view waits before it is drawn ([`show`]): within 0.1 s a
/// response feels immediate (Nielsen), so a wait this short is not seen as one.
const PROGRESS_AFTER_MS: i32 = 100;

/// A progress view has waited: draw it, unless another view came meanwhile (or a later
/// hold is still running: then wait for the rest of it).
fn end_hold() {
    let now = now();
    let left = APP.with(|a| {
        let mut a = a.borrow_mut();
        let app = a.as_mut()?;
        let until = app.hold_until?;
        if until > now {
            return Some((until - now) as i32);
        }
        app.hold_until = None;
        Some(0)
    });
    match left {
        Some(0) => render_pending(),
        Some(ms) => after(ms, end_hold),
        None => {}
    }
}

/// The view [`show`] left for this task, if a later input has not drawn it and no
/// progress view waits.
fn render_pending() {
    let view = APP.with(|a| {
        let mut a = a.borrow_mut();
        let app = a.as_mut()?;
        app.render_queued = false;
        if app.hold_until.is_some() {
            return None;
        }
        app.pending_view.take()
    });
    if let Some(view) = view {
        render(view);
    }
}

fn render(mut view: View) {
    ensure_skeleton();
    apply_pending_theme();
    let last = view.clone();
    let width = fit_keypad(&mut view);
    let html = crate::view::render(&view);
    let announce = crate::view::announce(&view);
    let on_pin = view.screen.is_pin();
    let doc = window().document().expect("a document");
    let changed = APP.with(|a| {
        let mut a = a.borrow_mut();
        let app = a.as_mut()?;
        app.on_progress = last.screen.is_progress();
        app.pending_announce = None;
        app.last_view = Some(last);
        if width > 0 {
            app.last_width = width;
        }
        if app.last_html == html {
            return None;
        }
        app.last_html = html.clone();
        app.on_pin = on_pin;
        let say = (app.last_announce != announce).then(|| announce.clone());
        app.last_announce = announce;
        Some(say)
    });
    let Some(say) = changed else {
        return;
    };
    let (Some(screen), Some(title)) = (by_id("cp-screen"), by_id("cp-title")) else {
        return;
    };
    let had_focus = dom(&doc).has_focus();
    // The same control keeps focus across re-renders (a keypad key, Cancel during
    // the progress steps) if it is still there, unless a progress view came between
    // them undrawn ([`show`]): focus goes where a new screen puts it.
    let skipped = APP.with(|a| {
        a.borrow_mut()
            .as_mut()
            .is_some_and(|app| core::mem::take(&mut app.skipped_progress))
    });
    let keep = doc
        .active_element()
        .filter(|e| !skipped && screen.contains(Some(e)))
        .and_then(|e| focus_key(&e));
    screen.set_inner_html(&html);
    apply_styles(&screen);
    watch_approve();
    let target = keep
        .and_then(|sel| dom(&screen).find_in(&sel))
        .or_else(|| dom(&screen).find_in("[data-autofocus]"));
    match target.map(JsCast::unchecked_into::<HtmlElement>) {
        // Only when focus is in the frame already (the shopper clicked or tabbed into
        // it): focusing from outside would take the keyboard from the page, and keys
        // the shopper types into the page's own form (Space, Enter) would land on
        // Approve. The page keeps its focus; Tab or a click brings the shopper in.
        Some(el) if had_focus => {
            dom(&el).focus();
        }
        Some(_) => {}
        // A screen without a control of its own (progress, "insert your card", a
        // problem nothing can be done about here): focus goes to the heading, which is
        // never replaced, rather than falling to the page body (`tagName`: upper case
        // in an HTML document).
        None => {
            let lost = doc
                .active_element()
                .is_none_or(|e| !e.is_connected() || e.tag_name() == "BODY");
            if had_focus && lost {
                dom(&title).focus();
            }
        }
    }
    if let Some(text) = say {
        set_live(&text);
    }
    if let Some(d) = doc.document_element() {
        dom(&d).set_attr("lang", view.lang.tag());
    }
    // The new height reaches the page through the ResizeObserver (after layout, so no
    // layout is forced here).
}

/// Put `text` into the stable live region (screen readers say it once).
fn set_live(text: &str) {
    if let Some(live) = by_id("cp-live") {
        live.set_text_content(Some(text));
    }
}

/// `f64::ceil` for a frame's height in CSS pixels (std's is not in `no_std`'s core).
fn ceil(x: f64) -> i32 {
    let n = x as i32;
    n + i32::from((n as f64) < x)
}

/// Tell the page how tall we are (only when it changed): checkout.js sizes the iframe.
fn post_height() {
    let Some(root) = APP.with(|a| a.borrow().as_ref().map(|a| a.root.clone())) else {
        return;
    };
    let height = ceil(root.get_bounding_client_rect().height());
    let changed = APP.with(|a| {
        let mut a = a.borrow_mut();
        let app = a.as_mut()?;
        // Nobody to tell before the page's init: keep it for then.
        app.parent_origin.as_ref()?;
        (app.last_height != height).then(|| app.last_height = height)
    });
    if changed.is_some() {
        let msg = js_sys::Object::new();
        set(&msg, "type", "cardpay:resize");
        set(&msg, "height", height);
        post_parent_js(msg.into());
    }
}

/// The root changed size: post the new height; on a new width, refit the keypad.
fn on_resize() {
    let width = available_width();
    let refit = APP.with(|a| {
        let a = a.borrow();
        let app = a.as_ref()?;
        (app.on_pin && app.last_width != width)
            .then(|| app.last_view.clone())
            .flatten()
    });
    if let Some(view) = refit {
        render(view);
    }
    restart_shown_clock();
    post_height();
}

/// How long the frame must have been seen, unobscured and opaque, before Approve
/// counts: longer than a hidden frame can be flashed under a pointer unnoticed, shorter
/// than a shopper takes to read the amount.
const MIN_SHOWN_MS: u64 = 500;

/// The whole frame has been on screen, unobscured and opaque, for [`MIN_SHOWN_MS`].
fn shown_long_enough() -> bool {
    let since = APP.with(|a| a.borrow().as_ref().and_then(|a| a.shown_since));
    since.is_some_and(|t| now() >= t + MIN_SHOWN_MS)
}

/// The Approve button on screen, if any.
fn approve_button() -> Option<Element> {
    find("[data-action=approve]")
}

/// The frame's first element that matches `selector` (Element's querySelector on
/// the document's root: one binding for every lookup).
fn find(selector: &str) -> Option<Element> {
    dom(&window().document()?.document_element()?).find_in(selector)
}

/// Approve says whether it counts yet (`aria-disabled` until then, so it is also
/// announced as unavailable).
fn guard_approve() {
    let Some(btn) = approve_button() else {
        return;
    };
    if shown_long_enough() {
        dom(&btn).remove_attribute("aria-disabled");
    } else {
        dom(&btn).set_attr("aria-disabled", "true");
    }
}

/// After each render: the browser watches whether we are seen only while Approve is on
/// screen. Chromium ignores a click on a frame with such a watch at a point the frame
/// did not cover throughout the last 200 ms (whatwg/html#8012); other screens (the
/// keypad, Cancel on a failed payment) take a click at once, so they are not watched.
fn watch_approve() {
    let on_screen = approve_button().is_some();
    APP.with(|a| {
        let mut a = a.borrow_mut();
        let Some(app) = a.as_mut() else { return };
        let Some(observer) = app.visibility.as_ref() else {
            app.shown_since = Some(0);
            return;
        };
        if on_screen == app.watching {
            return;
        }
        app.watching = on_screen;
        app.shown_since = None;
        if !on_screen {
            observer.disconnect();
        } else if let Some(el) = window().document().and_then(|d| d.document_element()) {
            // The browser's first report comes within a frame or two.
            observer.observe(&el);
        }
    });
    guard_approve();
}

/// The frame's size changed (a new screen, a narrower page): whatever moved under the
/// pointer with it, Approve counts only half a second later.
fn restart_shown_clock() {
    let restarted = APP.with(|a| {
        let mut a = a.borrow_mut();
        let app = a.as_mut()?;
        if !app.watching || app.shown_since.is_none() {
            return None;
        }
        app.shown_since = Some(now());
        Some(())
    });
    if restarted.is_some() {
        guard_approve();
        guard_approve_when_shown_long_enough();
    }
}

/// The clock of [`shown_long_enough`] started: Approve is checked again as it passes
/// the mark (one ms over, so that the check is past it).
fn guard_approve_when_shown_long_enough() {
    after(MIN_SHOWN_MS as i32 + 1, guard_approve);
}

/// Share of the frame that must be in view (not clipped by the page or the viewport):
/// all of it, less a rounding margin far too thin to hide a line of text.
const WHOLE: f64 = 0.98;

/// The browser's verdict on our frame (IntersectionObserver with `trackVisibility`:
/// `isVisible` is false while anything covers the frame, or it or a page element
/// around it is transparent, filtered or transformed beyond a move or an enlargement;
/// `intersectionRatio`, how much of it is not clipped away). A browser that cannot
/// tell visibility (no `isVisible`: Firefox, Safari) says only how much of the frame
/// is in view; then the rule is that, and the wait.
fn on_visibility(entries: js_sys::Array) {
    let Some(last) = entries.iter().last() else {
        return;
    };
    // All of it: a page that clips the frame (a small box, `clip-path`, the fold)
    // down to Approve would hide the amount and the payee being approved.
    let whole = get(&last, "isIntersecting").as_bool().unwrap_or(false)
        && get(&last, "intersectionRatio").as_f64().unwrap_or(0.0) >= WHOLE;
    let shown = whole && get(&last, "isVisible").as_bool().unwrap_or(true);
    let newly = APP.with(|a| {
        let mut a = a.borrow_mut();
        let app = a.as_mut()?;
        if !app.watching {
            return None;
        }
        match (shown, app.shown_since) {
            (true, None) => {
                app.shown_since = Some(now());
                Some(())
            }
            (false, _) => {
                app.shown_since = None;
                None
            }
            (true, Some(_)) => None,
        }
    });
    guard_approve();
    if newly.is_some() {
        guard_approve_when_shown_long_enough();
    }
}

/// The observer behind [`watch_approve`]; none if the browser has no
/// IntersectionObserver (Approve then counts at once: leaving it off would stop every
/// payment there).
fn visibility_observer() -> Option<IntersectionObserver> {
    let cb = Closure::<dyn FnMut(JsValue)>::new(|e: JsValue| on_visibility(e.unchecked_into()));
    let opts = js_sys::Object::new();
    set(&opts, "trackVisibility", true);
    // The least the browser allows with trackVisibility.
    set(&opts, "delay", 100);
    set(
        &opts,
        "threshold",
        js_sys::Array::of2(&0.0.into(), &WHOLE.into()),
    );
    let observer = IntersectionObserver::new_with_options(
        cb.as_ref().unchecked_ref(),
        opts.unchecked_ref::<IntersectionObserverInit>(),
    )
    .ok();
    cb.forget();
    observer
}

/// Keypad geometry travels as `data-style` and is applied through the CSSOM, so the
/// page's CSP can forbid inline style attributes.
fn apply_styles(root: &Element) {
    let list = dom(root).find_all("[data-style]");
    for i in 0..list.length() {
        if let Some(el) = list.item(i).map(JsCast::unchecked_into::<HtmlElement>) {
            let css = el.get_attribute("data-style").unwrap_or_default();
            el.style().set_css_text(&css);
        }
    }
}

/// The page's theme, once, with the first view.
fn apply_pending_theme() {
    let theme = APP.with(|a| a.borrow_mut().as_mut()?.theme.take());
    if let Some(theme) = theme {
        apply_theme(&theme);
    }
}

/// Theme variables from the merchant (`--cp-*` only, plain values only).
fn apply_theme(theme: &JsValue) {
    if !theme.is_object() {
        return;
    }
    let Some(doc) = window().document().and_then(|d| d.document_element()) else {
        return;
    };
    let el: HtmlElement = doc.unchecked_into();
    for pair in js_sys::Object::entries(theme.unchecked_ref()).iter() {
        let pair: js_sys::Array = pair.unchecked_into();
        let (Some(k), Some(v)) = (pair.get(0).as_string(), pair.get(1).as_string()) else {
            continue;
        };
        let (k, v) = (k.as_str(), v.as_str());
        // `strip_prefix`, not `k[5..]`: the one slice of a `str` in the wasm, whose
        // panic path alone kept 4 KB of `core::fmt` (docs/widget.md, "no_std").
        let key_ok = k.len() <= 40
            && k.strip_prefix("--cp-")
                .is_some_and(|name| name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'));
        let val_ok = v.len() <= 100
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" #(),.%-'\"_".contains(&b));
        if key_ok && val_ok {
            dom(&el.style()).set_property(k, v);
        }
    }
}

fn on_click(ev: MouseEvent) {
    let Some(t) = ev.target().and_then(|t| t.dyn_into::<Element>().ok()) else {
        return;
    };
    let Some(btn) = dom(&t).closest("[data-action]") else {
        return;
    };
    if btn.get_attribute("aria-disabled").as_deref() == Some("true") {
        return;
    }
    let action = match btn.get_attribute("data-action").as_deref() {
        Some("approve") if !shown_long_enough() => return,
        Some("approve") => Action::Approve,
        Some("cancel") => Action::Cancel,
        Some("not-mine") => Action::NotMine,
        Some("retry") => Action::Retry,
        Some("more-time") => Action::MoreTime,
        Some("delete") => Action::Delete,
        Some("ok") => Action::SubmitPin,
        Some("digit") => match btn.get_attribute("data-digit").and_then(|d| number(&d)) {
            Some(d) => Action::Digit(d),
            None => return,
        },
        _ => return,
    };
    ev.prevent_default();
    feed(Input::User(action));
}

/// A press on Approve (mouse button, finger, pen): the shopper's gesture, which
/// comes a press's length (tens of ms) before the click.
#[cfg(feature = "purchase")]
fn on_press(ev: MouseEvent) {
    let on_approve = ev
        .target()
        .and_then(|t| t.dyn_into::<Element>().ok())
        .and_then(|t| dom(&t).closest("[data-action=approve]"))
        .is_some();
    if on_approve && shown_long_enough() {
        feed(Input::User(Action::Press));
    }
}

/// Move focus over the keypad with the arrow keys; true if the key was used.
#[cfg(feature = "purchase")]
fn keypad_arrow(ev: &KeyboardEvent, target: Option<&Element>) -> bool {
    let Some(t) = target else { return false };
    let Some(pad) = dom(t).closest("[data-testid=keypad]") else {
        return false;
    };
    let keys = dom(&pad).find_all(".cp-key");
    let n = keys.length() as usize;
    let cols = pad
        .get_attribute("data-cols")
        .and_then(|c| number::<u32>(&c))
        .unwrap_or(3) as usize;
    let from = (0..n).find(|&i| {
        keys.item(i as u32)
            .is_some_and(|k| JsValue::from(k) == JsValue::from(t.clone()))
    });
    let Some(to) = crate::keypad::move_focus(&ev.key(), from, n, cols) else {
        return false;
    };
    if let Some(k) = keys
        .item(to as u32)
        .map(JsCast::unchecked_into::<HtmlElement>)
    {
        dom(&k).focus();
    }
    true
}

/// A digit typed on the physical keyboard on the PIN screen: not a PIN digit (a key
/// logger would see it). Show and say how to use the keypad instead.
#[cfg(feature = "purchase")]
fn typed_digit_hint() {
    let lang = APP
        .with(|a| a.borrow().as_ref().map(|a| a.cfg.lang))
        .unwrap_or_default();
    let hint = crate::i18n::t(lang, crate::i18n::PayMsg::TypedDigitsIgnored);
    if let Some(note) = find("[data-testid=typed-digits]") {
        note.set_text_content(Some(hint));
        dom(&note).remove_attribute("hidden");
    }
    // Alternate a trailing no-break space so that the same hint is said again.
    let toggle = APP.with(|a| {
        let mut a = a.borrow_mut();
        let app = a.as_mut()?;
        app.hint_toggle = !app.hint_toggle;
        app.last_announce = String::new();
        Some(app.hint_toggle)
    });
    let text = if toggle.unwrap_or(false) {
        [hint, "\u{a0}"].concat()
    } else {
        hint.to_string()
    };
    set_live(&text);
}

fn on_key(ev: KeyboardEvent) {
    let on_pin = APP.with(|a| a.borrow().as_ref().is_some_and(|a| a.on_pin));
    let key = ev.key();
    let target = ev.target().and_then(|t| t.dyn_into::<Element>().ok());
    if ev.alt_key() || ev.ctrl_key() || ev.meta_key() {
        return;
    }
    #[cfg(feature = "purchase")]
    if key != "Escape" && shown_long_enough() {
        // A key in the frame (Tab to Approve, Enter on it): the shopper's gesture.
        feed(Input::User(Action::Gesture));
    }
    #[cfg(feature = "purchase")]
    if on_pin {
        if key.len() == 1 && key.as_bytes()[0].is_ascii_digit() {
            // Never a PIN digit: swallow it and explain.
            ev.prevent_default();
            typed_digit_hint();
            return;
        }
        if keypad_arrow(&ev, target.as_ref()) {
            ev.prevent_default();
            return;
        }
    }
    // An HTML element's `tagName` in an HTML document is upper case.
    let on_button = target.as_ref().is_some_and(|e| e.tag_name() == "BUTTON");
    let action = match key.as_str() {
        "Escape" => Some(Action::Cancel),
        // Deleting tells a key logger nothing about the PIN.
        "Backspace" if on_pin => Some(Action::Delete),
        // Enter on a focused button is that button's click; on the pad it submits.
        "Enter" if on_pin && !on_button => Some(Action::SubmitPin),
        _ => None,
    };
    if let Some(a) = action {
        ev.prevent_default();
        feed(Input::User(a));
    }
}

fn on_message(ev: MessageEvent) {
    let w = window();
    let data = ev.data();
    if !data.is_object() {
        return;
    }
    let source_is = |other: &JsValue| ev.source().map(JsValue::from).is_some_and(|s| s == *other);

    // From the extension's content script in this very frame: a reply or an event,
    // read by the checkout with the typed bridge messages.
    if source_is(&JsValue::from(w.clone()))
        && get(&data, "channel").as_string().as_deref() == Some("cardpay")
        && get(&data, "dir").as_string().as_deref() == Some("from-extension")
    {
        if let Some(text) = js_sys::JSON::stringify(&data)
            .ok()
            .and_then(|t| t.as_string())
        {
            feed(Input::Extension(text));
        }
        return;
    }

    // From the merchant page that mounted us: the init message, once.
    let parent = dom(&w).parent().map(JsValue::from);
    if !(parent.as_ref().is_some_and(source_is)
        && get(&data, "type").as_string().as_deref() == Some("cardpay:init"))
    {
        return;
    }
    let origin = ev.origin();
    let session = js_sys::JSON::stringify(&get(&data, "session"))
        .ok()
        .and_then(|t| t.as_string())
        .unwrap_or_default();
    let accepted = APP.with(|a| {
        let mut a = a.borrow_mut();
        let app = a.as_mut()?;
        if app.checkout.is_some()
            || get(&data, "nonce").as_string().as_deref() != Some(app.nonce.as_str())
        {
            return None;
        }
        app.parent_origin = Some(origin.clone());
        // The cipher (`cipher`, WebCrypto) is only in a secure context: a frame of an
        // https origin (or localhost) in a page that is one too.
        if !window().is_secure_context() {
            return Some(Err((
                Refusal::Insecure,
                "the payment frame is not a secure context (https): the browser gives it no WebCrypto"
                    .into(),
            )));
        }
        // Applied with the first view (a style change asks for a rendering update,
        // which Chromium runs ahead of the messages posted in this task).
        app.theme = Some(get(&data, "theme"));
        Some(
            Checkout::new(
                app.cfg.clone(),
                app.mode,
                &session,
                &origin,
                Box::new(WebEntropy),
            )
            .map(|c| app.checkout = Some(c))
            .map_err(|e| (Refusal::BadSession, e.message())),
        )
    });
    match accepted {
        Some(Ok(())) => feed(Input::Start),
        Some(Err((why, message))) => {
            let msg = js_sys::Object::new();
            set(&msg, "type", "cardpay:error");
            set(&msg, "event", "error");
            set(&msg, "code", why.code());
            set(&msg, "message", message);
            post_parent_js(msg.into());
            // In a task of its own, like every view (the skeleton first).
            next_task(match why {
                Refusal::BadSession => || show_refused(Refusal::BadSession),
                Refusal::Insecure => || show_refused(Refusal::Insecure),
            });
        }
        None => {}
    }
}

/// Why the frame refuses the page's session at once.
#[derive(Clone, Copy)]
enum Refusal {
    /// The session does not hold (its JSON, TSK, origin or mode).
    BadSession,
    /// The frame is no secure context: no WebCrypto.
    Insecure,
}

impl Refusal {
    /// The page's `error` code.
    fn code(self) -> &'static str {
        match self {
            Refusal::BadSession => "bad_session",
            Refusal::Insecure => "insecure_context",
        }
    }
    /// What the shopper reads.
    fn words(self) -> crate::i18n::Msg {
        match self {
            Refusal::BadSession => crate::i18n::Msg::ErrBadSession,
            Refusal::Insecure => crate::i18n::Msg::ErrInsecure,
        }
    }
}

/// The session the page sent is unusable (`why`): say so where the screens go.
fn show_refused(why: Refusal) {
    ensure_skeleton();
    apply_pending_theme();
    APP.with(|a| {
        let a = a.borrow();
        let Some(app) = a.as_ref() else { return };
        let text = crate::i18n::t(app.cfg.lang, why.words());
        let html = [
            r#"<p class="cp-error" role="alert" data-testid="error" data-code=""#,
            why.code(),
            r#"">"#,
            &crate::view::esc(text),
            "</p>",
        ]
        .concat();
        let screen = by_id("cp-screen").map(Element::from);
        screen
            .unwrap_or_else(|| app.root.clone())
            .set_inner_html(&html);
    });
}

/// The heading, screen container and live region in the root, once (before the first
/// view; widget.html holds a placeholder until then); from then on the root's size is
/// watched, and the ResizeObserver's first report tells the page our height.
fn ensure_skeleton() {
    if by_id("cp-screen").is_some() {
        return;
    }
    APP.with(|a| {
        let mut a = a.borrow_mut();
        let Some(app) = a.as_mut() else { return };
        app.root
            .set_inner_html(&crate::view::skeleton(app.cfg.lang, app.mode));
        dom(&app.root).remove_attribute("aria-live");
        if let Some(observer) = app.resize.take() {
            observer.observe(&app.root);
        }
    });
}

fn param(params: &Params, k: &str) -> Option<String> {
    params.get(k).filter(|s| !s.is_empty())
}

/// Start the widget in `root`. Options come from our own URL (set by checkout.js):
/// `nonce`, `mode` (`load` for a load, else a purchase), `lang`, `timeout` (ms,
/// default 120000), `hello_timeout` (ms), `install`.
///
/// `early`: the `message` events widget-boot.js caught while the wasm loaded (it posts
/// `cardpay:loaded` itself as soon as it runs, so the page's `init` travels while the
/// wasm downloads and compiles); they are handled now, through the same checks as any
/// later message. Without it, `run` posts `cardpay:loaded` itself.
#[wasm_bindgen]
pub fn run(root: Element, early: Option<js_sys::Array>) -> Result<(), JsValue> {
    let w = window();
    let search = dom(&w.location()).search();
    let params = Params::new(&search);
    // A shipped wasm speaks one language, the one the boot script chose for this
    // shopper: nothing is left to choose (and no tag parsing is in its download).
    let lang = match Lang::ALL.len() {
        1 => Lang::default(),
        _ => param(&params, "lang")
            .or_else(|| w.navigator().language())
            .map(|t| Lang::from_tag(&t))
            .unwrap_or_default(),
    };
    let now = js_sys::Date::new_0();
    let today =
        purse::BcdDate::from_ymd(now.get_full_year(), now.get_month() + 1, now.get_date()).ok();
    let mut cfg = Config {
        lang,
        today,
        ..Config::default()
    };
    if let Some(ms) = param(&params, "timeout").and_then(|s| number::<u32>(&s)) {
        // A merchant may shorten the 120 s request timeout, never extend it.
        cfg.timeout_ms = ms.clamp(1_000, 120_000);
    }
    if let Some(ms) = param(&params, "hello_timeout").and_then(|s| number(&s)) {
        cfg.hello_timeout_ms = ms;
    }
    if let Some(u) = param(&params, "install") {
        if u.starts_with("https://") || u.starts_with("http://") || u.starts_with('/') {
            cfg.install_url = u;
        }
    }
    let nonce = param(&params, "nonce").unwrap_or_default();
    // Every listener and observer callback has the one signature `FnMut(JsValue)` (the
    // event cast to its type inside, unchecked, as wasm-bindgen's typed argument was;
    // the browser calls each only with that type): wasm-bindgen makes shims per
    // signature, so the download holds one set of them.
    let on_size = Closure::<dyn FnMut(JsValue)>::new(|_: JsValue| on_resize());
    let resize: ResizeObserver = Resize::new(on_size.as_ref().unchecked_ref()).unchecked_into();
    on_size.forget();
    // Each mode has its own wasm (widget-boot.js loads the frame's): this one refuses
    // the other's, and the boot script shows that it could not start.
    let mode = Mode::from_query(param(&params, "mode").as_deref())
        .ok_or_else(|| JsValue::from_str("this widget build does not do that mode"))?;
    APP.with(|a| {
        *a.borrow_mut() = Some(App {
            cfg,
            mode,
            checkout: None,
            root: root.clone(),
            parent_origin: None,
            nonce: nonce.clone(),
            timer: None,
            last_html: String::new(),
            last_view: None,
            on_pin: false,
            last_announce: String::new(),
            last_height: 0,
            last_width: 0,
            pending_view: None,
            theme: None,
            render_queued: false,
            hold_until: None,
            on_progress: false,
            pending_announce: None,
            skipped_progress: false,
            resize: Some(resize),
            shown_since: None,
            visibility: visibility_observer(),
            watching: false,
            #[cfg(feature = "purchase")]
            hint_toggle: false,
        })
    });

    let click = Closure::<dyn FnMut(JsValue)>::new(|e: JsValue| on_click(e.unchecked_into()));
    dom(&root).listen("click", click.as_ref().unchecked_ref());
    click.forget();
    #[cfg(feature = "purchase")]
    {
        let press = Closure::<dyn FnMut(JsValue)>::new(|e: JsValue| on_press(e.unchecked_into()));
        dom(&root).listen("pointerdown", press.as_ref().unchecked_ref());
        press.forget();
    }
    let key = Closure::<dyn FnMut(JsValue)>::new(|e: JsValue| on_key(e.unchecked_into()));
    dom(&w).listen("keydown", key.as_ref().unchecked_ref());
    key.forget();
    let msg = Closure::<dyn FnMut(JsValue)>::new(|e: JsValue| on_message(e.unchecked_into()));
    dom(&w).listen("message", msg.as_ref().unchecked_ref());
    msg.forget();

    match early {
        Some(events) => {
            // The boot script's `message` listener kept them: message events only,
            // as the live listener above receives.
            for ev in events.iter() {
                on_message(ev.unchecked_into());
            }
        }
        // Tell the page we can take the session. Nothing secret: "*" only means we do
        // not know the parent's origin yet; the parent checks that we are its iframe.
        None => {
            if let Some(parent) = dom(&w).parent() {
                let hello = js_sys::Object::new();
                set(&hello, "type", "cardpay:loaded");
                set(&hello, "nonce", nonce.as_str());
                parent.post_message(&hello, "*")?;
            }
        }
    }
    // The skeleton and the first height come with the first view.
    Ok(())
}
