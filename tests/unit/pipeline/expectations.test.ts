// What a run expects comes from its inputs only: the generation record of the
// kernel's line (the --kernel record's over the tree's version), the series'
// `adds` record and --require; a binary kernel adds the taint its signature
// checking explains and says when it lacks livepatch-sample.ko.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { BinaryKernel } from '../../../harness/kernel/binary-kernel.js';
import { GENERATIONS, KERNELS } from '../../../harness/kernel/kernels.js';
import type { Series } from '../../../harness/kernel/patches.js';
import { binaryExpectations, expectationsOf } from '../../../harness/pipeline/expectations.js';
import type { Expectations } from '../../../harness/scenarios/types.js';
import { tempDir } from '../../helpers.js';

const series = (adds?: string[]): Series => ({ origin: '/p/series-dir', patches: [], ...(adds ? { adds } : {}) });

t.test('each generation record promises its per-patch files, by the version line', async (t) => {
  t.ok(GENERATIONS.length > 0);
  for (const g of GENERATIONS) {
    const e = expectationsOf({}, `${g.line}.123-rc4`, series());
    t.equal(e.generation, g, `linux ${g.line}.123-rc4 -> record ${g.line}`);
    t.equal(e.noGeneration, undefined);
    t.same(Object.keys(e.promised).sort(), [...g.patchFiles].sort(), `${g.line}: promised ${g.patchFiles.join(', ')}`);
    for (const f of g.patchFiles) t.equal(e.promised[f], `upstream ${g.line} has it`);
    t.same(e.required, []);
  }
});

t.test('the line is matched whole: 6.1 is not 6.12, and an unrecorded line promises nothing, saying why', async (t) => {
  const g61 = GENERATIONS.find((g) => g.line === '6.1');
  const g612 = GENERATIONS.find((g) => g.line === '6.12');
  if (g61 && g612) {
    t.equal(expectationsOf({}, '6.12.5', series()).generation, g612);
    t.equal(expectationsOf({}, '6.1.158', series()).generation, g61);
  }
  const none = expectationsOf({}, '4.19.0', series());
  t.equal(none.generation, undefined);
  t.same(none.promised, {});
  t.equal(none.noGeneration, `no generation record for linux 4.19.0 (records: ${GENERATIONS.map((g) => g.line).join(', ')})`);
  t.equal(expectationsOf({}, 'not-a-version', series()).generation, undefined);
});

t.test("a --kernel record's line wins over the tree's version", async (t) => {
  const k = KERNELS.find((x) => GENERATIONS.some((g) => g.line === x.line))!;
  t.ok(k, 'a kernel record with a generation record');
  const unrecorded = expectationsOf({ kernel: k }, '4.19.0', series());
  t.equal(unrecorded.generation?.line, k.line, 'the record names the generation');
  const other = GENERATIONS.find((g) => g.line !== k.line)!;
  t.equal(expectationsOf({ kernel: k }, `${other.line}.1`, series()).generation?.line, k.line);
  t.equal(expectationsOf({ kernel: { ...k, line: '4.19' } }, `${k.line}.1`, series()).generation, undefined, 'a record without a generation: none, whatever the tree says');
});

t.test("the series' adds record promises its files, over the generation's reason; --require is kept apart", async (t) => {
  const g = GENERATIONS.find((x) => x.patchFiles.includes('force') && !x.patchFiles.includes('signal'))!;
  t.ok(g, 'a generation without signal');
  const e = expectationsOf({ require: ['signal', 'replace'] }, `${g.line}.0`, series(['signal', 'force']));
  t.equal(e.promised.signal, 'the series says it adds it (/p/series-dir/adds)');
  t.equal(e.promised.force, 'the series says it adds it (/p/series-dir/adds)', "the series' reason replaces upstream's");
  t.same(e.required, ['signal', 'replace']);
  t.equal(e.promised.replace, g.patchFiles.includes('replace') ? `upstream ${g.line} has it` : undefined, '--require is no promise');
  const noRecord = expectationsOf({}, '4.19.0', series(['signal']));
  t.same(noRecord.promised, { signal: 'the series says it adds it (/p/series-dir/adds)' }, 'a series promise without a generation record');
  t.same(expectationsOf({}, '4.19.0', series([])).promised, {}, 'an empty adds file promises nothing');
});

function binary(t: Parameters<typeof tempDir>[0], config: string, withSample: boolean): BinaryKernel {
  const buildDir = tempDir(t);
  if (withSample) {
    mkdirSync(join(buildDir, 'samples/livepatch'), { recursive: true });
    writeFileSync(join(buildDir, 'samples/livepatch/livepatch-sample.ko'), 'ko');
  }
  return { label: 'debian-image 6.1.0-57 amd64', release: '6.1.0-57-amd64', version: '6.1.158-1', line: '6.1', image: '/vmlinuz', modulesDir: '/lib/modules/6.1.0-57-amd64', buildDir, config, key: 'k', origin: 'o' } as BinaryKernel;
}

t.test('a binary kernel that checks signatures explains the E taint of our unsigned modules', async (t) => {
  const base: Expectations = { promised: { force: 'upstream 6.1 has it' }, required: ['signal'] };
  const signed = binaryExpectations(base, binary(t, 'CONFIG_LIVEPATCH=y\nCONFIG_MODULE_SIG=y\nCONFIG_SAMPLE_LIVEPATCH=m\n', true));
  t.equal(signed.explainedTaint?.mask, 1 << 13, "TAINT_UNSIGNED_MODULE ('E')");
  t.match(signed.explainedTaint?.why, /6\.1\.0-57-amd64 checks module signatures \(CONFIG_MODULE_SIG=y\)/);
  t.equal(signed.noSampleModule, undefined, 'it has the sample');
  t.same([signed.promised, signed.required], [base.promised, base.required], 'the rest as it was');
  t.same(base, { promised: { force: 'upstream 6.1 has it' }, required: ['signal'] }, 'the input is not changed');
  for (const config of ['# CONFIG_MODULE_SIG is not set\n', 'CONFIG_MODULE_SIG_ALL=y\n', 'CONFIG_MODULE_SIG=n\n', '']) {
    t.equal(binaryExpectations(base, binary(t, config, true)).explainedTaint, undefined, `no taint explained for ${JSON.stringify(config)}`);
  }
});

t.test('a binary kernel without livepatch-sample.ko says so, with its config value', async (t) => {
  const base: Expectations = { promised: {}, required: [] };
  const off = binaryExpectations(base, binary(t, '# CONFIG_SAMPLE_LIVEPATCH is not set\n', false));
  t.match(off.noSampleModule, /^debian-image 6\.1\.0-57 amd64 comes without livepatch-sample\.ko \(not in .*\/samples\/livepatch\/livepatch-sample\.ko; CONFIG_SAMPLE_LIVEPATCH not set in its config\)$/);
  const m = binaryExpectations(base, binary(t, 'CONFIG_SAMPLE_LIVEPATCH=m\n', false));
  t.match(m.noSampleModule, /CONFIG_SAMPLE_LIVEPATCH m in its config/, 'built as a module but not shipped');
  t.equal(base.noSampleModule, undefined, 'the input is not changed');
});
