// Whatever ends the harness, nothing it started goes on: kill -9 during a
// build and during a VM's life, a SIGINT or SIGTERM sent only to the `npx`
// or `npm run` the user or CI started, and a start-up sweep for when every
// other guard died too. Fake make and fake QEMU: no kernel is built or booted.
import { spawn, type ChildProcess } from 'node:child_process';
import { untapped } from '../child-env.js';
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { EXIT } from '../../harness/core/errors.js';
import { procStat } from '../../harness/proc/stat.js';
import { alive, fakeKernelTree, okSeries } from '../cli-helpers.js';
import { ROOT, tempDir } from '../helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until cond holds or ms pass; returns whether it held and when. */
async function within(ms: number, cond: () => boolean): Promise<{ ok: boolean; ms: number }> {
  const started = Date.now();
  while (Date.now() - started < ms) {
    if (cond()) return { ok: true, ms: Date.now() - started };
    await sleep(50);
  }
  return { ok: cond(), ms: Date.now() - started };
}

/** A make stand-in that records its pid and its child's, then waits for the child (as make waits for cc1). */
function fakeMake(t: Test) {
  const dir = tempDir(t);
  const pids = join(dir, 'pids');
  writeFileSync(join(dir, 'make'), `#!/bin/sh\necho $$ >> ${pids}\nsleep 300 &\necho $! >> ${pids}\nwait\n`);
  chmodSync(join(dir, 'make'), 0o755);
  const started = () => (existsSync(pids) ? readFileSync(pids, 'utf8').trim().split('\n').filter(Boolean).map(Number) : []);
  return { dir, started };
}

/** Every process below pid, read from /proc. */
function descendants(pid: number): number[] {
  const all = readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map((n) => procStat(Number(n))).filter((s) => s !== undefined);
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of all) {
      if (c.ppid !== p) continue;
      out.push(c.pid);
      walk(c.pid);
    }
  };
  walk(pid);
  return out;
}

interface Started {
  child: ChildProcess;
  stderr: () => string;
  closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts a run on the fake tree with the fake make first on PATH, through the given launcher. */
function startRun(t: Test, launcher: string[], make: { dir: string }, cache: string, out: string, env: NodeJS.ProcessEnv = {}): Started {
  const args = ['run', '--arch', 'x86_64', '--kernel-src', fakeKernelTree(tempDir(t)), '--patches', okSeries(tempDir(t)), '--cache-dir', cache, '--out', out];
  const childEnv = { ...process.env, ...env, PATH: `${make.dir}:${process.env.PATH}` };
  const [cmd, argv] = untapped(launcher[0]!, [...launcher.slice(1), ...args], childEnv);
  const child = spawn(cmd, argv, {
    cwd: ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout!.on('data', (d: Buffer) => (stderr += d.toString()));
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('close', (code, signal) => r({ code, signal })));
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  closed.then(() => clearTimeout(killer));
  return { child, stderr: () => stderr, closed };
}

const NODE_BIN = [process.execPath, join(ROOT, 'bin/klp-harness.js')];

t.test('kill -9 of the harness during a build: make and its children are gone within 5 s', async (t) => {
  const make = fakeMake(t);
  const cache = tempDir(t);
  const run = startRun(t, NODE_BIN, make, cache, tempDir(t));
  t.ok((await within(30_000, () => make.started().length >= 2)).ok, 'fake make and its child started');
  const pids = make.started();
  run.child.kill('SIGKILL');
  await run.closed;
  const gone = await within(5000, () => pids.every((p) => !alive(p)));
  t.ok(gone.ok, `make (pid ${pids[0]}) and its child (pid ${pids[1]}) gone ${gone.ms} ms after the harness died`);
  t.ok(existsSync(join(cache, 'procs', `${run.child.pid}.json`)), 'the dead run left its record of groups');
});

t.test('with the reaper and pdeathsig gone too, the next run sweeps the orphaned group at start-up', async (t) => {
  const make = fakeMake(t);
  const cache = tempDir(t);
  // No setpriv: the make stand-in survives node; then the reaper is killed before node.
  const first = startRun(t, NODE_BIN, make, cache, tempDir(t), { KLP_HARNESS_NO_PDEATHSIG: '1' });
  t.ok((await within(30_000, () => make.started().length >= 2)).ok, 'fake make started');
  const pids = make.started();
  const reaper = descendants(first.child.pid!).find((p) => /read -r op id/.test(readFileSync(`/proc/${p}/cmdline`, 'utf8')));
  t.ok(reaper, `the reaper runs (pid ${reaper})`);
  process.kill(reaper!, 'SIGKILL');
  await sleep(200);
  first.child.kill('SIGKILL');
  await first.closed;
  await sleep(500);
  t.ok(pids.every(alive), 'with every other guard gone, the group outlived the harness');

  const second = startRun(t, NODE_BIN, fakeMake(t), cache, tempDir(t));
  t.ok((await within(30_000, () => /cleanup: harness pid \d+ is gone/.test(second.stderr()))).ok, 'the next run says what it swept');
  t.match(second.stderr(), new RegExp(`harness pid ${first.child.pid} is gone; killed 1 process group\\(s\\) it left: make \\(pgid ${pids[0]}\\)`));
  const gone = await within(2000, () => pids.every((p) => !alive(p)));
  t.ok(gone.ok, 'the orphaned make and its child are gone');
  t.notOk(existsSync(join(cache, 'procs', `${first.child.pid}.json`)), 'the dead run\'s record is removed');
  second.child.kill('SIGINT');
  t.equal((await second.closed).code, EXIT.interrupted);
});

t.test('kill -9 of a process holding a QEMU: the QEMU group is gone within 5 s', async (t) => {
  const dir = tempDir(t);
  const pids = join(dir, 'pids');
  const qemu = join(dir, 'qemu-fake');
  writeFileSync(qemu, `#!/bin/sh\necho $$ >> ${pids}\nsleep 300 &\necho $! >> ${pids}\nwait\n`);
  chmodSync(qemu, 0o755);
  const holder = join(dir, 'holder.mjs');
  writeFileSync(
    holder,
    `import { getArch } from ${JSON.stringify(join(ROOT, 'dist/harness/core/arch.js'))};\n` +
      `import { QemuVM } from ${JSON.stringify(join(ROOT, 'dist/harness/vm/qemu.js'))};\n` +
      `new QemuVM({ arch: getArch('x86_64'), kernel: '/k', initrd: '/i', sshPort: 1, consoleLog: ${JSON.stringify(join(dir, 'console.log'))}, binary: ${JSON.stringify(qemu)} });\n` +
      // The constructor has returned: the group is registered (and the reaper told), as in a run.
      `process.stdout.write('constructed\\n');\n` +
      `setInterval(() => {}, 1000);\n`,
  );
  const child = spawn(process.execPath, [holder], { stdio: ['ignore', 'pipe', 'ignore'] });
  let said = '';
  child.stdout!.on('data', (d: Buffer) => (said += d.toString()));
  t.ok((await within(10_000, () => said.includes('constructed') && existsSync(pids) && readFileSync(pids, 'utf8').trim().split('\n').length >= 2)).ok, 'fake QEMU started');
  const started = readFileSync(pids, 'utf8').trim().split('\n').map(Number);
  child.kill('SIGKILL');
  const gone = await within(5000, () => started.every((p) => !alive(p)));
  const left = started.filter(alive).map((p) => `${p}: state ${procStat(p)?.state ?? 'gone'}, parent ${procStat(p)?.ppid ?? '-'}`);
  t.ok(gone.ok, `fake QEMU (pid ${started[0]}) and its child gone ${gone.ms} ms after its holder died${left.length ? `; still there: ${left.join('; ')}` : ''}`);
});

const LAUNCHERS: [string, string[]][] = [
  ['npx klp-harness', ['npx', '--offline', 'klp-harness']],
  ['npm run klp-harness', ['npm', 'run', '--silent', 'klp-harness', '--']],
];
for (const [name, launcher] of LAUNCHERS) {
  t.test(`SIGINT to \`${name}\` only ends the run as Ctrl-C does: exit 130, reports written, nothing left`, async (t) => {
    const make = fakeMake(t);
    const out = tempDir(t);
    const run = startRun(t, launcher, make, tempDir(t), out);
    t.ok((await within(30_000, () => make.started().length >= 2)).ok, 'the build was under way');
    const below = descendants(run.child.pid!);
    t.ok(below.length >= 3, `npm's tree: ${below.length} processes below it`);
    const sentAt = Date.now();
    process.kill(run.child.pid!, 'SIGINT');
    const r = await run.closed;
    t.equal(r.code, EXIT.interrupted, `${name} exits 130`);
    const gone = await within(5000, () => [...below, ...make.started()].every((p) => !alive(p)));
    t.ok(gone.ok, `the harness, make and its child are gone ${Date.now() - sentAt} ms after the signal`);
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as { interrupted?: string; exitCode: number; arches: { scenarios: { interrupted?: boolean }[] }[] };
    t.equal(summary.interrupted, 'SIGINT', 'summary.json says the run was interrupted');
    t.equal(summary.exitCode, EXIT.interrupted);
    t.ok(summary.arches[0]!.scenarios.length > 0 && summary.arches[0]!.scenarios.every((s) => s.interrupted), 'every scenario marked interrupted');
    t.match(readFileSync(join(out, 'junit.xml'), 'utf8'), /<error type="interrupted"/, 'junit.xml too');
    t.match(run.stderr(), /interrupted: SIGINT/, 'the printed summary says so');
  });
}

t.test('SIGTERM to npx with npm running the bin through sh: the harness sees its starter go and stops', async (t) => {
  const make = fakeMake(t);
  const out = tempDir(t);
  // sh forks for the bin and dies of the SIGTERM npm forwards, leaving the harness without its parent.
  const run = startRun(t, ['npx', '--offline', 'klp-harness'], make, tempDir(t), out, { npm_config_script_shell: '/bin/sh' });
  t.ok((await within(30_000, () => make.started().length >= 2)).ok, 'the build was under way');
  const below = descendants(run.child.pid!);
  t.ok(below.some((p) => procStat(p)?.comm === 'sh'), 'sh sits between npm and the harness');
  const sentAt = Date.now();
  process.kill(run.child.pid!, 'SIGTERM');
  await run.closed;
  const gone = await within(5000, () => [...below, ...make.started()].every((p) => !alive(p)));
  t.ok(gone.ok, `the harness, make and its child are gone ${Date.now() - sentAt} ms after the signal`);
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as { interrupted?: string; exitCode: number };
  t.match(summary.interrupted, /the process that started klp-harness \(pid \d+\) is gone/);
  t.equal(summary.exitCode, EXIT.interrupted);
});
