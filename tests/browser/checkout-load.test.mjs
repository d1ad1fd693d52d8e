// Loading the card from the bank (issue 11), in headless Chromium on the real stack:
// log into the demo bank (TEST account alice, docs/loading.md), load 50.00 onto the
// card through the widget in load mode (same checkout.js script tag, `mode: 'load'`),
// see bank, amount and the balance before and after; the bank posts the amount on the
// sealed result; then spend the loaded value at the demo store (a purchase larger than
// what the card held before). The card's balance, read over PC/SC, proves each step.
//
// Real parts only: pcscd + vpcd + virtual card (testbed), bridge + extension in a
// throw-away Chromium profile, the payment server with its load server (SQLite), the
// demo bank (demo-bank) and the demo store (demo-merchant).
//
//   cd tests/browser && node --test checkout-load.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as s from './checkout-support.mjs';

const { h } = s;
const execFileP = promisify(execFile);
let bins, stack, pay, demo, bank, br;
const m = { id: 'demo-store', name: 'Cardpay Demo Store', key: randomBytes(32).toString('hex') };
const KBL = randomBytes(32).toString('hex');
const START = 1_000; // 10.00 on the card: the purchase below needs the loaded value

/** The demo bank (demo-bank) on `port`, loading through `pay`. */
async function startDemoBank({ port, pay }) {
  const dir = await mkdtemp(path.join(tmpdir(), 'cardpay-bank-'));
  const origin = s.localOrigin(port);
  const child = spawn(path.join(s.targetDir(), 'debug', 'demo-bank'), [], {
    env: {
      ...process.env,
      RUST_LOG: 'warn',
      BANK_LISTEN: `127.0.0.1:${port}`,
      BANK_DB: path.join(dir, 'bank.sqlite'),
      BANK_PAYMENT_URL: pay.origin,
      BANK_PUBLIC_ORIGIN: origin,
      BANK_KEY: KBL,
      BANK_CHECKOUT_SRI: await s.sri(path.join(s.wwwDir, 'checkout.js')),
      BANK_TLS_CERT: h.testCa.certFile,
      BANK_TLS_KEY: h.testCa.keyFile,
      BANK_CA_FILE: h.testCa.caFile,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const end = Date.now() + 30_000;
  for (;;) {
    const ok = await fetch(origin + '/healthz').then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > end) throw new Error('demo bank did not start: ' + out);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    origin,
    url: (p = '/') => origin + p,
    log: () => out,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

before(async () => {
  bins = await s.buildAll();
  await execFileP('cargo', ['build', '-p', 'demo-merchant', '--bin', 'demo-bank'], {
    cwd: s.repoRoot, env: { ...process.env, CARGO_TARGET_DIR: s.targetDir() }, maxBuffer: 64 << 20,
  });
  stack = await s.startCardStack({ bins, balance: START });
  const demoPort = await s.freePort();
  const bankPort = await s.freePort();
  const demoOrigin = s.localOrigin(demoPort);
  const bankOrigin = s.localOrigin(bankPort);
  pay = await s.startPaymentServer({
    bin: bins.paymentServer,
    merchants: [{ ...m, origins: [demoOrigin] }],
    corsOrigins: [demoOrigin, bankOrigin],
    extraToml: () => [
      '[[banks]]',
      'id = "demo-bank"',
      'name = "Cardpay Demo Bank"',
      `key = "${KBL}"`,
      `origins = ["${bankOrigin}"]`,
      `webhook_url = "${bankOrigin}/webhooks/cardpay"`,
    ].join('\n'),
  });
  demo = await s.startDemoMerchant({ bin: bins.demoMerchant, pay, m, port: demoPort });
  bank = await startDemoBank({ port: bankPort, pay });
  br = await h.launchBrowser({ bins, origins: [pay.origin] });
}, { timeout: 900_000 });

after(async () => {
  await br?.close();
  await bank?.stop();
  await demo?.stop();
  await pay?.stop();
  await stack?.stop();
});

/** Log into the demo bank's sign-in page `page` shows, as alice (TEST account). */
async function logIn(page) {
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('alice-test-password');
  await page.getByRole('button', { name: 'Log in' }).click();
}

// The widget's files the payment frame of `page` fetched (paths under /pkg/).
async function widgetFiles(page) {
  const paths = (await s.widgetFiles(page)).map((e) => e.path);
  return paths.filter((p) => p.startsWith('/pkg/') && p.split('/').pop().startsWith('widget'))
    .map((p) => p.split('/').pop()).sort();
}

test('log into the demo bank, load 50.00 onto the card, then buy at the demo store with it', async () => {
  assert.equal(await s.readBalance(br.context, pay, stack.reader), START);
  const page = await br.context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.addInitScript(s.recordEventsScript);

  // Log in (TEST account) and ask for a load of 50.00.
  await page.goto(bank.url('/'));
  await logIn(page);
  await page.waitForURL(/\/account$/);
  assert.equal(await page.locator('#balance').textContent(), '1000.00 EUR');
  await page.getByLabel('Amount (EUR)').fill('50.00');
  await page.getByRole('button', { name: 'Load my card' }).click();
  await page.waitForURL(/\/loads\/[^/]+$/);

  // The widget in load mode: bank, amount, balance before and after.
  const frame = s.widgetFrame(page);
  assert.equal((await s.waitEvent(page, 'ready')).detail.capability, 'ready');
  await s.expectModeFilesPreloaded(page, 'load');
  await frame.locator('[data-screen=confirm]').waitFor({ timeout: 15_000 });
  assert.equal(await frame.getByRole('heading', { level: 1 }).textContent(), 'Load your Cardpay card');
  assert.equal(await frame.getByTestId('payee').textContent(), 'Cardpay Demo Bank');
  assert.equal(await frame.getByTestId('amount').textContent(), '€50.00');
  assert.equal(await frame.getByTestId('balance').textContent(), '€10.00');
  assert.equal(await frame.getByTestId('balance-after').textContent(), '€60.00');
  assert.equal(await frame.getByTestId('over-max').count(), 0);
  // A bank's shopper downloads the load wasm and glue, not the checkout's.
  assert.deepEqual(await widgetFiles(page), ['widget-boot.js', 'widget-load.js', 'widget-load_bg.wasm', 'widget.css']);
  await s.approve(frame, 'Load my card');

  // Loaded: the receipt, the bank result to the bank's page, the account charged once.
  await frame.getByTestId('receipt').waitFor({ timeout: 30_000 });
  assert.equal(await frame.getByTestId('receipt-balance-before').textContent(), '€10.00');
  assert.equal(await frame.getByTestId('receipt-balance').textContent(), '€60.00');
  const result = await s.waitEvent(page, 'result');
  assert.equal(result.detail.result.kind, 'result_b');
  await page.locator('#cardpay-status').filter({ hasText: 'Loaded. Your account is charged 50.00 EUR.' })
    .waitFor({ timeout: 15_000 });
  assert.equal(await s.readBalance(br.context, pay, stack.reader), START + 5_000);
  await page.goto(bank.url('/account'));
  assert.equal(await page.locator('#balance').textContent(), '950.00 EUR');

  // Spend it at the demo store: 5 × the e-book = 24.95, more than the card held before.
  await page.goto(demo.url('/'));
  for (let i = 0; i < 5; i++) {
    await page.locator('.p', { hasText: 'E-book' }).getByRole('button', { name: 'Add to cart' }).click();
    await page.waitForURL(/\/cart$/);
    if (i < 4) await page.goto(demo.url('/'));
  }
  await page.getByRole('button', { name: 'Pay with Cardpay' }).click();
  await page.waitForURL(/\/orders\/[^/]+\/pay$/);
  const orderId = page.url().split('/').at(-2);
  const shop = s.widgetFrame(page);
  await s.waitEvent(page, 'ready');
  assert.equal(await shop.getByTestId('balance').textContent(), '€60.00');
  // A checkout's shopper downloads the purchase wasm and glue, not the load page's.
  assert.deepEqual(await widgetFiles(page), ['widget-boot.js', 'widget.css', 'widget.js', 'widget_bg.wasm']);
  await s.approve(shop);
  await s.typePin(shop, s.PIN);
  await shop.getByTestId('receipt').waitFor({ timeout: 30_000 });
  assert.equal(await shop.getByTestId('receipt-balance').textContent(), '€35.05');
  await page.waitForURL(new RegExp(`/orders/${orderId}$`), { timeout: 30_000 });
  assert.equal(await page.locator('#status').textContent(), 'paid');
  assert.equal(await s.readBalance(br.context, pay, stack.reader), START + 5_000 - 2_495);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a German browser loads the German load page (its own wasm, preloaded by Accept-Language): 10.00 loaded, charged once', async () => {
  const before = await s.readBalance(br.context, pay, stack.reader);
  const page = await br.context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.addInitScript(s.recordEventsScript);
  // The browser's language, as Chromium's own setting sets it: navigator.language and
  // Accept-Language of every request of this page and its (same-site) frame. The bank
  // page passes no `lang`: the frame's build follows the browser.
  const cdp = await br.context.newCDPSession(page);
  const userAgent = await page.evaluate(() => navigator.userAgent);
  await cdp.send('Network.setUserAgentOverride', { userAgent, acceptLanguage: 'de-DE,de;q=0.9,en;q=0.5' });

  // Logged in (the test before left the session cookie; alone, log in).
  await page.goto(bank.url('/'));
  if (!/\/account$/.test(page.url())) await logIn(page);
  await page.waitForURL(/\/account$/);
  const account = await page.locator('#balance').textContent();
  await page.getByLabel('Amount (EUR)').fill('10.00');
  await page.getByRole('button', { name: 'Load my card' }).click();
  await page.waitForURL(/\/loads\/[^/]+$/);
  const frame = s.widgetFrame(page);
  assert.equal((await s.waitEvent(page, 'ready')).detail.capability, 'ready');
  assert.equal(await s.widgetFrameHandle(page).then((f) => f.evaluate(() => navigator.language)), 'de-DE');
  // The German build (no English words in it), from the payment server's preload,
  // which only Accept-Language told it to pick; no other mode's or language's files.
  await s.expectModeFilesPreloaded(page, 'load', 'de');
  await frame.locator('[data-screen=confirm]').waitFor({ timeout: 15_000 });
  assert.equal(await frame.getByRole('heading', { level: 1 }).textContent(), 'Ihre Cardpay-Karte laden');
  assert.equal(await frame.getByTestId('amount').textContent(), '10,00 €');
  await s.approve(frame, 'Karte laden');
  await frame.getByTestId('receipt').waitFor({ timeout: 30_000 });
  assert.match(await frame.getByTestId('receipt').textContent(), /Karte geladen/);
  assert.equal((await s.waitEvent(page, 'result')).detail.result.kind, 'result_b');
  await page.locator('#cardpay-status').filter({ hasText: 'Loaded. Your account is charged 10.00 EUR.' })
    .waitFor({ timeout: 15_000 });
  // Money: the card gained what the account lost, once.
  assert.equal(await s.readBalance(br.context, pay, stack.reader), before + 1_000);
  await page.goto(bank.url('/account'));
  const cents = (t) => Math.round(Number(t.split(' ')[0]) * 100);
  assert.equal(cents(await page.locator('#balance').textContent()), cents(account) - 1_000);
  assert.deepEqual(errors, []);
  await page.close();
});
