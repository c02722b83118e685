// --kernel with several kernels: a kernel whose source cannot be fetched
// becomes one failed column per arch saying why, the next kernel is still
// tried, and one merged report over kernel x arch is written. apt-get is a
// stand-in that fails (and the suites point at a closed local port): no network.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ARCHES } from '../../../harness/core/arch.js';
import { EXIT } from '../../../harness/core/errors.js';
import { createLogger } from '../../../harness/core/log.js';
import type { KernelRecord } from '../../../harness/kernel/kernels.js';
import { runKernels } from '../../../harness/pipeline/kernel-matrix.js';
import type { RunOptions } from '../../../harness/pipeline/run.js';
import type { RunReport } from '../../../harness/report/run-report.js';
import { tempDir } from '../../helpers.js';

const record = (line: string): KernelRecord => ({
  name: `debian:${line}`,
  line,
  package: `linux-source-${line}`,
  suite: { uri: 'http://127.0.0.1:9/debian', suite: 'testing-only' },
  series: `patches/${line}`,
  absentOptions: [],
});

function failingApt(t: Parameters<typeof tempDir>[0]): { log: string } {
  const bin = tempDir(t);
  const log = join(tempDir(t), 'apt.log');
  writeFileSync(join(bin, 'apt-get'), `#!/bin/sh\necho "$*" >> "${log}"\necho "E: fake apt-get: no network in unit tests"\nexit 100\n`);
  chmodSync(join(bin, 'apt-get'), 0o755);
  const saved = process.env.PATH;
  process.env.PATH = `${bin}:${saved}`;
  t.teardown(() => (process.env.PATH = saved));
  // Never the real apt-get: it would go to the network.
  const found = execFileSync('sh', ['-c', 'command -v apt-get'], { encoding: 'utf8' }).trim();
  if (found !== join(bin, 'apt-get')) throw new Error(`apt-get resolves to ${found}, not the stand-in`);
  return { log };
}

t.test('kernels that cannot be fetched: a failed column per kernel and arch, each tried, one merged report', async (t) => {
  const { log } = failingApt(t);
  const cache = tempDir(t);
  const out = join(tempDir(t), 'out');
  const lines: string[] = [];
  const base = { arches: [ARCHES.x86_64!, ARCHES.ppc64le!], scenarios: [], cacheDir: cache, outDir: out, logger: createLogger('normal', (s) => lines.push(s)) } as unknown as RunOptions;
  const merged = await runKernels(base, [record('6.12'), record('6.1')]);
  t.equal(readFileSync(log, 'utf8').trim().split('\n').filter((l) => / update$/.test(l)).length, 2, 'the second kernel was tried after the first failed');
  t.same(
    merged.arches.map((a) => `${a.kernel} ${a.arch}`),
    ['debian:6.1 ppc64le', 'debian:6.1 x86_64', 'debian:6.12 ppc64le', 'debian:6.12 x86_64'],
    'kernel x arch, in version order',
  );
  for (const a of merged.arches) {
    t.equal(a.error?.kind, 'infra', `${a.kernel} ${a.arch}: the host's fault`);
    t.equal(a.error?.message, 'apt-get update for amd64 failed');
    t.match(a.error?.report, /what to do: check the host can reach Debian mirrors/, 'the report says what to do');
    t.equal(a.error?.exitCode, EXIT.infra);
    t.same([a.scenarios, a.boots], [[], []]);
  }
  t.equal(merged.exitCode, EXIT.infra);
  t.equal(merged.outDir, out);
  t.match(lines.join(''), /kernel debian:6\.12: apt-get update for amd64 failed/, 'the log says which kernel and why');
  for (const f of ['summary.json', 'junit.xml', 'ktap.txt', 'report.html']) t.ok(existsSync(join(out, f)), `${f} written`);
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as RunReport;
  t.equal(summary.arches.length, 4);
  t.equal(summary.exitCode, EXIT.infra);
  const junit = readFileSync(join(out, 'junit.xml'), 'utf8');
  t.equal([...junit.matchAll(/<testcase classname="klp-harness\.debian_6_1(2)?\.(x86_64|ppc64le)" name="pipeline"><error type="infra"/g)].length, 4, 'one errored case per column');
  t.match(junit, /<testsuites name="klp-harness" tests="4" failures="0" errors="4"/);
});

t.test('without --out the merged report goes to a new run folder in the cache', async (t) => {
  failingApt(t);
  const cache = tempDir(t);
  const base = { arches: [ARCHES.x86_64!], scenarios: [], cacheDir: cache, logger: createLogger('quiet', () => {}) } as unknown as RunOptions;
  const merged = await runKernels(base, [record('5.10')]);
  t.match(merged.outDir, new RegExp(`^${cache}/runs/\\d{4}-\\d\\d-\\d\\dT[\\d-]+Z-kernels$`));
  t.ok(existsSync(join(merged.outDir, 'summary.json')));
  t.same(merged.arches.map((a) => [a.kernel, a.arch, a.error?.kind]), [['debian:5.10', 'x86_64', 'infra']]);
});
