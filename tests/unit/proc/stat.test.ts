// /proc/<pid>/stat read right on real processes: a name with spaces and
// parentheses, a zombie counted as gone, groups and their members, a reused
// pid told apart, signals to a group, and the watch on the harness's parents.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { groupMembers, groupStillRuns, isRunning, procId, procStat, signalGroup, watchedAncestors } from '../../../harness/proc/stat.js';
import { goneSoon, killAtEnd, ROOT, tempDir } from '../../helpers.js';

type Teardown = { teardown(fn: () => void): void };
const STAT_JS = join(ROOT, 'dist/harness/proc/stat.js');

/** Starts `sh -c script`; resolves with the child once it printed its first line (which is returned). */
function shell(t: Teardown, script: string, o: { detached?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn('sh', ['-c', script], { detached: o.detached ?? true, stdio: ['ignore', 'pipe', 'ignore'], env: o.env });
  killAtEnd(t, () => child.pid);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve({ child, line: out.slice(0, nl) });
    });
    child.on('exit', () => reject(new Error(`sh exited before printing: ${script}`)));
  });
}

/** The environment for child node processes: without tap's --import hook (NODE_OPTIONS), which only slows them down. */
const nodeEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ ...process.env, NODE_OPTIONS: '', ...extra });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test("this process as the kernel sees it: parent, group, start time and CPU time", async (t) => {
  const me = procStat(process.pid)!;
  t.equal(me.pid, process.pid);
  t.equal(me.ppid, process.ppid, 'the parent node knows of');
  t.equal(me.state, 'R', 'running, since it is reading');
  const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  const startedAt = uptime - process.uptime();
  t.ok(Math.abs(me.startTime / 100 - startedAt) < 2, `start time ${me.startTime / 100} s after boot, node says ${startedAt.toFixed(2)} s`);
  // Burn 200 ms of CPU (by node's own count, user + system: the host may be busy), then compare.
  const base = process.cpuUsage();
  const until = Date.now() + 5000;
  while (Date.now() < until && process.cpuUsage(base).user < 200_000) for (let i = 0; i < 1e5; i++) Math.sqrt(i);
  const cpu = process.cpuUsage();
  const after = procStat(process.pid)!;
  const nodeMs = (cpu.user + cpu.system) / 1000;
  t.ok(Math.abs(after.cpuMs - nodeMs) < 60, `CPU time ${after.cpuMs} ms, node counts ${nodeMs.toFixed(0)} ms`);
  t.ok(after.cpuMs - me.cpuMs >= 150, `it grew by the busy loop (${after.cpuMs - me.cpuMs} ms)`);
});

t.test('a child: its own group when detached, ours when not; sleeping', async (t) => {
  const { child: leader } = await shell(t, 'echo up; exec sleep 30');
  const { child: member } = await shell(t, 'echo up; exec sleep 30', { detached: false });
  for (let i = 0; i < 100 && procStat(leader.pid!)?.state !== 'S'; i++) await sleep(20);
  const l = procStat(leader.pid!)!;
  const m = procStat(member.pid!)!;
  t.equal(l.comm, 'sleep');
  t.equal(l.ppid, process.pid);
  t.equal(l.pgrp, leader.pid, 'leads a group of its own');
  t.equal(m.pgrp, procStat(process.pid)!.pgrp, "in this process's group");
  t.equal(l.state, 'S', 'sleeping');
  t.ok(l.startTime >= procStat(process.pid)!.startTime, 'started after this process');
});

t.test('a name with spaces and parentheses, even one that looks like the fields after it, is read whole', async (t) => {
  // The shell renames itself (a process can only rename itself), then waits on a child.
  const name = 'a) Z 1 (b c)';
  const { child } = await shell(t, `printf '%s' '${name}' > /proc/$$/comm; sleep 30 & echo renamed; wait`);
  t.equal(readFileSync(`/proc/${child.pid}/comm`, 'utf8').trim(), name, 'the kernel took the name');
  const s = procStat(child.pid!);
  t.ok(s, 'not taken for a zombie (state Z inside the name)');
  t.equal(s?.comm, name);
  t.match(s?.state, /^[RS]$/, 'running or sleeping, as the field after the name says');
  t.equal(s?.ppid, process.pid);
  t.equal(s?.pgrp, child.pid);
  t.ok(s!.startTime >= procStat(process.pid)!.startTime, 'a start time after ours');
});

t.test('a zombie is no process: procStat and procId give undefined', async (t) => {
  // sleep 30 replaces the shell and never waits for the short sleep, which stays a zombie.
  const { child, line } = await shell(t, 'sleep 0.05 & echo $!; exec sleep 30');
  const zombie = Number(line);
  let raw = '';
  for (let i = 0; i < 100 && !/\) Z /.test(raw); i++) {
    await sleep(20);
    raw = readFileSync(`/proc/${zombie}/stat`, 'utf8');
  }
  t.match(raw, /\) Z /, 'the kernel still lists it, as a zombie');
  t.equal(procStat(zombie), undefined);
  t.equal(procId(zombie), undefined);
  t.ok(procStat(child.pid!), 'its parent runs');
});

t.test('a process is named by pid and start time: a reused pid is not taken for it', async (t) => {
  const { child } = await shell(t, 'echo up; exec sleep 30');
  const id = procId(child.pid!)!;
  t.same(id, { pid: child.pid, startTime: procStat(child.pid!)!.startTime });
  t.ok(isRunning(id));
  t.notOk(isRunning({ pid: id.pid, startTime: id.startTime + 1 }), 'the same pid with another start time is another process');
  process.kill(child.pid!, 'SIGKILL');
  t.ok(await goneSoon(child.pid!));
  t.notOk(isRunning(id), 'gone');
  t.equal(procId(child.pid!), undefined);
});

t.test('group members, and whether a recorded group still runs', async (t) => {
  // The leader (which becomes a sleep) started a background sleep in its group.
  const { child, line } = await shell(t, 'sleep 30 >/dev/null & echo $!; exec sleep 30');
  const pgid = child.pid!;
  const member = Number(line);
  const leaderId = procId(pgid)!;
  t.same(groupMembers(pgid).map((m) => m.pid).sort(), [pgid, member].sort(), 'the leader and its child');
  t.ok(groupStillRuns(leaderId), 'its leader runs');
  t.notOk(groupStillRuns({ pid: pgid, startTime: leaderId.startTime - 1 }), 'a leader with another start time is another group');
  t.notOk(groupStillRuns(procId(member)!), 'a member is no leader: it names no group');
  process.kill(pgid, 'SIGKILL'); // the leader alone
  await new Promise((r) => child.once('exit', r));
  t.same(groupMembers(pgid).map((m) => m.pid), [member], 'the leader is gone, its child stays in the group');
  t.ok(groupStillRuns(leaderId), 'the group still runs without its leader');
  t.notOk(groupStillRuns({ pid: pgid, startTime: procStat(member)!.startTime + 1 }), 'not a group whose members all started before it');
  t.same(groupMembers(999_999_999), [], 'no such group');
});

t.test('signalGroup reaches the whole group, or the pid alone when it leads none', async (t) => {
  const { child, line } = await shell(t, 'sleep 30 & echo $!; wait');
  const grandchild = Number(line);
  signalGroup(child.pid!, 'SIGTERM');
  t.ok(await goneSoon(child.pid!), 'the leader');
  t.ok(await goneSoon(grandchild), 'and its child');
  // A child in this process's group: it leads no group, so only it gets the signal.
  const { child: plain } = await shell(t, 'echo up; exec sleep 30', { detached: false });
  signalGroup(plain.pid!, 'SIGKILL');
  t.ok(await goneSoon(plain.pid!), 'a pid that leads no group is signalled alone');
  t.doesNotThrow(() => signalGroup(plain.pid!, 'SIGKILL'), 'a gone pid is no error');
});

/** Runs a node script through `sh -c` (not exec'd: the shell stays its parent) and returns what it printed. */
async function viaShell(t: Teardown, code: string, env: NodeJS.ProcessEnv): Promise<string> {
  const script = join(tempDir(t), 'script.mjs');
  writeFileSync(script, code);
  const child = spawn('sh', ['-c', `"${process.execPath}" "${script}"; :`], { env, stdio: ['ignore', 'pipe', 'ignore'] });
  killAtEnd(t, () => child.pid);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise((r) => child.once('close', r));
  return out;
}

t.test('the ancestors watched: the parent, and npm when npm started us through a shell', async (t) => {
  const code = `import { watchedAncestors, procId } from ${JSON.stringify(STAT_JS)};\nconsole.log(JSON.stringify({ sh: procId(process.ppid), watched: watchedAncestors() }));\n`;
  const env = nodeEnv();
  delete env.npm_lifecycle_event;
  const plain = JSON.parse(await viaShell(t, code, env));
  t.same(plain.watched, [plain.sh], 'outside npm: only the shell that started it');
  const underNpm = JSON.parse(await viaShell(t, code, { ...env, npm_lifecycle_event: 'klp-harness' }));
  t.same(underNpm.watched, [underNpm.sh, procId(process.pid)], "under npm: the shell and the shell's parent (this process stands in for npm)");
  const direct = watchedAncestors();
  t.same(direct[0], procId(process.ppid), 'in this process: its parent first');
});

t.test('watchAncestors calls back once the parent is gone, a stopped watch never, and neither holds the process', async (t) => {
  const dir = tempDir(t);
  const script = join(dir, 'watch.mjs');
  writeFileSync(
    script,
    `import { watchAncestors } from ${JSON.stringify(STAT_JS)};\n` +
      `const fired = [];\n` +
      `const stop = watchAncestors(() => fired.push('stopped watch'), 20);\n` +
      `stop();\n` +
      `watchAncestors((who) => { fired.push(who.pid); setTimeout(() => { console.log(JSON.stringify(fired)); process.exit(0); }, 150); }, 20);\n` +
      `console.log('watching');\n` +
      `setTimeout(() => process.exit(3), 10_000);\n`,
  );
  const { child: sh } = await shell(t, `"${process.execPath}" "${script}"; :`, { env: nodeEnv() });
  let out = '';
  sh.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  process.kill(sh.pid!, 'SIGKILL'); // the shell alone: the node below it lives on
  for (let i = 0; i < 100 && !out.includes(']'); i++) await sleep(20);
  t.same(JSON.parse(out.trim() || 'null'), [sh.pid], 'the one live watch named the gone shell');

  const idle = join(dir, 'idle.mjs');
  writeFileSync(idle, `import { watchAncestors } from ${JSON.stringify(STAT_JS)};\nwatchAncestors(() => {}, 20);\n`);
  const started = Date.now();
  const node = spawn(process.execPath, [idle], { stdio: 'ignore', env: nodeEnv() });
  killAtEnd(t, () => node.pid);
  const code = await new Promise((r) => node.once('exit', r));
  t.equal(code, 0);
  t.ok(Date.now() - started < 5000, 'a process with only a watch ends on its own');
});
