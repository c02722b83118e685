// Run records (the third guard): a run's groups are written under
// <cache>/procs/<pid>.json, and a later run kills the groups of a run whose
// harness is gone, never those of a live one, and never a reused pid.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { RunRecord, sweepStale } from '../../../harness/proc/records.js';
import { procId, procStat } from '../../../harness/proc/stat.js';
import { goneSoon, tempDir } from '../../helpers.js';

/** A sleeping process in a group of its own (as the harness starts QEMU). */
function sleeper(t: { teardown(fn: () => void): void }) {
  const child = spawn('sleep', ['60'], { detached: true, stdio: 'ignore' });
  t.teardown(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  });
  return child.pid!;
}

t.test('a record names this process and its groups, and is replaced atomically', async (t) => {
  const cache = tempDir(t);
  const r = new RunRecord();
  const pid = sleeper(t);
  r.recordIn(cache, [{ ...procId(pid)!, name: 'qemu x86_64' }]);
  const path = join(cache, 'procs', `${process.pid}.json`);
  const body = JSON.parse(readFileSync(path, 'utf8'));
  t.same(body.harness, procId(process.pid), 'the harness by pid and start time');
  t.same(body.groups.map((g: { name: string }) => g.name), ['qemu x86_64']);
  r.write([]);
  t.same(JSON.parse(readFileSync(path, 'utf8')).groups, [], 'rewritten');
  t.same(readdirSync(join(cache, 'procs')), [`${process.pid}.json`], 'no temporary file left');
  r.drop();
  t.same(readdirSync(join(cache, 'procs')), [], 'dropped on a clean exit');
});

t.test('a run whose harness is gone: its groups are killed and its record removed', async (t) => {
  const cache = tempDir(t);
  mkdirSync(join(cache, 'procs'));
  const pid = sleeper(t);
  // A harness that is gone: a pid with a start time no live process has.
  const ghost = { pid: 999_999, startTime: 1 };
  writeFileSync(join(cache, 'procs', '999999.json'), JSON.stringify({ harness: ghost, groups: [{ ...procId(pid)!, name: 'qemu' }] }));
  const swept = sweepStale(cache);
  t.same(swept.map((s) => [s.harnessPid, s.killed.map((g) => g.name)]), [[999_999, ['qemu']]]);
  t.ok(await goneSoon(pid), 'its QEMU stand-in is gone');
  t.same(readdirSync(join(cache, 'procs')), [], 'its record removed');
});

t.test('a live run, a reused pid and a corrupt record are handled without killing anyone', async (t) => {
  const cache = tempDir(t);
  mkdirSync(join(cache, 'procs'));
  const alive = sleeper(t);
  const bystander = sleeper(t);
  // A live harness (the sleeper stands in for one): its record stays, its groups live.
  writeFileSync(join(cache, 'procs', `${alive}.json`), JSON.stringify({ harness: procId(alive), groups: [{ ...procId(bystander)!, name: 'qemu' }] }));
  // A gone harness whose recorded group pid now belongs to another process (start time differs).
  writeFileSync(join(cache, 'procs', '999998.json'), JSON.stringify({ harness: { pid: 999_998, startTime: 1 }, groups: [{ pid: bystander, startTime: procId(bystander)!.startTime + 1, name: 'old qemu' }] }));
  writeFileSync(join(cache, 'procs', '999997.json'), '{ half a rec');
  const swept = sweepStale(cache);
  t.same(swept, [{ harnessPid: 999_998, killed: [] }], 'the gone run is swept, its reused pid left alone');
  t.ok(procStat(alive) && procStat(bystander), 'nobody was killed');
  t.same(readdirSync(join(cache, 'procs')).sort(), [`${alive}.json`], 'the corrupt record and the swept one removed; the live one kept');
});
