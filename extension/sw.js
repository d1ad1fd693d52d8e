// Cardpay service worker: owns the native-messaging port to the bridge.
// Every request from a frame gets the frame's origin as the browser reports it
// (port.sender.origin / .url), never one the page claims.
'use strict';

const HOST = 'com.cardpay.bridge';
const EXTENSION_ORIGIN = self.location.origin; // chrome-extension://<id>

let native = null;
let nextId = 1;
const pending = new Map(); // bridge id -> {reply(msg), pageId, frame}
const frames = new Set(); // connected content-script ports
const handlesByFrame = new Map(); // port -> Set(handle)
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
    }
  }, IDLE_CLOSE_MS);
}

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

function connectNative() {
  if (native) return native;
  const port = chrome.runtime.connectNative(HOST);
  port.onMessage.addListener(onNativeMessage);
  port.onDisconnect.addListener(() => {
    const why = (chrome.runtime.lastError && chrome.runtime.lastError.message) || 'the bridge exited';
    native = null;
    failAll('no_bridge', `Cardpay bridge unavailable: ${why}`);
    for (const f of frames) safePost(f, { event: 'bridge_disconnected', message: why });
    handlesByFrame.forEach((s) => s.clear());
  });
  native = port;
  return port;
}

function safePost(port, msg) {
  try {
    port.postMessage(msg);
  } catch (_) {
    /* frame gone */
  }
}

function onNativeMessage(msg) {
  if (!msg || typeof msg !== 'object') return;
  if (typeof msg.event === 'string') {
    for (const f of frames) safePost(f, msg);
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
  if (p.onResult) p.onResult(out);
  p.reply(out);
}

/** Send one request to the bridge with `origin` attached; reply(msg) gets the answer. */
function request(origin, req, reply, onResult) {
  const id = nextId++;
  const msg = Object.assign({}, req, { id, origin });
  pending.set(id, { reply, pageId: req.id, onResult });
  try {
    connectNative().postMessage(msg);
  } catch (e) {
    pending.delete(id);
    reply({ id: req.id, error: { code: 'no_bridge', message: `Cardpay bridge unavailable: ${e.message}` } });
  }
}

// Content scripts (payment-origin frames only).
chrome.runtime.onConnect.addListener((port) => {
  if (port.name !== 'cardpay-frame' || !port.sender || port.sender.id !== chrome.runtime.id) {
    port.disconnect();
    return;
  }
  const origin = senderOrigin(port.sender);
  frames.add(port);
  scheduleIdleClose();
  handlesByFrame.set(port, new Set());
  port.onMessage.addListener((req) => {
    if (!req || typeof req !== 'object' || typeof req.type !== 'string') return;
    const clean = { id: req.id, type: req.type };
    for (const k of ['reader', 'handle', 'apdu']) if (k in req) clean[k] = req[k];
    const handles = handlesByFrame.get(port);
    const onResult = (out) => {
      if (!handles) return;
      if (clean.type === 'connect' && out.result && typeof out.result.handle === 'number') handles.add(out.result.handle);
      if (clean.type === 'disconnect') handles.delete(clean.handle);
    };
    request(origin, clean, (out) => safePost(port, out), onResult);
  });
  port.onDisconnect.addListener(() => {
    frames.delete(port);
    // The frame went away: close the card connections it left open.
    const handles = handlesByFrame.get(port) || new Set();
    handlesByFrame.delete(port);
    if (native) {
      for (const handle of handles) request(origin, { id: 0, type: 'disconnect', handle }, () => {});
    }
    scheduleIdleClose();
  });
});

// The toolbar popup (extension pages only): status questions.
chrome.runtime.onMessage.addListener((msg, sender, sendResponse) => {
  // extension pages only (the popup; also when opened in a tab); content scripts report the web page URL
  const fromOwnPage = sender.id === chrome.runtime.id && typeof sender.url === 'string' &&
    sender.url.startsWith(EXTENSION_ORIGIN + '/');
  if (!fromOwnPage || !msg || !['hello', 'status', 'readers'].includes(msg.type)) return false;
  request(EXTENSION_ORIGIN, { id: 'popup', type: msg.type }, sendResponse);
  return true; // async answer
});
