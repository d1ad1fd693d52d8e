// Where a checkout's milliseconds go on the widget frame's main thread: a Chromium trace
// (DevTools protocol `Tracing`) of one page load and purchase on the real stack (the
// stack of checkout-bench.mjs), printed as a timeline of the frame's messages — each
// bridge request as the widget posts it, as it reaches the extension's content script
// (which runs on the same thread), and its answer — between the renderer main thread's
// tasks of 0.3 ms or more, with what each task spent its time on.
//
//   node checkout-trace.mjs [WARM]          (WARM page loads first, default 3; the last
//                                            load is traced)
//   node checkout-trace.mjs --out FILE      also keep the trace (chrome://tracing, Perfetto)
//
// What it found (docs/widget.md, "Figures"): the bench's own polling of the shop page and
// the widget's render ran between a request's post and its delivery to the content script.
// Tracing costs time itself: read the order of things and their shares, not the totals.

import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import * as s from './checkout-support.mjs';

const { h } = s;
const warm = Number(process.argv.slice(2).find((x) => /^\d+$/.test(x)) || 3);
const outAt = process.argv.indexOf('--out');
const out = outAt >= 0 ? process.argv[outAt + 1] : null;

// User-timing marks in the widget frame: its bridge traffic and the page's messages.
const markScript = `(() => {
  if (!location.pathname.endsWith('/widget.html')) return;
  const post = window.postMessage.bind(window);
  window.postMessage = function (m, o) {
    if (m && m.dir === 'to-extension') performance.mark('sent ' + m.type + (m.apdu ? ' ' + m.apdu.slice(0, 4) : '') + ' #' + m.id);
    return post(m, o);
  };
  addEventListener('message', (e) => {
    const m = e.data;
    if (m && m.dir === 'from-extension') performance.mark('answer ' + (m.id != null ? '#' + m.id : m.event));
    else if (m && m.dir === 'to-extension') performance.mark('at the content script #' + m.id);
    else if (m && typeof m.type === 'string') performance.mark('page: ' + m.type);
  }, true);
})();`;

const bins = await s.buildAll({ release: true });
const stack = await h.startStack({ bins });
const merchant = { id: 'trace-shop', name: 'Trace Shop', key: randomBytes(32).toString('hex') };
const shopPort = await s.freePort();
const pay = await s.startPaymentServer({ bin: bins.paymentServer, merchants: [{ ...merchant, origins: [s.localOrigin(shopPort)] }], corsOrigins: [s.localOrigin(shopPort)] });
const shop = await s.startTestMerchant({ pay, merchant, port: shopPort });
const br = await h.launchBrowser({ bins, origins: [pay.origin], installArgs: s.BENCH_INSTALL_ARGS });
let trace;
try {
  await br.context.addInitScript(markScript);
  await s.tellEventsOnConsole(br.context);
  for (let i = 0; i <= warm; i++) {
    const page = await br.context.newPage();
    const widgetEvent = s.consoleEvents(page);
    const last = i === warm;
    const cdp = last ? await br.context.newCDPSession(page) : null;
    if (cdp) {
      await cdp.send('Tracing.start', {
        transferMode: 'ReturnAsStream',
        traceConfig: { includedCategories: ['toplevel', 'devtools.timeline', 'disabled-by-default-devtools.timeline', 'v8.execute', 'blink.user_timing', 'loading', 'blink'], excludedCategories: ['*'] },
      });
    }
    await page.goto(shop.url('/checkout?amount=10'));
    await widgetEvent('ready');
    const frame = await s.widgetFrameHandle(page);
    // Approve counts once the frame has been seen for half a second (not timed).
    await s.approveCounts(frame);
    await page.waitForTimeout(100); // the Approve part apart from the load's
    await frame.evaluate(() => { performance.mark('Approve clicked'); document.querySelector('[data-action=approve]').click(); });
    await widgetEvent('result');
    await page.waitForTimeout(50);
    if (cdp) {
      const done = new Promise((r) => cdp.once('Tracing.tracingComplete', r));
      await cdp.send('Tracing.end');
      const { stream } = await done;
      let data = '';
      for (;;) {
        const c = await cdp.send('IO.read', { handle: stream });
        data += c.data;
        if (c.eof) break;
      }
      trace = JSON.parse(data);
      if (out) await writeFile(out, data);
    }
    await page.close();
  }
} finally {
  await br.close();
  await shop.close();
  await pay.stop();
  await stack.stop();
}

// The timeline: the thread that made the frame's marks, from the widget frame's start.
const events = trace.traceEvents || trace;
const marks = events.filter((e) => (e.cat || '').includes('blink.user_timing') && /^(sent|answer|at the|page:|Approve)/.test(e.name)).sort((a, b) => a.ts - b.ts);
if (!marks.length) throw new Error('no marks in the trace');
const [pid, tid] = [marks[0].pid, marks[0].tid];
const onThread = events.filter((e) => e.pid === pid && e.tid === tid && e.ph === 'X').sort((a, b) => a.ts - b.ts || b.dur - a.dur);
const t0 = marks[0].ts - 60_000;
const t1 = marks[marks.length - 1].ts + 1_000;
const tasks = [];
let end = -1;
for (const e of onThread) {
  if (e.ts < t0 || e.ts > t1 || e.ts < end) continue;
  tasks.push(e);
  end = e.ts + (e.dur || 0);
}
const WHAT = ['FunctionCall', 'EvaluateScript', 'TimerFire', 'RunMicrotasks', 'ParseHTML', 'UpdateLayoutTree', 'Layout', 'Paint', 'PrePaint', 'WebFrameWidgetImpl::UpdateLifecycle', 'v8.compileModule', 'v8.evaluateModule', 'MinorGC', 'MajorGC'];
const what = (task) => {
  const sum = new Map();
  for (const e of onThread) {
    if (e !== task && e.ts >= task.ts && e.ts < task.ts + task.dur && WHAT.includes(e.name)) sum.set(e.name, (sum.get(e.name) || 0) + e.dur);
  }
  return [...sum].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)}`).join(', ');
};
const ms = (ts) => ((ts - marks[0].ts) / 1000).toFixed(1).padStart(7);
const rows = [
  ...marks.map((m) => ({ ts: m.ts, line: `${ms(m.ts)}         ${m.name}` })),
  ...tasks.filter((t) => t.dur >= 300).map((t) => ({ ts: t.ts, line: `${ms(t.ts)} ${(t.dur / 1000).toFixed(1).padStart(6)}  task: ${what(t)}` })),
].sort((a, b) => a.ts - b.ts);
console.log('the widget frame\'s main thread, ms from its first mark (task: start, duration, what it spent the time on):');
for (const r of rows) console.log(r.line);
