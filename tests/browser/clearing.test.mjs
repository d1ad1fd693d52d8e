// The merchant's settlement page in headless Chromium after the demo store's
// purchase flow, on the real stack (pcscd + vpcd + virtual card, extension +
// bridge, payment server on SQLite, demo store): the shopper buys an e-book;
// the payment server closes its batch (`payment-server close-batches`), the
// clearing process clears and pays out (`payment-server clearing run --once`,
// `clearing settle --through today`); the merchant signs in on the payment
// server's /merchant page with its id and key (the key signs a one-time
// challenge in the browser) and sees today's payout, the chart of daily
// takings with today's bar, and the transaction behind the payout. On failure
// the test keeps a screenshot (path printed); CARDPAY_SCREENSHOTS=<dir> keeps
// one of the merchant page in any case.
//
//   cd tests/browser && node --test clearing.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import * as s from './checkout-support.mjs';

const { h } = s;
const run = promisify(execFile);
let bins, stack, pay, demo, br, keys;
const m = { id: 'demo-store', name: 'Cardpay Demo Store', key: randomBytes(32).toString('hex') };
const FEE_FIXED = 10; // cents per purchase

async function ps(args) {
  const r = await run(bins.paymentServer, args, { env: { ...process.env, RUST_LOG: 'warn' } });
  return r.stdout;
}

before(async () => {
  bins = await s.buildAll();
  // A fresh Ed25519 batch signing key (TEST): the seed for the payment server, the public key for clearing.
  const out = (await run(bins.paymentServer, ['clearing', 'keygen'])).stdout;
  keys = {
    seed: out.match(/signing_key = "([0-9a-f]{64})"/)[1],
    public: out.match(/public_key = "([0-9a-f]{64})"/)[1],
  };
  stack = await h.startStack({ bins });
  const demoPort = await s.freePort();
  const demoOrigin = s.localOrigin(demoPort);
  pay = await s.startPaymentServer({
    bin: bins.paymentServer,
    merchants: [{ ...m, origins: [demoOrigin] }],
    corsOrigins: [demoOrigin],
    extraToml: (dir) => [
      '[clearing]',
      'key_id = "payments-1"',
      `signing_key = "${keys.seed}"`,
      `spool = "${path.join(dir, 'spool')}"`,
      `clearing_db = "${path.join(dir, 'clearing.sqlite')}"`,
    ].join('\n'),
  });
  demo = await s.startDemoMerchant({ bin: bins.demoMerchant, pay, m, port: demoPort });
  br = await h.launchBrowser({ bins, origins: [pay.origin] });
}, { timeout: 900_000 });

after(async () => {
  await br?.close();
  await demo?.stop();
  await pay?.stop();
  await stack?.stop();
});

async function clearingConfig() {
  const file = path.join(pay.dir, 'clearing.toml');
  await writeFile(file, [
    `db_path = "${path.join(pay.dir, 'clearing.sqlite')}"`,
    `payment_config = "${pay.config}"`,
    `inbox = "${path.join(pay.dir, 'spool')}"`,
    `out_dir = "${path.join(pay.dir, 'settlement')}"`,
    '[issuer]', 'id = "issuer"', 'name = "Cardpay Test Issuer"', 'iban = "DE89370400440532013000"', 'bic = "COBADEFFXXX"',
    '[[signers]]', 'key_id = "payments-1"', `public_key = "${keys.public}"`, 'kinds = ["purchases", "loads"]',
    '[[merchants]]', `id = "${m.id}"`, 'iban = "GB82WEST12345698765432"', 'bic = "WESTGB2L"', `fee_fixed = ${FEE_FIXED}`,
  ].join('\n') + '\n');
  return file;
}

test('merchant page after a demo purchase: payout, chart and the transaction behind it', { timeout: 300_000 }, async () => {
  const page = await br.context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  try {
    // The shopper buys one e-book (4.99, below the card's no-PIN limit).
    await page.addInitScript(s.recordEventsScript);
    await page.goto(demo.url('/'));
    await page.locator('.p', { hasText: 'E-book' }).getByRole('button', { name: 'Add to cart' }).click();
    await page.waitForURL(/\/cart$/);
    await page.getByRole('button', { name: 'Pay with Cardpay' }).click();
    await page.waitForURL(/\/orders\/[^/]+\/pay$/);
    const orderId = page.url().split('/').at(-2);
    const frame = s.widgetFrame(page);
    await s.waitEvent(page, 'ready');
    await s.approve(frame);
    await frame.getByTestId('receipt').waitFor({ timeout: 30_000 });
    await page.waitForURL(new RegExp(`/orders/${orderId}$`), { timeout: 30_000 });
    assert.equal(await page.locator('#status').textContent(), 'paid');
    const order = await (await fetch(demo.url(`/orders/${orderId}/json`))).json();
    const txnId = order.paid_txn ?? order.txn_id;
    assert.ok(txnId, JSON.stringify(order));

    // Concentration point and clearing, with the real binary.
    const closed = await ps(['close-batches', '--config', pay.config]);
    assert.match(closed, /^PB-demo-store-/m);
    const cfg = await clearingConfig();
    await ps(['clearing', 'run', '--once', '--config', cfg]);
    const settled = await ps(['clearing', 'settle', '--through', 'today', '--config', cfg]);
    const payoutId = settled.match(/^(PO-demo-store-\d{8}-1) /m)?.[1];
    assert.ok(payoutId, settled);
    const v = await s.merchantGet(pay, m, `/v1/transactions/${encodeURIComponent(txnId)}`);
    assert.equal(v.body?.state, 'settled', JSON.stringify(v));
    assert.equal((await ps(['clearing', 'reconcile', '--config', cfg])).split('\n')[0].startsWith('reconciled'), true);

    // The merchant signs in on the payment server with its id and key.
    await page.goto(pay.url('/merchant'));
    await page.waitForURL(/\/merchant\/login$/);
    await page.getByLabel('Merchant id').fill(m.id);
    await page.getByLabel('Merchant key (64 hex digits)').fill(m.key);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/merchant$/);
    assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), `Settlements · ${m.name}`);

    // Today's payout: 4.99 less the fee, with its reference.
    const row = page.locator(`[data-testid=payouts] tr[data-payout="${payoutId}"]`);
    await row.waitFor();
    assert.ok(await row.isVisible());
    assert.equal(await row.locator('td.amount').textContent(), `€${((499 - FEE_FIXED) / 100).toFixed(2)}`);
    assert.match(await row.textContent(), /CP-\d{8}-[0-9a-f]{12}/);
    // The chart: 30 days, today's bar the e-book's price and visibly tall.
    const chart = page.getByTestId('takings-chart');
    assert.ok(await chart.isVisible());
    assert.equal(await chart.locator('rect.bar').count(), 30);
    const today = chart.locator('rect.bar').last();
    assert.equal(await today.getAttribute('data-amount'), '499');
    const box = await today.boundingBox();
    assert.ok(box && box.height > 50, `today's bar ${JSON.stringify(box)}`);
    if (process.env.CARDPAY_SCREENSHOTS) {
      await mkdir(process.env.CARDPAY_SCREENSHOTS, { recursive: true });
      await page.screenshot({ path: path.join(process.env.CARDPAY_SCREENSHOTS, 'merchant-settlements.png'), fullPage: true });
    }
    // The transaction behind the payout.
    await row.getByRole('link', { name: payoutId }).click();
    await page.waitForURL(new RegExp(`/merchant/payouts/${payoutId}$`));
    assert.ok(await page.getByTestId('payout-lines').getByRole('cell', { name: txnId }).isVisible());
    assert.equal(await page.getByTestId('payout-amount').textContent(), `€${((499 - FEE_FIXED) / 100).toFixed(2)}`);
    assert.deepEqual(errors, []);
  } catch (e) {
    const dir = path.join(s.targetDir(), 'browser-artifacts');
    await mkdir(dir, { recursive: true });
    const shot = path.join(dir, `clearing-failure-${Date.now()}.png`);
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    console.error(`screenshot kept: ${shot}`);
    throw e;
  } finally {
    await page.close();
  }
});
