import { execa } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { PROJECT_ROOT } from '../../../harness/core/paths.js';
import { fileBlock, judge, longestFirst, parseArgs, parseCounts } from '../../../scripts/run-tests.js';
import { nodeChild } from '../../child-env.js';

t.test('options', async (t) => {
  t.same(parseArgs(['--jobs=3', '--timeout', '60', 'a', 'b']), { jobs: 3, timeoutS: 60, graceS: 15, paths: ['a', 'b'] });
});

t.test('longest first by the last run, files without a time before them', async (t) => {
  t.same(longestFirst(['a', 'b', 'c', 'd'], { a: 10, b: 300, d: 10 }), ['c', 'b', 'a', 'd']);
});

t.test('a file passes only with a plan, totals without failures and exit 0', async (t) => {
  const good = '1..2\n# { total: 2, pass: 1, skip: 1 }\n';
  t.same(parseCounts(good), { total: 2, pass: 1, fail: 0, skip: 1, todo: 0 });
  t.equal(judge(good, 0, null, false, 5).ok, true);
  t.match(judge(good, 1, null, false, 5), { ok: false, why: 'exited 1', counts: { fail: 1 } });
  t.match(judge('1..2\n# { total: 2, pass: 1, fail: 1 }\n', 1, null, false, 5), { ok: false, why: '1 failed' });
  t.match(judge(good, null, 'SIGKILL', false, 5), { ok: false, why: 'ended by SIGKILL' });
  t.match(judge(good, null, 'SIGTERM', true, 5), { ok: false, why: /within 5 s/ });
  t.match(judge('# { total: 1, pass: 1 }\n', 0, null, false, 5), { ok: false, why: /^printed no plan/ });
  t.match(judge('1..1\n', 0, null, false, 5), { ok: false, why: /^printed no totals/ });
  t.match(judge('1..2\n# { total: 2, pass: 1, fail: 1 }\n', 0, null, false, 5), { ok: false, why: '1 failed', counts: { fail: 1 } });
  // An indented totals line is a subtest's, not the file's.
  t.equal(parseCounts('    # { total: 1, pass: 1 }\n'), undefined);
  t.equal(fileBlock({ file: 'f.test.js', ok: true, ms: 5, counts: parseCounts(good)!, tap: 'ok 1 - x\n\n1..1\n' }, 3), '# Subtest: f.test.js\n    ok 1 - x\n\n    1..1\nok 3 - f.test.js # time=5ms\n\n');
});

t.test('the runner on real files: passing, failing, killed, not TAP, spinning', async (t) => {
  const dir = t.testdir({
    'pass.test.js': "import t from 'tap'; console.error('a note'); t.ok(true, 'fine'); t.pass('also');\n",
    'fail.test.js': "import t from 'tap'; t.equal(1, 2, 'one is two');\n",
    'killed.test.js': "import t from 'tap'; t.ok(true); process.kill(process.pid, 'SIGKILL');\n",
    'untapped.test.js': "console.log('ok 1 - looks like TAP');\n",
    // Never yields to its event loop (tap's own timer cannot fire) and burns no CPU meanwhile: blocked in Atomics.wait.
    'spin.test.js': "import t from 'tap'; t.test('blocks', async () => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); });\n",
    'helper.js': "export const notATest = 1;\n",
  });
  const [cmd, args] = nodeChild(join(PROJECT_ROOT, 'dist/scripts/run-tests.js'), ['--jobs', '4', '--timeout', '8', '--grace', '1', dir]);
  const cache = mkdtempSync(join(tmpdir(), 'klp-run-tests-'));
  t.teardown(() => rmSync(cache, { recursive: true, force: true }));
  // The bound is loose for the files that end (each is a node start, slow when the host is busy).
  const r = await execa(cmd, args, { reject: false, env: { KLP_HARNESS_CACHE: cache } });
  t.equal(r.exitCode, 1, 'a failed file fails the run');
  t.match(r.stdout, /^TAP version 14\n1\.\.5\n/, 'five test files (helper.js is not one)');
  t.match(r.stdout, /^ok \d - .*pass\.test\.js # time=/m);
  t.match(r.stderr, /^pass: a note$/m, "a file's stderr comes with its name");
  t.match(r.stdout, /^not ok \d - .*fail\.test\.js # time=.*\n {2}---\n {2}reason: "1 failed"/m);
  t.match(r.stdout, /^ {4}not ok 1 - one is two$/m, "the file's own failure is in its subtest");
  t.match(r.stdout, /^not ok \d - .*killed\.test\.js[^\n]*\n {2}---\n {2}reason: "ended by SIGKILL"/m, 'a file killed after a passing assertion');
  t.match(r.stdout, /^not ok \d - .*untapped\.test\.js[^\n]*\n {2}---\n {2}reason: "printed no plan/m, 'exit 0 without a plan and totals is no pass');
  t.match(r.stdout, /^not ok \d - .*spin\.test\.js[^\n]*\n {2}---\n {2}reason: "did not finish within 8 s/m, 'a file that never yields is ended');
  t.match(r.stdout, /^# \{ total: 6, pass: 2, fail: 4 \}$/m, 'totals over all files');
});
