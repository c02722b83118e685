// `npm run verify-verdicts`: shows that the scenarios' verdicts depend on
// the kernel, not on the harness. For each kernel variant with one lever
// broken on purpose (tests/verdicts/*.patch on top of patches/), it builds
// that kernel, runs the whole matrix on it and prints a table of lever ×
// scenario. The scenarios that use a broken lever must fail; every other
// scenario must pass. Exit 0 only when every cell is what it should be.
// Not part of `npm test`: each variant rebuilds part of a kernel.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { $ } from 'zx';
import { PROJECT_ROOT } from '../harness/core/paths.js';
import type { RunReport } from '../harness/report/run-report.js';
import { cacheRoot } from '../harness/core/cache.js';
import { getArch } from '../harness/core/arch.js';
import { table } from '../harness/report/summary.js';
import { ADDS_FILE } from '../harness/kernel/patches.js';
import { withDeathSignal } from '../harness/proc/guards.js';

interface Variant {
  name: string;
  /** Patch under tests/verdicts/ added after the series; none for the baseline. */
  patch?: string;
  what: string;
  /** Scenarios that use the broken lever, so must fail. */
  mustFail: string[];
}

const FORCE_USERS = ['force-kthread-idle', 'force-user-idle', 'force-user-killable', 'force-kthread-loop', 'force-thread', 'unpatch-force', 'replace-force', 'replace-reverse-force'];
// force-kthread-loop also proves the signal reached the looping kthread (it was woken and stayed);
// the restart scenarios' second half wakes their sleepers with it (each must be woken and sleep again).
const RESTART = ['restart-after-notify-signal', 'restart-after-notify-signal-no-rfi-flush'];
const SIGNAL_FILE_USERS = ['signal-user-int', 'signal-kthread-int', 'signal-thread', 'unpatch-signal', 'replace-signal', 'force-kthread-loop', ...RESTART];
// Every scenario that writes signal when the file is there (the force ones check it does not free their blocker).
const SIGNAL_FILE_WRITERS = ['sample', ...SIGNAL_FILE_USERS, 'force-kthread-idle', 'force-user-idle', 'force-user-killable', 'force-thread', 'unpatch-force', 'replace-force', 'bad-writes'];
// Where 6.1's force rule shows: a patch forced while being enabled (or a replacing patch reversed by force) leaves the other patches removable.
const FORCE_RULE_USERS = ['force-kthread-idle', 'force-user-idle', 'force-user-killable', 'force-kthread-loop', 'force-thread', 'replace-force', 'replace-reverse-force'];

const VARIANTS: Variant[] = [
  { name: 'baseline', what: 'the series as it is', mustFail: [] },
  { name: 'force-noop', patch: 'force-noop.patch', what: 'force accepts 1 and does nothing', mustFail: FORCE_USERS },
  { name: 'signal-noop', patch: 'signal-noop.patch', what: 'the signal file does nothing (the periodic signal still works)', mustFail: SIGNAL_FILE_USERS },
  { name: 'signal-to-no-task', patch: 'signal-to-no-task.patch', what: 'fake signals reach no task (file and periodic)', mustFail: [...SIGNAL_FILE_USERS, 'auto-signal'] },
  { name: 'force-pins-all', patch: 'force-pins-all.patch', what: 'force pins every patch (5.10\'s rule on 6.1)', mustFail: FORCE_RULE_USERS },
  { name: 'signal-unregistered', patch: 'signal-unregistered.patch', what: 'the series\' signal attribute is not registered (no signal file)', mustFail: SIGNAL_FILE_WRITERS },
  { name: 'leaders-only', patch: 'leaders-only.patch', what: 'the stack checks skip threads that are not leaders', mustFail: ['signal-thread', 'force-thread'] },
  { name: 'reverse-drops-replaced', patch: 'reverse-drops-replaced.patch', what: 'a reversed replace drops the replaced patch', mustFail: ['replace-reverse', 'replace-reverse-force'] },
  { name: 'kthread-woken-once', patch: 'kthread-woken-once.patch', what: 'a kthread is woken only once per transition', mustFail: ['force-kthread-loop'] },
  { name: 'auto-signal-doubled', patch: 'auto-signal-doubled.patch', what: 'the kernel\'s own signal after 30 tries, not 15', mustFail: ['auto-signal'] },
];

const argv = process.argv.slice(2);
const only = argv.filter((a) => !a.startsWith('--'));
const arch = argv.find((a) => a.startsWith('--arch='))?.slice('--arch='.length) ?? 'x86_64';
const variants = only.length ? VARIANTS.filter((v) => only.includes(v.name)) : VARIANTS;
const outRoot = join(cacheRoot(), 'runs', `verdicts-${new Date().toISOString().replace(/[:.]/g, '-')}`);
mkdirSync(outRoot, { recursive: true });

/** A quilt directory: the project's series, then the breaking patch. */
function seriesWith(patch: string | undefined): string {
  const dir = mkdtempSync(join(tmpdir(), 'klp-verdicts-'));
  const base = join(PROJECT_ROOT, 'patches');
  const names = readFileSync(join(base, 'series'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const n of names) copyFileSync(join(base, n), join(dir, n));
  // The series' own record of what it adds goes with it: a missing signal file is then the series failing.
  if (existsSync(join(base, ADDS_FILE))) copyFileSync(join(base, ADDS_FILE), join(dir, ADDS_FILE));
  if (patch) copyFileSync(join(PROJECT_ROOT, 'tests/verdicts', patch), join(dir, patch));
  writeFileSync(join(dir, 'series'), [...names, ...(patch ? [patch] : [])].join('\n') + '\n');
  return dir;
}

type Cell = { ok: boolean; skipped: boolean; expectedOk: boolean; skipExpected: boolean };
const results = new Map<string, Map<string, Cell>>();
let allRight = true;
const started = Date.now();

for (const v of variants) {
  const seriesDir = seriesWith(v.patch);
  const out = join(outRoot, v.name);
  const t0 = Date.now();
  process.stdout.write(`verify-verdicts: ${v.name} (${v.what}): building and running the matrix on ${arch}...\n`);
  // A shell-like line is what this script mostly is: zx runs it, quoting each argument. The run ends
  // with this script (setpriv --pdeathsig, as the harness starts its own children): seen running on alone otherwise.
  const run = withDeathSignal(process.execPath, [join(PROJECT_ROOT, 'bin/klp-harness.js'), 'run', '--arch', arch, '--patches', seriesDir, '--out', out, '--quiet', '--sequential']);
  // exec: the shell zx starts becomes setpriv, whatever the shell's version does with a last command.
  const r = await $({ nothrow: true, quiet: true })`exec ${run.file} ${run.args}`;
  rmSync(seriesDir, { recursive: true, force: true });
  let report: RunReport | undefined;
  try {
    report = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as RunReport;
  } catch {
    process.stdout.write(`  no summary.json (exit ${r.exitCode}); output:\n${(r.stdout + r.stderr).split('\n').slice(-30).join('\n')}\n`);
    allRight = false;
    continue;
  }
  const row = new Map<string, Cell>();
  for (const s of report.arches.flatMap((a) => a.scenarios)) {
    const key = s.cpu && report.arches[0]?.scenarios.some((o) => o.name === s.name && o.cpu !== s.cpu) ? `${s.name}/${s.cpu}` : s.name;
    // A skip is neither: it must not hide a broken series, nor stand for a pass.
    // The one skip that is an input fact: the no-flush variant on an arch whose record has no exit flush to turn off.
    const skipExpected = s.name === 'restart-after-notify-signal-no-rfi-flush' && !getArch(arch).exitFlushOff;
    const cell = { ok: s.ok && !s.skipped, skipped: !!s.skipped, expectedOk: !v.mustFail.includes(s.name), skipExpected };
    row.set(key, cell);
    if (skipExpected ? !cell.skipped : cell.ok !== cell.expectedOk || cell.skipped) allRight = false;
    // Why a scenario failed: its first failed check, as the kernel's reading.
    if (!s.ok) {
      const c = s.steps.flatMap((st) => st.checks.map((ch) => ({ st: st.name, ch }))).find((x) => !x.ch.ok);
      if (c) process.stdout.write(`  ${key}: failed "${c.ch.what}" in "${c.st}": expected ${c.ch.expected}, got ${c.ch.actual.split('\n')[0]}\n`);
      else if (s.error) process.stdout.write(`  ${key}: ${s.error.split('\n')[0]}\n`);
    }
  }
  if (row.size === 0) allRight = false;
  results.set(v.name, row);
  process.stdout.write(`  ${v.name}: exit ${report.exitCode}, ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
}

const scenarioNames = [...new Set([...results.values()].flatMap((row) => [...row.keys()]))];
const head = ['scenario', ...variants.map((v) => v.name)];
const rows = scenarioNames.map((n) => [
  n,
  ...variants.map((v) => {
    const c = results.get(v.name)?.get(n);
    if (!c) return 'missing';
    const word = c.skipped ? 'skip' : c.ok ? 'pass' : 'FAIL';
    if (c.skipExpected) return c.skipped ? 'skip (arch)' : `${word} (want skip: no exit flush on ${arch})`;
    return c.ok === c.expectedOk && !c.skipped ? word : `${word} (want ${c.expectedOk ? 'pass' : 'FAIL'})`;
  }),
]);
const text = [
  `verify-verdicts on ${arch}: broken lever x scenario (FAIL expected exactly where the scenario uses the broken lever)`,
  ...variants.map((v) => `  ${v.name}: ${v.what}${v.patch ? ` (tests/verdicts/${v.patch})` : ''}`),
  '',
  ...table(head, rows),
  '',
  `${allRight ? 'every verdict as expected' : 'SOME VERDICTS ARE NOT WHAT THEY SHOULD BE'}; ${((Date.now() - started) / 60000).toFixed(1)} min; runs in ${outRoot}`,
].join('\n');
writeFileSync(join(outRoot, 'table.txt'), text + '\n');
process.stdout.write(`\n${text}\n`);
process.exitCode = allRight ? 0 : 1;
