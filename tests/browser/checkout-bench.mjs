// Benchmark of the checkout widget in headless Chromium on the real stack
// (extension + bridge + pcscd + vpcd + virtual card, payment server on SQLite):
//  - gzipped size of what the shopper downloads (checkout.js, iframe page, CSS, JS glue, wasm):
//    a checkout's shopper (the purchase wasm) and, printed beside it, a bank's load page's
//    (the load wasm);
//  - time from the <script src=checkout.js> fetch start (and from navigation) to `ready`;
//  - time from the Approve click to the `result` event (p50/p99), purchases under
//    the card's no-PIN limit (the card dialogue + draw + debit + complete).
//
//  - a trace of both (phases, p50 over the runs): where the milliseconds go. Taken
//    from Resource/Navigation Timing and from the widget frame's own messages (an
//    init script in every frame timestamps the postMessage traffic between the widget
//    and the extension, the boot script's start, the wasm instantiation, and in the
//    shop page the frame's `cardpay:loaded`), so the widget is unchanged.
//  - the machine's speed at the time: a fixed JS loop timed in the same Chromium before
//    and after the counted checkouts, so runs of different hours can be compared.
//
//   node checkout-bench.mjs [N]        (default N = 30 purchases of 0.10 EUR)
//   node checkout-bench.mjs [N] --compare OTHER_WWW   A/B: a second payment server
//        serves OTHER_WWW (e.g. an older build) and the runs alternate between the two
//        in one browser, so both see the same machine load.
//   node checkout-bench.mjs [N] --compare OTHER_WWW --compare-extension OTHER_TREE [--compare-bridge BIN]
//        the compared side also runs another extension (built by OTHER_TREE's
//        scripts/build-extension.sh from OTHER_TREE/extension, e.g. `git archive` of an
//        older commit) and, if given, another bridge binary, in a browser of its own
//        (page loads still alternate, on the same card).
//   node checkout-bench.mjs [N] --compare OTHER_WWW --compare-server BIN
//        the compared side's payment server is another binary (e.g. an older commit's
//        release build: what it serves with the files counts too, such as headers)
//   --cross-site: the test shop on https://localhost:PORT, cross-site to the payment origin
//        (https://127.0.0.1:PORT) as a merchant's page is in production: Chromium puts
//        the widget frame in a renderer process of its own (default: same-site, one
//        main thread for the shop page and the frame)
//   --sizes: print the download sizes (of this build, and of OTHER_WWW with --compare)
//        and stop: no stack, no browser.
//   --debug: run the debug builds of the card, bridge and payment server (default:
//        release builds, what a shopper and an operator run; the widget itself is
//        always the release wasm that build-widget.sh writes).
//   --press MS: the shopper presses Approve with the mouse (trusted pointer events
//        from the browser) and lets go MS ms later, as a person does (a click's press
//        lasts tens of ms). The widget asks the card's proof at the press, so the
//        click finds it in. Approve is the click (when the button is released).
//        Default: the click is dispatched in the frame with no press before it
//        (`element.click()`: the proof then goes out after the click, as for Enter
//        on a focused Approve).
//   --floor: the compared side is the floor (floor-frame.js): a copy of this build's
//        www/ whose widget.html only runs a script that does what any widget in
//        DESIGN's architecture must wait for (the `loaded`/`init` handshake, `readers`
//        and `connect` before `ready`; at Approve the purchase's five serial round
//        trips, three card commands and two POSTs, with none of their work), no wasm,
//        timed in the same browser, page loads alternating: how far the build is above
//        what no build can go below on this machine at this hour.
//   --same-tab [compared]: each side loads all its checkouts in one tab it keeps
//        (with `compared`: only the compared side, so that one run sets a fresh tab
//        against a kept one: `--compare ../../www --same-tab compared`). Default: a
//        new tab for every checkout, as the figures of issue 9 have always been taken:
//        the tab's renderer is new, and the files come from the HTTP cache. In a kept
//        tab the renderer has run the checkout before and still holds its files in
//        its memory cache, as for a shopper who pays again in the same tab
//        (docs/widget.md, "Figures").

import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { copyFile, cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import path from 'node:path';
import * as s from './checkout-support.mjs';

const { h } = s;
const execFileP = promisify(execFile);
const pressAt = process.argv.indexOf('--press');
const pressMs = pressAt >= 0 ? Number(process.argv[pressAt + 1]) : 0;
if (pressAt >= 0 && !(pressMs > 0)) throw new Error('--press needs a number of ms > 0');
const N = Number(process.argv.slice(2).find((x, i, a) => /^\d+$/.test(x) && a[i - 1] !== '--press') || 30);
const cmp = process.argv.indexOf('--compare');
const floor = process.argv.includes('--floor');
if (floor && cmp >= 0) throw new Error('--floor is the compared side: not with --compare');
if (floor && process.argv.includes('--sizes')) throw new Error('--floor has no download of its own to size');

/** `--floor`: a copy of this build's www/ (in a temp dir) whose widget.html is the
 *  least a frame can be (its CSP, no style sheet, floor-frame.js as a classic script in
 *  the head, in the build's folder as the boot script is), served by the same payment
 *  server (which still sends its preloads of the build's files). */
async function floorWww() {
  const dir = await mkdtemp(path.join(tmpdir(), 'cardpay-bench-floor-'));
  await cp(s.wwwDir, dir, { recursive: true, preserveTimestamps: true });
  const { version } = JSON.parse(await readFile(path.join(dir, 'pkg', 'manifest.json'), 'utf8'));
  const boot = path.join(dir, 'pkg', version, 'widget-boot.js');
  const html = path.join(dir, 'widget.html');
  await copyFile(new URL('./floor-frame.js', import.meta.url), boot);
  await writeFile(html, `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'self'; connect-src 'self'">
<title>Cardpay</title><script src="pkg/${version}/widget-boot.js"></script></head>
<body><main id="cardpay-root"></main></body></html>
`);
  // (the server would send a browser the build's compressed copies)
  for (const f of [boot, html]) for (const z of ['.gz', '.br']) await rm(f + z, { force: true });
  return dir;
}
const otherWww = cmp >= 0 ? path.resolve(process.argv[cmp + 1]) : floor ? await floorWww() : null;
const argOf = (name) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? path.resolve(process.argv[i + 1]) : null;
};
const otherTree = argOf('--compare-extension');
const otherBridge = argOf('--compare-bridge');
const otherServer = argOf('--compare-server');
const shopHost = process.argv.includes('--cross-site') ? 'localhost' : '127.0.0.1';
const sameTabAt = process.argv.indexOf('--same-tab');
const sameTab = sameTabAt < 0 ? 'none' : process.argv[sameTabAt + 1] === 'compared' ? 'compared' : 'all';
if (sameTab === 'compared' && cmp < 0) throw new Error('--same-tab compared needs --compare');

function printSizes(label, langs) {
  const gz = (x) => x.sizes.reduce((a, y) => a + y.gz, 0);
  const served = (x) => x.sizes.reduce((a, y) => a + (y.br ?? y.raw), 0);
  const largest = langs.reduce((a, x) => (gz(x) > gz(a) ? x : a));
  console.log(`== ${label}`);
  const gz9 = (x) => x.sizes.reduce((a, y) => a + y.gz9, 0);
  console.log(`download of the largest language (${largest.l}), gzip: the build's gzip copy the payment server sends a browser that takes gzip (node's gzip -9 where the build wrote none); and the brotli copy it sends Chromium, where the build wrote one:`);
  for (const x of largest.sizes) console.log(`  ${x.f.padEnd(24)} ${String(x.raw).padStart(8)} B  → ${String(x.gz).padStart(7)} B gz${x.br ? `, ${String(x.br).padStart(7)} B br` : ''}`);
  console.log(`  per shopper language: ${langs.map((x) => `${x.l} ${gz(x)}`).join(', ')} B gz`);
  console.log(`  total (wasm + JS + HTML + CSS), the largest language → ${gz(largest)} B gz (${(gz(largest) / 1024).toFixed(1)} KiB); node's gzip -9 of the same files: ${gz9(largest)} B`);
  if (largest.sizes.some((x) => x.br)) {
    const plain = largest.sizes.filter((x) => !x.br).map((x) => x.f);
    const most = Math.max(...langs.map(served));
    console.log(`  as served to Chromium (the brotli copies${plain.length ? `; ${plain.join(', ')} as it is: no copy` : ''}), per shopper language: ${langs.map((x) => `${x.l} ${served(x)}`).join(', ')} B; the largest → ${most} B (${(most / 1024).toFixed(1)} KiB)`);
  }
}

const otherLabel = floor ? 'the floor (floor-frame.js: no widget, only the round trips any widget waits for)' : 'compared (' + otherWww + ')';
const wwws = [['this build', s.wwwDir], ...(otherWww ? [[otherLabel, otherWww]] : [])];
if (process.argv.includes('--sizes')) {
  // The headline is a checkout's shopper (issue 9); a bank's load page follows.
  for (const [mode, who] of [['purchase', "a checkout's shopper (mode purchase)"], ['load', "a bank's load page (mode load)"]]) {
    for (const [label, www] of wwws) {
      printSizes(`${label}: ${who}`, await s.perLanguage(www, mode));
    }
  }
  process.exit(0);
}

const release = !process.argv.includes('--debug');
const bins = await s.buildAll({ release });
console.log(`binaries: ${bins.profile} builds of the card, bridge and payment server`);
const stack = await h.startStack({ bins });
const variants = [];
for (const [label, www] of wwws) {
  const merchant = { id: 'bench-shop', name: 'Bench Shop', key: randomBytes(32).toString('hex') };
  const shopPort = await s.freePort();
  const bin = variants.length > 0 && otherServer ? otherServer : bins.paymentServer;
  const shopOrigin = s.localOrigin(shopPort, shopHost);
  const pay = await s.startPaymentServer({ bin, merchants: [{ ...merchant, origins: [shopOrigin] }], www, corsOrigins: [shopOrigin] });
  const shop = await s.startTestMerchant({ pay, merchant, port: shopPort, www, host: shopHost });
  const keepTab = sameTab === 'all' || (sameTab === 'compared' && variants.length > 0);
  variants.push({ label: label + (keepTab ? ', one tab kept for all its checkouts' : ''), www, floor: floor && variants.length > 0, pay, shop, keepTab, langs: await s.perLanguage(www), traces: [], toReady: [], navToReady: [], approveToResult: [] });
}
// The bench's limits: APDU rate and card transactions an hour (not what is measured).
const installArgs = s.BENCH_INSTALL_ARGS;
const browsers = [];
if (otherTree || otherBridge) {
  // One browser per side: this build's extension and bridge, and the compared ones.
  for (const [i, v] of variants.entries()) {
    let extension;
    if (i > 0 && otherTree) {
      extension = await mkdtemp(path.join(tmpdir(), 'cardpay-bench-ext-'));
      await execFileP(path.join(otherTree, 'scripts', 'build-extension.sh'), ['--origin', v.pay.origin, '--out', extension]);
    }
    const b = i > 0 && otherBridge ? { ...bins, bridge: otherBridge } : bins;
    v.extension = extension;
    v.br = await h.launchBrowser({ bins: b, origins: [v.pay.origin], extension, installArgs });
    browsers.push(v.br);
  }
} else {
  const br = await h.launchBrowser({ bins, origins: variants.map((v) => v.pay.origin), installArgs });
  for (const v of variants) v.br = br;
  browsers.push(br);
}

for (const b of browsers) {
  await b.context.addInitScript(s.frameTraceScript);
  await s.tellEventsOnConsole(b.context);
}

/** How fast this machine runs JavaScript right now, in the bench's own Chromium: a
 *  fixed integer loop (3·10⁷ steps) in a blank tab, p50 of five, in ms (lower is
 *  faster). The same build's figures move with the machine's speed from hour to hour
 *  (docs/widget.md, "Figures"); this line lets runs of different hours be set side by
 *  side. Taken after the warm-up checkouts (the browser's own start is over) and
 *  after the last one, outside every timed span. */
async function machineSpeed(br) {
  const page = await br.context.newPage();
  try {
    return h.percentile(await page.evaluate(() => Array.from({ length: 5 }, () => {
      const t0 = performance.now();
      let x = 0;
      for (let i = 0; i < 3e7; i++) x = (x * 31 + i) | 0;
      globalThis.sink = x;
      return performance.now() - t0;
    })), 0.5);
  } finally {
    await page.close();
  }
}

/** Press Approve with the mouse, let go `pressMs` later; the click's time (the
 *  frame's clock, absolute ms), taken by the frame as the click event comes in. */
async function pressApprove(page, frame) {
  await frame.evaluate(() => document.addEventListener('click', () => {
    window.__cpClickAt = performance.timeOrigin + performance.now();
  }, { capture: true, once: true }));
  await frame.locator('[data-action=approve]').hover();
  await page.mouse.down();
  await page.waitForTimeout(pressMs);
  await page.mouse.up();
  return frame.evaluate(() => window.__cpClickAt);
}

/** The phases of one page load and purchase, as durations in ms. */
async function trace(page, frame, scriptStart, readyAt, clickedAt, resultAt) {
  const pageOrigin = await page.evaluate(() => performance.timeOrigin);
  const res = await page.evaluate(() => performance.getEntriesByType('resource').map((e) => ({ name: e.name, start: e.startTime, end: e.responseEnd })));
  const f = await frame.evaluate(() => ({
    origin: performance.timeOrigin,
    nav: performance.getEntriesByType('navigation')[0].toJSON(),
    res: performance.getEntriesByType('resource').map((e) => ({ name: e.name, start: e.startTime, end: e.responseEnd })),
    log: window.__cpTrace || [],
  }));
  const abs = (o, x) => o + x;
  const cj = res.find((e) => e.name.endsWith('/checkout.js'));
  const r = (suffix) => f.res.find((e) => e.name.includes(suffix));
  const first = (ev, pred = () => true) => f.log.find((x) => x.ev === ev && pred(x));
  const sends = f.log.filter((x) => x.ev === 'send');
  const replyTo = (s) => s && f.log.find((x) => x.ev === 'reply' && x.id === s.id);
  const S = abs(pageOrigin, scriptStart);
  const out = {};
  const span = (name, a, b) => { if (a != null && b != null) out[name] = b - a; };
  span('checkout.js fetched', S, abs(pageOrigin, cj.end));
  span('→ iframe navigation starts', abs(pageOrigin, cj.end), f.origin);
  span('widget.html fetched', f.origin, abs(f.origin, f.nav.responseEnd));
  // Within it: before the request (a new connection, if any, is its connect span), the
  // server's answer, the body.
  span('  widget.html: connection (0: reused)', f.nav.connectStart, f.nav.connectEnd);
  span('  widget.html: frame start → request sent', 0, f.nav.requestStart);
  span('  widget.html: request sent → first byte', f.nav.requestStart, f.nav.responseStart);
  // (the glue and wasm: in pkg/ or the build's folder in it)
  for (const x of ['widget.css', 'widget-boot.js', 'pkg/widget.js', 'widget_bg.wasm']) {
    const e = r(x.replace('pkg/', '/'));
    if (e) span(`${x} (from frame start: requested)`, f.origin, abs(f.origin, e.start));
    if (e) span(`${x} (from frame start: loaded)`, f.origin, abs(f.origin, e.end));
  }
  const ws = first('wasm-start');
  const wr = first('wasm-ready');
  // The boot script runs when the frame's main thread gets to it (shared with the shop
  // page, same-site), well after its files are in: the wasm's bytes wait for it.
  const pageInit = first('init');
  // (before the page's `init`: the floor's first fetch is at Approve)
  const boot = first('boot', (x) => !pageInit || x.t < pageInit.t);
  const loadedAt = await page.evaluate(() => window.__cpLoadedAt);
  const wasmFile = r('_bg.wasm');
  span('frame start → boot script runs', f.origin, boot?.t);
  span('wasm fetched → its compile starts', wasmFile && abs(f.origin, wasmFile.end), ws?.t);
  span('boot script → its `loaded` at the page', boot?.t, loadedAt);
  span('`loaded` at the page → `init` at the frame', loadedAt, pageInit?.t);
  span('wasm compile+instantiate', ws?.t, wr?.t);
  span('wasm ready → init from page', wr?.t, pageInit?.t);
  span('frame start → init from page', f.origin, pageInit?.t);
  const pre = sends.filter((x) => x.t < clickedAt);
  const post = sends.filter((x) => x.t >= clickedAt);
  for (const sd of pre) span(`bridge ${sd.type}${sd.apdu ? ' ' + sd.apdu : ''}`, sd.t, replyTo(sd)?.t);
  // `ready` is told once the card is connected (SELECT and READ LOG follow it)
  // the widget's first request: `readers` (older builds asked `hello` first)
  const first1 = pre[0];
  const conn = pre.find((x) => x.type === 'connect');
  span('init from page → first bridge request sent', pageInit?.t, first1?.t);
  span('wasm ready → first bridge request sent', wr?.t, first1?.t);
  span('first bridge request sent → connect answered', first1?.t, replyTo(conn)?.t);
  span('connect answered → ready at page', replyTo(conn)?.t, readyAt);
  span('TOTAL script tag → ready', S, readyAt);
  const draw = r('/v1/purchases/draw');
  const comp = r('/v1/purchases/complete');
  // Two INITIALIZEs: FOR LOAD of amount 0 (P1 02: the card proves itself), then FOR
  // PURCHASE (P1 01); both at the press on Approve with --press (since 2026-12-02; the
  // proof alone before), else after the click.
  const init = sends.filter((x) => x.apdu === '8050' && x.p1 === '01' && x.t < (draw ? abs(f.origin, draw.start) : Infinity)).pop();
  const prove = sends.filter((x) => x.apdu === '8050' && x.p1 === '02' && (!init || x.t < init.t)).pop();
  const debit = post.find((x) => x.apdu === '8054');
  span('INITIALIZE FOR LOAD 0 (extension+bridge+card; at the press, or after the click)', prove?.t, replyTo(prove)?.t);
  span('INITIALIZE FOR PURCHASE (extension+bridge+card; right after it)', init?.t, replyTo(init)?.t);
  span('their answers → click (< 0: the click came first)', replyTo(init)?.t, clickedAt);
  if (init && init.t >= clickedAt) span('click → INITIALIZE FOR PURCHASE sent', clickedAt, init.t);
  const drawFrom = init && replyTo(init)?.t > clickedAt ? replyTo(init).t : clickedAt;
  span(drawFrom === clickedAt ? 'click → draw request starts' : '→ draw request starts', drawFrom, draw && abs(f.origin, draw.start));
  span('POST draw', draw && abs(f.origin, draw.start), draw && abs(f.origin, draw.end));
  span('→ DEBIT sent', draw && abs(f.origin, draw.end), debit?.t);
  span('DEBIT (extension+bridge+card)', debit?.t, replyTo(debit)?.t);
  span('→ complete request starts', replyTo(debit)?.t, comp && abs(f.origin, comp.start));
  span('POST complete', comp && abs(f.origin, comp.start), comp && abs(f.origin, comp.end));
  const compBody = f.log.find((x) => x.ev === 'body' && x.url.endsWith('/complete'));
  span('→ complete answer read by the widget', comp && abs(f.origin, comp.end), compBody?.t);
  span('→ result at page', compBody?.t ?? (comp && abs(f.origin, comp.end)), resultAt);
  span('TOTAL Approve → result', clickedAt, resultAt);
  return out;
}

/** The body bytes Chromium received for the frame's files (Resource and Navigation
 *  Timing `encodedBodySize`: compressed as sent) and what they decoded to, and for
 *  checkout.js, which the shop page fetches cross-origin: its sizes are 0 there unless
 *  the payment server sends `Timing-Allow-Origin` (since 2026-11-30). */
async function onTheWire(page) {
  const loader = await page.evaluate(() => performance.getEntriesByType('resource')
    .filter((e) => e.name.endsWith('/checkout.js'))
    .map((e) => ({ f: 'checkout.js', enc: e.encodedBodySize, dec: e.decodedBodySize })));
  return (await s.widgetFiles(page))
    .filter((e) => !e.path.startsWith('/v1/'))
    .map((e) => ({ f: e.path.split('/').pop(), enc: e.enc, dec: e.dec }))
    .concat(loader.filter((e) => e.dec > 0));
}

let speedBefore = null;
let speedAfter = null;
try {
  // The first two runs of each variant warm up (bridge start, caches) and are not counted.
  for (let i = 0; i < N + 2; i++) {
    if (i === 2) speedBefore = await machineSpeed(browsers[0]);
    for (const v of i % 2 ? [...variants].reverse() : variants) {
      // (a kept tab goes from the last checkout's result to the next checkout)
      const page = v.keepTab ? (v.tab ??= await v.br.context.newPage()) : await v.br.context.newPage();
      const widgetEvent = s.consoleEvents(page);
      await page.goto(v.shop.url('/checkout?amount=10'));
      const ready = await widgetEvent('ready').catch((e) => { throw new Error(`${v.label}, run ${i}: ${e.message}`); });
      if (ready.detail.capability !== 'ready') throw new Error(`${v.label}: not ready: ` + JSON.stringify(ready.detail));
      const scriptStart = await page.evaluate(() => performance.getEntriesByType('resource').find((e) => e.name.endsWith('/checkout.js')).startTime);
      const frame = page.frames().find((f) => f.url().includes('/widget.html'));
      // Approve counts once the frame has been seen for half a second (not timed).
      await s.approveCounts(frame);
      const readyAt = await page.evaluate((t) => performance.timeOrigin + t, ready.t);
      const clickedAt = pressMs > 0
        ? await pressApprove(page, frame)
        : await frame.evaluate(() => {
          const t = performance.timeOrigin + performance.now();
          document.querySelector('[data-action=approve]').click();
          return t;
        });
      const result = await widgetEvent('result');
      const resultAt = await page.evaluate((t) => performance.timeOrigin + t, result.t);
      await page.waitForTimeout(50); // let the frame's resource timing settle
      if (i === 0) {
        // the side's first page load: its browser's bridge is not running yet (with
        // --compare-extension/--compare-bridge each side has its own browser)
        v.cold = { toReady: ready.t - scriptStart, trace: await trace(page, frame, scriptStart, readyAt, clickedAt, resultAt) };
      }
      if (i === 2) v.wire = await onTheWire(page);
      if (i >= 2) {
        v.traces.push(await trace(page, frame, scriptStart, readyAt, clickedAt, resultAt));
        v.toReady.push(ready.t - scriptStart);
        v.navToReady.push(ready.t);
        v.approveToResult.push(resultAt - clickedAt);
      }
      if (!v.keepTab) await page.close();
    }
  }
  speedAfter = await machineSpeed(browsers[0]);
} finally {
  for (const b of browsers) await b.close();
  for (const v of variants) if (v.extension) await rm(v.extension, { recursive: true, force: true });
  if (floor) await rm(otherWww, { recursive: true, force: true });
  for (const v of variants) {
    await v.shop.close();
    await v.pay.stop();
  }
  await stack.stop();
}

const p = (v, q) => h.percentile(v, q).toFixed(1);
console.log('Cardpay checkout widget benchmark (headless Chromium, real stack)');
console.log(`machine speed (a fixed JS loop of 3e7 steps in this Chromium, p50 of 5; lower is faster): ${speedBefore?.toFixed(1) ?? '–'} ms before the counted checkouts, ${speedAfter.toFixed(1)} ms after them`);
for (const { label, langs, traces, toReady, navToReady, approveToResult, cold, wire, floor: isFloor } of variants) {
  if (isFloor) console.log(`== ${label}`);
  else printSizes(label, langs);
  if (wire && !isFloor) {
    const total = wire.reduce((a, x) => a + x.enc, 0);
    const loader = wire.some((x) => x.f === 'checkout.js') ? '' : ', + checkout.js (its size hidden: no Timing-Allow-Origin)';
    console.log(`  measured on the wire (encodedBodySize / decoded): ${wire.map((x) => `${x.f} ${x.enc}/${x.dec}`).join(', ')} → ${total} B${loader}`);
  }
  console.log(`script tag (checkout.js fetch start) → ready: p50 ${p(toReady, 0.5)} ms, p99 ${p(toReady, 0.99)} ms (n=${toReady.length})`);
  console.log(`navigation start → ready:                p50 ${p(navToReady, 0.5)} ms, p99 ${p(navToReady, 0.99)} ms`);
  console.log(`Approve → result (no PIN${pressMs ? `, pressed ${pressMs} ms` : ', click with no press'}): p50 ${p(approveToResult, 0.5)} ms, p99 ${p(approveToResult, 0.99)} ms (n=${approveToResult.length})`);
  if (cold) {
    const c = cold.trace;
    console.log(`first page load (the browser's bridge not yet running; not counted above): script tag → ready ${cold.toReady.toFixed(1)} ms, ` +
      Object.keys(c).filter((k) => /^bridge (hello|readers|connect)$|^first bridge request sent/.test(k)).map((k) => `${k} ${c[k].toFixed(1)} ms`).join(', '));
  }
  console.log('trace, p50 of each phase (ms; phases of the load overlap where files load in parallel):');
  const names = [...new Set(traces.flatMap((x) => Object.keys(x)))];
  for (const n of names) {
    const v = traces.map((x) => x[n]).filter((x) => x != null);
    if (v.length) console.log(`  ${n.padEnd(52)} ${h.percentile(v, 0.5).toFixed(1).padStart(7)}`);
  }
}
