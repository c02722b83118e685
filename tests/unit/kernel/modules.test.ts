// The guest modules and programs are built once per kernel build and inputs
// (make M=<copy> with the arch's flags, the programs with the arch's
// compiler), reused while the entry is intact, rebuilt when a source, a flag
// or a built file changes, and a failed build names the arch and the error.
// make and the compilers are stand-ins: no kernel is built.
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ARCHES } from '../../../harness/core/arch.js';
import { MARKER } from '../../../harness/core/cache.js';
import { HarnessError } from '../../../harness/core/errors.js';
import { createLogger } from '../../../harness/core/log.js';
import type { BuildResult } from '../../../harness/kernel/build.js';
import { buildGuestModules, GUEST_MODULES, GUEST_PROGRAMS } from '../../../harness/kernel/modules.js';
import { ROOT, tempDir } from '../../helpers.js';

/** make: logs its arguments (one call a line, tab-separated) and writes one .ko per obj-m of M=; fails on request. */
const FAKE_MAKE = `#!/bin/bash
printf '%s\\t' make "$@" >> "$FAKE_LOG"; echo >> "$FAKE_LOG"
[ -n "$FAKE_MAKE_FAIL" ] && { echo "  CC [M]  klp_sleeper.o"; echo "klp_sleeper.c:12:1: error: expected ';' before '}' token"; echo "make[1]: *** [Makefile:1: klp_sleeper.o] Error 1"; exit 2; }
for a in "$@"; do case "$a" in M=*) mdir=\${a#M=} ;; esac; done
for m in $(sed -n 's/^obj-m *+= *//p' "$mdir/Makefile" | sed 's/\\.o\\b//g'); do echo "module $m" > "$mdir/$m.ko"; done
`;

/** A compiler: logs its name and arguments, writes -o; fails on request. */
const fakeCc = (name: string) => `#!/bin/bash
printf '%s\\t' ${name} "$@" >> "$FAKE_LOG"; echo >> "$FAKE_LOG"
[ -n "$FAKE_CC_FAIL" ] && { echo "restart-canary.c:1:1: error: unknown type name 'x'"; exit 1; }
out=; prev=; for a in "$@"; do [ "$prev" = -o ] && out=$a; prev=$a; done
echo "program from ${name}" > "$out"
`;

function setup(t: Test) {
  const bin = tempDir(t);
  for (const [name, text] of [['make', FAKE_MAKE], ['gcc', fakeCc('gcc')], ['powerpc64le-linux-gnu-gcc', fakeCc('powerpc64le-linux-gnu-gcc')]] as const) {
    writeFileSync(join(bin, name), text);
    chmodSync(join(bin, name), 0o755);
  }
  const log = join(tempDir(t), 'calls.log');
  const saved = { PATH: process.env.PATH, FAKE_LOG: process.env.FAKE_LOG };
  process.env.PATH = `${bin}:${process.env.PATH}`;
  process.env.FAKE_LOG = log;
  t.teardown(() => {
    process.env.PATH = saved.PATH;
    if (saved.FAKE_LOG === undefined) delete process.env.FAKE_LOG;
    else process.env.FAKE_LOG = saved.FAKE_LOG;
    delete process.env.FAKE_MAKE_FAIL;
    delete process.env.FAKE_CC_FAIL;
  });
  const cache = tempDir(t);
  const buildDir = join(cache, 'builds/x86_64-0123abcd');
  mkdirSync(buildDir, { recursive: true });
  const build: BuildResult = { buildDir, image: join(buildDir, 'arch/x86/boot/bzImage'), key: 'build-key-1', reused: true, durationMs: 0, logPath: join(buildDir, 'build.log'), makeCommand: 'make' };
  const sourceDir = tempDir(t);
  cpSync(join(ROOT, 'guest/modules'), sourceDir, { recursive: true });
  const calls = () => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => l.replace(/\t$/, '').split('\t')) : []);
  const opts = { arch: ARCHES.x86_64!, build, tree: '/the/kernel/tree', sourceDir, logger: createLogger('quiet', () => {}) };
  return { cache, build, sourceDir, calls, opts };
}

const ALL = [...GUEST_MODULES, ...GUEST_PROGRAMS];

t.test('the first build: make M= in a copy of the sources with the arch flags, then each program; every file there', async (t) => {
  const { build, sourceDir, calls, opts } = setup(t);
  const r = await buildGuestModules(opts);
  t.equal(r.reused, false);
  t.match(r.dir, new RegExp(`^${build.buildDir}/klp-guest-modules/[0-9a-f]+$`), 'beside the kernel build, named by its key');
  t.same(Object.keys(r.modules).sort(), [...ALL].sort());
  for (const f of ALL) {
    t.equal(r.modules[f], join(r.dir, f));
    t.ok(existsSync(r.modules[f]!), `${f} built`);
  }
  for (const f of readdirSync(sourceDir)) t.ok(existsSync(join(r.dir, f)), `source ${f} copied`);
  t.ok(existsSync(join(r.dir, MARKER)), 'the entry is marked complete');
  t.ok(existsSync(join(r.dir, 'build.log')));
  const [make, ...programs] = calls();
  t.same(make, ['make', '-C', build.buildDir, 'ARCH=x86_64', `M=${r.dir}`, 'KLP_LP_CFLAGS=', 'modules'], "from the kernel's output directory, no O= and no tree");
  t.same(programs.map((c) => [c[0], c.at(-3), c.at(-2), c.at(-1)]), GUEST_PROGRAMS.map((p) => ['gcc', '-o', join(r.dir, p), join(r.dir, `${p}.c`)]));
  for (const c of programs) for (const f of ['-static', '-nostdlib', '-ffreestanding', '-fno-pie']) t.ok(c.includes(f), `${c.at(-1)}: ${f}`);
});

t.test('ppc64le: the cross make and compiler, its module and user flags', async (t) => {
  const { build, calls, opts } = setup(t);
  const ppc = ARCHES.ppc64le!;
  const r = await buildGuestModules({ ...opts, arch: ppc });
  const [make, ...programs] = calls();
  t.same(make, ['make', '-C', build.buildDir, 'ARCH=powerpc', 'CROSS_COMPILE=powerpc64le-linux-gnu-', `M=${r.dir}`, 'KLP_LP_CFLAGS=-fno-optimize-sibling-calls', 'modules']);
  t.same(programs.map((c) => c[0]), GUEST_PROGRAMS.map(() => 'powerpc64le-linux-gnu-gcc'));
  t.ok(programs.every((c) => c.includes('-mcpu=power8')), 'user programs for the oldest CPU model');
  t.equal(readFileSync(r.modules['restart-canary']!, 'utf8'), 'program from powerpc64le-linux-gnu-gcc\n');
});

t.test('reused while intact; rebuilt in a new entry when a source, a make variable or the build changes', async (t) => {
  const { sourceDir, calls, opts, build } = setup(t);
  const first = await buildGuestModules(opts);
  const n = calls().length;
  const again = await buildGuestModules(opts);
  t.same(again, { ...first, reused: true }, 'the same entry, reused');
  t.equal(calls().length, n, 'nothing run again');

  writeFileSync(join(sourceDir, 'klp_sleeper.c'), readFileSync(join(sourceDir, 'klp_sleeper.c'), 'utf8') + '\n/* changed */\n');
  const changed = await buildGuestModules(opts);
  t.equal(changed.reused, false);
  t.not(changed.dir, first.dir, 'a changed source is another entry');
  t.ok(existsSync(join(first.dir, MARKER)), 'the old entry stays');
  const withVars = await buildGuestModules({ ...opts, makeVars: ['CC=gcc-12'] });
  t.not(withVars.dir, changed.dir, 'make variables are part of the key');
  t.ok(calls().at(-GUEST_PROGRAMS.length - 1)!.includes('CC=gcc-12'), 'and passed to make');
  const otherBuild = await buildGuestModules({ ...opts, build: { ...build, key: 'build-key-2' } });
  t.not(otherBuild.dir, changed.dir, 'another kernel build is another entry');
  t.equal(calls().filter((c) => c[0] === 'make').length, 4, 'one make per entry made');
});

t.test('a built file changed after the fact invalidates the entry', async (t) => {
  const { calls, opts } = setup(t);
  const first = await buildGuestModules(opts);
  writeFileSync(first.modules['klp_sleeper_lp.ko']!, 'tampered');
  const again = await buildGuestModules(opts);
  t.equal(again.reused, false, 'made again');
  t.equal(again.dir, first.dir, 'in the same place');
  t.equal(readFileSync(again.modules['klp_sleeper_lp.ko']!, 'utf8'), 'module klp_sleeper_lp\n');
  t.equal(calls().filter((c) => c[0] === 'make').length, 2);
});

t.test("an entry outside the build (a binary kernel's kbuild tree): under the cache, by key", async (t) => {
  const { cache, opts } = setup(t);
  const other = tempDir(t);
  const r = await buildGuestModules({ ...opts, cacheDir: other, entry: 'binary/6.1.0-57-amd64/modules' });
  t.match(r.dir, new RegExp(`^${other}/binary/6\\.1\\.0-57-amd64/modules/[0-9a-f]+$`));
  t.notOk(existsSync(join(opts.build.buildDir, 'klp-guest-modules')), 'nothing written into the kbuild tree');
  t.ok(existsSync(join(r.dir, MARKER)));
  t.notOk(existsSync(join(cache, 'binary')));
});

t.test('a failed make is a build error naming the arch, the compiler error and the log; nothing is reused after it', async (t) => {
  const { calls, opts } = setup(t);
  process.env.FAKE_MAKE_FAIL = '1';
  const e = await buildGuestModules(opts).catch((x: unknown) => x);
  t.ok(e instanceof HarnessError);
  const he = e as HarnessError;
  t.equal(he.kind, 'build');
  t.equal(he.message, 'guest modules for x86_64 failed to build');
  t.equal(he.context.arch, 'x86_64');
  t.equal(he.context.exitCode, 2);
  t.match(he.context.details, /klp_sleeper\.c:12:1: error: expected ';'/);
  t.notMatch(he.context.details, /CC \[M\]/, 'only the error lines');
  t.match(he.context.logPath, /klp-guest-modules\/[0-9a-f]+\/build\.log$/);
  t.match(readFileSync(he.context.logPath!, 'utf8'), /error: expected/, 'the log has the output');
  t.notOk(existsSync(join(he.context.logPath!, '..', MARKER)), 'no marker');
  delete process.env.FAKE_MAKE_FAIL;
  const r = await buildGuestModules(opts);
  t.equal(r.reused, false, 'the next call builds');
  t.equal(calls().filter((c) => c[0] === 'make').length, 2);
});

t.test('a failed program is a build error naming the program', async (t) => {
  const { opts } = setup(t);
  process.env.FAKE_CC_FAIL = '1';
  const e = (await buildGuestModules(opts).catch((x: unknown) => x)) as HarnessError;
  t.ok(e instanceof HarnessError);
  t.equal(e.kind, 'build');
  t.equal(e.message, `guest program ${GUEST_PROGRAMS[0]} for x86_64 failed to build`);
  t.match(e.context.details, /error: unknown type name/);
  t.match(e.context.logPath, new RegExp(`${GUEST_PROGRAMS[0]}\\.log$`));
});
