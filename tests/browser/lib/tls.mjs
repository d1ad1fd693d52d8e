// The browser tests run over https, as the shop and the payment server do in real
// use. Each test process makes a throw-away TEST CA with scripts/certs.sh
// (openssl; EC P-256; name-constrained to localhost, 127.0.0.0/8 and ::1) and
// one server certificate for 127.0.0.1/localhost/::1, which every server of the
// process uses (payment server, demo store, Node test pages).
//
// Who trusts the CA, for real (no certificate errors ignored anywhere):
// - Chromium: an NSS database in $HOME/.pki/nssdb of the throw-away HOME the test
//   browser is started with (Chromium on Linux takes locally trusted roots from
//   there; certutil from Debian's libnss3-tools) — trustChromiumHome();
// - Firefox: cert9.db in the test profile (certutil) — trustFirefoxProfile();
// - Node (fetch in the tests, undici): a global dispatcher whose roots are Node's
//   plus the CA. Node 20 reads NODE_EXTRA_CA_CERTS only at start, so this is set
//   in-process when this module loads.
// - the servers' own clients (store → payment server, payment server → webhooks):
//   their `ca_file` / DEMO_CA_FILE (checkout-support.mjs).

import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Agent, setGlobalDispatcher } from 'undici';

const execFileP = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const certsScript = path.join(root, 'scripts', 'certs.sh');
/** The nickname of the CA in the browsers' certificate databases. */
export const CA_NICKNAME = 'Cardpay TEST CA';

function makeTestCa() {
  const dir = mkdtempSync(path.join(tmpdir(), 'cardpay-test-ca-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const [caFile, certFile, keyFile] = execFileSync(certsScript, [dir], { encoding: 'utf8' }).trim().split('\n');
  return {
    dir,
    caFile,
    certFile,
    keyFile,
    caPem: readFileSync(caFile, 'utf8'),
    cert: readFileSync(certFile),
    key: readFileSync(keyFile),
  };
}

/** This process's test CA: { dir, caFile, certFile, keyFile, caPem, cert, key }. */
export const testCa = makeTestCa();

// Node's fetch (and so every `fetch` in the tests) trusts the CA too, besides Node's
// roots and NODE_EXTRA_CA_CERTS (which an explicit `ca` would otherwise drop).
const extra = process.env.NODE_EXTRA_CA_CERTS ? [readFileSync(process.env.NODE_EXTRA_CA_CERTS, 'utf8')] : [];
setGlobalDispatcher(new Agent({ connect: { ca: [...tls.rootCertificates, ...extra, testCa.caPem] } }));

async function certutil(args) {
  try {
    await execFileP('certutil', args);
  } catch (e) {
    if (e.code === 'ENOENT') {
      throw new Error('certutil is missing: apt-get install libnss3-tools (scripts/setup.sh installs it)');
    }
    throw new Error(`certutil ${args.join(' ')}: ${e.stderr || e.message}`);
  }
}

/** A new NSS database in `dir` in which `caFile` is a trusted root for TLS servers. */
export async function nssTrust(dir, caFile = testCa.caFile) {
  mkdirSync(dir, { recursive: true });
  await certutil(['-d', `sql:${dir}`, '-N', '--empty-password']);
  await certutil(['-d', `sql:${dir}`, '-A', '-t', 'C,,', '-n', CA_NICKNAME, '-i', caFile]);
}

/** Make `home` a HOME in which Chromium trusts the test CA ($HOME/.pki/nssdb). */
export function trustChromiumHome(home, caFile) {
  return nssTrust(path.join(home, '.pki', 'nssdb'), caFile);
}

/** Make `profile` a Firefox profile that trusts the test CA (cert9.db). */
export function trustFirefoxProfile(profile, caFile) {
  return nssTrust(profile, caFile);
}

let sharedHome;
/**
 * A throw-away HOME (one per process, removed at exit) whose NSS database trusts the
 * test CA: for a Chromium a test launches itself, e.g.
 * `chromium.launch({ …, env: { ...process.env, HOME: await trustingHome() } })`.
 */
export async function trustingHome() {
  if (!sharedHome) {
    const home = mkdtempSync(path.join(tmpdir(), 'cardpay-home-'));
    process.once('exit', () => rmSync(home, { recursive: true, force: true }));
    sharedHome = trustChromiumHome(home).then(() => home);
  }
  return sharedHome;
}
