// The process layer against tiny fake programs: a timeout, an abort, a stop
// and the harness's exit each end the whole group, grandchildren included.
import t from 'tap';
import { killAll } from '../../../harness/proc/supervisor.js';
import { run } from '../../../harness/proc/exec.js';
import { spawnGroup } from '../../../harness/proc/group.js';
import { fixture, goneSoon } from '../../helpers.js';

const TREE = fixture('procs/tree.sh');
const STUBBORN = fixture('procs/stubborn.sh');

/** Starts a fake program and resolves with the group and its grandchild's pid (the sleep it started). */
async function start(file: string, o: { timeoutMs?: number; signal?: AbortSignal; killAfterMs?: number } = {}) {
  const { child, group } = spawnGroup(file, [], { name: 'fake', ...o, spawn: { stdio: ['ignore', 'pipe', 'ignore'] } });
  const grandchild = await new Promise<number>((resolve) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /child (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
  });
  return { group, grandchild };
}

t.test('a timeout ends the whole group', async (t) => {
  const { group, grandchild } = await start(TREE, { timeoutMs: 300 });
  const exit = await group.exited;
  t.ok(group.timedOut, 'timedOut is set');
  t.equal(exit.signal, 'SIGTERM');
  t.ok(await goneSoon(grandchild), 'the grandchild went with it');
});

t.test('an abort ends the whole group', async (t) => {
  const ac = new AbortController();
  const { group, grandchild } = await start(TREE, { signal: ac.signal });
  ac.abort();
  await group.exited;
  t.ok(group.aborted, 'aborted is set');
  t.ok(await goneSoon(grandchild), 'the grandchild went with it');
});

t.test('stop escalates to SIGKILL when SIGTERM is ignored', async (t) => {
  const { group, grandchild } = await start(STUBBORN);
  const started = Date.now();
  const exit = await group.stop(300);
  t.equal(exit.signal, 'SIGKILL');
  t.ok(Date.now() - started >= 280, 'after the grace period');
  t.ok(await goneSoon(grandchild), 'the grandchild (ignoring SIGTERM too) was killed');
});

t.test("the harness's exit path kills every live group", async (t) => {
  const { group, grandchild } = await start(STUBBORN);
  killAll();
  const exit = await group.exited;
  t.equal(exit.signal, 'SIGKILL');
  t.ok(await goneSoon(grandchild), 'the grandchild went too');
});

t.test('exec: a command past its timeout fails as timed out, and what it started is gone', async (t) => {
  let grandchild = 0;
  const err = (await run(TREE, [], { timeoutMs: 300, onLine: (l) => (grandchild = Number(/child (\d+)/.exec(l)?.[1] ?? grandchild)) }).catch((e) => e)) as Error & { context?: { signal?: string } };
  t.match(err.message, /command failed: .*tree\.sh \(timed out\)/);
  t.equal(err.context?.signal, 'SIGTERM');
  t.ok(grandchild > 0, 'the grandchild was seen');
  t.ok(await goneSoon(grandchild), 'the grandchild went with the command');
});

t.test('exec: a missing program is a host error saying so', async (t) => {
  const err = (await run('/nonexistent/tool', []).catch((e) => e)) as Error;
  t.match(err.message, /host tool '\/nonexistent\/tool' is not installed/);
});
