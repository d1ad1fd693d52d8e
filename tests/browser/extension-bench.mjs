// Benchmark (not a test): round-trip time of one GET BALANCE APDU
//   page → content script → background script → bridge → pcscd → vpcd → card and back,
// in headless Chromium and headless Firefox (the extension as shipped, built by
// scripts/build-extension.sh), next to the same APDU sent directly over PC/SC
// (`bridge bench`), in one run on one card.
// Run: node tests/browser/extension-bench.mjs [N]     (default N = 300)
//      CARDPAY_BROWSERS=firefox node tests/browser/extension-bench.mjs   (one browser)
import * as h from './lib/index.mjs';

const n = Number(process.argv[2] || process.env.CARDPAY_BENCH_N || 300);
const PAGE = '<!doctype html><title>pay</title><h1>Cardpay payment page</h1>';

/** n GET BALANCEs from a payment page in `name`; per-APDU times in µs. */
async function measure(name, site, stack, bins) {
  const br = await h.openBrowser({
    browser: name,
    bins,
    origins: [site.origin],
    // hundreds of APDUs in a row: lift the per-origin APDU rate limit for this profile only
    installArgs: ['--apdu-burst', '100000', '--apdu-per-sec', '100000'],
    // Firefox rounds performance.now() to 1 ms unless told otherwise (Chromium: 100 µs)
    firefoxPrefs: { 'privacy.reduceTimerPrecision': false },
  });
  try {
    const page = await br.newPage();
    await page.goto(site.url('/'));
    const c = await h.cardpayRequest(page, { type: 'connect', reader: stack.reader });
    if (!c.result) throw new Error(`${name} connect: ${JSON.stringify(c)}`);
    const handle = c.result.handle;
    await h.transmit(page, handle, h.SELECT_CARDPAY);
    const times = await page.evaluate(async ([handle, n, apdu]) => {
      const out = [];
      for (let i = 0; i < n + 20; i++) {
        const t0 = performance.now();
        const r = await window.cardpayTest.request({ type: 'transmit', handle, apdu });
        if (i >= 20) out.push((performance.now() - t0) * 1000); // 20 warm-up round trips
        if (!r.result) throw new Error(JSON.stringify(r));
      }
      return out;
    }, [handle, n, h.GET_BALANCE_MONEY]);
    await h.cardpayRequest(page, { type: 'disconnect', handle });
    await page.close();
    return times;
  } finally {
    await br.close();
  }
}

const bins = await h.buildRust();
const stack = await h.startStack({ bins });
const site = await h.serve({ '/': PAGE });
try {
  const rows = [];
  for (const name of h.browsersToRun()) {
    const t = await measure(name, site, stack, bins);
    rows.push([`page → extension → bridge → card (${name})`, t.length, h.percentile(t, 0.5), h.percentile(t, 0.99), t.reduce((a, b) => a + b, 0) / t.length]);
  }
  const direct = await h.runBridge(bins.bridge, ['bench', '--reader', stack.reader, '--n', String(n * 3)]);
  if (direct.code !== 0) throw new Error(direct.stderr);
  const d = JSON.parse(direct.stdout.trim().split('\n').pop());
  rows.push(['direct PC/SC (bridge bench)', d.n, d.p50_us, d.p99_us, null]);
  const f = (x) => (x === null ? '      –' : x.toFixed(0).padStart(7));
  console.log('GET BALANCE round trip (µs; page timers: Chromium 100 µs resolution, Firefox with reduceTimerPrecision off):');
  console.log(`  ${'path'.padEnd(52)} ${'n'.padStart(5)}     p50     p99    mean`);
  for (const [what, count, p50, p99, mean] of rows) {
    console.log(`  ${what.padEnd(52)} ${String(count).padStart(5)} ${f(p50)} ${f(p99)} ${f(mean)}`);
  }
} finally {
  await site.close();
  await stack.stop();
}
