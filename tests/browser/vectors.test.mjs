// The protocol's test vectors (tests/vectors/purchase.json, named in
// docs/protocol.md), recomputed by the Node test merchant with node:crypto only:
// the merchant's side (canonical session, session MAC, DK, ETSK, result M,
// expected S3, webhooks, merchant API signatures) and, as an outside
// implementation would, the card's side (EMV option A keys, session key,
// ISO/IEC 9797-1 MAC algorithm 3 with padding method 2, S2, S3, check value).
// The Rust side checks the same file (purse/tests/vectors.rs). No browser.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createHash, createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as s from './checkout-support.mjs';

const file = path.join(s.repoRoot, 'tests', 'vectors', 'purchase.json');
const v = JSON.parse(await readFile(file, 'utf8'));
const hex = (b) => Buffer.from(b).toString('hex');
const buf = (h) => Buffer.from(h, 'hex');

// ---- DES with node:crypto's 2-key 3DES (des-ede); single DES is K1||K1 ----
function ede(key16, block) {
  const c = createCipheriv('des-ede', key16, null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(block), c.final()]);
}
function desCbcLastBlock(k1, data) {
  const c = createCipheriv('des-ede-cbc', Buffer.concat([k1, k1]), Buffer.alloc(8));
  c.setAutoPadding(false);
  const out = Buffer.concat([c.update(data), c.final()]);
  return out.subarray(out.length - 8);
}
function oddParity(k) {
  return Buffer.from([...k].map((b) => {
    let ones = 0;
    for (let i = 1; i < 8; i++) ones += (b >> i) & 1;
    return (b & 0xfe) | (ones % 2 === 0 ? 1 : 0);
  }));
}
/** ISO/IEC 9797-1 MAC algorithm 3, padding method 2 (80 00..). */
function retailMac(key16, data) {
  const padded = Buffer.concat([data, Buffer.from([0x80]), Buffer.alloc((8 - ((data.length + 1) % 8)) % 8)]);
  const k1 = key16.subarray(0, 8);
  const head = padded.subarray(0, padded.length - 8);
  const last = padded.subarray(padded.length - 8);
  const h = head.length ? desCbcLastBlock(k1, head) : Buffer.alloc(8);
  const x = Buffer.from(last.map((b, i) => b ^ h[i]));
  return ede(key16, x);
}

test('retail MAC (ISO/IEC 9797-1 alg. 3, padding 2)', () => {
  assert.equal(hex(retailMac(buf(v.retail_mac.key), buf(v.retail_mac.data))), v.retail_mac.mac);
});

test('card keys, session key, S2, S3, DEBIT and the log record', () => {
  const id = buf(v.card.card_id);
  const mk = buf(v.keys.mkp);
  const kp = oddParity(Buffer.concat([ede(mk, id), ede(mk, Buffer.from(id.map((b) => ~b & 0xff)))]));
  assert.equal(hex(kp), v.card.kp);
  const atc = Buffer.alloc(2);
  atc.writeUInt16BE(v.card.atc);
  const r = buf(v.card.random);
  const sk = Buffer.concat([
    ede(kp, Buffer.concat([r, atc, Buffer.from([0xf0, 0x00])])),
    ede(kp, Buffer.concat([r, atc, Buffer.from([0x0f, 0x00])])),
  ]);
  assert.equal(hex(sk), v.card.sk);
  assert.equal(hex(retailMac(sk, buf(v.card.s2.input))), v.card.s2.mac);
  assert.equal(hex(retailMac(sk, buf(v.card.s3.input))), v.card.s3.mac);
  // DEBIT carries S2 last; the card answers balance after || S3 || 9000; the
  // log record ends with that S3.
  assert.ok(v.card.debit_apdu.endsWith(v.card.s2.mac + '0c'));
  assert.ok(v.card.debit_response.endsWith(v.card.s3.mac + '9000'));
  assert.ok(v.card.log_record.endsWith(v.card.s3.mac));
  assert.equal(buf(v.card.log_record).length, 37);
});

test('the card proves itself: KL, load session key, S1 of INITIALIZE FOR LOAD 0', () => {
  const id = buf(v.card.card_id);
  const mk = buf(v.keys.mkl);
  const kl = oddParity(Buffer.concat([ede(mk, id), ede(mk, Buffer.from(id.map((b) => ~b & 0xff)))]));
  const p = v.card.proof;
  assert.equal(hex(kl), p.kl);
  const atc = Buffer.alloc(2);
  atc.writeUInt16BE(p.atc);
  const r = buf(p.random);
  const sk = Buffer.concat([
    ede(kl, Buffer.concat([r, atc, Buffer.from([0xf0, 0x00])])),
    ede(kl, Buffer.concat([r, atc, Buffer.from([0x0f, 0x00])])),
  ]);
  assert.equal(hex(sk), p.sk);
  // S1 = MAC(balance || amount 0 || ATC || terminal), the answer's last 8 bytes.
  const bal = buf(p.initialize_load).subarray(0, 4);
  const want = Buffer.concat([bal, Buffer.alloc(4), atc, buf(v.session.terminal)]);
  assert.equal(p.s1.input, hex(want));
  assert.equal(hex(retailMac(sk, want)), p.s1.mac);
  assert.ok(p.initialize_load.endsWith(p.s1.mac));
  // The purchase's ATC is the proven one plus 1, and the draw request carries the proof.
  assert.equal(v.card.atc, p.atc + 1);
  const draw = v.sealed.find((x) => x.name === 'draw_request');
  assert.equal(JSON.parse(draw.plaintext).initialize_load, p.initialize_load);
});

test('client-mode check value', () => {
  const c = v.check_value;
  const bal = Buffer.alloc(4);
  bal.writeUInt32BE(c.balance_after);
  const got = createHash('sha256').update('cardpay/s3-check').update(c.txn_id).update(bal).update(buf(c.s3)).digest('hex');
  assert.equal(got, c.value);
});

test('session: canonical bytes, DK, ETSK, session MAC (the Node merchant)', () => {
  assert.equal(hex(s.canonicalSession(v.session)), v.session_canonical);
  const dk = s.deriveDk(v.keys.k_mp, v.session.txn_id, v.session.merchant_id);
  assert.equal(hex(dk), v.dk.okm);
  const etsk = s.sealGcm(dk, v.etsk.aad, buf(v.keys.tsk), buf(v.etsk.nonce));
  assert.equal(hex(etsk), v.etsk.sealed);
  const mac = createHmac('sha256', buf(v.keys.k_mp)).update(s.canonicalSession(v.session)).update(etsk).digest('hex');
  assert.equal(mac, v.session_mac);
});

test('sealed messages: same bytes, and they open', () => {
  const dk = s.deriveDk(v.keys.k_mp, v.session.txn_id, v.session.merchant_id);
  const keys = { tsk: buf(v.keys.tsk), dk };
  assert.equal(v.sealed.length, 8);
  for (const m of v.sealed) {
    assert.equal(m.aad, `cardpay/${m.label}/${v.session.txn_id}`, m.name);
    const sealed = s.sealGcm(keys[m.key], m.aad, Buffer.from(m.plaintext, 'utf8'), buf(m.nonce));
    assert.equal(hex(sealed), m.sealed, m.name);
    const plain = s.openGcm(keys[m.key], m.aad, buf(m.sealed)).toString('utf8');
    assert.equal(plain, m.plaintext, m.name);
    assert.equal(JSON.parse(plain).txn_id, v.session.txn_id, m.name);
    // Another label does not open it.
    assert.throws(() => s.openGcm(keys[m.key], `cardpay/x/${v.session.txn_id}`, buf(m.sealed)), m.name);
  }
});

test('webhook key and signature, merchant API signature', () => {
  const kwh = s.webhookKey(v.keys.k_mp, v.session.merchant_id);
  assert.equal(hex(kwh), v.webhook.k_wh);
  assert.equal(s.webhookSignature(kwh, v.webhook.timestamp, v.webhook.event_id, v.webhook.body), v.webhook.signature);
  const a = v.merchant_api;
  assert.equal(s.merchantApiSignature(v.keys.k_mp, a.method, a.path, a.timestamp, a.body), a.signature);
});
