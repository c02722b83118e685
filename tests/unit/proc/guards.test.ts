// The guards for when node itself dies: PATH lookup, the setpriv wrapper
// (whose child really dies with node, and outlives it when turned off), and
// the reaper, which kills the groups it was told of when node's end closes its pipe.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import t from 'tap';
import { findOnPath, setprivMissing, withDeathSignal } from '../../../harness/proc/guards.js';
import { procStat } from '../../../harness/proc/stat.js';
import { goneSoon, killAtEnd, ROOT, setEnv, tempDir } from '../../helpers.js';

type Teardown = { teardown(fn: () => void): void };
const GUARDS_JS = join(ROOT, 'dist/harness/proc/guards.js');
const STAT_JS = join(ROOT, 'dist/harness/proc/stat.js');
// Looked up before any test changes PATH.
const HOST_SETPRIV = findOnPath('setpriv');
const NO_SETPRIV = HOST_SETPRIV ? false : 'no setpriv on this host';
/** The environment for child node processes: without tap's --import hook (NODE_OPTIONS), which only slows them down. */
const nodeEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ ...process.env, NODE_OPTIONS: '', ...extra });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function executable(dir: string, name: string, mode = 0o755): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  writeFileSync(file, '#!/bin/sh\n');
  chmodSync(file, mode);
  return file;
}

/** A group of its own (as the harness starts each child): a shell and the sleep it started. */
async function sleeperGroup(t: Teardown): Promise<{ pgid: number; child: number }> {
  const sh = spawn('sh', ['-c', 'sleep 30 & echo $!; wait'], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  killAtEnd(t, () => sh.pid);
  const line = await new Promise<string>((resolve) => sh.stdout!.once('data', (d: Buffer) => resolve(d.toString())));
  return { pgid: sh.pid!, child: Number(line.trim()) };
}

/** Starts a node script (in a group of its own); resolves with it and its first line of output, parsed. */
async function nodeScript<T>(t: Teardown, code: string, env: NodeJS.ProcessEnv = nodeEnv()): Promise<{ child: ChildProcess; said: T }> {
  const file = join(tempDir(t), 'script.mjs');
  writeFileSync(file, code);
  const child = spawn(process.execPath, [file], { detached: true, env, stdio: ['ignore', 'pipe', 'inherit'] });
  killAtEnd(t, () => child.pid);
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')));
    });
    child.once('exit', (code) => reject(new Error(`script exited (${code}) before it spoke`)));
  });
  return { child, said: JSON.parse(line) as T };
}

t.test('findOnPath: the first executable file of that name along PATH', async (t) => {
  const root = tempDir(t);
  const [a, b, c] = ['a', 'b', 'c'].map((d) => join(root, d));
  executable(a, 'tool', 0o644); // there, but not executable
  const inB = executable(b, 'tool');
  executable(c, 'tool');
  t.equal(findOnPath('tool', [join(root, 'none'), a, b, c].join(delimiter)), inB, 'skips a missing dir and a file without x; b before c');
  t.equal(findOnPath('other', [a, b, c].join(delimiter)), undefined, 'not found');
  t.equal(findOnPath('tool', ''), undefined, 'an empty PATH finds nothing in other directories');
  setEnv(t, { PATH: [c, b].join(delimiter) });
  t.equal(findOnPath('tool'), join(c, 'tool'), 'PATH is the default');
});

t.test('findOnPath: an empty PATH entry is the current directory', async (t) => {
  const dir = tempDir(t);
  executable(dir, 'here-tool');
  const before = process.cwd();
  process.chdir(dir);
  t.teardown(() => process.chdir(before));
  t.equal(findOnPath('here-tool', `${delimiter}/nonexistent`), join('.', 'here-tool'));
  t.equal(findOnPath('here-tool', '/nonexistent'), undefined);
});

t.test('findOnPath: a directory of that name is no executable file', async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'make'));
  t.equal(findOnPath('make', dir), undefined);
});

t.test('withDeathSignal: setpriv from PATH wraps the command, unless turned off or missing', async (t) => {
  const bin = tempDir(t);
  const setpriv = executable(bin, 'setpriv');
  setEnv(t, { PATH: bin });
  setEnv(t, { KLP_HARNESS_NO_PDEATHSIG: undefined });
  const args = ['-j2', 'O=/b'];
  const w = withDeathSignal('make', args);
  t.same(w, { file: setpriv, args: ['--pdeathsig', 'KILL', '--', 'make', '-j2', 'O=/b'] });
  t.same(args, ['-j2', 'O=/b'], "the caller's args are left alone");
  process.env.KLP_HARNESS_NO_PDEATHSIG = '1';
  const off = withDeathSignal('make', args);
  t.same(off, { file: 'make', args });
  t.not(off.args, args, 'a copy');
  process.env.KLP_HARNESS_NO_PDEATHSIG = '';
  t.equal(withDeathSignal('make', []).file, setpriv, 'an empty value does not turn it off');
  process.env.PATH = tempDir(t);
  t.same(withDeathSignal('make', ['x']), { file: 'make', args: ['x'] }, 'no setpriv on PATH: the command as it is');
});

t.test('setprivMissing recognises what setpriv says when the program is not there', { skip: NO_SETPRIV }, async (t) => {
  const setpriv = HOST_SETPRIV!;
  let said = '';
  try {
    execFileSync(setpriv, ['--pdeathsig', 'KILL', '--', '/nonexistent/klp-tool'], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    said = String((e as { stderr?: Buffer }).stderr);
    t.equal((e as { status?: number }).status, 127, 'exit 127, which exec.ts looks for');
  }
  t.ok(setprivMissing(said), `setpriv's own words: ${said.trim()}`);
  t.notOk(setprivMissing('sh: 1: klp-tool: not found\n'), "a shell's 'not found' is not setpriv's");
  t.notOk(setprivMissing('make: *** [Makefile:2: all] Error 127'), 'nor a failed build');
});

/** A script that starts sleep under withDeathSignal and prints its pid. */
const deathSignalScript = `import { spawn } from 'node:child_process';
import { withDeathSignal } from ${JSON.stringify(GUARDS_JS)};
const w = withDeathSignal('sleep', ['30']);
const c = spawn(w.file, w.args, { detached: true, stdio: 'ignore' });
c.on('spawn', () => setTimeout(() => console.log(JSON.stringify({ pid: c.pid, file: w.file })), 100));
setInterval(() => {}, 1000);
`;

t.test('a command under the death signal dies with node; with the signal turned off it outlives node', { skip: NO_SETPRIV }, async (t) => {
  const env = nodeEnv();
  delete env.KLP_HARNESS_NO_PDEATHSIG;
  const guarded = await nodeScript<{ pid: number; file: string }>(t, deathSignalScript, env);
  killAtEnd(t, () => guarded.said.pid);
  t.match(guarded.said.file, /setpriv$/);
  t.equal(procStat(guarded.said.pid)?.comm, 'sleep', 'setpriv exec’d the program: the pid is the sleep’s');
  t.equal(procStat(guarded.said.pid)?.ppid, guarded.child.pid, 'a child of that node');
  process.kill(guarded.child.pid!, 'SIGKILL'); // node alone (the sleep leads a group of its own)
  t.ok(await goneSoon(guarded.said.pid), 'the kernel killed it when node died');

  const bare = await nodeScript<{ pid: number; file: string }>(t, deathSignalScript, { ...env, KLP_HARNESS_NO_PDEATHSIG: '1' });
  killAtEnd(t, () => bare.said.pid);
  t.equal(bare.said.file, 'sleep');
  process.kill(bare.child.pid!, 'SIGKILL');
  await new Promise((r) => bare.child.once('exit', r));
  await sleep(300);
  t.ok(procStat(bare.said.pid), 'without it, the sleep outlives node (the other guards are for that)');
});

t.test("the reaper: node's whole group killed, it kills the groups still listed, and only those", async (t) => {
  // The reaper's pipe is private to the Reaper: only node's end closes it, so node runs in a child process.
  const [a, b, c] = [await sleeperGroup(t), await sleeperGroup(t), await sleeperGroup(t)];
  const code = `import { Reaper } from ${JSON.stringify(GUARDS_JS)};
import { procStat } from ${JSON.stringify(STAT_JS)};
import { readdirSync, readFileSync } from 'node:fs';
const r = new Reaper();
r.start();
r.start();
r.tell('+', ${a.pgid});
r.tell('+', ${b.pgid});
r.tell('+', ${c.pgid});
r.tell('-', ${b.pgid});
const reapers = readdirSync('/proc').filter((n) => /^\\d+$/.test(n)).map(Number).filter((p) => {
  try { return procStat(p)?.ppid === process.pid && readFileSync('/proc/' + p + '/cmdline', 'utf8').includes('read -r op id'); } catch { return false; }
});
setTimeout(() => console.log(JSON.stringify({ reapers })), 100);
setInterval(() => {}, 1000);
`;
  const { child, said } = await nodeScript<{ reapers: number[] }>(t, code);
  killAtEnd(t, ...said.reapers.map((p) => () => p));
  t.equal(said.reapers.length, 1, 'one reaper, however often start() is called');
  const reaper = said.reapers[0]!;
  t.not(procStat(reaper)?.pgrp, child.pid, "it is outside node's process group");
  await sleep(200);
  t.ok([a, b, c].every((g) => procStat(g.pgid) && procStat(g.child)), 'nothing is killed while node lives');
  process.kill(-child.pid!, 'SIGKILL'); // node's whole group, as a kill of the terminal's job would
  t.ok(await goneSoon(a.pgid) && (await goneSoon(a.child)), 'a group it was told of is gone, grandchild too');
  t.ok(await goneSoon(c.pgid) && (await goneSoon(c.child)), 'so is the other');
  t.ok(await goneSoon(reaper), 'and the reaper itself is done');
  t.ok(procStat(b.pgid) && procStat(b.child), "the group it was told had ended ('-') is left alone");
});
