// The checks on a user's livepatch module before any guest boots, against a
// fake modinfo (each test module's fields are in a file beside it).
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { getArch } from '../../../harness/core/arch.js';
import { silentLogger } from '../../../harness/core/log.js';
import { userPatchInput } from '../../../harness/cli/binary-options.js';
import { parseRemedies, userModule } from '../../../harness/scenarios/user-patch.js';
import type { HostContext } from '../../../harness/scenarios/types.js';
import { tempDir } from '../../helpers.js';

const MODINFO = `#!/bin/sh
# modinfo -F FIELD FILE: the field from FILE.fields (FIELD=value lines), as kmod prints it.
[ -f "$3.fields" ] || exit 1
sed -n "s/^$2=//p" "$3.fields"
`;

function setup(t: Parameters<typeof tempDir>[0]) {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'bin'));
  writeFileSync(join(dir, 'bin/modinfo'), MODINFO);
  chmodSync(join(dir, 'bin/modinfo'), 0o755);
  const old = process.env.PATH;
  process.env.PATH = `${join(dir, 'bin')}:${old}`;
  t.teardown(() => void (process.env.PATH = old));
  const build = join(dir, 'build');
  mkdirSync(join(build, 'include/generated'), { recursive: true });
  mkdirSync(join(build, 'include/config'), { recursive: true });
  // Debian's headers: kernel.release holds the upstream version, utsrelease.h what uname -r says.
  writeFileSync(join(build, 'include/generated/utsrelease.h'), '#define UTS_RELEASE "6.1.0-57-amd64"\n');
  writeFileSync(join(build, 'include/config/kernel.release'), '6.1.192\n');
  const host = { arch: getArch('x86_64'), build: { buildDir: build }, tree: build, modules: { dir: '', modules: {}, reused: true }, logger: silentLogger } as unknown as HostContext;
  const ko = (name: string, fields: string) => {
    writeFileSync(join(dir, name), 'ELF');
    writeFileSync(join(dir, `${name}.fields`), fields);
    return join(dir, name);
  };
  return { dir, host, ko };
}

t.test('remedies: default signal then force; an order of one\'s own; anything else refused', async (t) => {
  t.same(parseRemedies(undefined), ['signal', 'force']);
  t.same(parseRemedies('force'), ['force']);
  t.same(parseRemedies('force,signal'), ['force', 'signal']);
  t.throws(() => parseRemedies('reverse'), { message: /bad --remedy 'reverse'/ });
  t.throws(() => parseRemedies(''), { message: /bad --remedy/ });
});

t.test('--livepatch and --workload come together', async (t) => {
  t.equal(userPatchInput({}), undefined);
  t.throws(() => userPatchInput({ livepatch: 'x.ko' }), { message: /--livepatch without --workload/ });
  t.throws(() => userPatchInput({ workload: 'true' }), { message: /--workload without --livepatch/ });
  t.match(userPatchInput({ livepatch: 'x.ko', workload: 'cat /proc/x', remedy: 'force' }), { workload: 'cat /proc/x', remedies: ['force'] });
});

t.test('a module for another kernel, one that is not a livepatch, one that is no module: usage errors saying which', async (t) => {
  const { host, ko } = setup(t);
  const other = ko('other.ko', 'vermagic=6.1.192 SMP mod_unload\nlivepatch=Y\n');
  await t.rejects(userModule(host, other), { kind: 'usage', message: /was built for kernel 6\.1\.192, not for the kernel under test \(6\.1\.0-57-amd64\)/ });
  const plain = ko('plain.ko', 'vermagic=6.1.0-57-amd64 SMP preempt mod_unload modversions\n');
  await t.rejects(userModule(host, plain), { kind: 'usage', message: /is not a livepatch module/ });
  const junk = ko('junk.ko', '');
  await t.rejects(userModule(host, junk), { kind: 'usage', message: /is not a kernel module/ });
  await t.rejects(userModule(host, '/nonexistent/lp.ko'), { kind: 'usage', message: /does not exist/ });
});

t.test('a livepatch built for the kernel under test: its sysfs name from modinfo, else from the file name', async (t) => {
  const { host, ko } = setup(t);
  const named = ko('my-lp.ko', 'vermagic=6.1.0-57-amd64 SMP preempt mod_unload modversions\nlivepatch=Y\nname=my_lp\n');
  t.match(await userModule(host, named), { name: 'my_lp', vermagic: /^6\.1\.0-57-amd64 / });
  const unnamed = ko('other-lp.ko', 'vermagic=6.1.0-57-amd64 SMP\nlivepatch=Y\n');
  t.equal((await userModule(host, unnamed)).name, 'other_lp');
});

t.test('a source directory without a Makefile is refused before anything is built', async (t) => {
  const { dir, host } = setup(t);
  mkdirSync(join(dir, 'src'));
  await t.rejects(userModule(host, join(dir, 'src')), { kind: 'usage', message: /has no Makefile or Kbuild/ });
});
