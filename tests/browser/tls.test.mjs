// TLS as the browsers see it, in Chromium and in Firefox (no card needed): the test
// CA (lib/tls.mjs, made by scripts/certs.sh) is trusted for real — a page of the
// test servers loads over https — but only for what it may vouch for: a certificate
// it signed for a name outside its constraints (localhost, 127.0.0.0/8, ::1) is
// refused, and so is a server whose CA nobody trusts. Nothing here ignores a
// certificate error.
//
//   cd tests/browser && node --test tls.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as h from './lib/index.mjs';

const MARK = 'served-over-tls-4f2a';
const PAGE = `<!doctype html><title>${MARK}</title><p>${MARK}</p>`;
let dir, good, rogue, untrusted;

/** A server certificate for `name` signed by the CA in `caDir` (openssl CLI). */
function issue(caDir, name, out) {
  execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${out}.key`]);
  execFileSync('openssl', ['req', '-new', '-key', `${out}.key`, '-subj', `/CN=${name}`, '-out', `${out}.csr`]);
  const ext = `${out}.ext`;
  execFileSync('sh', ['-c', `printf 'subjectAltName=DNS:${name}\\nextendedKeyUsage=serverAuth\\n' > '${ext}'`]);
  execFileSync('openssl', ['x509', '-req', '-in', `${out}.csr`, '-CA', path.join(caDir, 'ca.pem'), '-CAkey', path.join(caDir, 'ca.key'),
    '-CAcreateserial', '-days', '30', '-extfile', ext, '-out', `${out}.pem`], { stdio: 'ignore' });
  return { key: readFileSync(`${out}.key`), cert: readFileSync(`${out}.pem`) + readFileSync(path.join(caDir, 'ca.pem')) };
}

async function listen(opts) {
  const s = createServer(opts, (req, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end(PAGE); });
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  return { port: s.address().port, close: () => new Promise((r) => { s.closeAllConnections(); s.close(r); }) };
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'cardpay-tls-test-'));
  good = await h.serve({ '/': PAGE });
  // Signed by the trusted test CA, but for a name it may not vouch for.
  rogue = await listen(issue(h.testCa.dir, 'shop.example', path.join(dir, 'rogue')));
  // Another CA's server certificate for 127.0.0.1: nobody trusts that CA.
  const other = path.join(dir, 'other-ca');
  execFileSync(h.certsScript, [other]);
  untrusted = await listen({ key: readFileSync(path.join(other, 'server.key')), cert: readFileSync(path.join(other, 'server.pem')) });
});

after(async () => {
  await good?.close();
  await rogue?.close();
  await untrusted?.close();
  rmSync(dir, { recursive: true, force: true });
});

const within = (p, ms, fallback) => Promise.race([p, new Promise((r) => setTimeout(() => r(fallback), ms))]);

/** Whether `url` shows our page in a new page of `br` (false: the browser refused it).
 *  A refused certificate is a navigation error, or an error page (Chromium's
 *  interstitial) in which scripts may never answer: every step is bounded. */
async function loads(br, url) {
  const page = await br.newPage();
  try {
    const resp = await page.goto(url, { timeout: 10_000 }).catch(() => null);
    if (!resp || !resp.ok()) return false;
    return (await within(page.title().catch(() => ''), 5_000, '')) === MARK;
  } finally {
    await within(page.close().catch(() => {}), 5_000);
  }
}

h.describeEachBrowser({ install: false, extension: false, ...h.MAP_SHOP_EXAMPLE }, (browser) => {
  test('the test CA is trusted for loopback names, and only for them', async () => {
    const br = browser();
    assert.ok(await loads(br, good.url('/')), `${good.url('/')} did not load over https`);
    assert.ok(await loads(br, `https://localhost:${good.port}/`), 'localhost did not load over https');
    assert.equal(await loads(br, `https://shop.example:${rogue.port}/`), false,
      'a certificate outside the CA\'s name constraints was accepted');
    assert.equal(await loads(br, `https://127.0.0.1:${untrusted.port}/`), false,
      'a certificate of an untrusted CA was accepted');
  });
});
