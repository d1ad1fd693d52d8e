//! Browser glue (wasm32 only): runs the flow's effects and feeds back what happens.
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
//!   changes (content, language, a narrow screen), and refits the keypad to the width.

use std::cell::RefCell;

use serde_json::Value;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Element, HtmlElement, KeyboardEvent, MessageEvent, MouseEvent, ResizeObserver};

use crate::api::Bundle;
use crate::flow::{
    Action, BridgeError, Config, Effect, Flow, Input, ParentEvent, Screen, Timer, View,
};
use crate::i18n::Lang;
use crate::keypad::Entropy;

struct WebEntropy;

impl Entropy for WebEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("crypto.getRandomValues is available");
    }
}

struct App {
    cfg: Config,
    flow: Option<Flow>,
    root: Element,
    /// Merchant page origin, as the browser reported it for the init message.
    parent_origin: Option<String>,
    /// The mount's nonce (from our URL): ties the messages to one `Cardpay.mount`.
    nonce: String,
    /// Running `setTimeout` handles by timer (three at most: a list, no hash map).
    timers: Vec<(Timer, i32)>,
    last_html: String,
    /// The last view (re-rendered when the width changes: the keypad is fitted to it).
    last_view: Option<View>,
    on_pin: bool,
    /// What the live region says now (set only when it changes).
    last_announce: String,
    /// The height last posted to the page, and the width the keypad was fitted to.
    last_height: i32,
    last_width: i32,
    /// Toggled so that a repeated hint is announced again.
    hint_toggle: bool,
}

thread_local! {
    static APP: RefCell<Option<App>> = const { RefCell::new(None) };
}

fn window() -> web_sys::Window {
    web_sys::window().expect("a window")
}

fn js_of(v: &Value) -> JsValue {
    js_sys::JSON::parse(&v.to_string()).unwrap_or(JsValue::NULL)
}

fn value_of(v: &JsValue) -> Option<Value> {
    let s = js_sys::JSON::stringify(v).ok()?.as_string()?;
    serde_json::from_str(&s).ok()
}

/// Feed one input and run the effects (never re-entrant: effects only schedule work).
fn feed(input: Input) {
    let effects = APP.with(|a| {
        let mut a = a.borrow_mut();
        let app = a.as_mut()?;
        Some(app.flow.as_mut()?.handle(input))
    });
    for e in effects.unwrap_or_default() {
        run_effect(e);
    }
}

fn post_parent(msg: Value) {
    post_parent_js(js_of(&msg));
}

/// Post `msg` (an object) to the page, with the mount's nonce, to the page's origin only.
fn post_parent_js(msg: JsValue) {
    APP.with(|a| {
        let a = a.borrow();
        let Some(app) = a.as_ref() else { return };
        let Some(origin) = app.parent_origin.as_deref() else {
            return;
        };
        let _ = js_sys::Reflect::set(&msg, &"nonce".into(), &app.nonce.as_str().into());
        if let Ok(Some(parent)) = window().parent() {
            let _ = parent.post_message(&msg, origin);
        }
    });
}

fn parent_event(ev: &ParentEvent) {
    // Straight to text and into a JS object (no intermediate serde_json::Value).
    let text = serde_json::to_string(ev).expect("serializable");
    let Ok(msg) = js_sys::JSON::parse(&text) else {
        return;
    };
    let name = js_sys::Reflect::get(&msg, &"event".into())
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_else(|| "error".into());
    let _ = js_sys::Reflect::set(&msg, &"type".into(), &format!("cardpay:{name}").into());
    post_parent_js(msg);
}

fn run_effect(e: Effect) {
    match e {
        Effect::Bridge { id, mut msg } => {
            msg["channel"] = "cardpay".into();
            msg["dir"] = "to-extension".into();
            msg["id"] = id.into();
            let w = window();
            let own = w.location().origin().unwrap_or_default();
            let _ = w.post_message(&js_of(&msg), &own);
        }
        Effect::Http { id, path, body } => {
            // The request goes out now, before the render that follows it in the same
            // batch of effects; only its answer is awaited.
            let sent = post_json(path, &body);
            wasm_bindgen_futures::spawn_local(async move {
                let result = read_answer(sent).await;
                feed(Input::Http { id, result });
            });
        }
        Effect::Render(view) => render(view),
        Effect::Parent(ev) => parent_event(&ev),
        Effect::StartTimer(t, ms) => {
            let cb = Closure::once_into_js(move || feed(Input::Timer(t)));
            let handle = window()
                .set_timeout_with_callback_and_timeout_and_arguments_0(
                    cb.unchecked_ref(),
                    ms as i32,
                )
                .unwrap_or(0);
            APP.with(|a| {
                if let Some(app) = a.borrow_mut().as_mut() {
                    if let Some(i) = app.timers.iter().position(|(k, _)| *k == t) {
                        let (_, old) = app.timers.swap_remove(i);
                        window().clear_timeout_with_handle(old);
                    }
                    app.timers.push((t, handle));
                }
            });
        }
        Effect::StopTimer(t) => APP.with(|a| {
            if let Some(app) = a.borrow_mut().as_mut() {
                if let Some(i) = app.timers.iter().position(|(k, _)| *k == t) {
                    let (_, h) = app.timers.swap_remove(i);
                    window().clear_timeout_with_handle(h);
                }
            }
        }),
    }
}

fn js_error(e: JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|| "fetch failed".into())
}

/// Start `POST path` with a JSON body on our own origin (no HTTP library: `fetch`
/// through web-sys is all it needs).
fn post_json(path: &str, body: &str) -> Result<js_sys::Promise, String> {
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(body));
    let headers = web_sys::Headers::new().map_err(js_error)?;
    headers
        .append("content-type", "application/json")
        .map_err(js_error)?;
    init.set_headers(&headers);
    Ok(window().fetch_with_str_and_init(path, &init))
}

/// The answer to a request from [`post_json`]: (status, body text), or the network error.
async fn read_answer(sent: Result<js_sys::Promise, String>) -> Result<(u16, String), String> {
    use wasm_bindgen_futures::JsFuture;
    let resp: web_sys::Response = JsFuture::from(sent?)
        .await
        .map_err(js_error)?
        .unchecked_into();
    let status = resp.status();
    let text = JsFuture::from(resp.text().map_err(js_error)?)
        .await
        .map_err(js_error)?;
    Ok((status, text.as_string().unwrap_or_default()))
}

/// A key identifying the focused control across re-renders (same button, new DOM).
fn focus_key(el: &Element) -> Option<String> {
    let action = el.get_attribute("data-action")?;
    Some(match el.get_attribute("data-digit") {
        Some(d) => format!("[data-action=\"{action}\"][data-digit=\"{d}\"]"),
        None => format!("[data-action=\"{action}\"]"),
    })
}

fn by_id(id: &str) -> Option<HtmlElement> {
    window()
        .document()?
        .get_element_by_id(id)?
        .dyn_into::<HtmlElement>()
        .ok()
}

/// Width the keypad may take: the screen container's content box.
fn available_width() -> i32 {
    by_id("cp-screen").map(|e| e.client_width()).unwrap_or(0)
}

fn render(mut view: View) {
    let last = view.clone();
    // Measuring forces a layout: only the keypad needs the width.
    let mut width = 0;
    if let Screen::Pin { layout, .. } = &mut view.screen {
        width = available_width();
        if width > 0 {
            *layout = layout.fitted(width as u32);
        }
    }
    let html = crate::view::render(&view);
    let announce = crate::view::announce(&view);
    let on_pin = matches!(view.screen, Screen::Pin { .. });
    let doc = window().document().expect("a document");
    let changed = APP.with(|a| {
        let mut a = a.borrow_mut();
        let app = a.as_mut()?;
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
    let had_focus = doc.has_focus().unwrap_or(false);
    // The same control keeps focus across re-renders (a keypad key, Cancel during
    // the progress steps) if it is still there.
    let keep = doc
        .active_element()
        .filter(|e| screen.contains(Some(e)))
        .and_then(|e| focus_key(&e));
    screen.set_inner_html(&html);
    apply_styles(&screen);
    let target = keep
        .and_then(|sel| screen.query_selector(&sel).ok().flatten())
        .or_else(|| screen.query_selector("[data-autofocus]").ok().flatten());
    match target.and_then(|e| e.dyn_into::<HtmlElement>().ok()) {
        Some(el) => {
            let _ = el.focus();
        }
        // A screen without a control of its own (progress, "insert your card", a
        // problem nothing can be done about here): focus goes to the heading, which is
        // never replaced, rather than falling to the page body.
        None => {
            let lost = doc
                .active_element()
                .is_none_or(|e| !e.is_connected() || e.tag_name().eq_ignore_ascii_case("body"));
            if had_focus && lost {
                let _ = title.focus();
            }
        }
    }
    if let Some(text) = say {
        set_live(&text);
    }
    doc.document_element()
        .map(|d| d.set_attribute("lang", view.lang.tag()))
        .transpose()
        .ok();
    // The new height reaches the page through the ResizeObserver (after layout, so no
    // layout is forced here).
}

/// Put `text` into the stable live region (screen readers say it once).
fn set_live(text: &str) {
    if let Some(live) = by_id("cp-live") {
        live.set_text_content(Some(text));
    }
}

/// Tell the page how tall we are (only when it changed): checkout.js sizes the iframe.
fn post_height() {
    let Some(root) = APP.with(|a| a.borrow().as_ref().map(|a| a.root.clone())) else {
        return;
    };
    let height = root.get_bounding_client_rect().height().ceil() as i32;
    let changed = APP.with(|a| {
        let mut a = a.borrow_mut();
        let app = a.as_mut()?;
        // Nobody to tell before the page's init: keep it for then.
        app.parent_origin.as_ref()?;
        (app.last_height != height).then(|| app.last_height = height)
    });
    if changed.is_some() {
        post_parent(serde_json::json!({"type": "cardpay:resize", "height": height}));
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
    post_height();
}

/// Keypad geometry travels as `data-style` and is applied through the CSSOM, so the
/// page's CSP can forbid inline style attributes.
fn apply_styles(root: &Element) {
    let Ok(list) = root.query_selector_all("[data-style]") else {
        return;
    };
    for i in 0..list.length() {
        if let Some(el) = list.item(i).and_then(|n| n.dyn_into::<HtmlElement>().ok()) {
            let css = el.get_attribute("data-style").unwrap_or_default();
            el.style().set_css_text(&css);
        }
    }
}

/// Theme variables from the merchant (`--cp-*` only, plain values only).
fn apply_theme(theme: &Value) {
    let Some(map) = theme.as_object() else { return };
    let Some(doc) = window().document().and_then(|d| d.document_element()) else {
        return;
    };
    let Ok(el) = doc.dyn_into::<HtmlElement>() else {
        return;
    };
    for (k, v) in map {
        let Some(v) = v.as_str() else { continue };
        let key_ok = k.starts_with("--cp-")
            && k.len() <= 40
            && k[5..].bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
        let val_ok = v.len() <= 100
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" #(),.%-'\"_".contains(&b));
        if key_ok && val_ok {
            let _ = el.style().set_property(k, v);
        }
    }
}

fn on_click(ev: MouseEvent) {
    let Some(t) = ev.target().and_then(|t| t.dyn_into::<Element>().ok()) else {
        return;
    };
    let Ok(Some(btn)) = t.closest("[data-action]") else {
        return;
    };
    if btn.get_attribute("aria-disabled").as_deref() == Some("true") {
        return;
    }
    let action = match btn.get_attribute("data-action").as_deref() {
        Some("approve") => Action::Approve,
        Some("cancel") => Action::Cancel,
        Some("not-mine") => Action::NotMine,
        Some("retry") => Action::Retry,
        Some("more-time") => Action::MoreTime,
        Some("delete") => Action::Delete,
        Some("ok") => Action::SubmitPin,
        Some("digit") => match btn.get_attribute("data-digit").and_then(|d| d.parse().ok()) {
            Some(d) => Action::Digit(d),
            None => return,
        },
        _ => return,
    };
    ev.prevent_default();
    feed(Input::User(action));
}

/// Move focus over the keypad with the arrow keys; true if the key was used.
fn keypad_arrow(ev: &KeyboardEvent, target: Option<&Element>) -> bool {
    let Some(t) = target else { return false };
    let Ok(Some(pad)) = t.closest("[data-testid=keypad]") else {
        return false;
    };
    let Ok(keys) = pad.query_selector_all(".cp-key") else {
        return false;
    };
    let n = keys.length() as usize;
    let cols: usize = pad
        .get_attribute("data-cols")
        .and_then(|c| c.parse().ok())
        .unwrap_or(3);
    let from = (0..n).find(|&i| {
        keys.item(i as u32)
            .is_some_and(|k| JsValue::from(k) == JsValue::from(t.clone()))
    });
    let Some(to) = crate::keypad::move_focus(&ev.key(), from, n, cols) else {
        return false;
    };
    if let Some(k) = keys
        .item(to as u32)
        .and_then(|k| k.dyn_into::<HtmlElement>().ok())
    {
        let _ = k.focus();
    }
    true
}

/// A digit typed on the physical keyboard on the PIN screen: not a PIN digit (a key
/// logger would see it). Show and say how to use the keypad instead.
fn typed_digit_hint() {
    let lang = APP
        .with(|a| a.borrow().as_ref().map(|a| a.cfg.lang))
        .unwrap_or_default();
    let hint = crate::i18n::t(lang, crate::i18n::Msg::TypedDigitsIgnored);
    if let Some(note) = window().document().and_then(|d| {
        d.query_selector("[data-testid=typed-digits]")
            .ok()
            .flatten()
    }) {
        note.set_text_content(Some(hint));
        let _ = note.remove_attribute("hidden");
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
        format!("{hint}\u{a0}")
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
    let on_button = target
        .as_ref()
        .is_some_and(|e| e.tag_name().eq_ignore_ascii_case("button"));
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

fn bridge_error(v: &Value) -> BridgeError {
    BridgeError {
        code: v["code"].as_str().unwrap_or("unknown").to_string(),
        message: v["message"].as_str().unwrap_or("").to_string(),
    }
}

fn on_message(ev: MessageEvent) {
    let w = window();
    let Some(data) = value_of(&ev.data()) else {
        return;
    };
    let source_is = |other: &JsValue| ev.source().map(JsValue::from).is_some_and(|s| s == *other);

    // From the extension's content script in this very frame.
    if source_is(&JsValue::from(w.clone()))
        && data["channel"] == "cardpay"
        && data["dir"] == "from-extension"
    {
        if let Some(id) = data.get("id").and_then(Value::as_u64) {
            let result = match data.get("error") {
                Some(e) if !e.is_null() => Err(bridge_error(e)),
                _ => Ok(data.get("result").cloned().unwrap_or(Value::Null)),
            };
            feed(Input::BridgeReply { id, result });
        } else {
            let reader = data["reader"].as_str().unwrap_or("").to_string();
            match data["event"].as_str() {
                Some("card_inserted") => feed(Input::CardInserted { reader }),
                Some("card_removed") => feed(Input::CardRemoved { reader }),
                // Open handles are gone: treat like the card leaving the reader.
                Some("bridge_disconnected" | "extension_disconnected") => {
                    let reader = APP.with(|a| {
                        a.borrow()
                            .as_ref()
                            .and_then(|a| a.flow.as_ref())
                            .and_then(|f| f.reader().map(str::to_string))
                    });
                    if let Some(reader) = reader {
                        feed(Input::CardRemoved { reader });
                    }
                }
                _ => {}
            }
        }
        return;
    }

    // From the merchant page that mounted us: the init message, once.
    let parent = w.parent().ok().flatten().map(JsValue::from);
    if parent.as_ref().is_some_and(source_is) && data["type"] == "cardpay:init" {
        let origin = ev.origin();
        let accepted = APP.with(|a| {
            let mut a = a.borrow_mut();
            let app = a.as_mut()?;
            if app.flow.is_some() || data["nonce"].as_str() != Some(app.nonce.as_str()) {
                return None;
            }
            app.parent_origin = Some(origin.clone());
            apply_theme(&data["theme"]);
            // From text, like every other message (no second, Value-based decoder).
            let bundle: Result<Bundle, _> = serde_json::from_str(&data["session"].to_string());
            let outcome = match bundle {
                Ok(b) => Flow::new(app.cfg.clone(), b, &origin, Box::new(WebEntropy))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("session is not valid: {e}")),
            };
            Some(match outcome {
                Ok(flow) => {
                    app.flow = Some(flow);
                    Ok(())
                }
                Err(e) => Err(e),
            })
        });
        match accepted {
            Some(Ok(())) => feed(Input::Start),
            Some(Err(message)) => {
                post_parent(serde_json::json!({
                    "type": "cardpay:error", "event": "error", "code": "bad_session", "message": message
                }));
                APP.with(|a| {
                    if let Some(app) = a.borrow().as_ref() {
                        let screen = by_id("cp-screen").map(Element::from);
                        screen.unwrap_or_else(|| app.root.clone()).set_inner_html(&format!(
                            "<p class=\"cp-error\" role=\"alert\" data-testid=\"error\" data-code=\"bad_session\">{}</p>",
                            crate::view::esc(crate::i18n::t(app.cfg.lang, crate::i18n::Msg::ErrBadSession))
                        ));
                    }
                });
            }
            None => {}
        }
    }
}

fn param(params: &web_sys::UrlSearchParams, k: &str) -> Option<String> {
    params.get(k).filter(|s| !s.is_empty())
}

/// Start the widget in `root`. Options come from our own URL (set by checkout.js):
/// `nonce`, `lang`, `timeout` (ms, default 120000), `hello_timeout` (ms), `install`.
///
/// `early`: the `message` events widget-boot.js caught while the wasm loaded (it posts
/// `cardpay:loaded` itself as soon as it runs, so the page's `init` travels while the
/// wasm downloads and compiles); they are handled now, through the same checks as any
/// later message. Without it, `run` posts `cardpay:loaded` itself.
#[wasm_bindgen]
pub fn run(root: Element, early: Option<js_sys::Array>) -> Result<(), JsValue> {
    let w = window();
    let search = w.location().search()?;
    let params = web_sys::UrlSearchParams::new_with_str(&search)?;
    let lang = param(&params, "lang")
        .or_else(|| w.navigator().language())
        .map(|t| Lang::from_tag(&t))
        .unwrap_or_default();
    let now = js_sys::Date::new_0();
    let today =
        purse::BcdDate::from_ymd(now.get_full_year(), now.get_month() + 1, now.get_date()).ok();
    let mut cfg = Config {
        lang,
        today,
        ..Config::default()
    };
    if let Some(ms) = param(&params, "timeout").and_then(|s| s.parse::<u32>().ok()) {
        // A merchant may shorten the 120 s request timeout, never extend it.
        cfg.timeout_ms = ms.clamp(1_000, 120_000);
    }
    if let Some(ms) = param(&params, "hello_timeout").and_then(|s| s.parse().ok()) {
        cfg.hello_timeout_ms = ms;
    }
    if let Some(u) = param(&params, "install") {
        if u.starts_with("https://") || u.starts_with("http://") || u.starts_with('/') {
            cfg.install_url = u;
        }
    }
    let nonce = param(&params, "nonce").unwrap_or_default();
    APP.with(|a| {
        *a.borrow_mut() = Some(App {
            cfg,
            flow: None,
            root: root.clone(),
            parent_origin: None,
            nonce: nonce.clone(),
            timers: Vec::new(),
            last_html: String::new(),
            last_view: None,
            on_pin: false,
            last_announce: String::new(),
            last_height: 0,
            last_width: 0,
            hint_toggle: false,
        })
    });
    root.set_inner_html(&crate::view::skeleton(lang));
    root.remove_attribute("aria-live")?;

    let resize = Closure::<dyn FnMut()>::new(on_resize);
    let observer = ResizeObserver::new(resize.as_ref().unchecked_ref())?;
    observer.observe(&root);
    resize.forget();

    let click = Closure::<dyn FnMut(MouseEvent)>::new(on_click);
    root.add_event_listener_with_callback("click", click.as_ref().unchecked_ref())?;
    click.forget();
    let key = Closure::<dyn FnMut(KeyboardEvent)>::new(on_key);
    w.add_event_listener_with_callback("keydown", key.as_ref().unchecked_ref())?;
    key.forget();
    let msg = Closure::<dyn FnMut(MessageEvent)>::new(on_message);
    w.add_event_listener_with_callback("message", msg.as_ref().unchecked_ref())?;
    msg.forget();

    match early {
        Some(events) => {
            for ev in events.iter() {
                if let Ok(ev) = ev.dyn_into::<MessageEvent>() {
                    on_message(ev);
                }
            }
        }
        // Tell the page we can take the session. Nothing secret: "*" only means we do
        // not know the parent's origin yet; the parent checks that we are its iframe.
        None => {
            if let Ok(Some(parent)) = w.parent() {
                let hello = serde_json::json!({"type": "cardpay:loaded", "nonce": nonce});
                parent.post_message(&js_of(&hello), "*")?;
            }
        }
    }
    // The first height, now that the page may be listening.
    post_height();
    Ok(())
}
