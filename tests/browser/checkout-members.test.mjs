// The demo store's members page (issue 11, seed figure 16), in headless Chromium on
// the real stack: sign in with the card (an amount-0 purchase through the same
// checkout.js script tag: "authentication OK", nothing debited), then redeem 100
// points for a voucher (a points-purse purchase): the voucher appears on the members
// page and the card's points purse, read over PC/SC, is lower by exactly 100 while
// its money purse is untouched.
//
// Real parts only: pcscd + vpcd + virtual card (testbed, 500 points), the bridge as
// native host in a throw-away Chromium profile with the unpacked extension, the
// payment server (SQLite, serving www/), the demo store (demo-merchant), over https.
//
//   cd tests/browser && node --test --test-concurrency=1 ./checkout-members.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as s from './checkout-support.mjs';

const { h } = s;
let bins, stack, pay, demo, br;
const m = { id: 'demo-store', name: 'Cardpay Demo Store', key: randomBytes(32).toString('hex') };
const GET_BALANCE_POINTS = '805C000104'; // GET BALANCE of purse 1 (docs/card.md)

before(async () => {
  bins = await s.buildAll();
  stack = await h.startStack({ bins });
  const demoPort = await s.freePort();
  const demoOrigin = s.localOrigin(demoPort);
  pay = await s.startPaymentServer({
    bin: bins.paymentServer,
    merchants: [{ ...m, origins: [demoOrigin] }],
    corsOrigins: [demoOrigin],
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

test('sign in on the members page with the card, then redeem points for a voucher', async () => {
  const money = await s.readBalance(br.context, pay, stack.reader);
  const points = await s.readBalance(br.context, pay, stack.reader, GET_BALANCE_POINTS);
  assert.ok(points >= 100, `the test card has ${points} points`);
  const page = await br.context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.addInitScript(s.recordEventsScript);

  // From the store's header to the members page: not signed in yet.
  await page.goto(demo.url('/'));
  await page.getByRole('link', { name: 'Members' }).click();
  await page.waitForURL(/\/members$/);
  await page.getByRole('link', { name: 'Sign in with your card' }).click();
  await page.waitForURL(/\/members\/signin$/);

  // The widget: an amount of 0.00 to approve; the card proves itself, nothing is paid.
  let frame = s.widgetFrame(page);
  assert.equal((await s.waitEvent(page, 'ready')).detail.capability, 'ready');
  assert.equal(await frame.getByTestId('amount').textContent(), '€0.00');
  await s.approve(frame);
  await frame.getByTestId('receipt').waitFor({ timeout: 30_000 });
  assert.equal((await s.waitEvent(page, 'result')).detail.result.kind, 'result_m');
  await page.waitForURL(/\/members$/, { timeout: 30_000 });
  const member = await page.locator('#member').textContent();
  assert.match(member, /^Signed in with card …\d{4} \(authentication OK\)\. No payment was made/);
  assert.equal(await s.readBalance(br.context, pay, stack.reader), money, 'signing in debits nothing');

  // Redeem 100 points: a points-purse purchase in the widget.
  assert.equal(await page.locator('code.voucher').count(), 0);
  await page.getByRole('button', { name: /^Redeem 100 points for a 5\.00 EUR voucher$/ }).click();
  await page.waitForURL(/\/members\/redeem$/);
  frame = s.widgetFrame(page);
  await s.waitEvent(page, 'ready');
  assert.equal(await frame.getByTestId('amount').textContent(), '100 points');
  await s.approve(frame);
  await frame.getByTestId('receipt').waitFor({ timeout: 30_000 });
  await page.waitForURL(/\/members$/, { timeout: 30_000 });
  const vouchers = await page.locator('code.voucher').allTextContents();
  assert.equal(vouchers.length, 1);
  assert.match(vouchers[0], /^CP-[0-9A-F]{16}$/);
  assert.equal(await s.readBalance(br.context, pay, stack.reader, GET_BALANCE_POINTS), points - 100);
  assert.equal(await s.readBalance(br.context, pay, stack.reader), money, 'money untouched');
  assert.deepEqual(errors, []);
  await page.close();
});
