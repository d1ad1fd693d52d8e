// The floor of the checkout's two timed spans: what any widget inside DESIGN's
// architecture (a payment-origin frame, the page's `loaded`/`init` handshake, the
// extension's content script, the bridge, pcscd and the card; the payment server over
// HTTP) must wait for, with none of the widget's own work. `checkout-bench.mjs --floor`
// serves it from a copy of the build's www/ whose widget.html is nothing but its CSP and
// this script (a classic script in the head: no style sheet, no module, no wasm), so the
// same shop page, browser, extension, bridge, card and payment server time it beside the
// build, page loads alternating. Not a widget: no checks, no view, no money.
//  - `ready`: `loaded` at once; at the page's `init`: `readers` → `connect` (the two
//    round trips the widget's `ready` waits for) → `ready`. The SELECT follows, as the
//    widget's does, before Approve is shown.
//  - Approve → `result`: the purchase's five serial round trips with a click and no
//    press (docs/widget.md, "The purchase"): three card commands (the widget's proof,
//    INITIALIZE FOR PURCHASE and DEBIT; here GET BALANCE, which writes nothing on the
//    card), the POST to /v1/purchases/draw after the second and the POST to
//    /v1/purchases/complete after the third (here a body the server refuses at once:
//    no session check, no security module, no SQLite write) → `result`.
// So both figures are below what any real widget can reach on the same machine.
(() => {
  'use strict';
  const nonce = new URLSearchParams(location.search).get('nonce') || '';
  // (lib/index.mjs's SELECT_CARDPAY and GET_BALANCE_MONEY: this file runs in the frame,
  // which cannot import that Node module)
  const SELECT = '00A4040008F04341524450415900';
  const GET_BALANCE = '805C000004';
  const waiting = new Map();
  let id = 0;
  let started = false;
  const bridge = (type, fields) => new Promise((resolve) => {
    const m = Object.assign({ channel: 'cardpay', dir: 'to-extension', id: ++id, type }, fields);
    waiting.set(m.id, resolve);
    window.postMessage(m, location.origin);
  });
  const post = (p) => fetch(p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    .then((r) => r.text());
  const tell = (type, fields) => parent.postMessage(Object.assign({ type: 'cardpay:' + type, nonce }, fields), '*');

  async function start() {
    const listed = await bridge('readers', {});
    const reader = listed.result && listed.result.readers.find((x) => x.card_present);
    // (the bench stops with the capability in its message: it times a card only)
    if (!reader) return tell('ready', { capability: listed.result ? 'no_card' : 'no_bridge' });
    const handle = (await bridge('connect', { reader: reader.name })).result.handle;
    tell('ready', { capability: 'ready' });
    await bridge('transmit', { handle, apdu: SELECT });
    const root = document.getElementById('cardpay-root');
    root.innerHTML = '<button type="button" data-action="approve">Approve payment</button>';
    root.querySelector('button').addEventListener('click', async () => {
      await bridge('transmit', { handle, apdu: GET_BALANCE });
      await bridge('transmit', { handle, apdu: GET_BALANCE });
      await post('/v1/purchases/draw');
      await bridge('transmit', { handle, apdu: GET_BALANCE });
      await post('/v1/purchases/complete');
      tell('result', { result: { floor: true } });
    }, { once: true });
  }

  addEventListener('message', (ev) => {
    const d = ev.data;
    if (!d || typeof d !== 'object') return;
    if (ev.source === parent && d.type === 'cardpay:init' && d.nonce === nonce && !started) {
      started = true;
      start();
    } else if (ev.source === window && d.channel === 'cardpay' && d.dir === 'from-extension' && waiting.has(d.id)) {
      waiting.get(d.id)(d);
      waiting.delete(d.id);
    }
  });
  if (parent !== window) tell('loaded', {});
})();
