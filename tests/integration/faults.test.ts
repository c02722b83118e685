// Fault injection on real VMs (and a fake make for the build): a panic, a
// hung guest, a killed QEMU, a taken port, SIGINT/SIGTERM in each phase, a
// corrupted cache entry. Each checks the error and that no child outlives it.
import { chmodSync, existsSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { getArch } from '../../harness/core/arch.js';
import { Accelerator } from '../../harness/vm/accel.js';
import { bootGuest, type Booted } from '../../harness/vm/boot.js';
import { cacheRoot, MARKER } from '../../harness/core/cache.js';
import { liveChildren } from '../../harness/proc/supervisor.js';
import { EXIT, HarnessError } from '../../harness/core/errors.js';
import { GuestOps } from '../../harness/vm/guestops.js';
import { buildImage } from '../../harness/image/initramfs.js';
import { createLogger } from '../../harness/core/log.js';
import { prepareRun } from '../../harness/pipeline/prepare.js';
import { freePort } from '../../harness/vm/ports.js';
import { timeout } from '../../harness/core/timeouts.js';
import { alive, fakeKernelTree, okSeries, runCli } from '../cli-helpers.js';
import { tempDir } from '../helpers.js';

const arch = getArch('x86_64');
const logger = createLogger('normal');
const cacheDir = cacheRoot();
const { keys, initScript, artifacts } = await prepareRun({ arches: [arch], cacheDir, logger });
const { build, image } = artifacts.get(arch.name)!;
// As a run decides it: a /dev/kvm that runs no guest costs the probe once per host boot, not a stalled boot per test.
const accel = await Accelerator.decide({ arch, cacheDir, logger });

const boot = (extra: Partial<Parameters<typeof bootGuest>[0]>, t0: Test) =>
  bootGuest({ arch, kernel: build.image, initrd: image.path, keys, consoleLog: join(tempDir(t0), 'console.log'), logger, accel, ...extra });


const noQemuLeft = (t: Test) => t.same(liveChildren().filter((c) => c.name.includes('qemu')), [], 'no QEMU child left');

t.test('a panic during boot fails at once with the panic line', async (t) => {
  const started = Date.now();
  const err = (await boot({ extraAppend: ['rdinit=/no-such-init'] }, t).catch((e) => e)) as HarnessError;
  t.type(err, HarnessError);
  t.equal(err.kind, 'boot');
  t.match(err.message, /Kernel panic - not syncing/);
  t.match(err.report(), /last console lines/);
  // The SSH wait (timeouts.ts bootToSsh, 60 s) must not be what ends it; a loaded host may take a while to boot to the panic.
  t.ok(Date.now() - started < 45_000, `failed after ${Date.now() - started} ms, without waiting for the SSH timeout`);
  noQemuLeft(t);
});

async function withGuest(t: Test, fn: (b: Booted, ops: GuestOps) => Promise<void>, commandTimeoutMs = 60_000) {
  {
    await using b = await boot({}, t);
    await fn(b, new GuestOps(b.ssh, commandTimeoutMs, b.vm));
  }
  noQemuLeft(t);
}

t.test('a panic during a scenario is reported from the console within seconds', async (t) => {
  await withGuest(t, async (_b, ops) => {
    const started = Date.now();
    const err = (await ops.run('echo c > /proc/sysrq-trigger').catch((e) => e)) as HarnessError;
    t.equal(err.kind, 'boot');
    t.match(err.message, /kernel panic: .*sysrq triggered crash/);
    t.ok(err.context.consoleTail?.some((l) => /sysrq/.test(l)), 'console excerpt included');
    t.ok(Date.now() - started < 30_000, `detected after ${Date.now() - started} ms, from the console, not by the 60 s command timeout`);
  });
});

t.test('a guest that stops answering is ended by the scaled command timeout, with the console tail', async (t) => {
  await withGuest(
    t,
    async (b, ops) => {
      process.kill(b.vm.pid!, 'SIGSTOP');
      const started = Date.now();
      const err = (await ops.run('true').catch((e) => e)) as HarnessError;
      t.equal(err.kind, 'timeout');
      t.ok((err.context.consoleTail?.length ?? 0) > 0, 'console tail attached');
      // Ended by the 3 s timeout given here, not by the 60 s default (margin for a loaded host).
      t.ok(Date.now() - started < 20_000, `timed out after ${Date.now() - started} ms`);
      process.kill(b.vm.pid!, 'SIGCONT');
    },
    3000,
  );
});

t.test('QEMU killed mid-run is reported as such, at once', async (t) => {
  await withGuest(t, async (b, ops) => {
    const pending = ops.run('sleep 20');
    process.kill(b.vm.pid!, 'SIGKILL');
    const err = (await pending.catch((e) => e)) as HarnessError;
    t.equal(err.kind, 'infra');
    t.match(err.message, /QEMU was killed \(SIGKILL\)/);
  });
});

t.test('a taken SSH port is retried on another port; nothing else is retried', async (t) => {
  const server = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const taken = (server.address() as { port: number }).port;
  t.teardown(() => server.close());
  let calls = 0;
  const b = await boot({ pickPort: async () => (calls++ === 0 ? taken : freePort()) }, t);
  t.not(b.port, taken, `QEMU moved from taken port ${taken} to ${b.port}`);
  t.ok(calls >= 2, `retried (${calls} ports asked; a KVM that fails to start costs one more)`);
  t.equal((await b.ssh.exec('echo up')).stdout.trim(), 'up', 'the guest answers on the new port');
  await b[Symbol.asyncDispose]();
  noQemuLeft(t);
});

/** A QEMU stand-in that prints two boot lines and then goes silent for its first `stalls` runs, then runs the real QEMU. */
function stallingQemu(t: Test, stalls: number) {
  const dir = tempDir(t);
  const bin = join(dir, 'qemu-stalls');
  writeFileSync(
    bin,
    `#!/bin/sh\nn=$(cat ${dir}/count 2>/dev/null || echo 0); echo $((n + 1)) > ${dir}/count\n` +
      `if [ "$n" -lt ${stalls} ]; then echo '[    0.000000] Linux version 6.1 (stand-in)'; echo '[    2.045844] i8042: PNP: PS/2 Controller'; exec sleep 600; fi\n` +
      `exec ${arch.qemu.binary} "$@"\n`,
  );
  chmodSync(bin, 0o755);
  return { bin, runs: () => Number(readFileSync(join(dir, 'count'), 'utf8')) };
}

t.test('a boot whose console goes silent is booted once more, the stalled console kept', async (t) => {
  const fake = stallingQemu(t, 1);
  // The bound applies to the real boot after the stall too: 3 s of console silence is seen there on a loaded host.
  const b = await boot({ qemuBinary: fake.bin, silenceMs: 8000 }, t);
  t.equal(b.stalled.length, 1, 'one stalled attempt');
  t.match(readFileSync(b.stalled[0]!, 'utf8'), /i8042: PNP: PS\/2 Controller/, 'its console is kept');
  t.equal((await b.ssh.exec('echo up')).stdout.trim(), 'up', 'the second boot answers');
  await b[Symbol.asyncDispose]();
  noQemuLeft(t);
});

t.test('a boot that stalls twice fails as a boot error naming both consoles', async (t) => {
  const fake = stallingQemu(t, 5);
  const started = Date.now();
  const err = (await boot({ qemuBinary: fake.bin, silenceMs: 3000 }, t).catch((e) => e)) as HarnessError;
  t.equal(err.kind, 'boot');
  t.match(err.message, /boot stalled: no console output for \d+ s before the guest was ready; an earlier attempt stalled too \(.*-stalled-1\.log\)/);
  t.equal(fake.runs(), 2, 'booted twice, not more');
  t.match(err.report(), /i8042/, 'the report shows where the console stopped');
  // Two 3 s silences, not two of the default 20 s (margin for a loaded host).
  t.ok(Date.now() - started < 35_000, `gave up after ${Date.now() - started} ms`);
  noQemuLeft(t);
});

t.test('SIGINT during a build: make is gone, exit 130, no half-written entry', async (t) => {
  const bin = tempDir(t);
  const pids = join(bin, 'pids');
  writeFileSync(join(bin, 'make'), `#!/bin/sh\necho $$ >> ${pids}\nsleep 300 &\necho $! >> ${pids}\nwait\n`);
  chmodSync(join(bin, 'make'), 0o755);
  const cache = tempDir(t);
  let sent = false;
  let poll: NodeJS.Timeout | undefined;
  const r = await runCli(['run', '--arch', 'x86_64', '--kernel-src', fakeKernelTree(tempDir(t)), '--patches', okSeries(tempDir(t)), '--cache-dir', cache], {
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
    onStderr: (text, child) => {
      // Once the config step has started the fake make (it wrote its pid), interrupt.
      if (poll || !/config x86_64/.test(text)) return;
      poll = setInterval(() => {
        if (!existsSync(pids) || sent) return;
        sent = true;
        clearInterval(poll);
        setTimeout(() => child.kill('SIGINT'), 300);
      }, 100);
    },
    timeoutMs: 60_000,
  });
  clearInterval(poll);
  t.ok(sent, 'the build was under way');
  t.equal(r.code, EXIT.interrupted);
  t.ok(r.ms < 30_000);
  const started = readFileSync(pids, 'utf8').trim().split('\n').map(Number);
  t.ok(started.length >= 2, 'fake make and its child started');
  for (const pid of started) t.notOk(alive(pid), `pid ${pid} is gone`);
  const leftovers = readdirSync(join(cache, 'trees')).filter((n) => n.includes('.tmp-'));
  t.same(leftovers, [], 'no temporary tree left');
  const builds = existsSync(join(cache, 'builds')) ? readdirSync(join(cache, 'builds')) : [];
  for (const d of builds) t.notOk(existsSync(join(cache, 'builds', d, MARKER)), `${d} not marked complete`);
});

for (const phase of ['boot', 'scenario'] as const) {
  t.test(`SIGTERM during a ${phase}: QEMU is gone within 5 s, exit 130`, async (t) => {
    let qemuPid = 0;
    let sentAt = 0;
    const trigger = phase === 'boot' ? /qemu pid (\d+)/ : /signal-user-int: patching sticks/;
    const r = await runCli(['run', '--arch', 'x86_64', '--scenario', 'signal-user-int', '--out', tempDir(t)], {
      onStderr: (text, child) => {
        const m = /qemu pid (\d+)/.exec(text);
        if (m) qemuPid = Number(m[1]);
        if (!sentAt && trigger.test(text)) {
          sentAt = Date.now();
          child.kill('SIGTERM');
        }
      },
    });
    t.ok(qemuPid > 0, `QEMU was started (pid ${qemuPid})`);
    t.ok(sentAt > 0, `SIGTERM sent during the ${phase}`);
    t.equal(r.code, EXIT.interrupted, 'exit code 130');
    t.ok(Date.now() - sentAt < 5000, `harness gone ${Date.now() - sentAt} ms after the signal`);
    t.notOk(alive(qemuPid), `QEMU pid ${qemuPid} is gone`);
  });
}

/** A scenario step's progress line ("x86_64/max no-blocker: patching completes ..."), not the boot's "for no-blocker: SSH up". */
const SCENARIO_STEP = /^\[[\d:]+\]\s+x86_64\/\S+ no-blocker: /m;
/** no-blocker's second step: the livepatch loaded (a guest command) and its transition waited for. */
const PATCHING_STEP = /^\[[\d:]+\]\s+x86_64\/\S+ no-blocker: patching completes/m;

t.test('kill -9 of the harness during a scenario: its QEMU is gone within 5 s', async (t) => {
  let qemuPid = 0;
  let killedAt = 0;
  const r = await runCli(['run', '--arch', 'x86_64', '--scenario', 'no-blocker', '--out', tempDir(t)], {
    onStderr: (text, child) => {
      qemuPid = Number([...text.matchAll(/qemu pid (\d+)/g)].pop()?.[1] ?? 0);
      if (!killedAt && SCENARIO_STEP.test(text)) {
        killedAt = Date.now();
        child.kill('SIGKILL');
      }
    },
  });
  t.equal(r.signal, 'SIGKILL', 'the harness was killed during the scenario');
  t.ok(qemuPid > 0, `QEMU was started (pid ${qemuPid})`);
  let waited = 0;
  while (alive(qemuPid) && waited < 5000) {
    await new Promise((res) => setTimeout(res, 100));
    waited += 100;
  }
  t.notOk(alive(qemuPid), `QEMU pid ${qemuPid} gone ${Date.now() - killedAt} ms after the kill`);
});

t.test('a QEMU stopped (kill -STOP) during a scenario ends as a timeout naming the command, exit 2, QEMU killed', async (t) => {
  let qemuPid = 0;
  let stoppedAt = 0;
  const out = tempDir(t);
  // Half the host-side deadlines (the guest's answers come in well under a second): the wait is
  // the deadline of whatever command the stop caught, and halving it halves this test's time.
  const scale = 0.5;
  const r = await runCli(['run', '--arch', 'x86_64', '--scenario', 'no-blocker', '--out', out], {
    env: { ...process.env, KLP_HARNESS_TIMEOUT_SCALE: String(scale) },
    onStderr: (text) => {
      // The last QEMU started: a boot may have been retried.
      qemuPid = Number([...text.matchAll(/qemu pid (\d+)/g)].pop()?.[1] ?? 0);
      // At the second step (insmod, then a wait): the first step begins with the module copy, whose deadline is twice as long.
      if (!stoppedAt && qemuPid && PATCHING_STEP.test(text)) {
        stoppedAt = Date.now();
        process.kill(qemuPid, 'SIGSTOP');
      }
    },
    timeoutMs: 240_000,
  });
  t.ok(stoppedAt > 0, `QEMU (pid ${qemuPid}) stopped during the scenario`);
  t.equal(r.code, EXIT.kernelFailed, 'exit code 2');
  // The second step's longest deadline for one guest operation is its wait's (10 s + guestCommand),
  // then QEMU is stopped; with room for a loaded host.
  const bound = (10_000 + timeout('guestCommand', arch)) * scale + 20_000;
  t.ok(Date.now() - stoppedAt < bound, `ended ${Date.now() - stoppedAt} ms after the stop (bound ${bound} ms)`);
  const summary = readFileSync(join(out, 'summary.json'), 'utf8');
  t.match(summary, /TimeoutError: guest command '.+' did not finish within/, 'the report names the command that timed out');
  t.notOk(alive(qemuPid), 'the stopped QEMU was killed');
});

t.test('a corrupted cache entry is detected and rebuilt, never used', async (t) => {
  // An entry of its own (one more line in /init): the test files that run beside this one boot from the run's image.
  const ownInit = `${initScript}\n# faults.test.ts: the corrupted-entry test's own image\n`;
  const first = await buildImage({ arch, cacheDir, initScript: ownInit, keys, logger });
  const size = readFileSync(first.path).length;
  truncateSync(first.path, Math.floor(size / 2));
  const second = await buildImage({ arch, cacheDir, initScript: ownInit, keys, logger });
  t.equal(second.reused, false, 'the truncated initramfs was not reused');
  t.equal(readFileSync(second.path).length, size, 'rebuilt whole');
  const third = await buildImage({ arch, cacheDir, initScript: ownInit, keys, logger });
  t.equal(third.reused, true, 'and reused once intact');
});
