// Options added for the debug kernel, kernels without our series and KTAP.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { readSeries } from '../../harness/patches.js';
import { runCli } from '../cli-helpers.js';

t.test('a missing --kconfig-extra fragment is bad input, named', async (t) => {
  const cache = mkdtempSync(join(tmpdir(), 'klp-opt-'));
  const r = await runCli(['run', '--arch', 'x86_64', '--cache-dir', cache, '--kconfig-extra', 'kconfigs/nope.config']);
  t.equal(r.code, 4);
  t.match(r.stderr, /--kconfig-extra \S*kconfigs\/nope\.config is not a file/);
});

t.test('--patches none is the empty series, not a path', async (t) => {
  t.same(readSeries('none'), { origin: 'none', patches: [] });
  t.throws(() => readSeries(join(tmpdir(), 'no-such-series-dir')), /does not exist/);
});

t.test('--help names the new options', async (t) => {
  const r = await runCli(['--help']);
  t.equal(r.code, 0);
  t.match(r.stdout, /--kconfig-extra FILE/);
  t.match(r.stdout, /--ktap/);
  t.match(r.stdout, /'none' runs the kernel source as it is/);
});
