// Where a server's CPU time goes: reads a `perf record` file, takes every symbol's self time
// (cpu-clock samples) and sums them into buckets (ECDSA P-256, SQLite, kernel TCP, scheduler /
// futex, allocator, HTTP stack, …). Used by bench/server/server.mjs --profile.
//
//   node bench/server/perf-summary.mjs perf.data   # prints the buckets and the top symbols
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// First match wins; tested against "dso symbol".
const BUCKETS = [
  ['ECDSA P-256 (p256 / primeorder / elliptic-curve / ecdsa)', /p256::|primeorder::|elliptic_curve::|ecdsa::|crypto_bigint::|ff::|rfc6979|hmac::|\[\.\] p256/],
  // ring's P-256 assembly (authfetch-server's ES256) carries BoringSSL's names (ecp_nistz256_*,
  // bn_mul_mont); it must be matched before the OpenSSL bucket, which is node's statically
  // linked libcrypto with the same heritage. The dso (the server's binary vs node) tells them apart.
  ['ECDSA P-256 (ring: assembly)', /^authfetch\S* .*(ring_core_|ring::|ecp_nistz256|nistz|bn_mul_mont|bn_sqr8x|__bn_|p256_|limbs_|LIMBS_|gfp_p256)/],
  ['Ed25519 (curve25519-dalek)', /curve25519|ed25519/],
  ['SHA-2', /sha2::|sha256|Sha256/],
  ['Argon2id (argon2 / blake2)', /argon2|blake2/i],
  // Compiling SQL text into a program: paid on every call when statements are not cached.
  ['SQLite: SQL parse + plan (statement preparation)', /\[\.\] (yy_|sqlite3RunParser|sqlite3Prepare|sqlite3LockAndPrepare|sqlite3GetToken|keywordCode|sqlite3Parser|exprAnalyze|resolve|select[A-Z]|sqlite3Select|where[A-Z]|sqlite3Where|lookupName|sqlite3Expr|sqlite3LocateTable|sqlite3FindTable|findElementWithHash|sqlite3CodeVerify|sqlite3Finish|sqlite3Vdbe(Add|Make|Change|Resolve|Set|Get)|sqlite3IndexAffinity|sqlite3Affinity|codeEqualityTerm|sqlite3Insert|sqlite3Update|sqlite3DeleteFrom|sqlite3SrcList|sqlite3ExprList|sqlite3AuthCheck|sqlite3DbMalloc|sqlite3DbFree|sqlite3NestedParse|sqlite3StartTable|sqlite3FixSrcList|sqlite3WalkExpr|walkExpr|sqlite3ResolveExpr|sqlite3ExprCode|sqlite3GenerateConstraintChecks|sqlite3CompleteInsertion|renameToken|sqlite3ColumnsFromExprList|sqlite3TableLock|sqlite3BeginWriteOperation)/],
  ['SQLite: execution (VDBE, B-tree, pager, WAL)', /sqlite3|sqlite|\[\.\] (vdbe|btree|balance_|pager|pcache|wal[A-Z]|walChecksum|unixWrite|unixRead|unixSync|unixLock|unixShm|moveToChild|moveToRoot|getAndInitPage|insertCell|fillInCell|cellSize|dropCell|accessPayload|allocateSpace|defragmentPage|freePage|allocateBtreePage|btreeInitPage|decodeFlags|rebuildPage|editPage|computeCellSize|pageInsertArray|assemblePage|releasePage|getPageNormal)/],
  ['JSON (serde_json)', /serde_json|serde::/],
  ['base64', /base64/],
  ['HTTP server (hyper / axum / tower / http / httparse)', /hyper::|axum::|tower::|tower_http|http::|httparse|h2::|matchit/],
  ['tokio runtime (scheduler, blocking pool, I/O driver)', /tokio::|mio::|parking_lot|std::sys::sync|std::thread|crossbeam/],
  ['allocator (malloc / free)', /malloc|_int_free|free|cfree|realloc|_int_|arena_|sysmalloc|tcache|unlink_chunk|malloc_consolidate/],
  ['libc memcpy / memset / string', /mem(cpy|move|set|cmp)|__memcpy|__memset|strlen|__strchr|bcmp/],
  ['OpenSSL (libcrypto, statically linked into node)', /libcrypto|libssl|\[\.\] (EVP_|__?ecp_nistz256|scrypt|[Ss]alsa|ecp_|bn_|BN_|ossl_|ECDSA_|EC_|sha256_block|SHA256|OPENSSL_|CRYPTO_|RAND_|ec_|p256_|__bn|bn_mul|rsaz)/],
  ['Node.js / V8 (JIT code, builtins, GC, libuv)', /^(node|perf-\d+\.map|\[JIT\]|libnode\S*|\[unknown\]) /],
  ['kernel: scheduler / futex / context switch / irq restore', /\[k\] .*(schedule|finish_task_switch|futex|wake_up|try_to_wake|enqueue_|dequeue_|switch_mm|switch_to|pick_next|update_curr|hrtimer|_raw_spin|ttwu|select_task|rseq)/],
  ['kernel: TCP / loopback networking', /\[k\] .*(tcp_|ip_|inet|sock|skb|net_|netif|__dev_|napi|loopback|dst_|nf_|sk_|__sys_(send|recv)|recv|send|epoll)/],
  ['kernel: file system / page cache (WAL writes)', /\[k\] .*(ext4|vfs_|filemap|folio|jbd2|generic_perform_write|iomap|fsnotify|pwrite|fdatasync|writeback|block_|bio_)/],
  ['kernel: memory management (page faults, mmap)', /\[k\] .*(page|mm_|mmap|munmap|vma|pte|pmd|tlb|memcg|lru|zap_|clear_page)/],
  ['kernel: other (syscall entry/exit, …)', /\[k\]/],
];

export function summarize(file) {
  const out = execFileSync('perf', ['report', '-i', file, '--stdio', '--no-children', '--sort', 'dso,symbol',
    '-g', 'none', '--percent-limit', '0', '-F', 'overhead,dso,sym'], { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
  const sm = /# Samples: ([\d.]+)([KM]?)/.exec(out);
  const samples = sm ? Number(sm[1]) * ({ K: 1e3, M: 1e6 }[sm[2]] ?? 1) : null;
  const rows = [];
  for (const line of out.split('\n')) {
    const m = /^\s*([\d.]+)%\s+(\S+)\s+(\[[.k]\].*?)\s*$/.exec(line);
    if (m) rows.push({ pct: Number(m[1]), dso: m[2], sym: m[3] });
  }
  const buckets = new Map(BUCKETS.map(([k]) => [k, 0]));
  buckets.set('other (user space)', 0);
  for (const r of rows) {
    const key = `${r.dso} ${r.sym}`;
    const b = BUCKETS.find(([, re]) => re.test(key));
    const k = b ? b[0] : 'other (user space)';
    buckets.set(k, buckets.get(k) + r.pct);
  }
  const sorted = [...buckets].filter(([, v]) => v >= 0.05).sort((a, b) => b[1] - a[1]).map(([bucket, pct]) => ({ bucket, pct: Number(pct.toFixed(2)) }));
  const top = rows.sort((a, b) => b.pct - a.pct).slice(0, 25)
    .map((r) => ({ pct: r.pct, dso: r.dso, sym: r.sym.replace(/^\[[.k]\]\s*/, '').slice(0, 140) }));
  return { samples, buckets: sorted, top };
}

export function format(s) {
  const lines = [`samples: ${s.samples}`, '', 'self time by bucket:'];
  for (const b of s.buckets) lines.push(`${b.pct.toFixed(1).padStart(6)}%  ${b.bucket}`);
  lines.push('', 'top symbols (self):');
  for (const t of s.top) lines.push(`${t.pct.toFixed(2).padStart(6)}%  ${t.dso.padEnd(24).slice(0, 24)} ${t.sym}`);
  return lines.join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(format(summarize(process.argv[2] ?? 'perf.data')));
}
