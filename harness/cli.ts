// Command-line entry point: `klp-harness run [options]`.
import { parseArgs } from 'node:util';
import { archNames, getArch, parseArchList, type ArchRecord } from './arch.js';
import { runInteractive } from './interactive.js';
import { mergeReports, missingFromMerge, parseShard, readSummary, shardScenarios } from './merge.js';
import { toJUnit } from './junit.js';
import { toKTAP } from './ktap.js';
import { NO_PATCHES } from './patches.js';
import { kernelTarball, KERNELS, parseKernelList, type KernelRecord } from './kernels.js';
import { toHTML } from './html.js';
import { reportCommand } from './trend.js';
import { cacheRoot } from './cache.js';
import { formatCache, listCache, pruneCache } from './cachecmd.js';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { EXIT, exitCodeFor, HarnessError, usageError } from './errors.js';
import { createLogger, type Level } from './log.js';
import { PROJECT_ROOT, runMain, type RunOptions, type RunReport, type Stage } from './pipeline.js';
import { pickScenarios, SCENARIOS } from './scenarios/index.js';
import { kselftest } from './scenarios/kselftest.js';
import { DEFAULT_KERNEL_SRC } from './source.js';
import { formatSummary } from './summary.js';
import { killAll, wasInterrupted } from './children.js';

export const HELP = `Usage: klp-harness run [options]
       klp-harness repro --arch ARCH --scenario NAME [options]
       klp-harness shell --arch ARCH [options]
       klp-harness merge --out DIR SUMMARY.json...
       klp-harness cache [--prune] [--max-age DAYS]
       klp-harness report RUN_DIR|SUMMARY.json... [--out trend.html]

run    builds each kernel with the patch series applied, boots it in QEMU, and
       runs the livepatch scenarios over SSH.
repro  boots one guest, leaves that scenario's transition stuck, lists what
       blocks it, and opens a shell in the guest (leaving it stops the VM).
shell  boots one guest with the harness's modules in /root and opens a shell.
report draws one page of pass/fail and timings over several runs (time order).

Options:
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
  --sequential         run the arches' VMs one after the other (default: alongside)
  --shard I/N          run only the I-th of N deterministic parts of the scenario list
  --verbose            stream build output, commands and the guest console
  --quiet              print only the summary
  --ktap               print the run's results as KTAP on stdout instead of the summary
                       (also written to <out>/ktap.txt)
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
        'kconfig-extra': { type: 'string', multiple: true },
        kernel: { type: 'string' },
        ktap: { type: 'boolean' },
        'cache-dir': { type: 'string' },
        out: { type: 'string' },
        scenario: { type: 'string', multiple: true },
        cpu: { type: 'string', multiple: true },
        rebuild: { type: 'string', multiple: true },
        shard: { type: 'string' },
        sequential: { type: 'boolean' },
        kselftest: { type: 'boolean' },
        prune: { type: 'boolean' },
        'max-age': { type: 'string' },
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
  if (command === 'merge' || command === 'cache') {
    try {
      return command === 'merge' ? mergeCommand(positionals.slice(1), values.out) : await cacheCommand(values['cache-dir'], values.prune, values['max-age']);
    } catch (e) {
      process.stderr.write(`klp-harness: ${e instanceof HarnessError ? e.report() : String(e)}\n`);
      return exitCodeFor(e);
    }
  }
  if (command === 'report') {
    try {
      return reportCommand(positionals.slice(1), values.out);
    } catch (e) {
      process.stderr.write(`klp-harness: ${e instanceof HarnessError ? e.report() : String(e)}\n`);
      return exitCodeFor(e);
    }
  }
  if (command === 'repro' || command === 'shell') {
    const logger = createLogger(values.verbose ? 'verbose' : 'normal');
    try {
      if (!values.arch || values.arch.includes(',')) throw usageError(`${command} needs exactly one --arch`, { hint: `use one of: ${archNames().join(', ')}` });
      if (command === 'repro' && values.scenario?.length !== 1) throw usageError('repro needs exactly one --scenario');
      return await runInteractive({
        arch: getArch(values.arch),
        scenario: command === 'repro' ? values.scenario![0] : undefined,
        kernelSrc: pathOption(values['kernel-src']),
        patches: values.patches === NO_PATCHES ? NO_PATCHES : pathOption(values.patches),
        kconfigDir: pathOption(values.kconfigs),
        kconfigExtra: extraFragments(values['kconfig-extra']),
        cacheDir: pathOption(values['cache-dir']),
        cpu: values.cpu ? (checkCpus([getArch(values.arch)], values.cpu), values.cpu[0]) : undefined,
        logger,
      });
    } catch (e) {
      process.stderr.write(`klp-harness: ${e instanceof HarnessError ? e.report() : String((e as Error)?.stack ?? e)}\n`);
      return wasInterrupted() ? EXIT.interrupted : exitCodeFor(e);
    } finally {
      killAll();
    }
  }
  const level: Level = values.verbose ? 'verbose' : values.quiet ? 'quiet' : 'normal';
  const logger = createLogger(level);
  try {
    if (command !== 'run') throw usageError(`unknown command '${command}'`, { hint: 'use: klp-harness run [options] (see --help)' });
    const arches = parseArchList(values.arch ?? archNames().join(','));
    let scenarios = pickScenarios(values.scenario);
    if (values.kselftest && !scenarios.includes(kselftest)) scenarios = [...scenarios, kselftest];
    const selected = scenarios.map((sc) => sc.name);
    const shard = values.shard ? parseShard(values.shard) : undefined;
    if (shard) {
      scenarios = shardScenarios(scenarios, shard);
      if (scenarios.length === 0) {
        throw usageError(`--shard ${values.shard} selects no scenario`, {
          hint: `${selected.length} scenario(s) are selected (${selected.join(', ')}): use at most ${selected.length} shards`,
        });
      }
    }
    const rebuild = (values.rebuild ?? []).flatMap((v) => v.split(',')).map((s) => {
      if (!STAGES.includes(s as Stage)) throw usageError(`unknown stage '${s}' for --rebuild`, { hint: `use one of: ${STAGES.join(', ')}` });
      return s as Stage;
    });
    const cpuList = values.cpu?.flatMap((c) => c.split(',')).filter(Boolean);
    if (cpuList) checkCpus(arches, cpuList);
    const kernels = values.kernel ? parseKernelList(values.kernel) : undefined;
    if (kernels && values['kernel-src']) throw usageError('--kernel and --kernel-src name the kernel twice', { hint: 'give one of them' });
    if (kernels && kernels.length > 1 && values.patches) throw usageError('--patches with several --kernel values', { hint: 'each kernel takes its own series from patches/<version>/; give one kernel with --patches' });
    const base: RunOptions = {
      arches,
      scenarios,
      selection: { scenarios: selected, shard },
      kernelSrc: pathOption(values['kernel-src']),
      patches: values.patches === NO_PATCHES ? NO_PATCHES : pathOption(values.patches),
      kconfigDir: pathOption(values.kconfigs),
      kconfigExtra: extraFragments(values['kconfig-extra']),
      sequential: values.sequential,
      cacheDir: pathOption(values['cache-dir']),
      outDir: pathOption(values.out),
      rebuild,
      logger,
      cpus: cpuList ? (a) => cpusFor(a.qemu.cpuModels, cpuList) : undefined,
    };
    const report = kernels ? await runKernels(base, kernels) : await runMain(base);
    process.stdout.write(values.ktap ? toKTAP(report) : formatSummary(report));
    return wasInterrupted() ? EXIT.interrupted : report.exitCode;
  } catch (e) {
    const text = e instanceof HarnessError ? e.report() : String((e as Error)?.stack ?? e);
    process.stderr.write(`klp-harness: ${text}\n`);
    return wasInterrupted() ? EXIT.interrupted : exitCodeFor(e);
  } finally {
    killAll();
  }
}

/**
 * The matrix over kernels: one run per kernel (its source fetched, its own
 * series unless --patches), each in <out>/<kernel line>/, then one merged
 * report over kernel x arch x scenario in <out>. A kernel that fails to
 * fetch, patch or build does not stop the others.
 */
async function runKernels(base: RunOptions, kernels: KernelRecord[]): Promise<RunReport> {
  const cacheDir = cacheRoot(base.cacheDir);
  const out = base.outDir ?? join(cacheDir, 'runs', `${new Date().toISOString().replace(/[:.]/g, '-')}-kernels`);
  const reports: RunReport[] = [];
  for (const k of kernels) {
    if (wasInterrupted()) break;
    const dir = join(out, k.line);
    try {
      const { tarball, version } = await kernelTarball(k, cacheDir, base.logger, base.rebuild?.includes('source'));
      base.logger.info(`kernel ${k.name}: ${tarball} (${version})`);
      reports.push(await runMain({ ...base, kernel: k, kernelSrc: tarball, patches: base.patches ?? join(PROJECT_ROOT, k.series), outDir: dir }));
    } catch (e) {
      // The kernel never got to a run of its own: one failed column in the report, with why.
      const err = e instanceof HarnessError ? e : new HarnessError('infra', String(e));
      base.logger.info(`kernel ${k.name}: ${err.message}`);
      reports.push({
        started: new Date().toISOString(),
        durationMs: 0,
        outDir: dir,
        cacheDir,
        source: { kernelSrc: k.package, patches: k.series },
        arches: base.arches.map((a) => ({ arch: a.name, kernel: k.name, boots: [], scenarios: [], error: { kind: err.kind, message: err.message, report: err.report(), exitCode: exitCodeFor(err) } })),
        exitCode: exitCodeFor(err),
      });
    }
  }
  const merged = mergeReports(reports, [...SCENARIOS.map((s) => s.name), kselftest.name], out);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'summary.json'), JSON.stringify(merged, null, 2) + '\n');
  writeFileSync(join(out, 'junit.xml'), toJUnit(merged));
  writeFileSync(join(out, 'ktap.txt'), toKTAP(merged));
  writeFileSync(join(out, 'report.html'), toHTML(merged));
  return merged;
}

function mergeCommand(files: string[], out: string | undefined): number {
  if (!out || files.length === 0) throw usageError('merge needs --out DIR and at least one summary.json');
  const reports = files.map(readSummary);
  const merged = mergeReports(reports, SCENARIOS.map((s) => s.name), resolve(out));
  const missing = missingFromMerge(reports, merged);
  mkdirSync(merged.outDir, { recursive: true });
  writeFileSync(join(merged.outDir, 'summary.json'), JSON.stringify({ ...merged, missing: missing.length ? missing : undefined }, null, 2) + '\n');
  writeFileSync(join(merged.outDir, 'junit.xml'), toJUnit(merged));
  writeFileSync(join(merged.outDir, 'ktap.txt'), toKTAP(merged));
  writeFileSync(join(merged.outDir, 'report.html'), toHTML(merged));
  process.stdout.write(formatSummary(merged));
  if (missing.length) {
    // The merged report is written (it holds what did run), but an incomplete set must not pass.
    throw usageError(`merge is missing part of the run: ${missing.join('; ')}`, {
      hint: 'give every shard\'s summary.json (a shard whose job died left none: run it again)',
    });
  }
  return merged.exitCode;
}

async function cacheCommand(dir: string | undefined, prune: boolean | undefined, maxAge: string | undefined): Promise<number> {
  const root = cacheRoot(dir);
  const entries = await listCache(root);
  process.stdout.write(`klp-harness cache: ${root}\n${formatCache(entries)}`);
  if (prune) {
    const days = maxAge === undefined ? 30 : Number(maxAge);
    if (!Number.isFinite(days) || days < 0) throw usageError(`bad --max-age '${maxAge}'`, { hint: 'give a number of days' });
    const { removed, skipped } = await pruneCache(root, entries, days);
    for (const s of skipped) process.stdout.write(`kept ${s.entry.kind}/${s.entry.name}: ${s.why}\n`);
    process.stdout.write(`pruned ${removed.length} entr${removed.length === 1 ? 'y' : 'ies'} unused for ${days} days or incomplete\n`);
  }
  return EXIT.ok;
}

/** A path option made absolute at the door (it ends up in make O=, in reports, in child processes' cwd); empty counts as not given. */
function pathOption(v: string | undefined): string | undefined {
  return v ? resolve(v) : undefined;
}

/** --kconfig-extra files, made absolute; a missing one is bad input. */
function extraFragments(files: string[] | undefined): string[] | undefined {
  const out = files?.map((f) => resolve(f));
  for (const f of out ?? []) {
    if (!existsSync(f) || !statSync(f).isFile()) throw usageError(`--kconfig-extra ${f} is not a file`, { hint: 'give a config fragment such as kconfigs/debug.config' });
  }
  return out;
}

/** Every --cpu must be a model of at least one selected arch; otherwise exit 4 listing each arch's models. */
export function checkCpus(arches: readonly ArchRecord[], asked: string[]): void {
  const unknown = asked.filter((c) => !arches.some((a) => a.qemu.cpuModels.includes(c)));
  if (unknown.length) {
    throw usageError(`unknown CPU model${unknown.length > 1 ? 's' : ''} ${unknown.map((c) => `'${c}'`).join(', ')} for --arch ${arches.map((a) => a.name).join(',')}`, {
      hint: `use one of: ${arches.map((a) => `${a.name}: ${a.qemu.cpuModels.join(', ')}`).join('; ')}`,
    });
  }
}

/** The --cpu models an arch knows, or its default model when it knows none of them (another arch's model was asked). */
export function cpusFor(known: readonly string[], asked: string[]): string[] {
  const mine = asked.filter((c) => known.includes(c));
  return mine.length ? mine : [known[0]!];
}
