// One "run" up to the boot, as a process of its own: source, build, guest
// image and guest modules of one arch, exactly as `klp-harness run` does them
// (prepareSource + prepareArch), then it stays alive for --hold-ms holding its
// entries as a run that boots and runs scenarios would. Prints a JSON result.
// Used with the fake tools (tests/fake-tools.ts) to run several at once on one cache.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { getArch } from '../harness/core/arch.js';
import { cacheRoot } from '../harness/core/cache.js';
import { exitCodeFor, HarnessError } from '../harness/core/errors.js';
import { loadKeys } from '../harness/image/keys.js';
import { createLogger } from '../harness/core/log.js';
import { readSeries } from '../harness/kernel/patches.js';
import { PROJECT_ROOT } from '../harness/core/paths.js';
import { prepareArch } from '../harness/pipeline/prepare.js';
import { prepareSource } from '../harness/kernel/source.js';

const { values } = parseArgs({
  options: {
    'cache-dir': { type: 'string' },
    'kernel-src': { type: 'string' },
    patches: { type: 'string' },
    kconfigs: { type: 'string' },
    arch: { type: 'string' },
    'hold-ms': { type: 'string' },
  },
});
const logger = createLogger('normal', { live: false });
try {
  const cacheDir = cacheRoot(values['cache-dir']);
  const arch = getArch(values.arch ?? 'x86_64');
  const series = readSeries(values.patches!);
  const src = await prepareSource({ kernelSrc: values['kernel-src']!, series, cacheDir, logger });
  const keys = loadKeys(cacheDir);
  const initScript = readFileSync(join(PROJECT_ROOT, 'guest/init'), 'utf8');
  const { build, image, modules } = await prepareArch({ arch, src, keys, initScript, cacheDir, logger, kconfigDir: values.kconfigs });
  await new Promise((r) => setTimeout(r, Number(values['hold-ms'] ?? 0)));
  const result = {
    pid: process.pid,
    tree: src.tree,
    treeReused: src.reused,
    coreC: readFileSync(join(src.tree, 'kernel/livepatch/core.c'), 'utf8'),
    buildDir: build.buildDir,
    buildReused: build.reused,
    kernelImage: readFileSync(build.image, 'utf8'),
    compiled: Number(/compiled (\d+)/.exec(readFileSync(build.logPath, 'utf8'))?.[1] ?? -1),
    image: image.path,
    module: readFileSync(modules.modules['klp_sleeper.ko']!, 'utf8'),
  };
  process.stdout.write(JSON.stringify(result) + '\n');
} catch (e) {
  process.stderr.write(`stage-runner: ${e instanceof HarnessError ? e.report() : String((e as Error)?.stack ?? e)}\n`);
  process.exitCode = exitCodeFor(e);
}
