// `klp-harness repro` and `klp-harness shell`: boot one guest for a person,
// optionally leave a scenario's transition stuck, then hand over a real
// shell in the guest. Leaving the shell stops the VM.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { archNames, getArch, type ArchRecord } from '../core/arch.js';
import { Accelerator } from '../vm/accel.js';
import { bootGuest, type Booted } from '../vm/boot.js';
import { cacheRoot } from '../core/cache.js';
import { guardRun } from '../proc/supervisor.js';
import { EXIT, usageError } from '../core/errors.js';
import { GuestOps, LP_SYSFS } from '../vm/guestops.js';
import type { Keys } from '../image/keys.js';
import type { BuildResult } from '../kernel/build.js';
import type { ModulesResult } from '../kernel/modules.js';
import { commandOptions, INPUTS, noPositionals } from './options.js';
import { BINARY_INPUTS, debianImageSource, noSourceOptions, pathKernelSource, USER_PATCH_INPUTS, userPatchInput } from './binary-options.js';
import { parseImageList } from '../kernel/debian-images.js';
import { prepareBinaryRun, type BinarySource } from '../pipeline/prepare-binary.js';
import { loadUserPatch, type UserPatchInput } from '../scenarios/user-patch.js';
import { existsSync } from 'node:fs';
import { checkCpus, inputOptions } from './run.js';
import type { Logger } from '../core/log.js';
import { prepareRun } from '../pipeline/prepare.js';
import type { QemuChoice } from '../vm/qemu-dist.js';
import { runStamp } from '../pipeline/run.js';
import { sshCommand } from '../vm/ssh.js';
import { preflight } from '../core/preflight.js';
import { initialOf, pendingPatchOf, reachStuck, stuckScenarioNames, stuckSetupOf, vcpusOf } from '../scenarios/matrix.js';
import { runScenario } from '../scenarios/runner.js';
import type { Expectations, StuckSetup } from '../scenarios/types.js';
import { binaryExpectations, expectationsOf } from '../pipeline/expectations.js';
import { blockingTasks, formatBlocking, Sleeper } from '../scenarios/sleeper.js';
import { timeout } from '../core/timeouts.js';

/** The options repro and shell take. */
const INTERACTIVE = {
  ...INPUTS,
  ...BINARY_INPUTS,
  kernel: { type: 'string', arg: 'NAME', help: "one of Debian's prebuilt kernels (debian-image:6.1, ...) instead of a build" },
  arch: { type: 'string', arg: 'ARCH', help: 'the guest arch (x86_64 or ppc64le)' },
  cpu: { type: 'string', multiple: true, arg: 'MODEL', help: "CPU model for QEMU (default: the arch's first)" },
  verbose: { type: 'boolean', help: 'stream build output, commands and the guest console' },
} as const;

export interface InteractiveOptions {
  arch: ArchRecord;
  /** Set for repro: the scenario whose stuck state to set up. */
  scenario?: string;
  kernelSrc?: string;
  patches?: string;
  kconfigDir?: string;
  kconfigExtra?: string[];
  qemu?: QemuChoice;
  cacheDir?: string;
  cpu?: string;
  logger: Logger;
  print?: (s: string) => void;
  /** A kernel not built here (--kernel debian-image:X.Y, --kernel-image ...). */
  binary?: BinarySource;
  /** repro --livepatch: the user's module under the user's workload, instead of a scenario's stuck state. */
  userPatch?: UserPatchInput;
}

export async function runInteractive(o: InteractiveOptions): Promise<number> {
  const print = o.print ?? ((s: string) => process.stdout.write(s + '\n'));
  const setup = o.scenario === undefined ? undefined : stuckSetupOf(o.scenario);
  if (o.scenario !== undefined && !setup) {
    throw usageError(`scenario '${o.scenario}' has no stuck state to reproduce`, { hint: `use one of: ${stuckScenarioNames().join(', ')}` });
  }
  const cacheDir = cacheRoot(o.cacheDir);
  for (const line of guardRun(cacheDir)) o.logger.info(line);
  preflight([o.arch]);
  const logger = o.logger;
  const prepared = o.binary
    ? await prepareBinaryRun({ arch: o.arch, source: o.binary, cacheDir, logger, qemu: o.qemu })
    : await prepareRun({ arches: [o.arch], cacheDir, logger, kernelSrc: o.kernelSrc, patches: o.patches, kconfigDir: o.kconfigDir, kconfigExtra: o.kconfigExtra, qemu: o.qemu });
  const { src, keys, qemu, series } = prepared;
  const { build, image, modules } = 'kernel' in prepared.artifacts ? prepared.artifacts : prepared.artifacts.get(o.arch.name)!;
  const outDir = join(cacheDir, 'runs', `${runStamp()}-${o.scenario || o.userPatch ? 'repro' : 'shell'}`);
  mkdirSync(outDir, { recursive: true });
  const consoleLog = join(outDir, `console-${o.arch.name}.log`);
  const accel = await Accelerator.decide({ arch: o.arch, cacheDir, logger, qemuBinary: qemu.binaryFor(o.arch) });
  const booted = await bootGuest({ arch: o.arch, kernel: build.image, initrd: image.path, keys, consoleLog, logger, cpu: o.cpu, smp: vcpusOf(o.scenario), accel, qemuBinary: qemu.binaryFor(o.arch), qemuDataArgs: qemu.dataArgsFor(o.arch), qemuEnv: qemu.envFor(o.arch) });
  try {
    await using guest = booted;
    const expect = expectationsOf({}, src.version, series);
    await useGuest(o, guest, { build, modules, tree: src.tree, keys, consoleLog, setup, print, expect: 'kernel' in prepared.artifacts ? binaryExpectations(expect, prepared.artifacts.kernel) : expect });
  } finally {
    print(`VM stopped. Console log: ${consoleLog}`);
  }
  return EXIT.ok;
}

/** Copies the modules in, sets up the stuck state (repro), prints how to poke it, and hands over the shell. */
async function useGuest(
  o: InteractiveOptions,
  booted: Booted,
  h: { build: BuildResult; modules: ModulesResult; tree: string; keys: Keys; consoleLog: string; setup?: StuckSetup; print: (s: string) => void; expect: Expectations },
): Promise<void> {
  const { build, modules, print, setup } = h;
  const logger = o.logger;
  const ops = new GuestOps(booted.ssh, timeout('guestCommand', o.arch), booted.vm);
  // A kernel not built here may come without the sample (and one that cannot livepatch without our modules).
  const files = [...Object.values(modules.modules), join(build.buildDir, 'samples/livepatch/livepatch-sample.ko')].filter((f) => existsSync(f));
  for (const ko of files) await ops.put(readFileSync(ko), `/root/${ko.split('/').pop()}`);
  const copied = files.map((f) => f.split('/').pop()!);
  // From here on this process prints to the terminal directly; the live list would overdraw it.
  logger.endLive();
  print(`Guest ${o.arch.name} is up (console: ${h.consoleLog}). In /root: ${copied.filter((f) => f.endsWith('.ko')).join(' ') || 'no modules'}`);
  if (setup && o.scenario) {
    const report = await runScenario(
      { name: `repro-${o.scenario}`, description: '', run: (ctx) => reachStuck(ctx, new Sleeper(ctx), setup).then(() => {}) },
      { arch: o.arch, ops, build, tree: h.tree, modules, vm: booted.vm, logger, expect: h.expect },
      o.cpu,
    );
    if (!report.ok) print(`Setting up the stuck state did not go as expected:\n${report.error ?? ''}`);
    const tasks = await blockingTasks(ops, initialOf(setup));
    const patch = pendingPatchOf(setup);
    print(`\nThe ${setup.direction} transition of ${patch} is pending. Blocking: ${formatBlocking(tasks)}`);
    print(`Poke it from the shell below:`);
    for (const f of ['transition', 'enabled', 'signal', 'force']) print(`  ${LP_SYSFS}/${patch}/${f}`);
    print(`  e.g. echo 1 > ${LP_SYSFS}/${patch}/signal; cat ${LP_SYSFS}/${patch}/transition`);
    print(`  per task: cat /proc/<pid>/patch_state /proc/<pid>/stack; blockers: cat /sys/kernel/debug/klp_sleeper/status`);
  }
  if (o.userPatch) await reproUserPatch(o, o.userPatch, { ops, booted, build, modules, tree: h.tree, expect: h.expect, print });
  print(`From a second terminal: ${sshCommand(h.keys, booted.port)}`);
  print(`Leaving this shell (exit or Ctrl-D) stops the VM.\n`);
  await booted.ssh.interactive();
}

/** repro --livepatch: the user's module loaded under the user's workload, left as the kernel leaves it. */
async function reproUserPatch(
  o: InteractiveOptions,
  input: UserPatchInput,
  h: { ops: GuestOps; booted: Booted; build: BuildResult; modules: ModulesResult; tree: string; expect: Expectations; print: (s: string) => void },
): Promise<void> {
  let loaded: Awaited<ReturnType<typeof loadUserPatch>> | undefined;
  const report = await runScenario(
    { name: 'repro-user-patch', description: '', run: async (ctx) => void (loaded = await loadUserPatch(ctx, input)) },
    { arch: o.arch, ops: h.ops, build: h.build, tree: h.tree, modules: h.modules, vm: h.booted.vm, logger: o.logger, expect: h.expect },
    o.cpu,
  );
  if (!report.ok) h.print(`Loading the livepatch under the workload did not go as expected:\n${report.error ?? ''}`);
  if (!loaded) return;
  const patch = loaded.module.name;
  h.print(loaded.stuck ? `\nThe patching transition of ${patch} is stuck. Blocking:\n  ${loaded.blockers.split('\n').join('\n  ')}` : `\nThe patching transition of ${patch} ended on its own.`);
  h.print('Poke it from the shell below:');
  for (const f of ['transition', 'enabled', 'signal', 'force']) h.print(`  ${LP_SYSFS}/${patch}/${f}`);
  h.print(`  the workload's output: /tmp/klp-workload.out (status in /tmp/klp-workload.rc once it ends)`);
}

export const parseRepro = commandOptions('repro', { ...INTERACTIVE, ...USER_PATCH_INPUTS, scenario: { type: 'string', multiple: true, arg: 'NAME', help: 'the scenario whose stuck transition to leave behind' } } as const);
export const parseShell = commandOptions('shell', INTERACTIVE);

/** `repro` and `shell`: one arch (and for repro one scenario), then the session. */
export async function interactiveCommand(command: 'repro' | 'shell', values: ReturnType<typeof parseRepro>['values'], positionals: string[], logger: Logger): Promise<number> {
  noPositionals(command, positionals);
  if (!values.arch || values.arch.includes(',')) throw usageError(`${command} needs exactly one --arch`, { hint: `use one of: ${archNames().join(', ')}` });
  const user = command === 'repro' ? userPatchInput(values as ReturnType<typeof parseRepro>['values']) : undefined;
  if (command === 'repro' && (user ? values.scenario?.length : values.scenario?.length !== 1)) throw usageError('repro needs exactly one --scenario, or --livepatch with --workload');
  const arch = getArch(values.arch);
  if (values.cpu) checkCpus([arch], values.cpu);
  const images = values.kernel ? parseImageList(values.kernel) : [];
  if (images.length > 1) throw usageError(`${command} takes one --kernel`, { hint: 'name one of Debian\'s prebuilt kernels, e.g. debian-image:6.1' });
  if (images.length) noSourceOptions(values, `--kernel ${values.kernel}`);
  const byPath = pathKernelSource(values, [arch]);
  const binary = images[0] ? debianImageSource(images[0]) : byPath;
  return runInteractive({ arch, scenario: values.scenario?.[0], ...inputOptions(values), cpu: values.cpu?.[0], logger, binary, userPatch: user });
}
