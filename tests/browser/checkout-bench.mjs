// Benchmark of the checkout widget in headless Chromium on the real stack
// (extension + bridge + pcscd + vpcd + virtual card, payment server on SQLite):
//  - gzipped size of what the shopper downloads (checkout.js, iframe page, CSS, JS glue, wasm);
//  - time from the <script src=checkout.js> fetch start (and from navigation) to `ready`;
//  - time from the Approve click to the `result` event (p50/p99), purchases under
//    the card's no-PIN limit (the card dialogue + draw + debit + complete).
//
//   node checkout-bench.mjs [N]        (default N = 30 purchases of 0.10 EUR)

import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import * as s from './checkout-support.mjs';

const { h } = s;
const N = Number(process.argv[2] || 30);

const files = ['checkout.js', 'widget.html', 'widget-boot.js', 'widget.css', 'pkg/widget.js', 'pkg/widget_bg.wasm'];
const sizes = [];
for (const f of files) {
  const b = await readFile(path.join(s.wwwDir, f));
  sizes.push({ f, raw: b.length, gz: gzipSync(b, { level: 9 }).length });
}

const bins = await s.buildAll();
const stack = await h.startStack({ bins });
const merchant = { id: 'bench-shop', name: 'Bench Shop', key: randomBytes(32).toString('hex') };
const shopPort = await s.freePort();
const pay = await s.startPaymentServer({ bin: bins.paymentServer, merchants: [{ ...merchant, origins: [s.localOrigin(shopPort)] }], corsOrigins: [s.localOrigin(shopPort)] });
const shop = await s.startTestMerchant({ pay, merchant, port: shopPort });
const br = await h.launchBrowser({ bins, origins: [pay.origin], installArgs: ['--apdu-burst', '100000', '--apdu-per-sec', '100000'] });

const toReady = [];
const navToReady = [];
const approveToResult = [];
try {
  // Warm-up (bridge start, caches) — not counted.
  for (let i = 0; i < N + 2; i++) {
    const page = await br.context.newPage();
    await page.goto(shop.url('/checkout?amount=10'));
    const ready = await s.waitEvent(page, 'ready');
    if (ready.detail.capability !== 'ready') throw new Error('not ready: ' + JSON.stringify(ready.detail));
    const scriptStart = await page.evaluate(() => performance.getEntriesByType('resource').find((e) => e.name.endsWith('/checkout.js')).startTime);
    const frame = page.frames().find((f) => f.url().includes('/widget.html'));
    await frame.waitForSelector('[data-action=approve]');
    const clickedAt = await frame.evaluate(() => {
      const t = performance.timeOrigin + performance.now();
      document.querySelector('[data-action=approve]').click();
      return t;
    });
    const result = await s.waitEvent(page, 'result');
    const resultAt = await page.evaluate((t) => performance.timeOrigin + t, result.t);
    if (i >= 2) {
      toReady.push(ready.t - scriptStart);
      navToReady.push(ready.t);
      approveToResult.push(resultAt - clickedAt);
    }
    await page.close();
  }
} finally {
  await br.close();
  await shop.close();
  await pay.stop();
  await stack.stop();
}

const p = (v, q) => h.percentile(v, q).toFixed(1);
const total = sizes.reduce((a, x) => a + x.gz, 0);
console.log('Cardpay checkout widget benchmark (headless Chromium, real stack)');
console.log('download, gzip -9:');
for (const x of sizes) console.log(`  ${x.f.padEnd(20)} ${String(x.raw).padStart(8)} B  → ${String(x.gz).padStart(7)} B gz`);
console.log(`  total (wasm + JS + HTML + CSS)        → ${total} B gz (${(total / 1024).toFixed(1)} KiB)`);
console.log(`script tag (checkout.js fetch start) → ready: p50 ${p(toReady, 0.5)} ms, p99 ${p(toReady, 0.99)} ms (n=${toReady.length})`);
console.log(`navigation start → ready:                p50 ${p(navToReady, 0.5)} ms, p99 ${p(navToReady, 0.99)} ms`);
console.log(`Approve → result (no PIN):               p50 ${p(approveToResult, 0.5)} ms, p99 ${p(approveToResult, 0.99)} ms (n=${approveToResult.length})`);
