import t from 'tap';
import { ARCHES } from '../../../harness/core/arch.js';
import { canariesFor } from '../../../harness/scenarios/race.js';

t.test('restart canaries cover each system call entry path of the CPU', async (t) => {
  const ppc = ARCHES.ppc64le!.syscallByCpu;
  t.same(canariesFor(ppc, 'power9'), [['sc', 'pselect6'], ['sc', 'nanosleep'], ['scv', 'pselect6'], ['scv', 'nanosleep']]);
  // POWER8 has no scv: the canary would die of SIGILL, not of a bad restart.
  t.same(canariesFor(ppc, 'power8'), [['sc', 'pselect6'], ['sc', 'nanosleep']]);
  t.same(canariesFor(ARCHES.x86_64!.syscallByCpu, 'max'), [['syscall', 'pselect6'], ['syscall', 'nanosleep']]);
});
