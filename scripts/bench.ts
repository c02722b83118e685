// `npm run bench`: measures what the speed issues ask, on this machine, and
// writes bench/RESULTS.md. Prints figures; asserts nothing.
//   the cold path: npm ci, then the main job from an empty cache with the
//     page cache dropped, next to a plain make of the same tree and configs
//   a fresh guest: restore from a snapshot vs a boot vs a reset in place, median of --samples (20)
//   the warm full matrix for each --jobs-list value (1,2,4; `default`: what a run
//     without --jobs picks here), each --repeat times (1; medians and ranges): wall,
//     CPU per scenario; then with --no-reuse at the --reuse-jobs value (default 4):
//     each guest in a QEMU of its own
//   boot stalls: --stall-boots (200) x86_64 boots, four at a time on this host
//   remedy-to-completion latency per scenario
//   the kernel's own KUnit runner on the same tree, as a peer (--no-kunit skips it)
//   what the host charges for fresh memory and a process start (host-costs.ts)
//   inside the QEMUs: perf's split of their CPU during one more matrix (qemu-perf.ts; needs perf)
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { ARCHES, type ArchRecord } from '../harness/core/arch.js';
import { bootGuest } from '../harness/vm/boot.js';
import { Accelerator } from '../harness/vm/accel.js';
import { freshGuest } from '../harness/vm/snapshot.js';
import { GuestPool } from '../harness/vm/guest-pool.js';
import { Slots } from '../harness/pipeline/slots.js';
import type { RunReport } from '../harness/report/run-report.js';
import { makeArgs } from '../harness/kernel/build.js';
import { cacheRoot } from '../harness/core/cache.js';
import { run } from '../harness/proc/exec.js';
import { loadKeys } from '../harness/image/keys.js';
import { createLogger } from '../harness/core/log.js';
import { readSeries } from '../harness/kernel/patches.js';
import { PROJECT_ROOT } from '../harness/core/paths.js';
import { prepareRun, type PreparedRun } from '../harness/pipeline/prepare.js';
import { parseQemuChoice, type QemuChoice } from '../harness/vm/qemu-dist.js';
import { phaseTable, profileGuest, type PhaseFigure } from './profile-guest.js';
import { hostCosts, hostCostTable } from './host-costs.js';
import { perfAround } from './qemu-perf.js';
import { runMain } from '../harness/pipeline/run.js';
import { SCENARIOS } from '../harness/scenarios/index.js';
import { DEFAULT_VCPUS } from '../harness/scenarios/types.js';
import { DEFAULT_KERNEL_SRC } from '../harness/kernel/source.js';

const argv = process.argv.slice(2);
const args = new Set(argv);
const valueOf = (name: string, dflt: string) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : dflt;
};
const skipCold = args.has('--no-cold');
const skipKunit = args.has('--no-kunit');
/** Guests at once per matrix row; `default` (undefined here) is the run's own choice for this host. */
const jobsList = valueOf('--jobs-list', '1,2,4')
  .split(',')
  .map((j) => (j === 'default' ? undefined : Number(j)));
if (jobsList.some((j) => j !== undefined && !(Number.isInteger(j) && j > 0))) throw new Error(`--jobs-list: whole numbers of 1 or more, or default (got ${valueOf('--jobs-list', '')})`);
/** A row's --jobs as the tables and temporary directories name it. */
const jobsName = (j: number | undefined) => (j === undefined ? 'default' : String(j));
/** Matrices per row: this host varies by 10-30 % from run to run, so a row can be the median of several. */
const repeat = Number(valueOf('--repeat', '1'));
if (!(Number.isInteger(repeat) && repeat > 0)) throw new Error(`--repeat: a whole number of 1 or more (got ${valueOf('--repeat', '')})`);
const samples = Number(valueOf('--samples', '20'));
const stallBoots = Number(valueOf('--stall-boots', '200'));
const logger = createLogger(args.has('--verbose') ? 'verbose' : 'quiet');
const lines: string[] = [];
const say = (s = '') => {
  lines.push(s);
  process.stdout.write(s + '\n');
};
const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const arches: ArchRecord[] = Object.values(ARCHES);
const cacheDir = cacheRoot();
const series = readSeries(join(PROJECT_ROOT, 'patches'));
const keys = loadKeys(cacheDir);
const jobs = availableParallelism();

say('# klp-harness benchmark');
say();
say(`- date: ${new Date().toISOString()}`);
const probeStarted = Date.now();
const accels = new Map<string, Accelerator>();
for (const arch of Object.values(ARCHES)) accels.set(arch.name, await Accelerator.decide({ arch, cacheDir, logger }));
const accelOf = (arch: ArchRecord) => accels.get(arch.name)!;
say(`- machine: ${cpus()[0]?.model ?? '?'}, ${jobs} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, accel x86_64=${accelOf(ARCHES.x86_64!).accel} ppc64le=${accelOf(ARCHES.ppc64le!).accel}`);
say(`- accelerator decided in ${sec(Date.now() - probeStarted)}: ${[...accels].map(([a, x]) => `${a}: ${x.why}`).join('; ')}`);
say(`- command: npm run bench${process.argv.slice(2).length ? ' -- ' + process.argv.slice(2).join(' ') : ''}`);
say(`- kernel: ${DEFAULT_KERNEL_SRC} + patches/ (${series.patches.length} patch)`);
say();



/** Drops the page cache (root only); says whether it could. */
async function dropCaches(): Promise<boolean> {
  await run('sync', []);
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3\n');
    return true;
  } catch {
    return false;
  }
}
/** Bytes this process and its waited-for children read from disk so far. */
const readBytes = () => Number(/^read_bytes: (\d+)/m.exec(readFileSync('/proc/self/io', 'utf8'))?.[1] ?? 0);
const mib = (b: number) => `${(b / 1048576).toFixed(0)} MiB`;

// The CLI's own start: every klp-harness call and every CLI spawn in the unit tests pays it.
{
  const cli = join(PROJECT_ROOT, 'bin/klp-harness.js');
  const medianOf10 = async (argv: string[]) => {
    const times: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = Date.now();
      await run(process.execPath, argv).catch(() => undefined); // bad usage exits 4
      times.push(Date.now() - t0);
    }
    return median(times);
  };
  say('## The CLI\'s start');
  say();
  say('Median of 10 spawns each, from start to exit (node included).');
  say();
  say('| call | time |');
  say('| --- | --- |');
  say(`| \`klp-harness --help\` | ${await medianOf10([cli, '--help'])} ms |`);
  say(`| \`klp-harness run --jobs 0\` (bad usage, exit 4) | ${await medianOf10([cli, 'run', '--jobs', '0'])} ms |`);
  say(`| \`node -e 0\` (node alone) | ${await medianOf10(['-e', '0'])} ms |`);
  say();
}

// What the host charges for memory and processes: a restore's cost is mostly these (scripts/host-costs.ts).
say('## What this host charges');
say();
say('Medians of 3 (memory, each in a node process of its own) and of 20 (process start). A first restore writes its guest\'s RAM; a reset in place writes the same RAM again, which the QEMU already has.');
say();
for (const line of hostCostTable(hostCosts())) say(line);
say();

if (!skipCold) {
  say('## Cold path: an empty cache, the page cache dropped');
  say();
  const coldCache = mkdtempSync(join(tmpdir(), 'klp-bench-cold-'));
  try {
    const npmDir = mkdtempSync(join(tmpdir(), 'klp-bench-npm-'));
    for (const f of ['package.json', 'package-lock.json']) copyFileSync(join(PROJECT_ROOT, f), join(npmDir, f));
    const dropped = await dropCaches();
    const n0 = Date.now();
    await run('npm', ['ci', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: npmDir });
    const npmMs = Date.now() - n0;
    rmSync(npmDir, { recursive: true, force: true });
    await dropCaches();
    const io0 = readBytes();
    const c0 = Date.now();
    // A logger of its own: the run tees it into a folder this section removes.
    const coldLogger = createLogger(args.has('--verbose') ? 'verbose' : 'quiet');
    const cold = await runMain({ arches, scenarios: [...SCENARIOS], logger: coldLogger, cacheDir: coldCache, outDir: join(coldCache, 'run') });
    const coldMs = Date.now() - c0;
    const coldRead = readBytes() - io0;
    say(`Page cache dropped before each part: ${dropped ? 'yes' : 'no (not root)'}. npm's own download cache stays warm (the registry is the network here).`);
    say();
    say('| part | time |');
    say('| --- | --- |');
    say(`| npm ci (in a copy of package.json + package-lock.json) | ${sec(npmMs)} |`);
    say(`| source: unpack + patch | ${sec(cold.source.durationMs ?? 0)} |`);
    for (const a of cold.arches) {
      say(`| ${a.arch}: kernel build (config + make) | ${sec(a.build?.durationMs ?? 0)} |`);
      say(`| ${a.arch}: guest images | ${sec(a.image?.durationMs ?? 0)} |`);
      say(`| ${a.arch}: scenarios (${a.scenarios.filter((x) => x.ok).length}/${a.scenarios.length} passed), wall | ${sec(a.scenariosWallMs ?? 0)} |`);
    }
    say(`| **the main job, empty cache** (\`klp-harness run\`, exit ${cold.exitCode}) | **${sec(coldMs)}** |`);
    say(`| **npm ci + the main job** (goal: 9 min) | **${sec(npmMs + coldMs)}** |`);
    say();
    say(`Read from disk during the main job: ${mib(coldRead)} (this process and its children: the kernel tarball, compilers, headers, Debian packages, QEMU).`);
    say();
    // The same builds by hand: one make per arch from the configs the harness wrote, page cache dropped first.
    const src = { tree: cold.source.tree! };
    let plainMs = 0;
    const rows: string[] = [];
    for (const a of cold.arches) {
      const arch = ARCHES[a.arch]!;
      const plainDir = join(coldCache, `plain-${arch.name}`);
      mkdirSync(plainDir, { recursive: true });
      copyFileSync(join(a.build!.dir, '.config'), join(plainDir, '.config'));
      const base = makeArgs(arch, src.tree, plainDir);
      await dropCaches();
      const p0 = Date.now();
      await run('make', [...base, 'olddefconfig']);
      await run('make', [...base, `-j${jobs}`, arch.imageTarget, 'modules']);
      const ms = Date.now() - p0;
      plainMs += ms;
      rows.push(`| ${arch.name} | ${sec(a.build?.durationMs ?? 0)} | ${sec(ms)} | ${((a.build?.durationMs ?? 0) / ms).toFixed(3)} |`);
      rmSync(plainDir, { recursive: true, force: true });
    }
    say('Next to a plain make of the same tree and .config (page cache dropped before each):');
    say();
    say('| arch | harness build | plain make | ratio |');
    say('| --- | --- | --- | --- |');
    for (const r of rows) say(r);
    const builtMs = cold.arches.reduce((s, a) => s + (a.build?.durationMs ?? 0), 0);
    say(`| both | ${sec(builtMs)} | ${sec(plainMs)} | ${(builtMs / plainMs).toFixed(3)} |`);
    say();
    const ran = cold.arches.reduce((n, a) => n + a.scenarios.length, 0);
    say(
      `Ratios against the plain make of both kernels: the harness's builds **${(builtMs / plainMs).toFixed(3)} x** (goal 1.15 x); ` +
        `the whole main job (source, builds, guest images with their package downloads, ${ran} scenarios) **${(coldMs / plainMs).toFixed(2)} x**, ` +
        `${sec(coldMs)} of wall; npm ci (${sec(npmMs)}) on top.`,
    );
    say();
  } finally {
    rmSync(coldCache, { recursive: true, force: true });
  }
}

// The warm cache, once per QEMU compared (--qemu-list; the first is the one the matrix runs on).
const qemuList = valueOf('--qemu-list', 'host,trixie').split(',').map(parseQemuChoice);
const preparedBy = new Map<QemuChoice, PreparedRun>();
for (const q of qemuList) preparedBy.set(q, await prepareRun({ arches, cacheDir, logger, qemu: q }));
const main = preparedBy.get(qemuList[0]!)!;
const src = main.src;
say(`- QEMU: ${[...preparedBy].map(([q, p]) => `${q}: ${p.qemu.describe}`).join('; ')}`);
say();

say('## Where a guest\'s emulated CPU goes: QEMU CPU per phase');
say();
say('One fresh guest per arch and QEMU (scripts/profile-guest.ts); QEMU user + system time from /proc around each phase.');
say();
const profiled: { arch: string; figures: PhaseFigure[] }[] = [];
for (const [q, p] of preparedBy) {
  for (const arch of arches) {
    profiled.push({ arch: `${arch.name} (${q})`, figures: await profileGuest({ arch, artifacts: p.artifacts.get(arch.name)!, keys: p.keys, cacheDir, logger, qemu: p.qemu }) });
  }
}
for (const l of phaseTable(profiled)) say(l);
say();

say(`## A fresh guest: restore from a snapshot vs boot vs reset in place, median of ${samples}`);
say();
say("To SSH answering (a restore also proves the guest's timers run: a 20 ms sleep over SSH; a reset in place does not need to, its QEMU's first guest did). A restore starts a QEMU on the snapshot's state; a reset loads the same state back into the QEMU of the guest before (what a run does once a guest ends). QEMU CPU: the median's own.");
say();
say('| arch | QEMU | boot median | boot slowest | restore median | restore slowest | restore QEMU CPU | reset median | reset slowest | reset QEMU CPU | note |');
say('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const [q, p] of preparedBy)
for (const arch of arches) {
  const { build, image } = p.artifacts.get(arch.name)!;
  const dir = mkdtempSync(join(tmpdir(), 'klp-bench-guest-'));
  const accel = await Accelerator.decide({ arch, cacheDir, logger, qemuBinary: p.qemu.binaryFor(arch) });
  const req = { arch, kernel: build.image, initrd: image.path, keys, consoleLog: join(dir, 'console.log'), smp: DEFAULT_VCPUS, logger, cacheDir, snapshots: true, accel, qemuBinary: p.qemu.binaryFor(arch), qemuDataArgs: p.qemu.dataArgsFor(arch), qemuEnv: p.qemu.envFor(arch) };
  const boots: number[] = [];
  const restores: number[] = [];
  const restoreCpu: number[] = [];
  const resets: number[] = [];
  const resetCpu: number[] = [];
  let note = '';
  for (let i = 0; i < samples; i++) {
    await using b = await bootGuest(req);
    boots.push(b.readyMs);
  }
  for (let i = 0; i <= samples; i++) {
    await using g = await freshGuest(req);
    if (g.snapshotProblem) note = g.snapshotProblem;
    if (g.restored && i > 0) restores.push(g.restored.ms); // the first may make the snapshot
    if (g.restored && i > 0) restoreCpu.push(g.cpu.atReadyMs);
  }
  {
    await using pool = new GuestPool({ cacheDir, logger, qemu: p.qemu });
    for (let i = 0; i <= samples; i++) {
      await using g = await pool.guest(req);
      if (g.restored?.inPlace) resets.push(g.restored.ms);
      if (g.restored?.inPlace) resetCpu.push(g.cpu.atReadyMs);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  const slowest = (xs: number[]) => (xs.length ? sec(Math.max(...xs)) : '-');
  const med2 = (xs: number[]) => (xs.length ? `${(median(xs) / 1000).toFixed(2)} s` : '-');
  say(`| ${arch.name} | ${q} | ${sec(median(boots))} | ${slowest(boots)} | ${med2(restores)} | ${slowest(restores)} | ${med2(restoreCpu)} | ${med2(resets)} | ${slowest(resets)} | ${med2(resetCpu)} | ${note} |`);
}
say();

say('## Warm full matrix, both arches, by guests at once (`--jobs`)');
say();
say(`Every scenario on a pristine guest (restored from a snapshot, or booted where the QEMU cannot restore that guest: see the per-scenario table), on the ${qemuList[0]} QEMU. QEMU CPU is user + system time of each guest's QEMU, from /proc when it stopped.`);
say();
say("QEMU CPU, all guests: the sum over guests, each from its start (or reset) to its end. Child processes' CPU: every process the run started and waited for (its QEMUs, paused or not, with their exits), from /proc/self/stat: the cross-check that nothing escapes the per-guest sums.");
say();
say(`Each row is ${repeat === 1 ? 'one matrix' : `the median of ${repeat} matrices run one after the other, with the fastest and the slowest in brackets (this host varies by 10-30 % from run to run)`}.`);
say();
say('| --jobs | QEMUs | runs | wall | scenarios passed | sum of scenario times | peak guests | QEMU processes | QEMU CPU, all guests | child processes\' CPU | harness CPU | boot stalls |');
say('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
/** User + system CPU of this process's waited-for children (/proc/self/stat cutime + cstime, clock ticks of 10 ms). */
const childrenCpuMs = () => {
  const f = readFileSync('/proc/self/stat', 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) * 10;
};
// The run the per-scenario tables describe: the (last) one at --reuse-jobs (default 4); with
// --reuse-jobs 0, the default row's; else the last row's.
let last: RunReport | undefined;
let lastJobs: number | undefined;
let described = false;
const reuseJobs = Number(valueOf('--reuse-jobs', '4'));
const describeJobs = reuseJobs > 0 ? reuseJobs : undefined;
/** A row's figure: the median, and with more than one run the range. */
const spread = (xs: number[]) => (xs.length > 1 ? `${sec(median(xs))} (${sec(Math.min(...xs))}-${sec(Math.max(...xs))})` : sec(xs[0]!));
for (const [j, reuse] of [...jobsList.map((j) => [j, true] as const), ...(reuseJobs > 0 ? [[reuseJobs, false] as const] : [])]) {
  const runs: { wall: number; passed: number; all: number; sumTimes: number; peak: number; processes: number; qemuCpu: number; children: number; harness: number; stalls: number; boots: number }[] = [];
  let chosen = '';
  for (let i = 0; i < repeat; i++) {
    const runDir = mkdtempSync(join(tmpdir(), `klp-bench-run-j${jobsName(j)}-`));
    const cpu0 = process.cpuUsage();
    const children0 = childrenCpuMs();
    const w0 = Date.now();
    const report = await runMain({ arches, scenarios: [...SCENARIOS], logger, outDir: runDir, jobs: j, qemu: qemuList[0], reuse });
    const wall = Date.now() - w0;
    const cpu = process.cpuUsage(cpu0);
    const all = report.arches.flatMap((a) => a.scenarios);
    const boots = report.arches.flatMap((a) => a.boots);
    chosen = j === undefined ? `default (${report.jobs?.size ?? '?'})` : String(j);
    runs.push({
      wall,
      passed: all.filter((s) => s.ok).length,
      all: all.length,
      sumTimes: all.reduce((t, x) => t + x.durationMs, 0),
      peak: report.jobs?.peak ?? 0,
      processes: boots.filter((b) => !b.resetInPlace).length,
      qemuCpu: boots.reduce((t, b) => t + (b.cpuMs ?? 0), 0),
      children: childrenCpuMs() - children0,
      harness: (cpu.user + cpu.system) / 1000,
      stalls: boots.filter((b) => b.stalledConsoleLogs?.length).length,
      boots: boots.length,
    });
    process.stdout.write(`(logs of this run: ${runDir})\n`);
    if (reuse && i === repeat - 1 && !described) {
      [last, lastJobs] = [report, j];
      described = j === describeJobs;
    }
  }
  const col = (f: (r: (typeof runs)[number]) => number) => runs.map(f);
  const passed = runs.map((r) => `${r.passed}/${r.all}`).join(', ');
  const processes = [...new Set(col((r) => r.processes))].join(', ');
  say(`| ${chosen} | ${reuse ? 'reset in place' : 'one per guest (--no-reuse)'} | ${runs.length} | ${spread(col((r) => r.wall))} | ${passed} | ${spread(col((r) => r.sumTimes))} | ${Math.max(...col((r) => r.peak))} | ${processes} | ${spread(col((r) => r.qemuCpu))} | ${spread(col((r) => r.children))} | ${spread(col((r) => r.harness))} | ${col((r) => r.stalls).reduce((a, b) => a + b, 0)} of ${col((r) => r.boots).reduce((a, b) => a + b, 0)} |`);
}
say();
say('Goal: 45 s for both arches. Host CPU is 2 cores x wall time; the QEMU and harness CPU columns say how much of it the run used.');
say();

// Inside the QEMUs: one more matrix at the most guests at once, sampled by perf (scripts/qemu-perf.ts).
{
  const numeric = jobsList.filter((n): n is number => n !== undefined);
  const j = numeric.length ? Math.max(...numeric) : undefined;
  say(`## Inside the QEMUs: where their CPU goes (perf, one more matrix at --jobs ${jobsName(j)})`);
  say();
  say("`perf record -a` at 499 Hz per CPU over the whole run. A QEMU's samples split into its own code (TCG's translator and lookups, devices, the main loop), the code TCG generated for the guest, the kernel (page faults, system calls and the host's page tables; kernel entry and exit included) and libraries (libc, glib); then the busiest functions of QEMU's own code, in percent of all that QEMU's samples.");
  say();
  const runDir = mkdtempSync(join(tmpdir(), `klp-bench-perf-j${jobsName(j)}-`));
  const shares = await perfAround(() => runMain({ arches, scenarios: [...SCENARIOS], logger, outDir: runDir, jobs: j, qemu: qemuList[0] }));
  if (typeof shares === 'string') say(`- ${shares}`);
  else {
    const pct = (x: number) => `${x.toFixed(0)} %`;
    say('| QEMU | share of all samples | its own code | generated code | kernel | libraries | busiest functions of its own code |');
    say('| --- | --- | --- | --- | --- | --- | --- |');
    for (const x of shares) say(`| ${x.comm} | ${pct(x.total)} | ${pct(x.qemu)} | ${pct(x.generated)} | ${pct(x.kernel)} | ${pct(x.libraries)} | ${x.top.map((f) => `\`${f.name}\` ${f.percent.toFixed(1)} %`).join(', ')} |`);
  }
  say();
}
say();
say(`### CPU seconds per scenario (the --jobs ${jobsName(lastJobs)} run)`);
say();
say('QEMU CPU split at the moment SSH answered: the restore (or boot) and the connection, then the scenario; guest commands are the commands the scenario ran over SSH (each a line to a shell kept open, run in a subshell unless the harness made it and it leaves the shell as it was; or an exec channel of its own).');
say();
say('| arch | scenario | cpu | guest | scenario time | QEMU CPU | to SSH | scenario part | guest commands |');
say('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
const splits: { ready: number; rest: number; commands: number }[] = [];
for (const a of last?.arches ?? []) {
  for (const s of a.scenarios) {
    const b = a.boots.find((x) => x.scenario === s.name && x.cpu === s.cpu);
    const ready = b?.readyCpuMs;
    const rest = b?.cpuMs !== undefined && ready !== undefined ? b.cpuMs - ready : undefined;
    if (ready !== undefined && rest !== undefined) splits.push({ ready, rest, commands: b?.guestCommands ?? 0 });
    say(`| ${a.arch} | ${s.name} | ${s.cpu ?? ''} | ${!b?.readyMs ? 'none' : b.resetInPlace ? 'reset' : b.restoredFrom ? 'restored' : 'booted'} | ${sec(s.durationMs)} | ${b?.cpuMs !== undefined ? sec(b.cpuMs) : '-'} | ${ready !== undefined ? sec(ready) : '-'} | ${rest !== undefined ? sec(rest) : '-'} | ${b?.guestCommands ?? '-'} |`);
  }
}
if (splits.length) {
  const med = (f: (x: (typeof splits)[number]) => number) => median(splits.map(f));
  say();
  say(`Medians over ${splits.length} scenarios: QEMU CPU ${sec(med((x) => x.ready + x.rest))} (to SSH ${sec(med((x) => x.ready))}, scenario ${sec(med((x) => x.rest))}), ${med((x) => x.commands)} guest commands.`);
}
say();
// Getting to SSH, by how the guest came: what a first restore, a reset in place and a boot cost, split where the harness reads it.
{
  type Row = { ready: number[]; running: number[]; connected: number[] };
  const kinds = new Map<string, Row>();
  for (const a of last?.arches ?? []) {
    for (const b of a.boots) {
      if (b.readyCpuMs === undefined) continue;
      const kind = `${a.arch}${b.cpu ? `/${b.cpu}` : ''}: ${b.resetInPlace ? 'reset in place' : b.restoredFrom ? 'first restore in its QEMU' : 'boot'}`;
      const r = kinds.get(kind) ?? { ready: [], running: [], connected: [] };
      r.ready.push(b.readyCpuMs);
      if (b.restoreCpuMs?.running !== undefined) r.running.push(b.restoreCpuMs.running);
      if (b.restoreCpuMs?.connected !== undefined) r.connected.push(b.restoreCpuMs.connected);
      kinds.set(kind, r);
    }
  }
  if (kinds.size) {
    say(`### Getting a guest to SSH, by how it came (the --jobs ${jobsName(lastJobs)} run)`);
    say();
    say("QEMU CPU up to SSH answering; for a restore or reset, the medians of the QEMU CPU used by two moments on the way (counted from the QEMU's start, or the reset's): the saved state loaded and the guest running, and SSH connected (the difference is the guest's side of the handshake); for a restore, the timer proof (a 20 ms sleep over SSH) takes it to the first column.");
    say();
    say('| guests | count | QEMU CPU to SSH, all | median | by the state running (median) | by SSH connected (median) |');
    say('| --- | --- | --- | --- | --- | --- |');
    const medOr = (xs: number[]) => (xs.length ? sec(median(xs)) : '-');
    for (const [kind, r] of [...kinds].sort()) say(`| ${kind} | ${r.ready.length} | ${sec(r.ready.reduce((t, x) => t + x, 0))} | ${sec(median(r.ready))} | ${medOr(r.running)} | ${medOr(r.connected)} |`);
    say();
  }
}
// Where the scenario part goes: each step's QEMU CPU (read from /proc before and after it), summed by step.
const bySteps = new Map<string, { cpu: number; n: number; wall: number }>();
for (const s of (last?.arches ?? []).flatMap((a) => a.scenarios)) {
  for (const st of s.steps) {
    if (st.qemuCpuMs === undefined) continue;
    const e = bySteps.get(st.name) ?? { cpu: 0, n: 0, wall: 0 };
    e.cpu += st.qemuCpuMs;
    e.wall += st.durationMs;
    e.n++;
    bySteps.set(st.name, e);
  }
}
if (bySteps.size) {
  const rest = splits.reduce((t, x) => t + x.rest, 0);
  const stepCpu = [...bySteps.values()].reduce((t, e) => t + e.cpu, 0);
  say(`### Where the scenario part goes: QEMU CPU by step (the --jobs ${jobsName(lastJobs)} run)`);
  say();
  say(`The steps' QEMU CPU adds up to ${sec(stepCpu)} of the scenario parts' ${sec(rest)}; the rest is spent outside any step (between steps and after the last one, until the guest is stopped). The 12 steps that cost most over all scenarios:`);
  say();
  say('| step | scenarios | QEMU CPU, all | per scenario | wall per scenario |');
  say('| --- | --- | --- | --- | --- |');
  for (const [name, e] of [...bySteps].sort((a, b) => b[1].cpu - a[1].cpu).slice(0, 12)) {
    say(`| ${name.replace(/\|/g, '/')} | ${e.n} | ${sec(e.cpu)} | ${sec(e.cpu / e.n)} | ${sec(e.wall / e.n)} |`);
  }
  say();
}

if (stallBoots > 0) {
  say(`## Boot stalls: ${stallBoots} x86_64 boots, four at a time on ${jobs} cores`);
  say();
  const arch = ARCHES.x86_64!;
  const { build, image } = main.artifacts.get(arch.name)!;
  const dir = mkdtempSync(join(tmpdir(), 'klp-bench-stalls-'));
  const slots = new Slots(4);
  let stalled = 0;
  let failed = 0;
  const times: number[] = [];
  const s0 = Date.now();
  await Promise.all(
    Array.from({ length: stallBoots }, (_, i) =>
      slots.use(async () => {
        try {
          await using b = await bootGuest({ arch, kernel: build.image, initrd: image.path, keys, consoleLog: join(dir, `console-${i}.log`), logger, accel: accelOf(arch) });
          times.push(b.readyMs);
          if (b.stalled.length) stalled++;
        } catch (e) {
          failed++;
          process.stdout.write(`boot ${i} failed: ${(e as Error).message.split('\n')[0]} (console in ${dir})\n`);
        }
      }),
    ),
  );
  say(`| boots | stalled and retried | failed | boot median | slowest | wall |`);
  say('| --- | --- | --- | --- | --- | --- |');
  say(`| ${stallBoots} | ${stalled} | ${failed} | ${sec(median(times))} | ${sec(Math.max(...times))} | ${sec(Date.now() - s0)} |`);
  say();
  say(`Machine: \`${arch.qemu.machineArgs.join(' ')}\` (no PS/2 controller: the stall seen before sat right after \`i8042: PNP: PS/2 Controller\`).`);
  say();
  if (!failed && !stalled) rmSync(dir, { recursive: true, force: true });
}

say('## Remedy to completion, per scenario');
say();
say('From the write to `signal`/`force`/`enabled` to the transition seen finished by the guest-side wait (guest clock, 100 ms polls of `transition` inside one SSH command); `stuckSeenMs` is from loading the patch to the stuck state confirmed over 3 s of retries.');
say();
say('| arch | scenario | cpu | remedyToDoneMs | stuckSeenMs | other |');
say('| --- | --- | --- | --- | --- | --- |');
for (const a of last?.arches ?? []) {
  for (const s of a.scenarios) {
    const { remedyToDoneMs, stuckSeenMs, ...rest } = s.timings;
    const other = Object.entries(rest).map(([k, v]) => `${k}=${v}`).join(' ');
    say(`| ${a.arch} | ${s.name} | ${s.cpu ?? ''} | ${remedyToDoneMs ?? ''} | ${stuckSeenMs ?? ''} | ${other} |`);
  }
}
say();

if (!skipKunit) {
  say('## Peer: the kernel\'s KUnit runner on the same tree');
  say();
  say('`tools/testing/kunit/kunit.py run --arch=ARCH --kunitconfig=lib/kunit/.kunitconfig` (configure + build + boot + parse), same tree, same machine.');
  say();
  say('| arch | kunit.py run | result |');
  say('| --- | --- | --- |');
  for (const [arch, extra] of [['x86_64', []], ['powerpc', ['--cross_compile=powerpc64le-linux-gnu-']]] as const) {
    const dir = mkdtempSync(join(tmpdir(), `klp-bench-kunit-${arch}-`));
    const k0 = Date.now();
    const r = await run('python3', ['tools/testing/kunit/kunit.py', 'run', `--arch=${arch}`, `--build_dir=${dir}`, `--jobs=${jobs}`, '--kunitconfig=lib/kunit/.kunitconfig', ...extra], {
      cwd: src.tree,
      timeoutMs: 15 * 60_000,
    }).then(
      (x) => `ok: ${/Testing complete\. (.*)/.exec(x.output)?.[1] ?? 'done'}`,
      (e: Error) => `failed: ${e.message.split('\n')[0]}`,
    );
    say(`| ${arch} | ${sec(Date.now() - k0)} | ${r} |`);
    rmSync(dir, { recursive: true, force: true });
  }
  say();
}

mkdirSync(join(PROJECT_ROOT, 'bench'), { recursive: true });
writeFileSync(join(PROJECT_ROOT, 'bench/RESULTS.md'), lines.join('\n') + '\n');
process.stdout.write(`\nwritten to bench/RESULTS.md\n`);
