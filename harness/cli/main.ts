// Command-line entry point: `klp-harness <subcommand> [options]`. Each
// subcommand parses its own options (an option it does not take is bad
// usage); errors become exit codes through the one error table.
import { archNames } from '../core/arch.js';
import { killAll, wasInterrupted } from '../core/children.js';
import { describeError, EXIT, exitCodeFor, usageError } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import { KERNELS } from '../kernel/kernels.js';
import { DEFAULT_KERNEL_SRC } from '../kernel/source.js';
import { SCENARIOS } from '../scenarios/index.js';
import { cacheCommand, parseCache } from './cache.js';
import { interactiveCommand, parseRepro, parseShell } from './interactive.js';
import { mergeCommand, parseMerge } from './merge.js';
import { parseReport, reportCommand } from './report.js';
import { parseRun, runCommand, runLevel } from './run.js';

export const HELP = `Usage: klp-harness run [options]
       klp-harness repro --arch ARCH --scenario NAME [options]
       klp-harness shell --arch ARCH [options]
       klp-harness merge --out DIR SUMMARY.json...
       klp-harness cache [--prune [--max-age DAYS]] [--cache-dir DIR]
       klp-harness report RUN_DIR|SUMMARY.json... [--out trend.html]

run    builds each kernel with the patch series applied, boots it in QEMU, and
       runs the livepatch scenarios over SSH.
repro  boots one guest, leaves that scenario's transition stuck, lists what
       blocks it, and opens a shell in the guest (leaving it stops the VM).
shell  boots one guest with the harness's modules in /root and opens a shell.
report draws one page of pass/fail and timings over several runs (time order).

Options of run (repro and shell take --arch, --cpu, --verbose and the
kernel inputs --kernel-src, --patches, --kconfigs, --kconfig-extra, --cache-dir;
repro also --scenario):
  --arch LIST          comma-separated arches (default: ${archNames().join(',')})
  --kernel LIST        Debian kernels to run, comma-separated: ${KERNELS.map((k) => k.name).join(', ')};
                       each with its own series from patches/<version>/ (default: the one below)
  --kernel-src PATH    kernel tarball or tree (default: ${DEFAULT_KERNEL_SRC});
                       a tree is copied, never modified
  --patches PATH       quilt directory (series + patches) or mbox (default: patches/);
                       'none' runs the kernel source as it is
  --kconfigs DIR       config fragments: common.config + <arch>.config (default: kconfigs/)
  --kconfig-extra FILE one more fragment after those, e.g. kconfigs/debug.config
                       (lockdep, for the race scenario); repeatable
  --cache-dir DIR      build cache (default: $KLP_HARNESS_CACHE or ~/.cache/klp-harness)
  --out DIR            where this run's logs and reports go (default: <cache>/runs/<time>)
  --scenario NAME      run only this scenario; repeatable (${SCENARIOS.map((s) => s.name).join(', ')})
  --cpu MODEL          CPU model for QEMU (default: each arch's first; repeatable)
  --rebuild STAGE      redo a cached stage: source, build, image; repeatable
  --kselftest          also run the kernel's livepatch selftests in each guest
  --known-failures FILE failures with a known cause, reported as XFAIL (they do not fail
                       the run) or XPASS when they pass (default: known-failures.json)
  --sequential         run the arches' VMs one after the other (default: alongside)
  --jobs N             guests at once over all arches (default: 2 per core, as memory allows)
  --no-snapshot        boot every guest (default: restore each from a snapshot of a booted one)
  --shard I/N          run only the I-th of N deterministic parts of the scenario list
  --verbose            stream build output, commands and the guest console
  --quiet              print only the summary
  --ktap               print the run's results as KTAP on stdout instead of the summary
                       (also written to <out>/ktap.txt)
  -h, --help           this text

Exit codes: 0 passed, 1 tests failed, 2 kernel failed to configure/patch/build/boot,
            3 harness or host problem, 4 bad usage, 130 interrupted.
`;

const COMMANDS = ['run', 'repro', 'shell', 'merge', 'cache', 'report'] as const;
type Command = (typeof COMMANDS)[number];

export async function main(argv: string[]): Promise<number> {
  // The first word names the subcommand; without one (only options) it is run.
  const named = argv[0] !== undefined && !argv[0].startsWith('-');
  const command = named ? argv[0]! : 'run';
  const args = named ? argv.slice(1) : argv;
  try {
    if (!COMMANDS.includes(command as Command)) throw usageError(`unknown command '${command}'`, { hint: `use one of: ${COMMANDS.join(', ')} (see --help)` });
    if (args.includes('--help') || args.includes('-h')) {
      process.stdout.write(HELP);
      return EXIT.ok;
    }
    return await dispatch(command as Command, args);
  } catch (e) {
    const text = describeError(e);
    process.stderr.write(`klp-harness: ${text}\n`);
    return wasInterrupted() ? EXIT.interrupted : exitCodeFor(e);
  } finally {
    killAll();
  }
}

async function dispatch(command: Command, args: string[]): Promise<number> {
  switch (command) {
    case 'run': {
      const { values, positionals } = parseRun(args);
      return runCommand(values, positionals, createLogger(runLevel(values)));
    }
    case 'repro':
    case 'shell': {
      const { values, positionals } = command === 'repro' ? parseRepro(args) : parseShell(args);
      return interactiveCommand(command, values, positionals, createLogger(values.verbose ? 'verbose' : 'normal'));
    }
    case 'merge':
      return mergeCommand(parseMerge(args));
    case 'cache':
      return cacheCommand(parseCache(args));
    case 'report':
      return reportCommand(parseReport(args));
  }
}
