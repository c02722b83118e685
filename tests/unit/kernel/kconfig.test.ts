import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { HarnessError } from '../../../harness/core/errors.js';
import { checkConfig, findMismatches, parseConfig, whereDefined } from '../../../harness/kernel/kconfig.js';
import { tempDir } from '../../helpers.js';

t.test('parseConfig reads set, module, string and unset options', async (t) => {
  const m = parseConfig('CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D="x y"\n# comment\n');
  t.same(Object.fromEntries(m), { A: 'y', B: 'm', C: 'n', D: '"x y"' });
});

t.test('findMismatches lists what did not survive, absent counting as n', async (t) => {
  const wanted = parseConfig('CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_E=y\n');
  const final = parseConfig('CONFIG_A=y\nCONFIG_B=y\n# CONFIG_E is not set\n');
  t.same(findMismatches(wanted, final), [
    { option: 'B', wanted: 'm', got: 'y' },
    { option: 'E', wanted: 'y', got: 'n' },
  ]);
});

t.test('checkConfig names the option, the values, and where it is defined with its dependencies', async (t) => {
  const tree = tempDir(t);
  mkdirSync(join(tree, 'arch/foo'), { recursive: true });
  writeFileSync(join(tree, 'arch/foo/Kconfig'), 'config MPROFILE_KERNEL\n\tdepends on PPC64 && CPU_LITTLE_ENDIAN && FUNCTION_TRACER\n\tdef_bool y\n\nconfig OTHER\n\tbool\n');
  const buildDir = tempDir(t);
  writeFileSync(join(buildDir, '.config'), '# CONFIG_MPROFILE_KERNEL is not set\nCONFIG_OTHER=y\n');
  t.equal(await whereDefined(tree, 'MPROFILE_KERNEL'), 'arch/foo/Kconfig:1 (depends on PPC64 && CPU_LITTLE_ENDIAN && FUNCTION_TRACER)');
  const err = await checkConfig({
    tree,
    buildDir,
    wanted: parseConfig('CONFIG_MPROFILE_KERNEL=y\nCONFIG_OTHER=y\nCONFIG_NOPE=y\n'),
    fragments: ['kconfigs/ppc64le.config'],
    arch: 'ppc64le',
  }).catch((e: unknown) => e);
  t.ok(err instanceof HarnessError, 'throws a HarnessError');
  const he = err as HarnessError;
  t.equal(he.kind, 'config');
  t.match(he.message, /2 requested option\(s\) did not survive/);
  t.match(he.report(), /CONFIG_MPROFILE_KERNEL: asked y, got n; defined at arch\/foo\/Kconfig:1 \(depends on PPC64/);
  t.match(he.report(), /CONFIG_NOPE: asked y, got n; no such option in this tree/);
  t.notMatch(he.report(), /CONFIG_OTHER/);
});

t.test('the shipped fragments parse and ask for what LIVEPATCH.md requires', async (t) => {
  const { readFileSync } = await import('node:fs');
  const { ROOT } = await import('../../helpers.js');
  const common = parseConfig(readFileSync(join(ROOT, 'kconfigs/common.config'), 'utf8'));
  const x86 = parseConfig(readFileSync(join(ROOT, 'kconfigs/x86_64.config'), 'utf8'));
  const ppc = parseConfig(readFileSync(join(ROOT, 'kconfigs/ppc64le.config'), 'utf8'));
  t.equal(common.get('LIVEPATCH'), 'y');
  t.equal(common.get('SAMPLE_LIVEPATCH'), 'm');
  t.equal(x86.get('UNWINDER_ORC'), 'y');
  for (const o of ['MPROFILE_KERNEL', 'PPC_OF_BOOT_TRAMPOLINE', 'ALTIVEC', 'VSX', 'CPU_LITTLE_ENDIAN']) t.equal(ppc.get(o), 'y', o);
});
