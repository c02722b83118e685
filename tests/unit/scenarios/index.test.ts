// The scenario registry: names unique, safe in file names and free of the
// names the harness keeps for itself; every scenario has what the runner
// reads (run, kernel arguments, per-patch files, stuck setup); --scenario
// picks by name, in the order given, and refuses an unknown one listing all.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ARCHES } from '../../../harness/core/arch.js';
import { HarnessError } from '../../../harness/core/errors.js';
import { ALL_SCENARIOS, pickScenarios, SCENARIOS } from '../../../harness/scenarios/index.js';
import { kselftest } from '../../../harness/scenarios/kselftest.js';
import { stuckScenarioNames } from '../../../harness/scenarios/matrix.js';
import { race } from '../../../harness/scenarios/race.js';
import { ROOT } from '../../helpers.js';

const FEATURES = new Set(['signal', 'force', 'replace']);
const BLOCKERS = new Set(['user-int', 'user-idle', 'user-killable', 'kthread-int', 'kthread-idle', 'kthread-loop']);
const DIRECTIONS = new Set(['patching', 'unpatching', 'replacing']);

t.test('names are unique, file-name safe, and not ones the harness uses itself', async (t) => {
  const names = ALL_SCENARIOS.map((s) => s.name);
  t.equal(new Set(names).size, names.length, `no name twice (${names.filter((n, i) => names.indexOf(n) !== i).join(', ') || 'none'})`);
  for (const n of names) {
    // Names go into dmesg-<name>-<cpu>.txt, snapshot and JUnit names, and the --scenario list.
    t.match(n, /^[a-z0-9]+(-[a-z0-9]+)*$/, `${n}: lower-case words joined by -`);
    t.notOk(n === 'user-patch' || n === 'livepatch-probe' || n.startsWith('repro-'), `${n}: not a name the CLI or the run keeps for its own scenarios`);
  }
});

t.test('the default list, and the extras only by name', async (t) => {
  t.ok(SCENARIOS.length > 0);
  t.same(ALL_SCENARIOS.slice(0, SCENARIOS.length), SCENARIOS, 'every default scenario is also pickable by name');
  t.same(ALL_SCENARIOS.slice(SCENARIOS.length).map((s) => s.name), [kselftest.name, race.name]);
  t.notOk(SCENARIOS.includes(kselftest), 'the selftests join with --kselftest, not by default');
  t.notOk(SCENARIOS.includes(race), 'the race (for the debug kernel) is not run by default');
});

t.test('every scenario has what the runner reads', async (t) => {
  for (const s of ALL_SCENARIOS) {
    t.equal(typeof s.run, 'function', `${s.name}: run`);
    t.ok(typeof s.description === 'string' && s.description.trim().length > 0, `${s.name}: a description`);
    if (s.prepare !== undefined) t.equal(typeof s.prepare, 'function', `${s.name}: prepare`);
    if (s.expectedSeconds !== undefined) t.ok(Number.isFinite(s.expectedSeconds) && s.expectedSeconds > 0, `${s.name}: expectedSeconds ${s.expectedSeconds}`);
    t.ok(s.image === undefined || s.image === 'base' || s.image === 'kselftest', `${s.name}: image ${s.image}`);
    const needs = s.needs ?? [];
    const uses = s.uses ?? [];
    for (const f of [...needs, ...uses]) t.ok(FEATURES.has(f), `${s.name}: per-patch file '${f}' is one the runner knows`);
    t.same(needs.filter((f) => uses.includes(f)), [], `${s.name}: a file is needed or optional, not both`);
    t.equal(new Set(needs).size, needs.length, `${s.name}: needs without repeats`);
    if (s.stuck) {
      t.ok(BLOCKERS.has(s.stuck.blocker), `${s.name}: blocker ${s.stuck.blocker}`);
      t.ok(DIRECTIONS.has(s.stuck.direction), `${s.name}: direction ${s.stuck.direction}`);
      if (s.stuck.thread) t.ok(s.stuck.blocker.startsWith('user-'), `${s.name}: a thread setup is a user blocker's`);
    }
    if (s.kernelArgs) {
      for (const a of Object.values(ARCHES)) {
        const words = s.kernelArgs(a);
        t.ok(Array.isArray(words) && words.every((w) => typeof w === 'string' && w.length > 0 && !/\s/.test(w)), `${s.name} on ${a.name}: kernel command line words (${words.join(' ')})`);
      }
    }
  }
  t.ok(ALL_SCENARIOS.some((s) => s.kernelArgs && Object.values(ARCHES).some((a) => s.kernelArgs!(a).length > 0)), 'some scenario adds kernel arguments on some arch');
  t.ok(kselftest.casesAreChecks && kselftest.image === 'kselftest' && kselftest.prepare, 'the selftests: cases are checks, their own image, prepared on the host');
});

t.test('repro can reach every stuck scenario by name', async (t) => {
  const stuck = stuckScenarioNames();
  t.ok(stuck.length > 0);
  const defaults = SCENARIOS.map((s) => s.name);
  for (const n of stuck) t.ok(defaults.includes(n), `${n} is in the registry`);
  t.same(SCENARIOS.filter((s) => s.stuck).map((s) => s.name).sort(), [...stuck].sort(), 'and every registered scenario with a stuck setup is offered');
});

t.test('every scenario is documented in the README', async (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  for (const s of ALL_SCENARIOS) t.ok(readme.includes(`\`${s.name}\``), `\`${s.name}\` in README.md`);
});

t.test('pickScenarios: none given is the default list (a copy); names in the order given', async (t) => {
  for (const none of [undefined, []]) {
    const all = pickScenarios(none);
    t.same(all, SCENARIOS);
    t.not(all, SCENARIOS, 'a new array');
    all.pop();
    t.equal(pickScenarios(none).length, SCENARIOS.length, 'changing it leaves the registry as it was');
  }
  const last = SCENARIOS.at(-1)!;
  const picked = pickScenarios([race.name, last.name, kselftest.name, SCENARIOS[0]!.name]);
  t.same(picked, [race, last, kselftest, SCENARIOS[0]], 'the extras by name too, in the order given');
});

t.test('an unknown name is a usage error listing every name', async (t) => {
  for (const bad of ['nope', 'Sample', ' sample', 'sample,race', 'user-patch', '']) {
    let e: unknown;
    try {
      pickScenarios([SCENARIOS[0]!.name, bad]);
    } catch (x) {
      e = x;
    }
    t.ok(e instanceof HarnessError, `'${bad}' refused`);
    t.equal((e as HarnessError).kind, 'usage');
    t.equal((e as HarnessError).message, `unknown scenario '${bad}'`);
    t.equal((e as HarnessError).context.hint, `use one of: ${ALL_SCENARIOS.map((s) => s.name).join(', ')}`);
  }
});

t.test('a scenario that does not apply to an arch says so from the arch record, before any guest', async (t) => {
  const noFlush = ALL_SCENARIOS.find((s) => s.name === 'restart-after-notify-signal-no-rfi-flush');
  t.ok(noFlush?.notFor, 'the no-flush variant has an arch rule');
  for (const a of Object.values(ARCHES)) {
    const why = noFlush?.notFor?.(a);
    if (a.exitFlushOff) t.equal(why, undefined, `${a.name}: has an exit flush to turn off, so it runs`);
    else t.match(why, new RegExp(`^${a.name} has no exit-path flush`), `${a.name}: skipped, saying why`);
  }
  t.notOk(ALL_SCENARIOS.filter((s) => s !== noFlush).some((s) => Object.values(ARCHES).some((a) => s.notFor?.(a))), 'every other scenario applies to every arch');
});
