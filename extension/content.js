// Cardpay content script: runs only in frames of the configured payment origins.
// Relays window.postMessage requests of *this* frame's page to the service worker
// and the answers / card events back. See docs/bridge.md ("page ↔ extension").
(() => {
  'use strict';
  const CHANNEL = 'cardpay';
  const VERSION = 1;
  const MAX_PENDING = 64;
  let port = null;
  let pending = 0;

  function toPage(msg) {
    // only this frame's own document receives it
    window.postMessage(Object.assign({ channel: CHANNEL, dir: 'from-extension' }, msg), window.location.origin);
  }

  function ensurePort() {
    if (port) return port;
    port = chrome.runtime.connect({ name: 'cardpay-frame' });
    port.onMessage.addListener((msg) => {
      if (msg && Object.prototype.hasOwnProperty.call(msg, 'id')) pending = Math.max(0, pending - 1);
      toPage(msg);
    });
    port.onDisconnect.addListener(() => {
      port = null;
      pending = 0;
      // The service worker went away (extension reloaded or its worker restarted):
      // card handles opened through it are gone.
      const alive = !!(chrome.runtime && chrome.runtime.id);
      toPage({ event: 'extension_disconnected', reload_page: !alive });
      if (alive) setTimeout(() => { try { ensurePort(); } catch (_) { port = null; } }, 100);
    });
    return port;
  }

  window.addEventListener('message', (ev) => {
    // Only the frame's own page, never a parent/child frame or another window.
    if (ev.source !== window) return;
    const m = ev.data;
    if (!m || typeof m !== 'object' || m.channel !== CHANNEL || m.dir !== 'to-extension') return;
    const id = m.id;
    if (!(typeof id === 'number' || (typeof id === 'string' && id.length > 0 && id.length <= 128))) return;
    if (typeof m.type !== 'string') return;
    if (pending >= MAX_PENDING) {
      toPage({ id, error: { code: 'busy', message: 'too many requests in flight' } });
      return;
    }
    // Copy only known fields: the page cannot set `origin` (the service worker
    // takes it from the browser's sender info anyway).
    const req = { id, type: m.type };
    for (const k of ['reader', 'handle', 'apdu']) if (k in m) req[k] = m[k];
    pending += 1;
    try {
      ensurePort().postMessage(req);
    } catch (e) {
      pending = Math.max(0, pending - 1);
      port = null;
      toPage({ id, error: { code: 'no_bridge', message: 'the Cardpay extension was reloaded; reload the page' } });
    }
  });

  // Connect to the service worker now, so card events reach this frame.
  try { ensurePort(); } catch (_) { port = null; }

  // Announce presence for pages that listen early; pages should still ping
  // with {type: "hello"} (see docs/bridge.md).
  toPage({ event: 'extension_ready', version: VERSION });
})();
