// Cardpay background script (Chromium: service worker; Firefox: event page).
// Owns the native-messaging port to the bridge.
//
// Who hears anything:
// - a frame is admitted only if the origin the browser reports for it
//   (port.sender.origin, else the origin of port.sender.url; never what the page
//   says) is one of the payment origins this build was made for (config.js,
//   written by scripts/build-extension.sh). Any other frame is hung up on at
//   once: it gets no greeting, no reply, no event;
// - bridge events (card_inserted/removed, readers, service status) and
//   bridge_disconnected go only to admitted frames whose origin the bridge has
//   accepted (a request of that origin was answered with anything but
//   forbidden_origin since the bridge started): the bridge's allowlist is a
//   second gate, for events as for replies.
'use strict';

const api = globalThis.browser || globalThis.chrome;
if (!globalThis.CARDPAY_CONFIG && typeof importScripts === 'function') importScripts('config.js');
const CONFIG = globalThis.CARDPAY_CONFIG || { paymentOrigins: [] };
const PAYMENT_ORIGINS = new Set(CONFIG.paymentOrigins);
const HOST = 'com.cardpay.bridge';
const VERSION = 1;
const EXTENSION_ORIGIN = self.location.origin; // chrome-extension://<id> or moz-extension://<uuid>

let native = null;
let nextId = 1;
const pending = new Map(); // bridge id -> {reply(msg), pageId, origin, onResult}
const frames = new Map(); // content-script port -> {origin, handles: Set}
const bridgeAccepted = new Set(); // origins the running bridge answered with anything but forbidden_origin
const IDLE_CLOSE_MS = 30_000; // stop the bridge when no payment frame has needed it for this long
let idleTimer = null;

/** Close the native port (the bridge exits) once no frame is connected and nothing is pending. */
function scheduleIdleClose() {
  if (idleTimer) clearTimeout(idleTimer);
  idleTimer = null;
  if (!native || frames.size > 0 || pending.size > 0) return;
  idleTimer = setTimeout(() => {
    idleTimer = null;
    if (native && frames.size === 0 && pending.size === 0) {
      native.disconnect(); // onDisconnect does not fire for our own disconnect
      native = null;
      bridgeAccepted.clear();
    }
  }, IDLE_CLOSE_MS);
}

/** The frame's origin as the browser reports it (Chromium: sender.origin; Firefox: from sender.url). */
function senderOrigin(sender) {
  if (sender && typeof sender.origin === 'string' && sender.origin) return sender.origin;
  try {
    return new URL(sender.url).origin;
  } catch (_) {
    return null;
  }
}

function failAll(code, message) {
  for (const [, p] of pending) p.reply({ id: p.pageId, error: { code, message } });
  pending.clear();
}

function safePost(port, msg) {
  try {
    port.postMessage(msg);
  } catch (_) {
    /* frame gone */
  }
}

/** Frames that may hear bridge events: admitted, and their origin accepted by the bridge. */
function eventFrames() {
  const out = [];
  for (const [port, f] of frames) if (bridgeAccepted.has(f.origin)) out.push(port);
  return out;
}

function connectNative() {
  if (native) return native;
  const port = api.runtime.connectNative(HOST);
  port.onMessage.addListener(onNativeMessage);
  port.onDisconnect.addListener((p) => {
    const err = (p && p.error) || api.runtime.lastError; // Firefox: port.error; Chromium: lastError
    const why = (err && err.message) || 'the bridge exited';
    const listeners = eventFrames();
    native = null;
    bridgeAccepted.clear();
    failAll('no_bridge', `Cardpay bridge unavailable: ${why}`);
    for (const f of listeners) safePost(f, { event: 'bridge_disconnected', message: why });
    frames.forEach((f) => f.handles.clear());
  });
  native = port;
  return port;
}

function onNativeMessage(msg) {
  if (!msg || typeof msg !== 'object') return;
  if (typeof msg.event === 'string') {
    for (const f of eventFrames()) safePost(f, msg);
    return;
  }
  if (msg.id === null || msg.id === undefined) {
    console.warn('cardpay bridge:', msg.error);
    return;
  }
  const p = pending.get(msg.id);
  if (!p) return;
  pending.delete(msg.id);
  scheduleIdleClose();
  const out = { id: p.pageId };
  if ('error' in msg) out.error = msg.error;
  else out.result = msg.result;
  if (out.error && out.error.code === 'forbidden_origin') bridgeAccepted.delete(p.origin);
  else bridgeAccepted.add(p.origin);
  if (p.onResult) p.onResult(out);
  p.reply(out);
}

/** Send one request to the bridge with `origin` attached; reply(msg) gets the answer. */
function request(origin, req, reply, onResult) {
  const id = nextId++;
  const msg = Object.assign({}, req, { id, origin });
  pending.set(id, { reply, pageId: req.id, origin, onResult });
  try {
    connectNative().postMessage(msg);
  } catch (e) {
    pending.delete(id);
    reply({ id: req.id, error: { code: 'no_bridge', message: `Cardpay bridge unavailable: ${e.message}` } });
  }
}

// Content scripts: payment-origin frames only.
api.runtime.onConnect.addListener((port) => {
  const sender = port.sender;
  const origin = senderOrigin(sender);
  if (port.name !== 'cardpay-frame' || !sender || sender.id !== api.runtime.id || !PAYMENT_ORIGINS.has(origin)) {
    port.disconnect(); // the frame hears nothing, not even that the extension is here
    return;
  }
  const frame = { origin, handles: new Set() };
  frames.set(port, frame);
  scheduleIdleClose();
  safePost(port, { event: 'extension_ready', version: VERSION });
  port.onMessage.addListener((req) => {
    if (!req || typeof req !== 'object' || typeof req.type !== 'string') return;
    const clean = { id: req.id, type: req.type };
    for (const k of ['reader', 'handle', 'apdu']) if (k in req) clean[k] = req[k];
    const onResult = (out) => {
      if (clean.type === 'connect' && out.result && typeof out.result.handle === 'number') frame.handles.add(out.result.handle);
      if (clean.type === 'disconnect') frame.handles.delete(clean.handle);
    };
    request(origin, clean, (out) => safePost(port, out), onResult);
  });
  port.onDisconnect.addListener(() => {
    frames.delete(port);
    // The frame went away: close the card connections it left open.
    if (native) {
      for (const handle of frame.handles) request(origin, { id: 0, type: 'disconnect', handle }, () => {});
    }
    frame.handles.clear();
    scheduleIdleClose();
  });
});

// The toolbar popup (extension pages only): status questions.
api.runtime.onMessage.addListener((msg, sender, sendResponse) => {
  // extension pages only (the popup; also when opened in a tab); content scripts report the web page URL
  const fromOwnPage = sender.id === api.runtime.id && typeof sender.url === 'string' &&
    sender.url.startsWith(EXTENSION_ORIGIN + '/');
  if (!fromOwnPage || !msg || !['hello', 'status', 'readers'].includes(msg.type)) return false;
  request(EXTENSION_ORIGIN, { id: 'popup', type: msg.type }, sendResponse);
  return true; // async answer
});
