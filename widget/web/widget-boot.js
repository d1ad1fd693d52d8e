// Boots the wasm widget inside the payment-origin iframe (widget.html), doing the
// waiting in parallel rather than one step after the other. The source: the build
// (scripts/build-widget.sh) writes it minified beside the glue, as pkg/widget-boot.js.
// - it says `cardpay:loaded` at once and keeps the messages that arrive while the wasm
//   downloads and compiles (the page's `init` among them); the widget then handles
//   them with the same checks as any other;
// - it loads the wasm of the frame's mode (the `mode` in our URL, set by checkout.js):
//   `load` → widget-load.js + widget-load_bg.wasm (a bank's load page), anything else →
//   widget.js + widget_bg.wasm (a checkout), so a shopper downloads one mode's code;
//   and of the shopper's language (the `lang` in our URL, else the browser's; its
//   primary subtag, as the widget's Lang::from_tag reads it): `de` → the German build
//   (widget-de…, widget-load-de…), anything else → English, so a shopper downloads one
//   language's words. The payment server preloads the same files (payment-server's
//   http/www.rs, by `lang`, else Accept-Language);
//   the wasm's fetch starts at once, beside the glue's;
// - it is in the build's own folder, `pkg/<version>/` (a hash of the build), with the
//   glue, the wasm and the style sheet (so './' is that folder): the payment server
//   lets browsers keep them for a year without asking again, and a new build is a new
//   folder, so a shopper never runs one build's glue with another's wasm. widget.html,
//   which names the folder, is asked for again on each load.
const root = document.getElementById('cardpay-root');
const early = [];
// Only the page that embeds us has anything to say this early (its `init`), and only a
// handful: another frame cannot fill the list and crowd the init out.
const keep = (ev) => { if (ev.source === parent && early.length < 16) early.push(ev); };
addEventListener('message', keep);
const query = new URLSearchParams(location.search);
const nonce = query.get('nonce') || '';
const lang = (query.get('lang') || navigator.language || '').split(/[-_]/)[0].toLowerCase();
const name = (query.get('mode') === 'load' ? 'widget-load' : 'widget') + (lang === 'de' ? '-de' : '');
const wasm = fetch(new URL('./' + name + '_bg.wasm', import.meta.url));
// Nothing secret: "*" only because the parent's origin is not known yet; the parent
// accepts it only from its own iframe, and answers to the payment origin.
if (parent !== window) parent.postMessage({ type: 'cardpay:loaded', nonce }, '*');

import('./' + name + '.js')
  .then(async ({ default: init, run }) => {
    await init({ module_or_path: wasm });
    removeEventListener('message', keep);
    run(root, early);
  })
  .catch((e) => {
    removeEventListener('message', keep);
    root.innerHTML = '<p class="cp-error" role="alert" data-testid="error" data-code="load">Cardpay could not start.</p>';
    console.error('cardpay: widget failed to start', e);
  });
