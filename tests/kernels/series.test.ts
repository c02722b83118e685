// Each kernel's series applies to that kernel's own source: the package is
// fetched as `--kernel` fetches it, the files the series touches are taken
// out of its tarball, and `patch --dry-run` must accept every patch. Run by
// `npm run test:kernels` (it downloads the Debian source packages). Each
// kernel's generation record is cross-checked there against the pristine
// transition.c, before any patch is applied.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cacheRoot } from '../../harness/core/cache.js';
import { crossCheck, generationOf, kernelTarball, KERNELS } from '../../harness/kernel/kernels.js';
import { createLogger } from '../../harness/core/log.js';
import { readSeries } from '../../harness/kernel/patches.js';
import { PROJECT_ROOT } from '../../harness/core/paths.js';

const logger = createLogger('quiet', () => {});

for (const k of KERNELS) {
  t.test(`${k.name}: ${k.series} applies to ${k.package}`, async (t) => {
    const { tarball, version } = await kernelTarball(k, cacheRoot(), logger);
    const series = readSeries(join(PROJECT_ROOT, k.series));
    t.ok(series.patches.length > 0, `${series.patches.length} patch(es)`);
    const files = [...new Set(series.patches.flatMap((p) => [...p.text.matchAll(/^\+\+\+ b\/(\S+)/gm)].map((m) => m[1]!)))];
    const dir = mkdtempSync(join(tmpdir(), 'klp-series-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    // The tarball's top directory is linux-source-X/.
    const wanted = [...new Set([...files, 'kernel/livepatch/transition.c'])];
    execFileSync('tar', ['-xf', tarball, '-C', dir, '--strip-components=1', ...wanted.map((f) => `${k.package}/${f}`)]);
    // The generation record the verdicts expect, against the pristine source (before any patch of ours).
    const gen = generationOf(k.line);
    t.ok(gen, `a generation record for ${k.line}`);
    if (gen) t.same(crossCheck(gen, readFileSync(join(dir, 'kernel/livepatch/transition.c'), 'utf8')), [], `the ${k.line} record agrees with ${k.package} ${version} (${gen.source})`);
    for (const p of series.patches) {
      const out = execFileSync('sh', ['-c', 'patch -p1 --dry-run --batch -F0 < "$1"; echo "exit=$?"', 'sh', join(PROJECT_ROOT, k.series, p.name)], { cwd: dir, encoding: 'utf8' });
      t.match(out, /exit=0\s*$/, `${p.name} applies without fuzz to ${k.package} ${version}`, { output: out });
      t.notMatch(out, /FAILED|fuzz|offset/i, 'cleanly');
    }
  });
}
