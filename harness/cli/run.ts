// `klp-harness run`: the main job over the selected arches (and kernels).
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { archNames, parseArchList, type ArchRecord } from '../core/arch.js';
import { wasInterrupted } from '../proc/supervisor.js';
import { EXIT, usageError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { KERNELS, parseKernelList } from '../kernel/kernels.js';
import { NO_PATCHES } from '../kernel/patches.js';
import { runKernels } from '../pipeline/kernel-matrix.js';
import { runMain, type RunOptions, type Stage } from '../pipeline/run.js';
import { PROJECT_ROOT, projectPath } from '../core/paths.js';
import { KNOWN_FAILURES_FILE, loadKnownFailures } from '../report/known-failures.js';
import { toKTAP } from '../report/ktap.js';
import { parseShard, shardScenarios } from '../scenarios/shard.js';
import { formatSummary } from '../report/summary.js';
import { ALL_SCENARIOS, pickScenarios, SCENARIOS } from '../scenarios/index.js';
import { kselftest } from '../scenarios/kselftest.js';
import { parseQemuChoice } from '../vm/qemu-dist.js';
import type { PatchFeature } from '../scenarios/types.js';
import { commandOptions, INPUTS, noPositionals, pathOption } from './options.js';
import { BINARY_INPUTS, debianImageSource, noSourceOptions, pathKernelSource, USER_PATCH_INPUTS, userPatchInput } from './binary-options.js';
import { userPatch } from '../scenarios/user-patch.js';
import { DEBIAN_IMAGES, isImageKernelName, parseImageList } from '../kernel/debian-images.js';
import { runImages } from '../pipeline/image-matrix.js';

const STAGES: Stage[] = ['source', 'build', 'image'];

export const parseRun = commandOptions('run', {
  ...INPUTS,
  ...BINARY_INPUTS,
  ...USER_PATCH_INPUTS,
  arch: { type: 'string', arg: 'LIST', help: `comma-separated arches (default: ${archNames().join(',')})` },
  kernel: {
    type: 'string',
    arg: 'LIST',
    help: `Debian kernels to run, comma-separated: ${KERNELS.map((k) => k.name).join(', ')};\neach with its own series from patches/<version>/ (default: --kernel-src);\nor Debian's prebuilt ones as shipped: ${DEBIAN_IMAGES.map((k) => k.name).join(', ')}`,
  },
  out: { type: 'string', arg: 'DIR', help: "where this run's logs and reports go (default: <cache>/runs/<time>)" },
  scenario: { type: 'string', multiple: true, arg: 'NAME', help: `run only this scenario; repeatable (${SCENARIOS.map((s) => s.name).join(', ')})` },
  cpu: { type: 'string', multiple: true, arg: 'MODEL', help: "CPU model for QEMU (default: each arch's first; repeatable)" },
  rebuild: { type: 'string', multiple: true, arg: 'STAGE', help: 'redo a cached stage: source, build, image; repeatable' },
  shard: { type: 'string', arg: 'I/N', help: 'run only the I-th of N deterministic parts of the scenario list' },
  sequential: { type: 'boolean', help: "run the arches' VMs one after the other (default: alongside)" },
  jobs: { type: 'string', arg: 'N', help: 'guests at once over all arches (default: 4 per core, as memory allows)' },
  'no-snapshot': { type: 'boolean', help: 'boot every guest (default: restore each from a snapshot of a booted one)' },
  'no-reuse': { type: 'boolean', help: "restore every guest in a QEMU of its own (default: a finished\nguest's QEMU is reset in place to the snapshot for the next one)" },
  kselftest: { type: 'boolean', help: "also run the kernel's livepatch selftests in each guest" },
  'known-failures': { type: 'string', arg: 'FILE', help: 'failures with a known cause, reported as XFAIL (they do not fail\nthe run) or XPASS when they pass (default: known-failures.json)' },
  require: { type: 'string', arg: 'FILES', help: 'per-patch files that must be there, e.g. signal,force: a scenario\nthat would skip (or leave a step unchecked) for lack of one fails' },
  ktap: { type: 'boolean', help: "print the run's results as KTAP on stdout instead of the summary\n(also written to <out>/ktap.txt)" },
  verbose: { type: 'boolean', help: 'stream build output, commands and the guest console' },
  quiet: { type: 'boolean', help: 'print only the summary' },
} as const);

export type RunValues = ReturnType<typeof parseRun>['values'];

/** The level of detail the run's options ask for. */
export const runLevel = (v: RunValues) => (v.verbose ? 'verbose' : v.quiet ? 'quiet' : 'normal');

/** Runs the job the options describe and prints its summary (or KTAP); returns the exit code. */
export async function runCommand(values: RunValues, positionals: string[], logger: Logger): Promise<number> {
  noPositionals('run', positionals);
  const arches = parseArchList(values.arch ?? archNames().join(','));
  // user-patch is made from --livepatch/--workload; asked for alone or with others.
  const user = userPatchInput(values);
  const wantsUser = values.scenario?.includes('user-patch') || (user !== undefined && !values.scenario?.length);
  if (wantsUser && !user) throw usageError('--scenario user-patch needs --livepatch FILE.ko|DIR and --workload CMD', { hint: 'e.g. --scenario user-patch --livepatch my_lp.ko --workload "cat /proc/my_file"' });
  if (user && !wantsUser) throw usageError('--livepatch with other scenarios but not user-patch', { hint: 'add --scenario user-patch (or give no --scenario)' });
  const others = values.scenario?.filter((n) => n !== 'user-patch');
  let scenarios = user && !others?.length ? [] : pickScenarios(others);
  if (user) scenarios.push(userPatch(user));
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
  const images = values.kernel?.split(',').some(isImageKernelName) ? parseImageList(values.kernel) : undefined;
  if (images) noSourceOptions(values, `--kernel ${values.kernel}`);
  const byPath = pathKernelSource(values, arches);
  if (byPath && values.kernel) throw usageError('--kernel and --kernel-image name the kernel twice', { hint: 'give one of them' });
  const kernels = values.kernel && !images ? parseKernelList(values.kernel) : undefined;
  if (kernels && values['kernel-src']) throw usageError('--kernel and --kernel-src name the kernel twice', { hint: 'give one of them' });
  if (kernels && kernels.length > 1 && values.patches) throw usageError('--patches with several --kernel values', { hint: 'each kernel takes its own series from patches/<version>/; give one kernel with --patches' });
  // Read before anything is built: a bad file is bad usage (exit 4), naming the file.
  const asked = pathOption(values['known-failures']);
  const knownFailures = loadKnownFailures(asked ?? projectPath(KNOWN_FAILURES_FILE), { arches: archNames(), scenarios: ALL_SCENARIOS.map((x) => x.name), root: PROJECT_ROOT }, asked !== undefined);
  const base: RunOptions = {
    arches,
    knownFailures,
    scenarios,
    selection: { scenarios: selected, shard },
    ...inputOptions(values),
    sequential: values.sequential,
    jobs: parseJobs(values.jobs),
    require: parseRequire(values.require),
    snapshots: !values['no-snapshot'],
    reuse: !values['no-reuse'],
    outDir: pathOption(values.out),
    rebuild,
    logger,
    cpus: cpuList ? (a) => cpusFor(a.qemu.cpuModels, cpuList) : undefined,
  };
  const report = images ? await runImages(base, images.map(debianImageSource)) : byPath ? await runMain({ ...base, binary: byPath }) : kernels ? await runKernels(base, kernels) : await runMain(base);
  process.stdout.write(values.ktap ? toKTAP(report) : formatSummary(report));
  return wasInterrupted() ? EXIT.interrupted : report.exitCode;
}

const LEVERS: PatchFeature[] = ['signal', 'force', 'replace'];

/** --require signal,force: per-patch files whose absence fails a scenario instead of skipping it. */
export function parseRequire(value: string | undefined): PatchFeature[] | undefined {
  if (value === undefined) return undefined;
  const files = value.split(',').map((v) => v.trim()).filter(Boolean);
  const unknown = files.filter((f) => !LEVERS.includes(f as PatchFeature));
  if (unknown.length || !files.length) throw usageError(`bad --require '${value}'`, { hint: `name per-patch files, comma-separated: ${LEVERS.join(', ')}` });
  return files as PatchFeature[];
}

/** --jobs N: a positive whole number of guests at once. */
export function parseJobs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1) throw usageError(`bad --jobs '${value}'`, { hint: 'give how many guests may run at once, a whole number of 1 or more (default: what the host\'s cores and memory hold)' });
  return n;
}

/** The kernel source, series, fragments and cache the options name (run, repro, shell). */
export function inputOptions(values: { 'kernel-src'?: string; patches?: string; kconfigs?: string; 'kconfig-extra'?: string[]; 'cache-dir'?: string; qemu?: string }) {
  return {
    qemu: values.qemu === undefined ? undefined : parseQemuChoice(values.qemu),
    kernelSrc: pathOption(values['kernel-src']),
    patches: values.patches === NO_PATCHES ? NO_PATCHES : pathOption(values.patches),
    kconfigDir: pathOption(values.kconfigs),
    kconfigExtra: extraFragments(values['kconfig-extra']),
    cacheDir: pathOption(values['cache-dir']),
  };
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
