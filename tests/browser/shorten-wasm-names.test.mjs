// scripts/shorten-wasm-names.mjs, the widget build's step that gives the names between
// wasm-bindgen's glue and the wasm short forms: on a small wasm and glue written the
// way wasm-bindgen writes them, the shortened pair still fits (the glue instantiates the
// wasm and a call goes through both imports), no long name is left in either; and a
// glue that does not fit its wasm fails the step with the name, leaving both files as
// they were. No browser: binaryen's wasm-as and wasm-opt from widget/.tools (installed
// by scripts/build-widget.sh).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const ROOT = new URL("../../", import.meta.url).pathname;
const BIN = join(ROOT, "widget/.tools/node_modules/.bin");
const SCRIPT = join(ROOT, "scripts/shorten-wasm-names.mjs");

// Two imports under wasm-bindgen's module name, with hashed names; an export under a
// mangled Rust path (with `$`, as legacy mangling writes `<` and `>`), and the memory.
const WAT = `(module
  (import "./demo_bg.js" "__wbg_plusone_0123456789abcdef" (func $one (param i32) (result i32)))
  (import "./demo_bg.js" "__wbg_times10_fedcba9876543210" (func $ten (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_ZN4demo3run$LT$T$GT$17h0011223344556677E") (param i32) (result i32)
    (i32.add (call $one (local.get 0)) (call $ten (local.get 0)))))`;

// The glue's shape as wasm-bindgen writes it before esbuild: the import object's keys,
// the module key, and exports read as `wasm.<name>`.
const GLUE = `let wasm;
function imports() {
  const import0 = {
    __proto__: null,
    __wbg_plusone_0123456789abcdef: function(x) { return x + 1; },
    __wbg_times10_fedcba9876543210: function(x) { return x * 10; },
  };
  return { __proto__: null, "./demo_bg.js": import0 };
}
export function init(bytes) {
  wasm = new WebAssembly.Instance(new WebAssembly.Module(bytes), imports()).exports;
  return wasm.memory.buffer.byteLength;
}
export function run(x) {
  return wasm._ZN4demo3run$LT$T$GT$17h0011223344556677E(x);
}
`;

// Each pair's folder, removed when the tests end.
const dirs = [];
after(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

function pair(glue = GLUE) {
  const dir = mkdtempSync(join(tmpdir(), "shorten-"));
  dirs.push(dir);
  const wat = join(dir, "demo.wat");
  const wasm = join(dir, "demo_bg.wasm");
  const js = join(dir, "demo.mjs");
  writeFileSync(wat, WAT);
  const as = spawnSync(join(BIN, "wasm-as"), [wat, "-o", wasm], { encoding: "utf8" });
  assert.equal(as.status, 0, as.stderr);
  writeFileSync(js, glue);
  return { dir, wasm, js };
}

function shorten({ js, wasm }) {
  return spawnSync("node", [SCRIPT, join(BIN, "wasm-opt"), js, wasm], { encoding: "utf8" });
}

test("the shortened glue and wasm still fit, with no long name left", async () => {
  const p = pair();
  const before = readFileSync(p.wasm);
  // The pair works before the step (the test's own glue is right).
  const original = await import(pathToFileURL(p.js) + "?before");
  original.init(before);
  assert.equal(original.run(2), 23);

  const r = shorten(p);
  assert.equal(r.status, 0, r.stderr);
  const wasm = readFileSync(p.wasm);
  const glue = readFileSync(p.js, "utf8");
  assert.ok(wasm.length < before.length, `${wasm.length} B, not less than ${before.length} B`);
  for (const long of ["__wbg_", "demo_bg.js", "_ZN4demo"]) {
    assert.ok(!glue.includes(long), `the glue still holds ${long}`);
    assert.ok(!wasm.includes(long), `the wasm still holds ${long}`);
  }
  const short = await import(pathToFileURL(p.js) + "?after");
  short.init(wasm);
  assert.equal(short.run(2), 23); // (2 + 1) + 2 × 10: both imports and the export
  assert.ok(!existsSync(p.wasm + ".short"));
});

test("a glue that does not fit its wasm fails the step, and both files stay", () => {
  const cases = [
    // An import of the wasm the glue has no function for.
    [GLUE.replace(/\n *__wbg_times10_\w+:.*\n/, "\n"), /__wbg_times10_fedcba9876543210: 0 keys/],
    // An export the glue reads that the wasm does not have.
    [GLUE.replace("return wasm.memory", "return wasm.table"), /reads wasm\.table/],
    // A module key the wasm does not import from.
    [GLUE.replace('"./demo_bg.js": import0', '"./other_bg.js": import0'), /module key/],
  ];
  for (const [glue, why] of cases) {
    assert.notEqual(glue, GLUE, "the case changes the glue");
    const p = pair(glue);
    const wasm = readFileSync(p.wasm);
    const r = shorten(p);
    assert.equal(r.status, 1, `${why}: exit ${r.status}, ${r.stderr}`);
    assert.match(r.stderr, why);
    assert.deepEqual(readFileSync(p.wasm), wasm, "the wasm is unchanged");
    assert.equal(readFileSync(p.js, "utf8"), glue, "the glue is unchanged");
    assert.ok(!existsSync(p.wasm + ".short"));
  }
});
