// End-to-end: the checkout widget in headless Chromium with the real extension, the
// bridge (native host), pcscd + vpcd + the virtual card, and the real payment server
// (SQLite in a temp dir, serving www/). The merchant is a small Node shop that mints
// sessions exactly like merchant-kit and embeds the widget with one SRI-pinned
// <script> tag under a strict CSP. The demo store's QA path is checkout-demo.test.mjs.
//
//   cd tests/browser && node --test checkout-widget.test.mjs
//
// The test card (testbed, `teststack --balance`): balance 500.00 EUR (s.CARD_BALANCE),
// no-PIN limit 20.00, PIN 1234.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { get } from 'node:https';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import * as s from './checkout-support.mjs';

const { h } = s;
let env, bins, stack, pay, shop, br, merchant;

before(async () => {
  env = await s.startWidgetStack({ id: 'e2e-shop', name: 'E2E Shop' });
  ({ bins, stack, pay, shop, br, merchant } = env);
}, { timeout: 900_000 });

after(async () => {
  await env?.stop();
});

/** The test shop's checkout for `query`; `watch`: with [`watchFrame`] on the page first. */
async function openCheckout(query, { context = br.context, watch = false } = {}) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  if (watch) await watchFrame(page);
  await page.goto(shop.url('/checkout?' + new URLSearchParams(query)));
  const txn = await page.evaluate(() => JSON.parse(document.getElementById('cardpay-session').textContent).session.session.txn_id);
  return { page, frame: s.widgetFrame(page), txn, errors };
}

async function txnView(txn) {
  const r = await s.merchantGet(pay, merchant, `/v1/transactions/${encodeURIComponent(txn)}`);
  return r;
}

async function balance() {
  return s.readBalance(br.context, pay, stack.reader);
}

/** In the widget frames of `page`: `__sent`, each APDU the widget sends to the
 *  extension (its first three bytes, hex, and when); `__clickAt`, the last click's
 *  time; `__keys`, how many keys reached the frame. */
async function watchFrame(page) {
  await page.addInitScript(() => {
    if (!location.pathname.endsWith('/widget.html')) return;
    const sent = window.__sent = [];
    const post = window.postMessage.bind(window);
    window.postMessage = function (m, o) {
      if (m && m.dir === 'to-extension' && m.apdu) sent.push({ apdu: m.apdu.slice(0, 6), t: performance.now() });
      return post(m, o);
    };
    document.addEventListener('click', () => { window.__clickAt = performance.now(); }, true);
    window.__keys = 0;
    addEventListener('keydown', () => { window.__keys++; }, true);
  });
}

let firstLayout;

test('purchase with PIN on the scrambled keypad, receipt, result M, balance, server state', async () => {
  const before = await balance();
  const { page, frame, txn, errors } = await openCheckout({ amount: 2500 });
  const ready = await s.waitEvent(page, 'ready');
  assert.equal(ready.detail.capability, 'ready');
  await s.expectModeFilesPreloaded(page, 'purchase');
  await assert.doesNotReject(frame.getByTestId('payee').filter({ hasText: 'E2E Shop' }).waitFor());
  assert.equal(await frame.getByTestId('amount').textContent(), '€25.00');
  assert.equal(await frame.getByTestId('balance').textContent(), `€${(before / 100).toFixed(2)}`);
  await s.approve(frame);
  firstLayout = await s.keypadLayout(frame);
  await s.typePin(frame, s.PIN);
  await frame.getByTestId('receipt').waitFor({ timeout: 30_000 });
  assert.equal(await frame.getByTestId('receipt-amount').textContent(), '€25.00');
  assert.equal(await frame.getByTestId('receipt-balance').textContent(), `€${((before - 2500) / 100).toFixed(2)}`);
  const result = await s.waitEvent(page, 'result');
  assert.equal(result.detail.txn_id, txn);
  assert.equal(result.detail.result.kind, 'result_m');
  assert.match(result.detail.result.result_m, /^[0-9a-f]+$/);
  await page.getByText('paid').waitFor();
  assert.equal(shop.results.at(-1).txn_id, txn);
  assert.equal(await balance(), before - 2500, 'card balance read over PC/SC dropped by exactly the price');
  const v = await txnView(txn);
  assert.equal(v.status, 200, JSON.stringify(v.body));
  assert.ok(['debited', 'confirmed', 'settled'].includes(v.body.state), v.body.state);
  assert.equal(v.body.amount, 2500);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a second purchase shows a different keypad layout', async () => {
  assert.ok(firstLayout, 'needs the first purchase');
  // Only the keypad matters here: this one stops at the keypad and cancels.
  const { page, frame } = await openCheckout({ amount: 2100 });
  await s.waitEvent(page, 'ready');
  // The browser's second checkout: the build's glue and wasm from its cache, unasked.
  await s.expectBuildFromCache(page);
  await s.approve(frame);
  const second = await s.keypadLayout(frame);
  assert.notDeepEqual(second, firstLayout);
  assert.ok(second.order !== firstLayout.order || second.style !== firstLayout.style);
  await frame.getByRole('button', { name: 'Cancel' }).click();
  assert.equal((await s.waitEvent(page, 'cancel')).detail.reason, 'user');
  await page.close();
});

test('wrong PIN, then the right PIN', async () => {
  const before = await balance();
  const { page, frame } = await openCheckout({ amount: 2050 });
  await s.waitEvent(page, 'ready');
  await s.approve(frame);
  await s.typePin(frame, '9999');
  const alert = frame.getByTestId('pin-error');
  await alert.waitFor();
  assert.equal(await alert.textContent(), 'Wrong PIN. 2 tries left.');
  await s.typePin(frame, s.PIN);
  await s.waitEvent(page, 'result');
  assert.equal(await balance(), before - 2050);
  await page.close();
});

test('typed digits never become PIN digits (a key logger would see them); the keypad works from the keyboard alone', async () => {
  const before = await balance();
  const { page, frame } = await openCheckout({ amount: 2010, lang: 'de' });
  await s.waitEvent(page, 'ready');
  // A German shopper downloads the German build (one language's words), preloaded.
  await s.expectModeFilesPreloaded(page, 'purchase', 'de');
  const approve = frame.getByRole('button', { name: 'Zahlung freigeben' });
  await approve.waitFor();
  await s.approveCounts(frame);
  await approve.focus();
  await page.keyboard.press('Enter');
  await frame.getByTestId('keypad').waitFor();
  // The shopper is told in plain words.
  assert.match(await frame.locator('#cp-pin-help').textContent(), /auf der Tastatur getippte Ziffern nicht verwendet.*Pfeiltasten/);
  // Digits typed on the keyboard, then Enter: nothing entered, nothing sent to the
  // card, the hint shown and said.
  await page.keyboard.type('1234');
  assert.equal(await frame.getByTestId('pin-count').getAttribute('data-count'), '0');
  // A number-pad digit too (Playwright's number pad is NumLock-off navigation, so the
  // key event is made by hand): refused the same way.
  const fw = await s.widgetFrameHandle(page);
  assert.equal(await fw.evaluate(() => !document.activeElement.dispatchEvent(new KeyboardEvent('keydown',
    { key: '7', code: 'Numpad7', location: 3, bubbles: true, cancelable: true }))), true, 'number-pad digit swallowed');
  assert.equal(await frame.getByTestId('pin-count').getAttribute('data-count'), '0');
  assert.equal((await s.focusedInWidget(page)).testid, 'keypad', 'focus still on the pad');
  const note = frame.getByTestId('typed-digits');
  await note.waitFor();
  assert.match(await note.textContent(), /Getippte Ziffern werden hier nicht verwendet/);
  assert.match(await frame.locator('#cp-live').textContent(), /Getippte Ziffern werden hier nicht verwendet/);
  await page.keyboard.press('Enter');
  assert.equal(await frame.locator('[data-screen]').getAttribute('data-screen'), 'pin');
  assert.equal(await frame.getByTestId('pin-count').getAttribute('data-count'), '0');
  // The keys carry only what they show as their names.
  const names = await frame.locator('.cp-key').evaluateAll((ks) => ks.map((k) => k.getAttribute('aria-label') || k.textContent));
  assert.deepEqual([...names].sort(), ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'Letzte Ziffer löschen', 'OK'].sort());
  // Tab moves over the keys too.
  await page.keyboard.press('Tab');
  assert.equal(await frame.locator(':focus').getAttribute('class').then((c) => c.includes('cp-key')), true);
  // Keyboard only: arrows to each digit, Enter/Space to press it, then OK.
  const pressed = await s.keyboardPin(page, s.PIN);
  assert.ok(pressed.every((k) => ['ArrowRight', 'Enter', 'Space'].includes(k)), pressed.join(' '));
  await frame.getByTestId('receipt').waitFor();
  assert.match(await frame.getByTestId('receipt-amount').textContent(), /^20,10 €$/);
  assert.equal(await balance(), before - 2010);
  await page.close();
});

test('insufficient funds: plain message, nothing taken', async () => {
  const before = await balance();
  const { page, frame, txn } = await openCheckout({ amount: before + 2500 });
  await s.waitEvent(page, 'ready');
  await s.approve(frame);
  await s.typePin(frame, s.PIN);
  const err = await s.waitEvent(page, 'error');
  assert.equal(err.detail.code, 'insufficient_funds');
  assert.match(await frame.getByRole('alert').textContent(), /not enough money/);
  assert.equal(await balance(), before);
  const v = await txnView(txn);
  assert.notEqual(v.body?.state, 'debited');
  await page.close();
});

test('network down at the draw: plain message, Try again completes the purchase', async () => {
  const before = await balance();
  const { page, frame } = await openCheckout({ amount: 150 });
  await s.waitEvent(page, 'ready');
  let failed = 0;
  await page.route('**/v1/purchases/draw', (route) => {
    if (failed++ === 0) return route.abort('internetdisconnected');
    return route.continue();
  });
  await s.approve(frame);
  const err = await s.waitEvent(page, 'error');
  assert.equal(err.detail.code, 'network');
  assert.match(await frame.getByRole('alert').textContent(), /could not reach the payment server/);
  await frame.getByRole('button', { name: 'Try again' }).click();
  await s.waitEvent(page, 'result');
  assert.equal(await balance(), before - 150);
  await page.close();
});

test("a debit command too short to open is refused: no DEBIT, nothing taken", async () => {
  const before = await balance();
  // A hostile network (or server) answers the draw with a debit command of one byte:
  // it does not open, the widget says so, and the card is never debited.
  const { page, frame, txn } = await openCheckout({ amount: 150 }, { watch: true });
  await page.route('**/v1/purchases/draw', async (route) => {
    const req = route.request();
    const r = await fetch(req.url(), { method: req.method(), headers: req.headers(), body: req.postDataBuffer() });
    const json = await r.json();
    await route.fulfill({ status: r.status, contentType: 'application/json', body: JSON.stringify({ ...json, debit_command: '00' }) });
  });
  await s.waitEvent(page, 'ready');
  await s.approve(frame);
  const err = await s.waitEvent(page, 'error');
  assert.equal(err.detail.code, 'server', 'an answer that does not open is the server\'s problem, not the card\'s');
  await frame.getByRole('alert').waitFor();
  const sent = await (await s.widgetFrameHandle(page)).evaluate(() => window.__sent.map((x) => x.apdu.slice(0, 4)));
  assert.ok(!sent.includes('8054'), `no DEBIT went to the card: ${sent}`);
  assert.equal(await balance(), before, 'nothing taken');
  const v = await txnView(txn);
  assert.notEqual(v.body?.state, 'debited');
  await page.close();
});

test('cancel', async () => {
  const { page, frame } = await openCheckout({ amount: 300 });
  await s.waitEvent(page, 'ready');
  await s.approveCounts(frame);
  await frame.getByRole('button', { name: 'Cancel' }).click();
  const c = await s.waitEvent(page, 'cancel');
  assert.equal(c.detail.reason, 'user');
  await frame.getByTestId('cancelled').waitFor();
  await page.close();
});

test('timeout cancels the request by itself', async () => {
  const { page, frame } = await openCheckout({ amount: 300, timeout: 2500 });
  await s.waitEvent(page, 'ready');
  const c = await s.waitEvent(page, 'cancel', { timeoutMs: 10_000 });
  assert.equal(c.detail.reason, 'timeout');
  assert.match(await frame.getByTestId('cancelled').textContent(), /timed out/);
  await page.close();
});

test('before the timeout a warning offers more time (WCAG timing adjustable)', async () => {
  const { page, frame } = await openCheckout({ amount: 300, timeout: 6000 });
  await s.waitEvent(page, 'ready');
  const warning = frame.getByTestId('expiry-warning');
  await warning.waitFor({ timeout: 10_000 }); // at 4.5 s
  assert.equal(await warning.getAttribute('role'), 'alert');
  await s.approveCounts(frame);
  await frame.getByRole('button', { name: 'I need more time' }).click();
  await warning.waitFor({ state: 'detached' });
  await new Promise((r) => setTimeout(r, 3000)); // past the first 6 s
  assert.equal(await page.evaluate(() => window.cardpayLog.filter((e) => e.event === 'cancel').length), 0);
  const c = await s.waitEvent(page, 'cancel', { timeoutMs: 15_000 });
  assert.equal(c.detail.reason, 'timeout');
  await page.close();
});

test('"this is not my purchase" cancels and is recorded by the payment server', async () => {
  const before = await balance();
  const { page, frame, txn } = await openCheckout({ amount: 700 });
  await s.waitEvent(page, 'ready');
  await s.approveCounts(frame);
  await frame.getByRole('button', { name: 'This is not my purchase' }).click();
  const c = await s.waitEvent(page, 'cancel');
  assert.equal(c.detail.reason, 'not_mine');
  assert.equal(await balance(), before);
  const v = await txnView(txn);
  // The report is recorded against the transaction id even though it was never drawn.
  if (v.status === 200) {
    assert.equal(v.body.suspicious_reports.length, 1);
    assert.equal(v.body.suspicious_reports[0].page_origin, shop.origin);
  } else {
    assert.match(pay.log(), /suspicious/);
  }
  await page.close();
});

test('no card, then the card is inserted', async () => {
  await stack.removeCard();
  try {
    const { page, frame } = await openCheckout({ amount: 500 });
    const ready = await s.waitEvent(page, 'ready');
    assert.equal(ready.detail.capability, 'no_card');
    // the visible notice (the live region says the same words to screen readers)
    await frame.getByTestId('capability').filter({ hasText: 'Insert your Cardpay card' }).waitFor();
    await stack.insertCard();
    const cap = await s.waitEvent(page, 'capability', { timeoutMs: 15_000 });
    assert.equal(cap.detail.capability, 'ready');
    await s.approve(frame);
    await s.waitEvent(page, 'result');
    await page.close();
  } finally {
    await stack.insertCard().catch(() => {});
  }
});

test("the amount alone spends nothing on the card; the press on Approve prepares the card, only the click draws", async () => {
  // A page that only shows checkouts (a hostile merchant mounting frame after frame)
  // must not make the card spend ATCs or the bridge's INITIALIZE budget: the card's
  // proof (INITIALIZE FOR LOAD of 0, P1 02) and the purchase's INITIALIZE (P1 01) go
  // out at the shopper's press on Approve, a press's length before the click, and
  // never before it; what can move money (the draw, then the DEBIT) only after the
  // click.
  const before = await balance();
  const { page, frame } = await openCheckout({ amount: 140 }, { watch: true });
  await s.waitEvent(page, 'ready');
  const approve = frame.getByRole('button', { name: 'Approve payment' });
  await approve.waitFor();
  await page.waitForTimeout(300);
  const inFrame = await s.widgetFrameHandle(page);
  const initializes = () => inFrame.evaluate(() => window.__sent.filter((x) => x.apdu.startsWith('8050')));
  assert.deepEqual(await initializes(), [], 'no INITIALIZE while the amount is shown');
  await s.approveCounts(frame);
  await approve.hover();
  await page.mouse.down();
  await inFrame.waitForFunction(() => window.__sent.some((x) => x.apdu === '805001'));
  await page.waitForTimeout(100);
  assert.deepEqual((await initializes()).map((x) => x.apdu), ['805002', '805001'], 'the proof, then the INITIALIZE, at the press');
  const drawn = () => inFrame.evaluate(() => performance.getEntriesByType('resource')
    .filter((e) => e.name.endsWith('/v1/purchases/draw')).map((e) => e.startTime));
  assert.deepEqual(await drawn(), [], 'no draw before the click');
  assert.ok(!(await inFrame.evaluate(() => window.__sent.some((x) => x.apdu.startsWith('8054')))), 'no DEBIT before the click');
  await page.mouse.up();
  await s.waitEvent(page, 'result');
  const sent = await initializes();
  const clickAt = await inFrame.evaluate(() => window.__clickAt);
  assert.deepEqual(sent.map((x) => x.apdu), ['805002', '805001'], 'nothing more at the click');
  assert.ok(sent[1].t < clickAt, JSON.stringify({ sent, clickAt }));
  const draws = await drawn();
  assert.equal(draws.length, 1);
  assert.ok(draws[0] >= clickAt, JSON.stringify({ draws, clickAt }));
  assert.equal(await balance(), before - 140);
  await page.close();
});

test("a page that hides, covers or clips the frame under the shopper's pointer gets no approval; seen whole for half a second, Approve counts", async () => {
  // Clickjacking by the merchant page itself: it makes our frame invisible (opacity
  // 0) or lays something over it, and brings it under the shopper's pointer as they
  // click on the page; or it clips the frame down to Approve, so the amount is not
  // seen. The browser tells the frame (IntersectionObserver v2: isVisible, and the
  // share in view): neither the press (the card's proof) nor the click (the payment)
  // counts, and Approve says it is unavailable. Nothing reaches the card or the server.
  const before = await balance();
  const { page, frame, txn } = await openCheckout({ amount: 150 }, { watch: true });
  await s.waitEvent(page, 'ready');
  const approve = frame.getByRole('button', { name: 'Approve payment' });
  await s.approveCounts(frame);
  const inFrame = await s.widgetFrameHandle(page);
  const initializes = () => inFrame.evaluate(() => window.__sent.map((x) => x.apdu).filter((a) => a.startsWith('8050')));
  const disabled = () => approve.getAttribute('aria-disabled');
  const hostileClick = async (label) => {
    // A real press and click at Approve's place, as the shopper's would be.
    await approve.click({ force: true });
    await page.waitForTimeout(300);
    assert.deepEqual(await initializes(), [], `${label}: nothing sent to the card`);
    assert.equal(await inFrame.evaluate(() => document.querySelector('[data-screen]')?.dataset.screen), 'confirm', `${label}: still the amount`);
  };
  const hide = (css) => page.evaluate((c) => { document.querySelector('iframe[data-cardpay]').style.cssText += c; }, css);

  // 1. Transparent: seen for longer than the half second, still nothing counts.
  await hide(';opacity:0');
  await page.waitForTimeout(700);
  await hostileClick('opacity 0');
  assert.equal(await disabled(), 'true', 'transparent: Approve unavailable');
  await hostileClick('opacity 0, again');

  // 2. Opaque, but with the page's own (click-through) layer over it.
  await hide(';opacity:1');
  await page.evaluate(() => {
    const r = document.querySelector('iframe[data-cardpay]').getBoundingClientRect();
    const d = document.createElement('div');
    d.id = 'decoy';
    d.textContent = 'Click here to win';
    Object.assign(d.style, { position: 'fixed', left: `${r.left}px`, top: `${r.top}px`, width: `${r.width}px`, height: `${r.height}px`, background: 'rgba(255,255,255,0.9)', pointerEvents: 'none', zIndex: 10 });
    document.body.append(d);
  });
  await page.waitForTimeout(700);
  assert.equal(await disabled(), 'true', 'covered: Approve unavailable');
  await hostileClick('covered');

  // 3. Uncovered and clicked at once: not yet seen for half a second.
  await page.evaluate(() => document.getElementById('decoy').remove());
  await hostileClick('just uncovered');

  // 4. Clipped down to Approve (the payee and the amount cut away), opaque, uncovered.
  const cut = await inFrame.evaluate(() => Math.floor(document.querySelector('[data-action=approve]').getBoundingClientRect().top) - 2);
  await hide(`;clip-path:inset(${cut}px 0 0 0)`);
  await page.waitForTimeout(700);
  await hostileClick('clipped to Approve');
  assert.equal(await disabled(), 'true', 'clipped: Approve unavailable');
  await hide(';clip-path:none');

  // 5. Seen whole for half a second: the shopper's click pays, once.
  await s.approveCounts(frame);
  assert.equal(await disabled(), null);
  await approve.click();
  await s.waitEvent(page, 'result');
  assert.deepEqual(await initializes(), ['805002', '805001']);
  assert.equal(await balance(), before - 150);
  const v = (await txnView(txn)).body;
  assert.ok(['debited', 'confirmed', 'settled'].includes(v.state), v.state);
  await page.close();
});

test('a checkout that appears while the shopper types in the page takes none of the keys', async () => {
  // Keyjacking: a cross-origin frame that focuses one of its controls takes the
  // keyboard from the page. A page could mount the checkout while the shopper types in
  // its own form, so that their next Space or Enter lands on Approve. The widget moves
  // focus only when focus is in the frame already: every key stays in the page.
  const before = await balance();
  const { page, frame } = await openCheckout({ amount: 160 }, { watch: true });
  await page.evaluate(() => {
    const i = document.createElement('input');
    i.id = 'address';
    i.setAttribute('aria-label', 'Address');
    document.body.prepend(i);
  });
  await page.focus('#address');
  // Typing through the moment the checkout is ready, and well past half a second.
  const text = 'Flat 2, 12 Main Street, Springfield ';
  const typing = page.keyboard.type(text + text, { delay: 40 });
  await s.waitEvent(page, 'ready');
  await typing;
  await page.keyboard.press('Enter');
  await page.keyboard.press('Space');
  assert.equal(await page.inputValue('#address'), text + text + ' ', 'every key stayed in the page');
  const inFrame = await s.widgetFrameHandle(page);
  assert.equal(await inFrame.evaluate(() => window.__keys), 0, 'no key reached the frame');
  assert.deepEqual(await inFrame.evaluate(() => window.__sent.filter((x) => x.apdu.startsWith('8050'))), [], 'nothing sent to the card');
  assert.equal(await page.evaluate(() => (window.cardpayLog || []).filter((e) => e.event === 'result').length), 0);
  assert.equal(await balance(), before);
  // The shopper tabs in (here: focuses Approve) and pays with the keyboard.
  await s.approveCounts(frame);
  await frame.getByRole('button', { name: 'Approve payment' }).focus();
  await page.keyboard.press('Enter');
  await s.waitEvent(page, 'result');
  assert.equal(await balance(), before - 160);
  await page.close();
});

test('card pulled during the purchase: clear message, nothing taken, then it completes', async () => {
  const before = await balance();
  const { page, frame, txn } = await openCheckout({ amount: 2020 });
  await s.waitEvent(page, 'ready');
  await s.approve(frame);
  await frame.getByTestId('keypad').waitFor();
  await stack.removeCard();
  const err = await s.waitEvent(page, 'error', { timeoutMs: 15_000 });
  assert.equal(err.detail.code, 'card_removed');
  assert.match(await frame.getByRole('alert').textContent(), /taken out of the reader\. Nothing was charged/);
  await stack.insertCard();
  await frame.getByRole('button', { name: 'Approve payment' }).waitFor({ timeout: 15_000 });
  assert.equal((await txnView(txn)).status === 200 ? (await txnView(txn)).body.state : 'none', 'none');
  await s.approve(frame);
  await s.typePin(frame, s.PIN);
  await s.waitEvent(page, 'result');
  assert.equal(await balance(), before - 2020);
  await page.close();
});

test("the bridge's PIN rate limit: plain message, no PIN try spent, Try again brings the keypad back", async () => {
  // A profile whose bridge allows one PIN entry per 10 minutes (`bridge install --verify-burst 1`).
  const strict = await h.launchBrowser({
    bins, origins: [pay.origin], installArgs: ['--verify-burst', '1', '--verify-refill-secs', '600'],
  });
  try {
    const before = await balance();
    const first = await openCheckout({ amount: 2200 }, { context: strict.context });
    await s.waitEvent(first.page, 'ready');
    await s.approve(first.frame);
    await s.typePin(first.frame, s.PIN);
    await s.waitEvent(first.page, 'result');
    await first.page.close();
    assert.equal(await balance(), before - 2200);

    const { page, frame, txn } = await openCheckout({ amount: 2300 }, { context: strict.context });
    await s.waitEvent(page, 'ready');
    await s.approve(frame);
    await s.typePin(frame, s.PIN);
    const err = await s.waitEvent(page, 'error');
    assert.equal(err.detail.code, 'pin_rate_limited');
    assert.match(await frame.getByRole('alert').textContent(), /Too many PIN attempts/);
    await frame.getByRole('button', { name: 'Try again' }).click();
    await frame.getByTestId('keypad').waitFor();
    await frame.getByRole('button', { name: 'Cancel' }).click();
    await s.waitEvent(page, 'cancel');
    await page.close();
    assert.equal(await balance(), before - 2200);
    const v = await txnView(txn);
    assert.notEqual(v.body?.state, 'debited');
  } finally {
    await strict.close();
  }
  // no PIN try was spent: the next PIN entry (relaxed profile) has all three
  const { page, frame } = await openCheckout({ amount: 2400 });
  await s.waitEvent(page, 'ready');
  await s.approve(frame);
  await s.typePin(frame, '9999');
  const alert = frame.getByTestId('pin-error');
  await alert.waitFor();
  assert.equal(await alert.textContent(), 'Wrong PIN. 2 tries left.');
  await s.typePin(frame, s.PIN);
  await s.waitEvent(page, 'result');
  await page.close();
});

test('no extension: the install link is shown', async () => {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: h.chromiumPath,
    headless: false,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run'],
    env: { ...process.env, HOME: await h.trustingHome() }, // trusts the test CA (https)
  });
  try {
    const page = await browser.newPage();
    await page.goto(shop.url('/checkout?amount=300'));
    const ready = await s.waitEvent(page, 'ready');
    assert.equal(ready.detail.capability, 'no_extension');
    const link = s.widgetFrame(page).getByRole('link', { name: 'Install the Cardpay extension' });
    await link.waitFor();
    assert.match(await link.getAttribute('href'), /install/);
  } finally {
    await browser.close();
  }
});

test('extension without the bridge: no_bridge, with the install link', async () => {
  const other = await h.launchBrowser({ bins, origins: [pay.origin], install: false });
  try {
    const page = await other.context.newPage();
    await page.goto(shop.url('/checkout?amount=300'));
    const ready = await s.waitEvent(page, 'ready');
    assert.equal(ready.detail.capability, 'no_bridge');
    await s.widgetFrame(page).getByRole('link', { name: 'Install the Cardpay extension' }).waitFor();
    assert.match(await s.widgetFrame(page).getByTestId('capability').textContent(), /reader software is not/);
  } finally {
    await other.close();
  }
});

test("a browser that takes gzip only gets each file of every build as the build's gzip copy, which unpacks to the file", async () => {
  const dir = await s.buildDir();
  const built = s.buildNames().flatMap((n) => [`${n}.js`, `${n}_bg.wasm`]);
  const files = ['/checkout.js', '/widget.html', ...['widget-boot.js', 'widget.css', ...built].map((f) => dir + f)];
  const ca = await readFile(h.testCa.caFile);
  for (const f of files) {
    // node's https: the raw bytes as sent (fetch would unpack them itself).
    const { headers, body } = await new Promise((resolve, reject) => {
      get(pay.url(f), { ca, headers: { 'accept-encoding': 'gzip' } }, (res) => {
        const parts = [];
        res.on('data', (c) => parts.push(c));
        res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(parts) }));
      }).on('error', reject);
    });
    assert.equal(headers['content-encoding'], 'gzip', f);
    const file = await readFile(path.join(s.wwwDir, f));
    assert.deepEqual(body, await readFile(path.join(s.wwwDir, f + '.gz')), `${f}: the build's copy`);
    assert.ok(body.length < file.length, `${f}: smaller`);
    assert.ok(gunzipSync(body).equals(file), `${f}: unpacks to the file`);
  }
});
