// The bridge's protections through the whole real path: headless Chromium +
// the unpacked extension + the bridge + pcscd/vpcd + the virtual card (with
// the opt-in decoy application and T=0 strict Le of card/src/decoy.rs).
//
// - budgets (PIN attempts, card transactions) survive a crash and restart of the bridge;
// - card transactions (INITIALIZE, the ATC) are limited per card: rate_limited;
//   the one reserved at SELECT is spent once, and given back at the disconnect;
// - another PC/SC program cannot select another application between the
//   page's INITIALIZE and VERIFY: it waits until the page releases the card;
// - the T=0 6Cxx retry changes only Le (the DEBIT's MAC proves the terminal id);
// - limit flags below their floor are refused by `bridge install`;
// - a page never spends the last PIN try, and `bridge pin` restores the tries.
//
// Run: cd tests/browser && node --test bridge-limits.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { promisify } from 'node:util';
import * as h from './lib/index.mjs';

const execFileP = promisify(execFile);

let bins, stack, site;
const browsers = [];

const PAGE = '<!doctype html><title>pay</title><h1>Cardpay payment page</h1>';
const VERIFY_1234 = '002000000431323334';
const VERIFY_9999 = '002000000439393939';
const SELECT_DECOY = '00A4040007A0000000031010';
const TERMINAL = '000000000001';
const amountHex = (n) => n.toString(16).toUpperCase().padStart(8, '0');
/** INITIALIZE FOR PURCHASE (money purse), with or without Le. */
const initialize = (amount, le = true) => `805001000A${amountHex(amount)}${TERMINAL}${le ? '0C' : ''}`;
const sw = (rapdu) => rapdu.slice(-4);

before(async () => {
  bins = await h.buildRust();
  await execFileP('cargo', ['build', '-p', 'bridge', '--example', 'other_program'], {
    cwd: h.repoRoot,
    env: { ...process.env, CARGO_TARGET_DIR: bins.target },
    maxBuffer: 64 << 20,
  });
  stack = await h.startStack({ bins });
  // a second application with PIN 0000, and a card that checks Le like a T=0 card
  await stack.command('personality {"app":{"pin":"0000","pin_tries_left":3},"strict_le":true}');
  site = await h.serve({ '/': PAGE });
});

after(async () => {
  for (const b of browsers) await b.close();
  if (site) await site.close();
  if (stack) await stack.stop();
});

async function launch(installArgs, env = {}) {
  const b = await h.launchBrowser({ bins, origins: [site.origin], installArgs, env });
  browsers.push(b);
  return b;
}

async function payPage(browser) {
  const page = await browser.context.newPage();
  await page.goto(site.url('/'));
  assert.equal((await h.detectExtension(page, { timeoutMs: 5000 })).present, true);
  return page;
}

async function connectSelect(page) {
  const c = await h.cardpayRequest(page, { type: 'connect', reader: stack.reader });
  assert.ok(c.result, JSON.stringify(c));
  const sel = await h.transmit(page, c.result.handle, h.SELECT_CARDPAY);
  assert.equal(sw(sel), '9000');
  return { handle: c.result.handle, select: sel.slice(0, -4) };
}

const send = (page, handle, apdu) => h.cardpayRequest(page, { type: 'transmit', handle, apdu });

async function facts() {
  return JSON.parse(await stack.command('facts'));
}

/** The pid of the bridge process serving this browser now (from its log). */
async function bridgePid(browser) {
  const pids = [...(await browser.bridgeLog()).matchAll(/bridge host \S+ \(pid (\d+)\)/g)].map((m) => Number(m[1]));
  assert.ok(pids.length, 'the bridge logged its pid');
  return pids[pids.length - 1];
}

/** A plain PC/SC client on the same machine (bridge/examples/other_program.rs). */
async function otherProgram() {
  const bin = path.join(bins.target, 'debug', 'examples', 'other_program');
  const child = spawn(bin, [stack.reader], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout });
  const queue = [];
  const waiters = [];
  lines.on('line', (l) => {
    const v = JSON.parse(l);
    const w = waiters.shift();
    if (w) w(v); else queue.push(v);
  });
  const next = () => new Promise((resolve) => (queue.length ? resolve(queue.shift()) : waiters.push(resolve)));
  const ready = await next();
  assert.equal(ready.ready, true, JSON.stringify(ready));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    /** Send without waiting: returns the promise of the answer. */
    send(hex) { child.stdin.write(`send ${hex}\n`); return next(); },
    reconnect() { child.stdin.write('reconnect\n'); return next(); },
    async close() { child.stdin.end(); await exited; },
  };
}

const within = (p, ms) => Promise.race([p, new Promise((r) => setTimeout(() => r('pending'), ms))]);

test('budgets survive a crash of the bridge, and card transactions are limited per card', async () => {
  const browser = await launch([
    '--verify-burst', '2', '--verify-refill-secs', '600',
    '--initialize-burst', '2', '--initialize-per-hour', '1',
  ]);
  const page = await payPage(browser);
  const { handle } = await connectSelect(page);
  assert.equal(sw(await h.transmit(page, handle, VERIFY_1234)), '9000');
  assert.equal(sw(await h.transmit(page, handle, VERIFY_1234)), '9000');
  const pin = await send(page, handle, VERIFY_1234);
  assert.equal(pin.error?.code, 'rate_limited', JSON.stringify(pin));
  assert.equal(pin.error.limit, 'verify');
  // two card transactions (amount 0: authentication only), then the per-card limit
  const atc = (await facts()).atc;
  assert.equal(sw(await h.transmit(page, handle, initialize(0))), '9000');
  assert.equal(sw(await h.transmit(page, handle, initialize(0))), '9000');
  const init = await send(page, handle, initialize(0));
  assert.equal(init.error?.code, 'rate_limited', JSON.stringify(init));
  assert.equal(init.error.limit, 'initialize');
  assert.ok(init.error.retry_after_ms > 3_500_000 && init.error.retry_after_ms <= 3_600_000, JSON.stringify(init));
  assert.match(init.error.message, /transaction numbers/);
  assert.equal((await facts()).atc, atc + 2, 'the refused INITIALIZE spent no transaction number');

  // the bridge dies (SIGKILL: it saves nothing on the way out)
  const pid = await bridgePid(browser);
  process.kill(pid, 'SIGKILL');
  await page.waitForFunction(() => window.cardpayTest.events.some((e) => e.event === 'bridge_disconnected'), null, { timeout: 5000 });
  // the next request starts a new bridge, which knows the budgets
  const again = await connectSelect(page);
  assert.notEqual(await bridgePid(browser), pid);
  const pin2 = await send(page, again.handle, VERIFY_1234);
  assert.equal(pin2.error?.code, 'rate_limited', `a restart gave the page new PIN attempts: ${JSON.stringify(pin2)}`);
  assert.ok(pin2.error.retry_after_ms > 500_000, JSON.stringify(pin2));
  const init2 = await send(page, again.handle, initialize(0));
  assert.equal(init2.error?.code, 'rate_limited', JSON.stringify(init2));
  assert.equal((await facts()).atc, atc + 2);
  await h.cardpayRequest(page, { type: 'disconnect', handle: again.handle });
  await page.close();
});

test('a card transaction reserved at SELECT: SELECT and disconnect loops spend nothing, each INITIALIZE one', async () => {
  // debug: the bridge logs which INITIALIZE used a reservation
  const browser = await launch(['--initialize-burst', '2', '--initialize-per-hour', '1'], { CARDPAY_BRIDGE_LOG: 'debug' });
  const page = await payPage(browser);
  // the bridge reserves one of the card's transactions at each SELECT and gives it
  // back at the disconnect: a page that loops spends nothing (a leak would show below)
  for (let i = 0; i < 6; i++) {
    const { handle } = await connectSelect(page);
    await h.cardpayRequest(page, { type: 'disconnect', handle });
  }
  const { handle } = await connectSelect(page);
  const atc = (await facts()).atc;
  // the first INITIALIZE spends the reservation, the second takes the last token
  assert.equal(sw(await h.transmit(page, handle, initialize(0))), '9000');
  assert.equal(sw(await h.transmit(page, handle, initialize(0))), '9000');
  // SELECT on another connection finds nothing to reserve: refused, the card untouched
  const other = await connectSelect(page);
  for (const hd of [handle, other.handle]) {
    const init = await send(page, hd, initialize(0));
    assert.equal(init.error?.code, 'rate_limited', JSON.stringify(init));
    assert.equal(init.error.limit, 'initialize');
  }
  assert.equal((await facts()).atc, atc + 2, 'more card transactions than the budget');
  assert.match(await browser.bridgeLog(), /\(reserved\)/, 'the first INITIALIZE did not use its reservation');
  for (const hd of [handle, other.handle]) await h.cardpayRequest(page, { type: 'disconnect', handle: hd });
  await page.close();
});

test('another PC/SC program cannot redirect the VERIFY between INITIALIZE and VERIFY', async () => {
  const browser = await launch(['--verify-burst', '10']);
  const page = await payPage(browser);
  const other = await otherProgram();
  try {
    const { handle } = await connectSelect(page);
    const before = await facts();
    // 25.00 is above the no-PIN limit (20.00): the card asks for the PIN
    assert.equal(sw(await h.transmit(page, handle, initialize(2500))), '6982');
    // now the other program selects its application ... and has to wait
    const selected = other.send(SELECT_DECOY);
    assert.equal(await within(selected, 500), 'pending', 'the other program reached the card in the page\'s session');
    assert.equal(sw(await h.transmit(page, handle, VERIFY_1234)), '9000');
    assert.equal(sw(await h.transmit(page, handle, initialize(2500))), '9000');
    assert.equal(await within(selected, 100), 'pending');
    let f = await facts();
    assert.equal(f.decoy_pin_tries_left, 3, 'the PIN went to the other application');
    assert.equal(f.pin_tries_left, 3);
    assert.equal(f.atc, before.atc + 1);
    // the page releases the card: the other program gets it (after a reset)
    const rel = await h.cardpayRequest(page, { type: 'release', handle });
    assert.deepEqual(rel.result, {}, JSON.stringify(rel));
    const got = await within(selected, 3000);
    assert.notEqual(got, 'pending');
    assert.match(got.error || '', /ResetCard/, JSON.stringify(got));
    assert.equal((await other.reconnect()).ok, true);
    assert.equal((await other.send(SELECT_DECOY)).sw, '9000');
    // the page's next VERIFY: a new session, Cardpay selected again by the bridge
    assert.equal(sw(await h.transmit(page, handle, VERIFY_1234)), '9000');
    f = await facts();
    assert.equal(f.decoy_pin_tries_left, 3);
    await h.cardpayRequest(page, { type: 'disconnect', handle });
  } finally {
    await other.close();
    await page.close();
  }
});

test('the 6Cxx retry changes only Le: the DEBIT proves the terminal id reached the card unchanged', async () => {
  const browser = await launch([]);
  const page = await payPage(browser);
  const { handle, select } = await connectSelect(page); // SELECT with Le 00: 6C23, asked again with Le 23
  // GET BALANCE with Le 00: 6C04, asked again with Le 04
  assert.match(await h.transmit(page, handle, '805C000000'), /^[0-9A-F]{8}9000$/);
  // INITIALIZE without Le: the card answers 6C0C; the bridge adds Le, the data stays
  const init = await h.transmit(page, handle, initialize(500, false));
  assert.equal(sw(init), '9000', init);
  const debit = await stack.command(`debit 500 ${select} ${init.slice(0, -4)}`);
  const r = await h.transmit(page, handle, debit);
  assert.equal(sw(r), '9000', `DEBIT refused (6988 = the MAC over another terminal id): ${r}`);
  assert.equal((await facts()).log_terminals.at(-1), TERMINAL);
  await h.cardpayRequest(page, { type: 'disconnect', handle });
  await page.close();
});

test('limit flags below their floor are refused by bridge install', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cardpay-floors-'));
  try {
    for (const [flag, value, min] of [['--verify-refill-secs', '0', 1], ['--apdu-per-sec', '0', 1], ['--initialize-per-hour', '0', 1], ['--transaction-idle-ms', '10', 1000]]) {
      const r = await h.runBridge(bins.bridge, ['install', '--profile', dir, '--origin', site.origin, flag, value]);
      assert.notEqual(r.code, 0, `${flag} ${value} accepted`);
      assert.match(r.stderr, new RegExp(`${flag} must be at least ${min}`));
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a page never spends the last PIN try; bridge pin restores the tries', async () => {
  const browser = await launch(['--verify-burst', '10']);
  const page = await payPage(browser);
  const { handle } = await connectSelect(page);
  assert.equal(sw(await h.transmit(page, handle, VERIFY_9999)), '63C2');
  assert.equal(sw(await h.transmit(page, handle, VERIFY_9999)), '63C1');
  for (const apdu of [VERIFY_9999, VERIFY_1234]) {
    const r = await send(page, handle, apdu);
    assert.equal(r.error?.code, 'last_pin_try', JSON.stringify(r));
    assert.match(r.error.message, /bridge pin/);
  }
  assert.equal((await facts()).pin_tries_left, 1);
  await h.cardpayRequest(page, { type: 'disconnect', handle });
  const st = await h.cardpayRequest(page, { type: 'status' });
  assert.equal(st.result.card.pin_tries_left, 1, JSON.stringify(st));
  assert.match(st.result.message, /bridge pin/);
  // the shopper types the PIN at the bridge's own prompt (here: piped in)
  const out = await new Promise((resolve) => {
    const c = spawn(bins.bridge, ['pin', '--reader', stack.reader], { stdio: ['pipe', 'pipe', 'pipe'] });
    let text = '';
    c.stdout.on('data', (d) => { text += d; });
    c.stderr.on('data', (d) => { text += d; });
    c.on('exit', (code) => resolve({ code, text }));
    c.stdin.end('1234\n');
  });
  assert.equal(out.code, 0, out.text);
  assert.match(out.text, /PIN correct/);
  assert.match(out.text, /if this PIN is wrong, the card is blocked/);
  assert.equal((await facts()).pin_tries_left, 3);
  // and the page can pay with the PIN again
  const again = await connectSelect(page);
  assert.equal(sw(await h.transmit(page, again.handle, VERIFY_1234)), '9000');
  await h.cardpayRequest(page, { type: 'disconnect', handle: again.handle });
  await page.close();
});
