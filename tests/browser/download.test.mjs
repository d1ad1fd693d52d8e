// Issue 9's download budget, held: what a shopper's browser downloads for a checkout or
// a bank's load page (wasm + JS + HTML + CSS: checkout.js, widget.html, the boot script,
// the style sheet, the glue and the wasm of the frame's mode and language), as the
// build's gzip copies the payment server sends a browser that takes gzip, is at most
// 60,000 B in every shopper language. The same count as `node checkout-bench.mjs
// --sizes`. No browser: it reads the built www/ (scripts/test.sh builds it first).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as s from './checkout-support.mjs';

const BUDGET = 60_000;

for (const mode of ['purchase', 'load']) {
  test(`a ${mode} frame's download is at most ${BUDGET} B gzipped in every language`, async () => {
    for (const { l, sizes } of await s.perLanguage(s.wwwDir, mode)) {
      const list = sizes.map((x) => `${x.f} ${x.gz}`).join(', ');
      assert.equal(sizes.length, 6, `${mode}/${l}: the six files are built (${list})`);
      assert.ok(sizes.every((x) => x.copy), `${mode}/${l}: each file has the build's gzip copy (${list})`);
      const gz = sizes.reduce((a, x) => a + x.gz, 0);
      assert.ok(gz <= BUDGET, `${mode}/${l}: ${gz} B gzipped, over ${BUDGET} B (${list})`);
    }
  });
}
