// A checkout in a page that is not a secure context: a plain-http shop on a name that is
// not loopback (`http://shop.example:PORT`, mapped to 127.0.0.1 by Chromium's resolver
// rules, by Firefox's `network.dns.localDomains`). The widget's frame is then no secure
// context either, and the browser gives it no WebCrypto, which seals and opens every
// message. The widget must refuse the session at once with code `insecure_context`,
// show it, and ask nothing of the payment server. No card is needed: nothing may get
// that far. In Chromium and in Firefox (puppeteer-core, as browsers.test.mjs).
//
//   cd tests/browser && node --test insecure-context.test.mjs
//   CARDPAY_BROWSERS=firefox node --test insecure-context.test.mjs     (one browser)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import * as s from './checkout-support.mjs';

const { h } = s;
let pay, site, merchant;

before(async () => {
  const bins = await s.buildAll();
  const port = await s.freePort();
  const origin = `http://shop.example:${port}`;
  merchant = { id: 'plain-http-shop', name: 'Plain HTTP Shop', key: randomBytes(32).toString('hex') };
  pay = await s.startPaymentServer({ bin: bins.paymentServer, merchants: [{ ...merchant, origins: [origin] }] });
  const integrity = await s.sri(path.join(s.wwwDir, 'checkout.js'));
  site = createServer((req, res) => {
    const ws = s.buildSession(merchant, { txnId: 'T-insecure', amount: 1250, origin, resultUrl: origin + '/result' });
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Plain http shop</title>
<script src="${pay.origin}/checkout.js" integrity="${integrity}" crossorigin="anonymous"></script></head>
<body><div id="cardpay"></div><script>
  window.cardpayLog = [];
  const w = Cardpay.mount('#cardpay', { session: ${JSON.stringify(ws).replace(/</g, '\\u003c')} });
  for (const e of ['ready', 'capability', 'result', 'cancel', 'error']) {
    w.on(e, (d) => window.cardpayLog.push({ event: e, detail: d }));
  }
</script></body></html>`);
  });
  await new Promise((r) => site.listen(port, '127.0.0.1', r));
}, { timeout: 300_000 });

after(async () => {
  await new Promise((r) => (site ? site.close(r) : r()));
  await pay?.stop();
});

h.describeEachBrowser({ install: false, extension: false, ...h.MAP_SHOP_EXAMPLE }, (browser) => {
  test('a checkout in a plain-http page refuses at once (insecure_context): no WebCrypto, nothing asked of the server',
    () => refusesAtOnce(browser()));
});

async function refusesAtOnce(br) {
  const page = await br.newPage();
  try {
    await page.goto(`http://shop.example:${site.address().port}/`);
    assert.equal(await page.evaluate(() => window.isSecureContext), false, 'the shop page must not be a secure context');
    await page.waitForFunction(() => window.cardpayLog.some((e) => e.event === 'error'), { timeout: 30_000 });
    const log = await page.evaluate(() => window.cardpayLog);
    assert.deepEqual(log.map((e) => e.event), ['error'], JSON.stringify(log));
    assert.equal(log[0].detail.code, 'insecure_context');
    assert.match(log[0].detail.message, /secure context/);

    // The frame says so where its screens go, and asks nothing of WebCrypto.
    const frame = page.frames().find((f) => f.url().startsWith(pay.origin) && f.url().includes('widget.html'));
    assert.ok(frame, 'the widget frame');
    assert.equal(await frame.evaluate(() => window.isSecureContext), false);
    assert.equal(await frame.evaluate(() => typeof crypto.subtle), 'undefined');
    const shown = await frame.waitForSelector('[data-testid=error][data-code=insecure_context]', { timeout: 10_000 });
    assert.match(await shown.evaluate((e) => e.textContent), /not secure \(https\).*Nothing was charged/);

    // The payment server never heard of the transaction.
    const r = await s.merchantGet(pay, merchant, '/v1/transactions/T-insecure');
    assert.equal(r.status, 404, JSON.stringify(r));
  } finally {
    await page.close().catch(() => {});
  }
}
