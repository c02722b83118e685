// The supervisor: what it tracks, what killAll ends and runs, the run record
// it keeps, the reaper it tells, and (in child node processes, since it exits)
// an interrupt: SIGTERM now, SIGKILL soon, exit 130, cleanups run.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { procId, procStat } from '../../../harness/proc/stat.js';
import { checkInterrupted, killGroup, liveChildren, Supervisor, wasInterrupted } from '../../../harness/proc/supervisor.js';
import { goneSoon, killAtEnd, ROOT, tempDir } from '../../helpers.js';

type Teardown = { teardown(fn: () => void): void };
const SUPERVISOR_JS = join(ROOT, 'dist/harness/proc/supervisor.js');
/** The environment for child node processes: without tap's --import hook (NODE_OPTIONS), which only slows them down. */
const nodeEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ ...process.env, NODE_OPTIONS: '', ...extra });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A group of its own (as the harness starts each child): a shell and the sleep it started. */
async function sleeperGroup(t: Teardown): Promise<{ pid: number; child: number }> {
  const sh = spawn('sh', ['-c', 'sleep 30 & echo $!; wait'], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  killAtEnd(t, () => sh.pid);
  const line = await new Promise<string>((resolve) => sh.stdout!.once('data', (d: Buffer) => resolve(d.toString())));
  return { pid: sh.pid!, child: Number(line.trim()) };
}

const alive = (g: { pid: number; child: number }) => !!procStat(g.pid) && !!procStat(g.child);

t.test('track and untrack: what liveChildren lists, per supervisor', async (t) => {
  const s = new Supervisor();
  const g = await sleeperGroup(t);
  const untrack = s.track({ pid: g.pid }, 'qemu x86_64');
  const untrackNoPid = s.track({}, 'did not start');
  t.same(s.liveChildren(), [
    { pid: g.pid, name: 'qemu x86_64' },
    { pid: undefined, name: 'did not start' },
  ]);
  t.same(new Supervisor().liveChildren(), [], 'another supervisor has its own table');
  t.notOk(liveChildren().some((c) => c.pid === g.pid), "nor is it in the process's supervisor");
  untrack();
  t.same(s.liveChildren(), [{ pid: undefined, name: 'did not start' }], 'forgotten');
  untrack();
  t.same(s.liveChildren(), [{ pid: undefined, name: 'did not start' }], 'a second untrack changes nothing');
  untrackNoPid();
  t.same(s.liveChildren(), []);
  t.ok(alive(g), 'tracking and forgetting kills nothing');
});

t.test('killAll kills every tracked group, grandchildren included, and runs each cleanup once', async (t) => {
  const s = new Supervisor();
  const tracked = await sleeperGroup(t);
  const forgotten = await sleeperGroup(t);
  const bystander = await sleeperGroup(t);
  s.track({ pid: tracked.pid }, 'make');
  s.track({ pid: forgotten.pid }, 'tar')();
  s.track({}, 'never started');
  const ran: string[] = [];
  s.onCleanup(() => {
    ran.push('first');
    throw new Error('a failing cleanup');
  });
  s.onCleanup(() => ran.push('second'));
  const remove = s.onCleanup(() => ran.push('removed'));
  t.equal(remove(), true, 'the removal function reports it removed the hook');
  s.killAll();
  t.ok(await goneSoon(tracked.pid), 'the tracked group leader');
  t.ok(await goneSoon(tracked.child), 'and its child');
  t.ok(alive(forgotten), 'an untracked group is left alone');
  t.ok(alive(bystander), 'so is one never tracked');
  t.same(ran, ['first', 'second'], 'every hook, past a failing one; not the removed one');
  t.same(s.liveChildren(), []);
  s.killAll();
  t.same(ran, ['first', 'second'], 'hooks run once');
});

t.test('killGroup: nothing without a pid; a stopped group is continued so that SIGTERM ends it', async (t) => {
  t.doesNotThrow(() => killGroup(undefined, 'SIGKILL'));
  const g = await sleeperGroup(t);
  process.kill(-g.pid, 'SIGSTOP');
  for (let i = 0; i < 50 && procStat(g.child)?.state !== 'T'; i++) await sleep(10);
  t.equal(procStat(g.child)?.state, 'T', 'stopped');
  killGroup(g.pid, 'SIGTERM');
  t.ok(await goneSoon(g.pid), 'the stopped leader ended');
  t.ok(await goneSoon(g.child), 'and its child');
});

t.test("guardRun sweeps dead runs' groups and keeps this run's record up to date", async (t) => {
  const cache = tempDir(t);
  mkdirSync(join(cache, 'procs'));
  const orphan = await sleeperGroup(t);
  writeFileSync(join(cache, 'procs', '999999.json'), JSON.stringify({ harness: { pid: 999_999, startTime: 1 }, groups: [{ ...procId(orphan.pid)!, name: 'qemu' }] }));
  writeFileSync(join(cache, 'procs', '999998.json'), JSON.stringify({ harness: { pid: 999_998, startTime: 1 }, groups: [{ pid: 999_997, startTime: 1, name: 'make' }] }));
  const s = new Supervisor();
  const mine = await sleeperGroup(t);
  s.track({ pid: mine.pid }, 'make');
  const lines = s.guardRun(cache).sort();
  t.same(lines, [
    'cleanup: harness pid 999998 is gone; killed 0 process group(s) it left: none',
    `cleanup: harness pid 999999 is gone; killed 1 process group(s) it left: qemu (pgid ${orphan.pid})`,
  ]);
  t.ok(await goneSoon(orphan.pid), "the dead run's group is killed");
  const record = join(cache, 'procs', `${process.pid}.json`);
  const groups = () => (JSON.parse(readFileSync(record, 'utf8')) as { groups: unknown[] }).groups;
  t.same(groups(), [{ ...procId(mine.pid), name: 'make' }], 'groups tracked before are recorded, with their start time');
  const other = await sleeperGroup(t);
  const untrack = s.track({ pid: other.pid }, 'qemu');
  t.same(groups(), [{ ...procId(mine.pid), name: 'make' }, { ...procId(other.pid), name: 'qemu' }], 'a new group is recorded at once');
  untrack();
  t.same(groups(), [{ ...procId(mine.pid), name: 'make' }], 'and struck off when it ends');
  s.killAll();
  t.same(groups(), [], 'killAll leaves an empty record');
  t.ok(alive(other), 'the untracked group was not killed');
});

/** Starts a node script in a group of its own; resolves once it printed its first line (parsed). */
async function nodeScript<T>(t: Teardown, code: string): Promise<{ child: ChildProcess; said: T; stderr: () => string; exit: Promise<{ code: number | null; at: number }> }> {
  const file = join(tempDir(t), 'script.mjs');
  writeFileSync(file, code);
  const child = spawn(process.execPath, [file], { detached: true, env: nodeEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  killAtEnd(t, () => child.pid);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<{ code: number | null; at: number }>((r) => child.once('exit', (code) => r({ code, at: Date.now() })));
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')));
    });
    void exit.then(({ code }) => reject(new Error(`script exited (${code}) before it spoke: ${err}`)));
  });
  return { child, said: JSON.parse(line) as T, stderr: () => err, exit };
}

/** The top of a script: a group started and tracked as exec.ts and group.ts do, via the process's supervisor. */
const groupsIn = (extra = '') => `import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as sup from ${JSON.stringify(SUPERVISOR_JS)};
function group(script) {
  sup.prepareSpawn();
  const c = spawn('sh', ['-c', script], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  sup.track(c, 'sh');
  return new Promise((r) => c.stdout.once('data', (d) => r({ pid: c.pid, child: Number(String(d).trim()) })));
}
const OBEDIENT = 'sleep 30 & echo $!; wait';
const STUBBORN = "trap '' TERM; sleep 30 & echo $!; while :; do sleep 0.1; done";
${extra}
setInterval(() => {}, 1000);
`;

t.test('track and untrack tell the reaper: when node dies, a tracked group goes, a forgotten one stays', async (t) => {
  const { child, said } = await nodeScript<{ kept: { pid: number; child: number }; gone: { pid: number; child: number } }>(
    t,
    groupsIn(`const s = new sup.Supervisor();
function own(script) {
  s.prepare();
  const c = spawn('sh', ['-c', script], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  const untrack = s.track(c, 'sh');
  return new Promise((r) => c.stdout.once('data', (d) => r({ pid: c.pid, child: Number(String(d).trim()), untrack })));
}
const tracked = await own(OBEDIENT);
const forgotten = await own(OBEDIENT);
forgotten.untrack();
setTimeout(() => console.log(JSON.stringify({ gone: tracked, kept: forgotten })), 100);`),
  );
  killAtEnd(t, () => said.kept.pid, () => said.gone.pid);
  process.kill(child.pid!, 'SIGKILL');
  t.ok(await goneSoon(said.gone.pid) && (await goneSoon(said.gone.child)), 'the tracked group went with node');
  await sleep(200);
  t.ok(procStat(said.kept.pid) && procStat(said.kept.child), 'the untracked one did not');
});

t.test('SIGTERM interrupts: SIGTERM to every group now, SIGKILL soon, exit 130 later, cleanups run', async (t) => {
  const cleanupFile = join(tempDir(t), 'cleaned');
  const { child, said, stderr, exit } = await nodeScript<{ obedient: { pid: number; child: number }; stubborn: { pid: number; child: number } }>(
    t,
    groupsIn(`const obedient = await group(OBEDIENT);
const stubborn = await group(STUBBORN);
sup.onCleanup(() => writeFileSync(${JSON.stringify(cleanupFile)}, 'ran'));
process.on('SIGTERM', () => {
  let check;
  try { sup.checkInterrupted(); check = 'passed'; } catch (e) { check = e.kind + ': ' + e.message; }
  // A group started after the signal is ended too (it may not live to print anything).
  sup.prepareSpawn();
  const c = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
  sup.track(c, 'late');
  console.error(JSON.stringify({ reason: sup.interruptReason(), was: sup.wasInterrupted(), check, late: c.pid }));
});
console.log(JSON.stringify({ obedient, stubborn }));`),
  );
  const { obedient, stubborn } = said;
  killAtEnd(t, () => obedient.pid, () => stubborn.pid);
  type Report = { reason?: string; was?: boolean; check?: string; late?: number };
  const report = (): Report => JSON.parse(/^\{.*\}$/m.exec(stderr())?.[0] ?? '{}') as Report;
  const signalled = Date.now();
  process.kill(child.pid!, 'SIGTERM');
  t.ok(await goneSoon(obedient.pid) && (await goneSoon(obedient.child)), 'a group that obeys SIGTERM is gone at once');
  for (let i = 0; i < 50 && !report().late; i++) await sleep(20);
  const late = report().late;
  killAtEnd(t, () => late);
  t.ok(late && (await goneSoon(late)), 'a group tracked after the signal is ended too');
  t.ok(Date.now() - signalled < 1400, `both before the SIGKILL (${Date.now() - signalled} ms)`);
  t.ok(alive(stubborn), 'one that ignores SIGTERM is still there');
  let stubbornGoneAt = 0;
  for (let i = 0; i < 150 && !stubbornGoneAt; i++) {
    if (!procStat(stubborn.pid) && !procStat(stubborn.child)) stubbornGoneAt = Date.now();
    else await sleep(20);
  }
  t.ok(stubbornGoneAt > 0, 'the stubborn group was killed');
  t.ok(procStat(child.pid!), 'while node still ran: by the interrupt’s SIGKILL, not at exit');
  t.ok(stubbornGoneAt - signalled >= 1000, `after a grace (${stubbornGoneAt - signalled} ms)`);
  const { code, at } = await exit;
  t.equal(code, 130, 'exit 130 though something held the process');
  t.ok(at - signalled >= 2500 && at - signalled < 10_000, `exit some seconds after the signal (${at - signalled} ms)`);
  t.equal(existsSync(cleanupFile) && readFileSync(cleanupFile, 'utf8'), 'ran', 'the cleanup ran on exit');
  t.match(stderr(), /klp-harness: SIGTERM: stopping 2 child process group\(s\)/);
  t.equal(report().reason, 'SIGTERM');
  t.equal(report().was, true);
  t.equal(report().check, 'interrupted: interrupted by a signal', 'checkInterrupted throws the interrupted error');
});

t.test('a second Ctrl-C ends the process at once, its exit hooks killing what is left', async (t) => {
  const cleanupFile = join(tempDir(t), 'cleaned');
  const { child, said, exit } = await nodeScript<{ stubborn: { pid: number; child: number } }>(
    t,
    groupsIn(`const stubborn = await group(STUBBORN);
sup.onCleanup(() => writeFileSync(${JSON.stringify(cleanupFile)}, 'ran'));
console.log(JSON.stringify({ stubborn }));`),
  );
  killAtEnd(t, () => said.stubborn.pid);
  const signalled = Date.now();
  process.kill(child.pid!, 'SIGINT');
  await sleep(100);
  process.kill(child.pid!, 'SIGINT');
  const { code, at } = await exit;
  t.equal(code, 130);
  t.ok(at - signalled < 1400, `at once, before the interrupt's own SIGKILL (${at - signalled} ms)`);
  t.ok(await goneSoon(said.stubborn.pid) && (await goneSoon(said.stubborn.child)), 'the group that ignored SIGTERM is gone');
  t.equal(existsSync(cleanupFile) && readFileSync(cleanupFile, 'utf8'), 'ran', 'the cleanup ran');
});

t.test('not interrupted: checkInterrupted passes in this process', async (t) => {
  t.equal(wasInterrupted(), false);
  t.doesNotThrow(() => checkInterrupted());
});
