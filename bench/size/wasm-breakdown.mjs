// Per-crate breakdown of a .wasm file: the size of every function body (code section),
// attributed to the Rust crate that its name (from the `name` custom section) starts with,
// plus data, imports/exports/types and custom sections. A module without a name section
// (fully stripped) yields only the section totals.
//
//   node bench/size/wasm-breakdown.mjs file.wasm
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function reader(buf) {
  let pos = 0;
  const r = {
    get pos() { return pos; },
    set pos(p) { pos = p; },
    byte() { return buf[pos++]; },
    u32() {
      let result = 0, shift = 0, b;
      do { b = buf[pos++]; result += (b & 0x7f) * 2 ** shift; shift += 7; } while (b & 0x80);
      return result;
    },
    str() { const n = r.u32(); const s = buf.subarray(pos, pos + n).toString('utf8'); pos += n; return s; },
  };
  return r;
}

const SECTION_NAMES = ['custom', 'type', 'import', 'function', 'table', 'memory', 'global', 'export',
  'start', 'element', 'code', 'data', 'datacount', 'tag'];

/** Legacy Rust mangling (_ZN…E) → `a::b::c`; anything else is returned as is. */
export function demangle(name) {
  if (!name.startsWith('_ZN')) return name;
  const parts = [];
  let i = 3;
  while (i < name.length && name[i] !== 'E') {
    let j = i;
    while (j < name.length && name[j] >= '0' && name[j] <= '9') j++;
    const n = parseInt(name.slice(i, j), 10);
    if (!n) break;
    parts.push(name.slice(j, j + n));
    i = j + n;
  }
  return parts.join('::').replace(/\$LT\$/g, '<').replace(/\$GT\$/g, '>').replace(/\$u20\$/g, ' ')
    .replace(/\$RF\$/g, '&').replace(/\$C\$/g, ',').replace(/\.\./g, '::');
}

const KNOWN_C = new Set(['memcpy', 'memset', 'memmove', 'memcmp', 'bcmp', 'strlen']);

/** Which crate a (demangled) function name belongs to. */
export function crateOf(raw) {
  // v0-style disambiguators (`core[c5930c85a12de822]::…`) carry no crate information.
  const name = demangle(raw).replace(/\[[0-9a-f]{6,}\]/g, '');
  if (name.startsWith('__wbg') || name.startsWith('__wbindgen') || name.startsWith('__externref')) return 'wasm-bindgen (glue)';
  // wasm-bindgen's generated export wrappers; the exported Rust function is usually inlined
  // into them, so their size is mostly the client's own code behind that export.
  if (/ (externref|multivalue) shim$/.test(name)) return 'wasm-bindgen export shims (with the inlined exported fn)';
  if (KNOWN_C.has(name) || name.startsWith('__')) return 'compiler_builtins';
  // `<A as B>::f` and `<A>::f`: the crate of A (where the monomorphised code comes from).
  let s = name.replace(/^[<&*\s]+/, '').replace(/^(mut|const|dyn|impl)\s+/, '').replace(/^[<&*\[(\s]+/, '');
  const m = /^([A-Za-z_][A-Za-z0-9_]*)::/.exec(s);
  if (m) return m[1];
  if (/^(u8|u16|u32|u64|u128|usize|i8|i16|i32|i64|i128|isize|f32|f64|bool|char|str)\b/.test(s)) return 'core';
  if (/^[A-Za-z0-9_]+$/.test(name)) return '(exported / unmangled)';
  return '(other)';
}

export function breakdown(buf) {
  if (buf.readUInt32LE(0) !== 0x6d736100) throw new Error('not a wasm module');
  const r = reader(buf);
  r.pos = 8;
  const sections = {};
  let importedFuncs = 0;
  const bodies = [];
  const names = new Map();
  while (r.pos < buf.length) {
    const id = r.byte();
    const size = r.u32();
    const start = r.pos;
    const end = start + size;
    let key = SECTION_NAMES[id] ?? `section${id}`;
    if (id === 0) {
      const cname = r.str();
      key = `custom:${cname}`;
      if (cname === 'name') {
        while (r.pos < end) {
          const sub = r.byte();
          const subSize = r.u32();
          const subEnd = r.pos + subSize;
          if (sub === 1) {
            const n = r.u32();
            for (let k = 0; k < n; k++) { const idx = r.u32(); names.set(idx, r.str()); }
          }
          r.pos = subEnd;
        }
      }
    } else if (id === 2) {
      const n = r.u32();
      for (let k = 0; k < n; k++) {
        r.str(); r.str();
        const kind = r.byte();
        if (kind === 0) { r.u32(); importedFuncs++; }
        else if (kind === 1) { r.byte(); const f = r.byte(); r.u32(); if (f & 1) r.u32(); }
        else if (kind === 2) { const f = r.byte(); r.u32(); if (f & 1) r.u32(); }
        else if (kind === 3) { r.byte(); r.byte(); }
        else if (kind === 4) { r.byte(); r.u32(); }
      }
    } else if (id === 10) {
      const n = r.u32();
      for (let k = 0; k < n; k++) {
        const bstart = r.pos;
        const bs = r.u32();
        r.pos += bs;
        bodies.push({ idx: importedFuncs + k, size: r.pos - bstart });
      }
    }
    sections[key] = (sections[key] ?? 0) + (end - start) + 1 + (size < 128 ? 1 : size < 16384 ? 2 : size < 2097152 ? 3 : 4);
    r.pos = end;
  }
  const crates = new Map();
  const top = [];
  for (const b of bodies) {
    const nm = names.get(b.idx);
    const c = nm ? crateOf(nm) : '(unnamed)';
    const e = crates.get(c) ?? { crate: c, bytes: 0, functions: 0 };
    e.bytes += b.size; e.functions++;
    crates.set(c, e);
    top.push({ name: nm ? demangle(nm).replace(/::h[0-9a-f]{16}$/, '').replace(/\[[0-9a-f]{6,}\]/g, '') : `func[${b.idx}]`, crate: c, bytes: b.size });
  }
  top.sort((a, b) => b.bytes - a.bytes);
  return {
    totalBytes: buf.length,
    named: names.size > 0,
    sections,
    crates: [...crates.values()].sort((a, b) => b.bytes - a.bytes),
    topFunctions: top.slice(0, 25),
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const f = process.argv[2];
  if (!f) { console.error('usage: node wasm-breakdown.mjs file.wasm'); process.exit(2); }
  const b = breakdown(fs.readFileSync(f));
  console.log(`${f}: ${b.totalBytes} bytes, name section: ${b.named ? 'yes' : 'no'}`);
  console.log('sections:', b.sections);
  for (const c of b.crates) console.log(String(c.bytes).padStart(8), String(c.functions).padStart(5), c.crate);
  console.log('largest functions:');
  for (const t of b.topFunctions.slice(0, 15)) console.log(String(t.bytes).padStart(8), t.name);
}
