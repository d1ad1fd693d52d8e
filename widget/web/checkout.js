/*! Cardpay checkout loader v1 (docs/widget.md) */
/* The source: scripts/build-widget.sh writes it minified as www/checkout.js, the file
 * the payment origin serves and merchants pin with SRI (www/pkg/sri.json).
 *  Include with one script tag (with SRI):
 *    <script src="https://pay.example/checkout.js" integrity="sha384-…" crossorigin="anonymous"></script>
 *  then:
 *    const widget = Cardpay.mount('#cardpay', { session, lang: 'de' });
 *    // a bank's "load my card" page: Cardpay.mount('#cardpay', { session, mode: 'load' })
 *    widget.on('ready', ({capability}) => …)   // no_extension | no_bridge | no_reader | no_card | ready
 *    widget.on('result', ({result}) => …)      // forward to your server; only it can verify
 *    widget.on('cancel', ({reason}) => …)      // user | timeout | not_mine
 *    widget.on('error', ({code, message}) => …)
 *  Docs: docs/widget.md. */
(function () {
  'use strict';
  if (window.Cardpay) return;

  var script = document.currentScript;
  if (!script || !script.src) throw new Error('Cardpay: load checkout.js with a <script src> tag');
  var PAY_ORIGIN = new URL(script.src).origin;
  var BASE = new URL('.', script.src).href;
  var EVENTS = ['ready', 'capability', 'result', 'cancel', 'error'];
  // Theme variables the merchant may set on the mount element (read from its computed style).
  var THEME = ['--cp-font', '--cp-font-size', '--cp-bg', '--cp-fg', '--cp-muted', '--cp-accent',
    '--cp-accent-fg', '--cp-error', '--cp-success', '--cp-border', '--cp-radius', '--cp-focus', '--cp-key-bg'];
  var SAFE_VALUE = /^[#(),.%\w\s"'-]{0,100}$/;

  function nonce() {
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.prototype.map.call(b, function (x) { return ('0' + x.toString(16)).slice(-2); }).join('');
  }

  function theme(el, extra) {
    var cs = getComputedStyle(el);
    var out = {};
    THEME.forEach(function (k) {
      var v = (extra && extra[k]) || cs.getPropertyValue(k).trim();
      if (v && SAFE_VALUE.test(v)) out[k] = v;
    });
    return out;
  }

  function mount(el, opts) {
    if (typeof el === 'string') el = document.querySelector(el);
    if (!el) throw new Error('Cardpay.mount: no such element');
    opts = opts || {};
    var session = opts.session;
    if (typeof session === 'string') session = JSON.parse(session);
    if (!session || !session.session || !session.session_mac || !session.etsk || !session.tsk) {
      throw new Error('Cardpay.mount: opts.session must be {session, session_mac, etsk, tsk} from your server');
    }
    var n = nonce();
    var params = new URLSearchParams({ nonce: n });
    if (opts.mode === 'load') params.set('mode', 'load');
    else if (opts.mode && opts.mode !== 'purchase') throw new Error("Cardpay.mount: opts.mode must be 'purchase' or 'load'");
    if (opts.lang) params.set('lang', String(opts.lang));
    if (opts.timeoutMs) params.set('timeout', String(opts.timeoutMs | 0));
    if (opts.helloTimeoutMs) params.set('hello_timeout', String(opts.helloTimeoutMs | 0));
    if (opts.installUrl) params.set('install', String(opts.installUrl));

    var listeners = {};
    EVENTS.forEach(function (e) { listeners[e] = []; });
    EVENTS.forEach(function (e) {
      var cb = opts['on' + e.charAt(0).toUpperCase() + e.slice(1)];
      if (typeof cb === 'function') listeners[e].push(cb);
    });

    var iframe = document.createElement('iframe');
    iframe.src = BASE + 'widget.html?' + params.toString();
    iframe.title = opts.title || 'Cardpay payment';
    iframe.setAttribute('sandbox', 'allow-scripts allow-same-origin allow-popups allow-popups-to-escape-sandbox');
    iframe.setAttribute('referrerpolicy', 'origin');
    iframe.setAttribute('data-cardpay', n);
    iframe.style.cssText = 'display:block;width:100%;min-width:280px;height:380px;border:0;color-scheme:normal';

    var done = false;
    var last = {};

    function emit(name, detail) {
      last[name] = detail;
      (listeners[name] || []).forEach(function (fn) {
        try { fn(detail); } catch (e) { setTimeout(function () { throw e; }); }
      });
      el.dispatchEvent(new CustomEvent('cardpay:' + name, { detail: detail, bubbles: true }));
    }

    function onMessage(ev) {
      // Only our own iframe, served by the payment origin, for this mount.
      if (ev.source !== iframe.contentWindow || ev.origin !== PAY_ORIGIN) return;
      var d = ev.data;
      if (!d || typeof d !== 'object' || d.nonce !== n || typeof d.type !== 'string') return;
      var type = d.type.replace(/^cardpay:/, '');
      if (type === 'loaded') {
        iframe.contentWindow.postMessage(
          { type: 'cardpay:init', nonce: n, session: session, theme: theme(el, opts.theme) }, PAY_ORIGIN);
      } else if (type === 'resize') {
        // The frame's content height, exactly (the widget posts it on every change:
        // new screen, narrower page, larger text), so nothing is clipped or scrolls.
        var h = Math.max(80, Math.min(2400, d.height | 0));
        iframe.style.height = h + 'px';
      } else if (EVENTS.indexOf(type) >= 0) {
        if (done && type !== 'capability') return;
        if (type === 'result' || type === 'cancel') done = true;
        var detail = Object.assign({}, d);
        delete detail.nonce;
        delete detail.type;
        delete detail.event;
        emit(type, detail);
      }
    }
    window.addEventListener('message', onMessage);
    el.appendChild(iframe);

    return {
      iframe: iframe,
      on: function (name, fn) {
        if (!listeners[name]) throw new Error('Cardpay: unknown event ' + name);
        listeners[name].push(fn);
        // Late subscribers still hear a `ready` that already happened.
        if (name === 'ready' && last.ready) fn(last.ready);
        return this;
      },
      unmount: function () {
        window.removeEventListener('message', onMessage);
        if (iframe.parentNode) iframe.parentNode.removeChild(iframe);
      }
    };
  }

  window.Cardpay = Object.freeze({ mount: mount, version: '1', origin: PAY_ORIGIN });
})();
