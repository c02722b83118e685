import t from 'tap';
import { parseUpstreamOutput, upstreamScripts } from '../../../harness/scenarios/kselftest.js';

t.test('the script list comes from the upstream Makefile, in order', async (t) => {
  const mk = 'TEST_PROGS_EXTENDED := functions.sh\nTEST_PROGS := \\\n\ttest-livepatch.sh \\\n\ttest-callbacks.sh \\\n\ttest-sysfs.sh\n\nTEST_FILES := settings\n';
  t.same(upstreamScripts(mk), ['test-livepatch.sh', 'test-callbacks.sh', 'test-sysfs.sh']);
});

t.test('upstream output: each TEST line is a case; a failure keeps its expected-vs-result diff', async (t) => {
  const out = [
    'TEST: basic function patching ... ok',
    'TEST: multiple livepatches ... not ok',
    '',
    '--- expected',
    '+++ result',
    '@@ -1,2 +1,2 @@',
    "-livepatch: 'test_klp_livepatch': patching complete",
    "+livepatch: 'test_klp_livepatch': starting patching transition",
    'ERROR: livepatch kselftest(s) failed',
    'EXIT=1',
  ].join('\n');
  const cases = parseUpstreamOutput(out);
  t.equal(cases.length, 2);
  t.same(cases[0], { name: 'basic function patching', ok: true, output: '' });
  t.equal(cases[1]!.ok, false);
  t.match(cases[1]!.output, /--- expected\n\+\+\+ result/);
  t.match(cases[1]!.output, /\+livepatch: 'test_klp_livepatch': starting patching transition/);
});
