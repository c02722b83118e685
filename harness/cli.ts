// Command-line entry point: `klp-harness run [options]`.
import { parseArgs } from 'node:util';
import { archNames, parseArchList } from './arch.js';
import { EXIT, exitCodeFor, HarnessError, usageError } from './errors.js';
import { createLogger, type Level } from './log.js';
import { runMain, type Stage } from './pipeline.js';
import { pickScenarios, SCENARIOS } from './scenarios/index.js';
import { DEFAULT_KERNEL_SRC } from './source.js';
import { formatSummary } from './summary.js';
import { killAll, wasInterrupted } from './children.js';

export const HELP = `Usage: klp-harness run [options]

Builds each kernel with the patch series applied, boots it in QEMU, and runs
the livepatch scenarios over SSH.

Options:
  --arch LIST          comma-separated arches (default: ${archNames().join(',')})
  --kernel-src PATH    kernel tarball or tree (default: ${DEFAULT_KERNEL_SRC});
                       a tree is copied, never modified
  --patches PATH       quilt directory (series + patches) or mbox (default: patches/)
  --kconfigs DIR       config fragments: common.config + <arch>.config (default: kconfigs/)
  --cache-dir DIR      build cache (default: $KLP_HARNESS_CACHE or ~/.cache/klp-harness)
  --out DIR            where this run's logs and reports go (default: <cache>/runs/<time>)
  --scenario NAME      run only this scenario; repeatable (${SCENARIOS.map((s) => s.name).join(', ')})
  --cpu MODEL          CPU model for QEMU (default: each arch's first; repeatable)
  --rebuild STAGE      redo a cached stage: source, build, image; repeatable
  --verbose            stream build output and commands
  --quiet              print only the summary
  -h, --help           this text

Exit codes: 0 passed, 1 tests failed, 2 kernel failed to configure/patch/build/boot,
            3 harness or host problem, 4 bad usage, 130 interrupted.
`;

const STAGES: Stage[] = ['source', 'build', 'image'];

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        arch: { type: 'string' },
        'kernel-src': { type: 'string' },
        patches: { type: 'string' },
        kconfigs: { type: 'string' },
        'cache-dir': { type: 'string' },
        out: { type: 'string' },
        scenario: { type: 'string', multiple: true },
        cpu: { type: 'string', multiple: true },
        rebuild: { type: 'string', multiple: true },
        verbose: { type: 'boolean' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    process.stderr.write(`klp-harness: ${(e as Error).message}\n\n${HELP}`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return EXIT.ok;
  }
  const command = positionals[0] ?? 'run';
  const level: Level = values.verbose ? 'verbose' : values.quiet ? 'quiet' : 'normal';
  const logger = createLogger(level);
  try {
    if (command !== 'run') throw usageError(`unknown command '${command}'`, { hint: 'use: klp-harness run [options] (see --help)' });
    const arches = parseArchList(values.arch ?? archNames().join(','));
    const scenarios = pickScenarios(values.scenario);
    const rebuild = (values.rebuild ?? []).flatMap((v) => v.split(',')).map((s) => {
      if (!STAGES.includes(s as Stage)) throw usageError(`unknown stage '${s}' for --rebuild`, { hint: `use one of: ${STAGES.join(', ')}` });
      return s as Stage;
    });
    const cpuList = values.cpu;
    const report = await runMain({
      arches,
      scenarios,
      kernelSrc: values['kernel-src'],
      patches: values.patches,
      kconfigDir: values.kconfigs,
      cacheDir: values['cache-dir'],
      outDir: values.out,
      rebuild,
      logger,
      cpus: cpuList ? (a) => cpuList.filter((c) => a.qemu.cpuModels.includes(c)).concat(cpuList.some((c) => a.qemu.cpuModels.includes(c)) ? [] : [a.qemu.cpuModels[0]!]) : undefined,
    });
    process.stdout.write(formatSummary(report));
    return wasInterrupted() ? EXIT.interrupted : report.exitCode;
  } catch (e) {
    const text = e instanceof HarnessError ? e.report() : String((e as Error)?.stack ?? e);
    process.stderr.write(`klp-harness: ${text}\n`);
    return wasInterrupted() ? EXIT.interrupted : exitCodeFor(e);
  } finally {
    killAll();
  }
}
