// Command-line entry point: `klp-harness <subcommand> [options]`. Each
// subcommand parses its own options (an option it does not take is bad
// usage); errors become exit codes through the one error table.
import { killAll, wasInterrupted } from '../proc/supervisor.js';
import { describeError, EXIT, exitCodeFor, usageError } from '../core/errors.js';
import { checkTimeoutScale } from '../core/timeouts.js';
import { guestsPerCore } from '../pipeline/slots.js';
import { createLogger } from '../core/log.js';
import { cacheCommand, parseCache } from './cache.js';
import { interactiveCommand, parseRepro, parseShell } from './interactive.js';
import { mergeCommand, parseMerge } from './merge.js';
import { parseReport, reportCommand } from './report.js';
import { parseRun, runCommand, runLevel } from './run.js';
import { optionsHelp } from './options.js';

/** --help: the usage lines, then each subcommand's options from its own table (cli/options.ts). */
export const helpText = () => `Usage: klp-harness run [options]
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

Options of run:
${optionsHelp(parseRun)}
Options of repro (shell: the same but --scenario):
${optionsHelp(parseRepro)}
Options of cache:
${optionsHelp(parseCache)}
Options of merge and report: --out (see the README).

Exit codes: 0 passed, 1 tests failed, 2 kernel failed to configure/patch/build/boot,
            3 harness or host problem, 4 bad usage, 130 interrupted.
`;

/** Every subcommand's parser: an option given to the wrong one is named with the ones that take it. */
export const PARSERS = Object.freeze([parseRun, parseRepro, parseShell, parseMerge, parseCache, parseReport]);
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
      process.stdout.write(helpText());
      return EXIT.ok;
    }
    checkTimeoutScale();
    guestsPerCore();
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
      const { values, positionals } = parseRun(args, PARSERS);
      return runCommand(values, positionals, createLogger(runLevel(values)));
    }
    case 'repro':
    case 'shell': {
      const { values, positionals } = command === 'repro' ? parseRepro(args, PARSERS) : parseShell(args, PARSERS);
      return interactiveCommand(command, values, positionals, createLogger(values.verbose ? 'verbose' : 'normal'));
    }
    case 'merge':
      return mergeCommand(parseMerge(args, PARSERS));
    case 'cache':
      return cacheCommand(parseCache(args, PARSERS));
    case 'report':
      return reportCommand(parseReport(args, PARSERS));
  }
}
