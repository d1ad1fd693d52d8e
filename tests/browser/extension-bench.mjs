// Benchmark (not a test): round-trip time of one GET BALANCE APDU
//   page → content script → service worker → bridge → pcscd → vpcd → card and back,
// next to the same APDU sent directly over PC/SC (`bridge bench`).
// Run: node tests/browser/extension-bench.mjs [N]     (default N = 300)
import * as h from './lib/index.mjs';

const n = Number(process.argv[2] || process.env.CARDPAY_BENCH_N || 300);
const PAGE = '<!doctype html><title>pay</title><h1>Cardpay payment page</h1>';

const bins = await h.buildRust();
const stack = await h.startStack({ bins });
const site = await h.serve({ '/': PAGE });
// hundreds of APDUs in a row: lift the per-origin APDU rate limit for this profile only
const browser = await h.launchBrowser({
  bins,
  origins: [site.origin],
  installArgs: ['--apdu-burst', '100000', '--apdu-per-sec', '100000'],
});
try {
  const page = await browser.context.newPage();
  await page.goto(site.url('/'));
  await h.cardpayEvents(page);
  const c = await h.cardpayRequest(page, { type: 'connect', reader: stack.reader });
  if (!c.result) throw new Error(`connect: ${JSON.stringify(c)}`);
  const handle = c.result.handle;
  await h.transmit(page, handle, h.SELECT_CARDPAY);
  const times = await page.evaluate(async ([handle, n, apdu]) => {
    const out = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const r = await window.cardpayTest.request({ type: 'transmit', handle, apdu });
      out.push((performance.now() - t0) * 1000);
      if (!r.result) throw new Error(JSON.stringify(r));
    }
    return out;
  }, [handle, n, h.GET_BALANCE_MONEY]);
  await h.cardpayRequest(page, { type: 'disconnect', handle });
  await page.close();
  const direct = await h.runBridge(bins.bridge, ['bench', '--reader', stack.reader, '--n', String(n * 3)]);
  if (direct.code !== 0) throw new Error(direct.stderr);
  const d = JSON.parse(direct.stdout.trim().split('\n').pop());
  const f = (x) => x.toFixed(0).padStart(7);
  console.log(`GET BALANCE round trip (µs; page timer resolution is 100 µs), n=${n}:`);
  console.log(`  page → extension → bridge → pcscd → card   p50 ${f(h.percentile(times, 0.5))}   p99 ${f(h.percentile(times, 0.99))}`);
  console.log(`  direct PC/SC (bridge bench, n=${d.n})       p50 ${f(d.p50_us)}   p99 ${f(d.p99_us)}`);
} finally {
  await browser.close();
  await site.close();
  await stack.stop();
}
