// Kernel records: the generation records the verdicts expect (owned, never
// read from the tree under test) and their cross-check against a pristine source.
import t from 'tap';
import { crossCheck, generationOf, GENERATIONS, KERNELS, parseKernelList, withoutOptions } from '../../../harness/kernel/kernels.js';

/** A transition.c with this klp_force_transition() body and SIGNALS_TIMEOUT. */
const transitionC = (body: string, timeout = 15) => `#define SIGNALS_TIMEOUT ${timeout}\nstatic int x;\n\nvoid klp_force_transition(void)\n{\n${body}\n}\n\nvoid later(void)\n{\n}\n`;
const PINS_ALL = '\tklp_for_each_patch(patch)\n\t\tpatch->forced = true;';
const PINS_REMOVED = '\tif (klp_target_state == KLP_UNPATCHED)\n\t\tklp_transition_patch->forced = true;\n\telse if (klp_transition_patch->replace) {\n\t\tklp_for_each_patch(patch) {\n\t\t\tif (patch != klp_transition_patch)\n\t\t\t\tpatch->forced = true;\n\t\t}\n\t}';

t.test('a generation record per kernel line, picked by the version of the input', async (t) => {
  t.same(GENERATIONS.map((g) => g.line), KERNELS.map((k) => k.line), 'one record per --kernel line');
  t.equal(generationOf('6.1.192')?.forcePins, 'removed');
  t.equal(generationOf('5.10.226')?.forcePins, 'all');
  t.equal(generationOf('6.12.5')?.signalsTimeout, 15);
  t.equal(generationOf('4.19.0'), undefined, 'no record: nothing is guessed');
  for (const g of GENERATIONS) t.match(g.source, new RegExp(`^v${g.line} kernel/livepatch/transition\\.c`), `${g.line} names where it was read`);
});

t.test('the cross-check against a pristine transition.c finds a record that disagrees', async (t) => {
  const g61 = generationOf('6.1')!;
  t.same(crossCheck(g61, transitionC(PINS_REMOVED)), [], '6.1 rule, 15');
  t.same(crossCheck(generationOf('6.12')!, transitionC(PINS_REMOVED.replace('KLP_UNPATCHED', 'KLP_TRANSITION_UNPATCHED'))), [], 'the 6.12 name of the state');
  t.same(crossCheck(generationOf('5.10')!, transitionC(PINS_ALL)), [], '5.10 rule');
  t.match(crossCheck(g61, transitionC(PINS_ALL)), [/pins 'all', the record says 'removed'/]);
  t.match(crossCheck(g61, transitionC(PINS_REMOVED, 30)), [/SIGNALS_TIMEOUT is 30, the record says 15/]);
});

t.test('options a kernel lacks are left out of the fragments, set or unset', async (t) => {
  const text = 'CONFIG_A=y\nCONFIG_TEST_LIVEPATCH=m\n# CONFIG_TEST_LIVEPATCH is not set\nCONFIG_TEST_LIVEPATCH_X=y\n';
  t.equal(withoutOptions(text, ['CONFIG_TEST_LIVEPATCH']), 'CONFIG_A=y\nCONFIG_TEST_LIVEPATCH_X=y\n');
  t.equal(withoutOptions(text, []), text);
});

t.test('--kernel names', async (t) => {
  t.same(parseKernelList('debian:5.10, debian:7.2').map((k) => k.line), ['5.10', '7.2']);
  t.throws(() => parseKernelList('debian:4.19'), /unknown kernel 'debian:4.19'/);
  t.same(KERNELS.map((k) => k.series), ['patches/5.10', 'patches', 'patches/6.12', 'patches/7.2']);
});
