import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import t, { type Test } from 'tap';
import { ARCHES } from '../../../harness/core/arch.js';
import { canariesFor, driverScript, writerScript, type RacePaths } from '../../../harness/scenarios/race.js';

t.test('restart canaries cover each system call entry path of the CPU', async (t) => {
  const ppc = ARCHES.ppc64le!.syscallByCpu;
  t.same(canariesFor(ppc, 'power9'), [['sc', 'pselect6'], ['sc', 'nanosleep'], ['scv', 'pselect6'], ['scv', 'nanosleep']]);
  // POWER8 has no scv: the canary would die of SIGILL, not of a bad restart.
  t.same(canariesFor(ppc, 'power8'), [['sc', 'pselect6'], ['sc', 'nanosleep']]);
  t.same(canariesFor(ARCHES.x86_64!.syscallByCpu, 'max'), [['syscall', 'pselect6'], ['syscall', 'nanosleep']]);
});

// The race's driver and writers as they run in the guest, here in the host's sh against a
// fake livepatch directory and a fake kernel loop: what counts as a hang.
const fakeModule = (lp: string) =>
  `insmod() { mkdir -p ${lp}; echo 1 > ${lp}/transition; echo 1 > ${lp}/enabled; : > ${lp}/signal; : > ${lp}/force; }; rmmod() { return 0; }; usleep() { sleep 0.02; }; `;

// hangMs: how long the driver waits before it calls a transition or a writer hung. The
// run that must not hang gives 2 s (the fake kernel's shell loop is what a loaded host
// delays: at 400 ms one run beside QEMUs reported a false hang); the hang cases keep 400 ms.
async function raceOnHost(t: Test, kernel: 'settles' | 'never ends', started = 2, hangMs = 400): Promise<{ out: string; hangs: string; stalls: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'klp-race-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const paths: RacePaths = { lp: join(dir, 'lp'), module: join(dir, 'lp.ko'), tmp: join(dir, 'race-') };
  const W = 2;
  // The writers here only ever (re-)enable the patch, as the last writer before a pause may
  // have; the signal comes from the driver alone.
  const writers = Array.from({ length: started }, (_, i) => execa('sh', ['-c', fakeModule(paths.lp) + writerScript(i, ['enabled=1'], paths)]));
  // The fake kernel ends a transition only while every writer has paused and after a
  // signal (what a kernel does when nobody reverses it): towards what enabled says, and
  // an unpatching frees the patch.
  const kernel_ =
    kernel === 'never ends'
      ? execa('sh', ['-c', `while [ ! -e ${paths.tmp}stop ]; do sleep 0.02; done`])
      : execa('sh', [
          '-c',
          `while [ ! -e ${paths.tmp}stop ]; do n=0; for f in ${paths.tmp}paused*; do [ -e "$f" ] && n=$((n+1)); done; ` +
            `if [ $n -ge ${W} ] && read s < ${paths.lp}/signal 2>/dev/null && [ "$s" = 1 ]; then : > ${paths.lp}/signal; ` +
            `read en < ${paths.lp}/enabled; if [ "$en" = 0 ]; then rm -rf ${paths.lp}; else echo 0 > ${paths.lp}/transition; fi; fi; sleep 0.02; done`,
        ]);
  const driver = await execa('sh', ['-c', fakeModule(paths.lp) + driverScript({ raceMs: 1000, settleMs: 300, hangMs, writers: W }, paths)], { timeout: 30_000 }).finally(() =>
    writeFileSync(`${paths.tmp}stop`, ''),
  );
  await Promise.all([...writers, kernel_]);
  const hangs = existsSync(`${paths.tmp}hangs`) ? readFileSync(`${paths.tmp}hangs`, 'utf8').trim() : '';
  t.notOk(existsSync(`${paths.tmp}pause`), 'the writers are not left paused');
  t.equal(readdirSync(dir).filter((f) => f.startsWith('race-count')).length, started, 'every writer reported its counts');
  return { out: driver.stdout, hangs, stalls: Number(/stalls=(\d+)/.exec(driver.stdout)?.[1]) };
}

t.test('race driver: a transition the writers keep reversing settles once they pause (a removal disabled again); it is not a hang', async (t) => {
  const r = await raceOnHost(t, 'settles', 2, 2000);
  t.match(r.out, /cycles=[1-9]\d* hangs=0 /, r.out);
  t.equal(r.hangs, '', 'no hang recorded');
  t.ok(r.stalls >= 2, `each wait needed the writers paused (stalls=${r.stalls})`);
});

t.test('race driver: a transition that does not end with the writers paused and a signal written is a hang', async (t) => {
  const r = await raceOnHost(t, 'never ends');
  t.match(r.out, /cycles=0 hangs=1 stalls=1 /, r.out);
  t.match(r.hangs, /^hang: .*transition.* still false 400 ms after the writers paused and signal was written$/);
});

t.test('race driver: a writer that does not pause (a write or read that does not return) is a hang', async (t) => {
  const r = await raceOnHost(t, 'settles', 1);
  t.match(r.out, /cycles=0 hangs=1 stalls=1 /, r.out);
  t.match(r.hangs, /^hang: 1 of 2 writers still in a write or read 400 ms after the pause$/);
});
