// Cardpay content script. The manifest injects it into the frames of the payment
// origin(s) the extension was built for; where a match pattern cannot pin the
// port (Firefox), or the pattern is wider than one origin, it may also land in
// other frames. So it says nothing to a page on its own: it connects to the
// service worker, which checks the frame's origin as the browser reports it
// (never as the page claims) and either greets it with `extension_ready` or
// hangs up. Until that greeting the page gets nothing — no reply, no event,
// no announcement — and after a hang-up it never will.
// Then it relays window.postMessage requests of *this* frame's page to the
// service worker and the answers / card events back. See docs/bridge.md.
(() => {
  'use strict';
  const CHANNEL = 'cardpay';
  const MAX_PENDING = 64;
  const api = globalThis.browser || globalThis.chrome;
  let port = null;
  let admitted = false; // the service worker greeted this frame
  let refused = false; // the service worker hung up before greeting: stay silent for good
  let pending = 0;
  const waiting = []; // requests that arrived before the greeting

  function toPage(msg) {
    // only this frame's own document receives it
    window.postMessage(Object.assign({ channel: CHANNEL, dir: 'from-extension' }, msg), window.location.origin);
  }

  function extensionAlive() {
    try {
      return !!(api.runtime && api.runtime.id);
    } catch (_) {
      return false;
    }
  }

  function connect() {
    const p = api.runtime.connect({ name: 'cardpay-frame' });
    port = p;
    p.onMessage.addListener((msg) => {
      if (!msg || typeof msg !== 'object') return;
      if (!admitted) {
        if (msg.event !== 'extension_ready') return;
        admitted = true;
        toPage(msg);
        for (const req of waiting.splice(0)) send(req);
        return;
      }
      if (Object.prototype.hasOwnProperty.call(msg, 'id')) pending = Math.max(0, pending - 1);
      toPage(msg);
    });
    p.onDisconnect.addListener(() => {
      if (port === p) port = null;
      pending = 0;
      if (!admitted) {
        // Not a payment origin (or the extension went away before it could say):
        // the page never learns the extension is here.
        refused = true;
        waiting.length = 0;
        window.removeEventListener('message', onPageMessage);
        return;
      }
      // The service worker went away (extension reloaded or its worker restarted):
      // card handles opened through it are gone.
      const alive = extensionAlive();
      toPage({ event: 'extension_disconnected', reload_page: !alive });
      if (alive) setTimeout(() => { try { connect(); } catch (_) { port = null; } }, 100);
    });
    return p;
  }

  function send(req) {
    pending += 1;
    try {
      (port || connect()).postMessage(req);
    } catch (e) {
      pending = Math.max(0, pending - 1);
      port = null;
      toPage({ id: req.id, error: { code: 'no_bridge', message: 'the Cardpay extension was reloaded; reload the page' } });
    }
  }

  function onPageMessage(ev) {
    if (refused) return;
    const m = ev.data;
    if (!m || typeof m !== 'object' || m.channel !== CHANNEL || m.dir !== 'to-extension') return;
    // Only the frame's own page, never a parent/child frame or another window. (Asked
    // after the shape: the first look at another window's object from this script's
    // world sets that window up for it, ~1 ms on the way to `ready` for the page's
    // `init`, which is no request.)
    if (ev.source !== window) return;
    const id = m.id;
    if (!(typeof id === 'number' || (typeof id === 'string' && id.length > 0 && id.length <= 128))) return;
    if (typeof m.type !== 'string') return;
    // Copy only known fields: the page cannot set `origin` (the service worker
    // takes it from the browser's sender info anyway).
    const req = { id, type: m.type };
    for (const k of ['reader', 'handle', 'apdu']) if (k in m) req[k] = m[k];
    if (!admitted) {
      if (waiting.length < MAX_PENDING) waiting.push(req); // silently dropped beyond that
      return;
    }
    if (pending >= MAX_PENDING) {
      toPage({ id, error: { code: 'busy', message: 'too many requests in flight' } });
      return;
    }
    send(req);
  }

  window.addEventListener('message', onPageMessage);
  // Connect now: the service worker decides whether this frame is a payment frame.
  try { connect(); } catch (_) { port = null; refused = true; }
})();
