// Shorten the names by which a wasm-bindgen glue and its wasm call each other, as
// Emscripten's minifying build does. wasm-bindgen names each of the ~100 imports
// `__wbg_<method>_<16 hex digits>`, under the module "./<name>_bg.js", and its closure
// exports by their mangled Rust paths; both the wasm and the glue carry each name, and
// the hashes do not compress. Measured on the checkout's wasm: 2.6 KB gzipped off the
// wasm, and its glue shorter too (docs/widget.md, "Figures").
//
// Usage: node scripts/shorten-wasm-names.mjs WASM_OPT GLUE.js WASM [--enable-… flags]
// Rewrites GLUE.js and WASM in place. binaryen's wasm-opt renames the imports, the
// exports and the import module (--minify-imports-and-exports-and-modules, which
// prints the old → new names); this script renames the same names in the glue and
// checks that nothing was left behind, so a glue and a wasm that do not fit fail the
// build, never a shopper's checkout.
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync, renameSync, rmSync } from "node:fs";

const [wasmOpt, gluePath, wasmPath, ...features] = process.argv.slice(2);
if (!wasmOpt || !gluePath || !wasmPath) {
  console.error("usage: shorten-wasm-names.mjs WASM_OPT GLUE.js WASM [--enable-… flags]");
  process.exit(2);
}
const out = `${wasmPath}.short`;
// On failure both files stay as they were.
const fail = (why) => {
  rmSync(out, { force: true });
  console.error(`shorten-wasm-names: ${gluePath}: ${why}`);
  process.exit(1);
};
// Names as regular expressions (mangled Rust paths hold `.` and `$`); the new names go
// in through functions, since a replacement string reads `$$` or `$1` as patterns.
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

// 1. The wasm: names shortened by wasm-opt, nothing else changed (no -O pass).
const run = spawnSync(
  wasmOpt,
  [wasmPath, "--minify-imports-and-exports-and-modules", ...features, "-o", out],
  { encoding: "utf8" },
);
if (run.status !== 0) fail(`wasm-opt failed: ${run.stderr}`);
let names;
try {
  names = JSON.parse(run.stdout);
} catch (e) {
  fail(`wasm-opt printed no name map: ${e.message}`);
}
const module = new WebAssembly.Module(readFileSync(out));
const modules = new Set(WebAssembly.Module.imports(module).map((i) => i.module));
if (modules.size !== 1) fail(`expected one import module, found ${[...modules]}`);
const [newModule] = modules;

// 2. The glue, as wasm-bindgen wrote it (before esbuild): the import object's keys
// (`name: function(…)`), its one module key, and the exports read as `wasm.name`.
let glue = readFileSync(gluePath, "utf8");
const oldModules = new Set(names.imports.map(([m]) => m));
if (oldModules.size !== 1) fail(`expected one import module in the map, found ${[...oldModules]}`);
const [oldModule] = oldModules;
const moduleKey = `${JSON.stringify(oldModule)}:`;
if (glue.split(moduleKey).length !== 2) fail(`the module key ${moduleKey} is not there once`);
glue = glue.replace(moduleKey, () => `${JSON.stringify(newModule)}:`);
for (const [, from, to] of names.imports) {
  const key = new RegExp(`(?<![\\w$.])${escape(from)}(?=\\s*:)`, "g");
  const found = glue.match(key)?.length ?? 0;
  if (found !== 1) fail(`import ${from}: ${found} keys in the glue, expected 1`);
  glue = glue.replace(key, () => JSON.stringify(to));
}
const exported = new Set();
for (const [from, to] of names.exports) {
  exported.add(to);
  // Exports the glue never reads (wasm-bindgen's abort hooks) stay unread.
  glue = glue.replace(new RegExp(`\\bwasm\\.${escape(from)}(?![\\w$])`, "g"), () => `wasm.${to}`);
}
// Nothing left: every export the glue reads is a new name, and no import key is old.
for (const [, name] of glue.matchAll(/\bwasm\.([\w$]+)/g)) {
  if (!exported.has(name)) fail(`the glue reads wasm.${name}, which the wasm no longer exports`);
}
const stale = glue.match(/(?<![\w$.])__wbg_\w+(?=\s*:)/);
if (stale) fail(`import key ${stale[0]} left in the glue`);
for (const { name } of WebAssembly.Module.imports(module)) {
  if (!glue.includes(`${JSON.stringify(name)}:`)) fail(`no key for the wasm's import ${name}`);
}
writeFileSync(gluePath, glue);
renameSync(out, wasmPath);
