// Debian's prebuilt 6.1 as shipped (`--kernel debian-image:6.1`), end to end
// on x86_64: the packages fetched (or reused from the cache), the kernel's
// boot modules in the image, the guest modules built against its headers,
// every scenario PASS or SKIP with its reason, and the skips the ones the
// inputs explain (no `signal` file upstream, no livepatch sample, x86_64's
// missing exit flush). Run by `npm run test:kernels`: it downloads about
// 90 MB of packages on a cold cache, about 3 minutes here.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { PROJECT_ROOT } from '../../harness/core/paths.js';
import type { RunReport } from '../../harness/report/run-report.js';

t.test('debian-image:6.1 x86_64: every scenario PASS, or SKIP for a reason the inputs give', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'klp-debian-image-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  let code = 0;
  try {
    execFileSync('node', [join(PROJECT_ROOT, 'bin/klp-harness.js'), 'run', '--kernel', 'debian-image:6.1', '--arch', 'x86_64', '--out', out, '--quiet'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    code = (e as { status: number }).status;
  }
  const r = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as RunReport;
  t.equal(code, 0, 'exit code');
  const a = r.arches[0]!;
  t.match(a.kernel, /^debian-image 6\.1\.0-\d+ amd64$/, 'the kernel column names the Debian build');
  const explained = /no \/sys\/kernel\/livepatch\/klp_sleeper_lp(_replace)?\/signal.*upstream 6\.1 has no 'signal'|comes without livepatch-sample\.ko|x86_64 has no exit-path flush/;
  for (const s of a.scenarios) {
    if (s.skipped) t.match(s.skipped, explained, `${s.name}: skipped for a reason of the inputs`);
    else t.ok(s.ok, `${s.name}: passed on the guest's readings`, { error: s.error });
  }
  const passed = a.scenarios.filter((s) => s.ok && !s.skipped).map((s) => s.name);
  for (const must of ['no-blocker', 'force-user-idle', 'unpatch-force', 'replace-force', 'auto-signal']) t.ok(passed.includes(must), `${must} ran and passed`);
});
