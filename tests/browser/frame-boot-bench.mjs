// What the extension's content script costs the widget frame's start: two browsers with
// the real extension and bridge, one whose content script is injected into the payment
// origin's frames (as shipped) and one built for another origin (so nothing is injected);
// page loads of the test shop alternate between them. Without the content script the
// widget never hears from the bridge, so only the frame's start is timed, from its
// navigation start: widget.html's last byte, the boot script running (its wasm fetch),
// DOMContentLoaded and the wasm instantiated. p50 over the loads after 4 warm-up loads
// each. A measurement for docs/widget.md ("Figures"), not a test.
//
//   cd tests/browser && CARDPAY_SKIP_WIDGET_BUILD=1 node frame-boot-bench.mjs [N]   (default N = 40)

import { randomBytes } from 'node:crypto';
import * as s from './checkout-support.mjs';

const { h } = s;
const N = Number(process.argv[2] || 40);
const bins = await s.buildAll({ release: true });
const stack = await h.startStack({ bins });
const merchant = { id: 'bench-shop', name: 'Bench Shop', key: randomBytes(32).toString('hex') };
const shopPort = await s.freePort();
const shopOrigin = s.localOrigin(shopPort, '127.0.0.1');
const pay = await s.startPaymentServer({ bin: bins.paymentServer, merchants: [{ ...merchant, origins: [shopOrigin] }], corsOrigins: [shopOrigin] });
const shop = await s.startTestMerchant({ pay, merchant, port: shopPort });
const sides = {
  'content script injected': await h.launchBrowser({ bins, origins: [pay.origin], installArgs: s.BENCH_INSTALL_ARGS }),
  // port 1: an origin no page has, so the manifest's match pattern never matches
  'no content script': await h.launchBrowser({ bins, origins: [pay.origin], extensionOrigins: ['https://127.0.0.1:1'], installArgs: s.BENCH_INSTALL_ARGS }),
};
// The benches' frame trace (checkout-support.mjs: `boot`, `wasm-ready`), and DOMContentLoaded.
const dcl = `(() => {
  if (!location.pathname.endsWith('/widget.html')) return;
  document.addEventListener('DOMContentLoaded', () => { window.__dcl = performance.now(); });
})();`;
const runs = Object.fromEntries(Object.keys(sides).map((k) => [k, []]));
for (const b of Object.values(sides)) {
  await b.context.addInitScript(s.frameTraceScript);
  await b.context.addInitScript(dcl);
}
try {
  for (let i = 0; i < N + 4; i++) {
    const order = Object.entries(sides);
    for (const [name, b] of i % 2 ? order.reverse() : order) {
      const page = await b.context.newPage();
      await page.goto(shop.url('/checkout?amount=10'));
      const frame = await s.widgetFrameHandle(page).catch((e) => { throw new Error(`${name}: ${e.message}`); });
      await frame.waitForFunction(() => (window.__cpTrace || []).some((x) => x.ev === 'wasm-ready'), null, { timeout: 10_000 });
      const v = await frame.evaluate(() => {
        const at = (ev) => window.__cpTrace.find((x) => x.ev === ev).t - performance.timeOrigin;
        return { html: performance.getEntriesByType('navigation')[0].responseEnd, boot: at('boot'), dcl: window.__dcl, wasm: at('wasm-ready') };
      });
      if (i >= 4) runs[name].push(v);
      await page.waitForTimeout(200); // the frame's own start settles before the next load
      await page.close();
    }
  }
} finally {
  for (const b of Object.values(sides)) await b.close();
  await shop.close();
  await pay.stop();
  await stack.stop();
}
const p50 = (k, xs) => h.percentile(xs.map((x) => x[k]), 0.5).toFixed(1);
console.log('the widget frame\'s start, ms from its navigation start, p50:');
for (const [name, xs] of Object.entries(runs)) {
  console.log(`  ${name.padEnd(24)} n=${xs.length}: widget.html in ${p50('html', xs)}, boot script runs ${p50('boot', xs)}, DOMContentLoaded ${p50('dcl', xs)}, wasm instantiated ${p50('wasm', xs)}`);
}
