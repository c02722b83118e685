// Kernel records and what is read from a kernel tree rather than assumed.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { forcePinsOf, KERNELS, parseKernelList, withoutOptions } from '../../../harness/kernel/kernels.js';

/** A tree holding only kernel/livepatch/transition.c with this klp_force_transition() body. */
function tree(body: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'klp-tree-'));
  mkdirSync(join(dir, 'kernel/livepatch'), { recursive: true });
  writeFileSync(join(dir, 'kernel/livepatch/transition.c'), `static int x;\n\nvoid klp_force_transition(void)\n{\n${body}\n}\n\nvoid later(void)\n{\n}\n`);
  return dir;
}

t.test('which patches force pins is read from klp_force_transition() of the tree', async (t) => {
  // 5.10: every patch.
  t.equal(forcePinsOf(tree('\tklp_for_each_patch(patch)\n\t\tpatch->forced = true;')), 'all');
  // 6.1: only the patches being removed.
  t.equal(forcePinsOf(tree('\tif (klp_target_state == KLP_UNPATCHED)\n\t\tklp_transition_patch->forced = true;')), 'removed');
  // 6.12 and 7.2 renamed the state.
  t.equal(forcePinsOf(tree('\tif (klp_target_state == KLP_TRANSITION_UNPATCHED)\n\t\tklp_transition_patch->forced = true;')), 'removed');
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
