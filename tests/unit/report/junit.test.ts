// The JUnit file is well-formed XML whatever the guest printed (markup and
// control characters in names and console text), its counts agree with its
// cases, and failures, faults, interrupts, skips and arch errors each get the element CI expects.
import t from 'tap';
import { toJUnit } from '../../../harness/report/junit.js';
import type { ArchReport, RunReport, ScenarioOutcome } from '../../../harness/report/run-report.js';
import type { Check, StepReport } from '../../../harness/scenarios/types.js';

// ---- a small XML reader: enough of XML 1.0 to refuse what a CI parser refuses ----

interface XmlNode {
  name: string;
  attrs: Record<string, string>;
  children: XmlNode[];
  /** The node's own text (entities decoded), not its children's. */
  text: string;
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decode(s: string, where: string): string {
  return s.replace(/&([^;]*);?/g, (all, body: string) => {
    if (!all.endsWith(';')) throw new Error(`${where}: bare '&' in ${JSON.stringify(s)}`);
    if (body in ENTITIES) return ENTITIES[body]!;
    const num = /^#(\d+)$/.exec(body)?.[1] ?? (/^#x([0-9a-fA-F]+)$/.exec(body)?.[1] ? String(parseInt(body.slice(2), 16)) : undefined);
    if (num === undefined) throw new Error(`${where}: unknown entity &${body};`);
    return String.fromCodePoint(Number(num));
  });
}

/** Parses a document, throwing on what is not well-formed; returns the root element. */
function parseXml(xml: string): XmlNode {
  // Characters XML 1.0 does not allow anywhere (raw or as the content of an element or attribute).
  // eslint-disable-next-line no-control-regex
  const bad = /[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/.exec(xml);
  if (bad) throw new Error(`character U+${bad[0].charCodeAt(0).toString(16).padStart(4, '0')} at ${bad.index} is not allowed in XML`);
  let i = 0;
  const prolog = /^<\?xml[^?]*\?>\s*/.exec(xml);
  if (prolog) i = prolog[0].length;
  const tag = /<(\/?)([A-Za-z_][\w.-]*)((?:\s+[A-Za-z_][\w.-]*\s*=\s*"[^"]*")*)\s*(\/?)>/y;
  const attr = /\s+([A-Za-z_][\w.-]*)\s*=\s*"([^"]*)"/g;
  const stack: XmlNode[] = [];
  let root: XmlNode | undefined;
  while (i < xml.length) {
    if (xml[i] === '<') {
      tag.lastIndex = i;
      const m = tag.exec(xml);
      if (!m) throw new Error(`not a tag at ${i}: ${JSON.stringify(xml.slice(i, i + 40))}`);
      i = tag.lastIndex;
      const [, closing, name, attrText, selfClosing] = m;
      if (closing) {
        const open = stack.pop();
        if (!open || open.name !== name) throw new Error(`</${name}> closes <${open?.name ?? 'nothing'}>`);
        continue;
      }
      const node: XmlNode = { name: name!, attrs: {}, children: [], text: '' };
      for (const a of attrText!.matchAll(attr)) {
        if (a[1]! in node.attrs) throw new Error(`<${name}> repeats attribute ${a[1]}`);
        if (a[2]!.includes('<')) throw new Error(`<${name} ${a[1]}> has a raw '<'`);
        node.attrs[a[1]!] = decode(a[2]!, `<${name} ${a[1]}>`);
      }
      if (stack.length) stack.at(-1)!.children.push(node);
      else if (root) throw new Error(`a second root element <${name}>`);
      else root = node;
      if (!selfClosing) stack.push(node);
    } else {
      const end = xml.indexOf('<', i);
      const text = xml.slice(i, end < 0 ? xml.length : end);
      i += text.length;
      if (stack.length) stack.at(-1)!.text += decode(text, `text in <${stack.at(-1)!.name}>`);
      else if (text.trim()) throw new Error(`text outside the root element: ${JSON.stringify(text)}`);
    }
  }
  if (stack.length) throw new Error(`<${stack.at(-1)!.name}> is never closed`);
  if (!root) throw new Error('no root element');
  return root;
}

const kids = (n: XmlNode, name: string) => n.children.filter((c) => c.name === name);
const kid = (n: XmlNode, name: string) => kids(n, name)[0];
const allCases = (doc: XmlNode) => kids(doc, 'testsuite').flatMap((s) => kids(s, 'testcase'));

t.test('the mini XML reader itself refuses what is not well-formed', async (t) => {
  t.throws(() => parseXml('<a>x & y</a>'), /bare '&'/);
  t.throws(() => parseXml('<a b="1 < 2"/>'), /raw '<'/);
  t.throws(() => parseXml('<a><b></a>'), /closes/);
  t.throws(() => parseXml('<a>\x1b[31m</a>'), /U\+001b/);
  t.throws(() => parseXml('<a b="1" b="2"/>'), /repeats/);
  t.equal(parseXml('<a b="&lt;&amp;&quot;&#39;">x&gt;y</a>').attrs.b, '<&"\'');
});

// ---- reports ----

const check = (what: string, ok: boolean, expected = '0', actual = ok ? expected : '1'): Check => ({ what, expected, actual, ok });
const step = (name: string, checks: Check[], error?: string): StepReport => ({ name, checks, durationMs: 3, error });

function outcome(name: string, extra: Partial<ScenarioOutcome> = {}): ScenarioOutcome {
  return { name, arch: 'x86_64', cpu: 'max', ok: true, steps: [step('load', [check('enabled', true, '1')])], durationMs: 1234, timings: {}, ...extra };
}

function report(arches: ArchReport[], durationMs = 61_500): RunReport {
  return { started: '2026-01-01T00:00:00Z', durationMs, outDir: '/o', cacheDir: '/c', source: { kernelSrc: 'k', patches: 'p' }, arches, exitCode: 1 };
}

const arch = (scenarios: ScenarioOutcome[], extra: Partial<ArchReport> = {}): ArchReport => ({ arch: 'x86_64', kernel: 'debian:6.12', kernelVersion: '6.12.48', boots: [], scenarios, ...extra });

/** What a case ended as: the first of error, failure, skipped among its children, else passed. */
const verdict = (c: XmlNode) => (['error', 'failure', 'skipped'].find((k) => kid(c, k)) ?? 'passed');

t.test('names, messages and console text with markup and control characters stay well-formed and read back as given', async (t) => {
  const name = `a<b>&"c" 'd'`;
  // What a serial console line may carry: ANSI colour (ESC), a bell, a NUL, a backspace, form feed, vertical tab.
  const consoleLine = 'BUG: \x1b[31mkernel\x1b[0m oops\x07\x00 at <klp_sleeper_block+0x10/0x20> & more\b\f\v';
  const r = report([
    arch([
      outcome(name, {
        ok: false,
        steps: [step('wait <transition>', [check('transition "0" & <done>', false, '0', 'still 1\x1b[0m')])],
        error: `check failed in wait <transition>: ${consoleLine}\nsecond line`,
        diagnosis: 'cat:71 <blocked> in klp_sleeper_block\x1b[0m',
      }),
    ], { error: { kind: 'boot', message: `kernel panic: ${consoleLine}`, report: `BootError: ${consoleLine}\n  > \x01tail`, exitCode: 2 } }),
  ]);
  const xml = toJUnit(r);
  t.ok(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n'), 'declares UTF-8');
  let doc!: XmlNode;
  t.doesNotThrow(() => (doc = parseXml(xml)), 'well-formed');
  t.equal(doc.name, 'testsuites');
  const [c, pipeline] = allCases(doc);
  t.equal(c!.attrs.name, `${name} (max)`, 'the case name reads back exactly');
  const failure = kid(c!, 'failure')!;
  const withoutControls = 'BUG: [31mkernel[0m oops at <klp_sleeper_block+0x10/0x20> & more';
  t.equal(failure.attrs.message, `check failed in wait <transition>: ${withoutControls}`, 'message: control characters gone, the first line only, markup read back');
  t.match(failure.text, '[wait <transition>] transition "0" & <done>\n  expected: 0\n  actual:   still 1[0m', 'the failed check with its readings');
  t.match(failure.text, 'blocking tasks: cat:71 <blocked> in klp_sleeper_block[0m', 'the diagnosis');
  t.match(failure.text, '\nsecond line', 'newlines kept in text');
  const error = kid(pipeline!, 'error')!;
  t.equal(error.attrs.message, `kernel panic: ${withoutControls}`);
  t.equal(error.text, `BootError: ${withoutControls}\n  > tail`);
});

t.test('tab, newline and carriage return are kept; the other C0 controls go', async (t) => {
  const every = Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join('');
  const xml = toJUnit(report([arch([outcome('s', { ok: false, steps: [], error: `x\n${every}y` })])]));
  const doc = parseXml(xml);
  const failure = kid(allCases(doc)[0]!, 'failure')!;
  t.equal(failure.text, `x\n\t\n\ry`, 'of U+0000..U+001F only TAB, LF and CR remain');
});

t.test('counts: per suite and in total, tests equal the cases and failures/errors the elements', async (t) => {
  const x86 = arch([
    outcome('passes'),
    outcome('fails-a-check', { ok: false, steps: [step('s', [check('c', false)])], error: 'check failed in s: c' }),
    outcome('no-signal-file', { skipped: 'this kernel has no /sys/kernel/livepatch/p/signal' }),
    outcome('oopsed', { ok: false, fault: 'kernel', error: 'BootError: kernel panic: Oops' }),
    outcome('host-broke', { ok: false, fault: 'infra', error: 'InfraError: ssh died' }),
    outcome('stopped', { ok: false, interrupted: true, error: 'interrupted (SIGINT) before it finished' }),
  ]);
  const ppc = arch([outcome('passes', { arch: 'ppc64le', cpu: 'power9' }), outcome('fails-a-check', { arch: 'ppc64le', cpu: 'power9', ok: false, error: 'check failed in s: c' })], {
    arch: 'ppc64le',
    error: { kind: 'infra', message: 'QEMU died', report: 'InfraError: QEMU died', exitCode: 3 },
  });
  const doc = parseXml(toJUnit(report([x86, ppc], 61_500)));
  const suites = kids(doc, 'testsuite');
  t.equal(suites.length, 2);
  for (const s of suites) {
    const cases = kids(s, 'testcase');
    t.equal(Number(s.attrs.tests), cases.length, `${s.attrs.name}: tests`);
    t.equal(Number(s.attrs.failures), cases.filter((c) => verdict(c) === 'failure').length, `${s.attrs.name}: failures`);
    t.equal(Number(s.attrs.errors), cases.filter((c) => verdict(c) === 'error').length, `${s.attrs.name}: errors`);
  }
  const byName = new Map(kids(suites[0]!, 'testcase').map((c) => [c.attrs.name!.replace(/ \(max\)$/, ''), c]));
  t.same(Object.fromEntries([...byName].map(([n, c]) => [n, verdict(c)])), {
    passes: 'passed',
    'fails-a-check': 'failure',
    'no-signal-file': 'skipped',
    oopsed: 'error',
    'host-broke': 'error',
    stopped: 'error',
  });
  t.equal(kid(byName.get('no-signal-file')!, 'skipped')!.attrs.message, 'this kernel has no /sys/kernel/livepatch/p/signal', 'a skip says why');
  t.same([suites[0]!.attrs.tests, suites[0]!.attrs.failures, suites[0]!.attrs.errors], ['6', '1', '3']);
  t.same([suites[1]!.attrs.tests, suites[1]!.attrs.failures, suites[1]!.attrs.errors], ['3', '1', '1'], 'the arch error is a case and an error of its own');
  t.same([doc.attrs.tests, doc.attrs.failures, doc.attrs.errors], ['9', '2', '4'], 'totals over the suites');
  t.equal(doc.attrs.time, '61.500', 'run time in seconds');
  t.equal(kids(suites[0]!, 'testcase')[0]!.attrs.time, '1.234', 'case time in seconds');
});

t.test('an interrupted scenario is an error of type "interrupted", whether it began or not', async (t) => {
  // As on-guest.ts marks one stopped mid-run (its check had failed meanwhile), and as run.ts records one that never began.
  const midRun = outcome('reverse', { ok: false, interrupted: true, steps: [step('wait', [check('transition', false)])], error: 'check failed in wait: transition' });
  const never = { name: 'sample', arch: 'x86_64', cpu: 'max', ok: false, interrupted: true, steps: [], durationMs: 0, timings: {}, error: 'interrupted (SIGTERM) before it finished' };
  const doc = parseXml(toJUnit(report([arch([midRun, never])])));
  const [a, b] = allCases(doc);
  for (const c of [a!, b!]) {
    t.equal(verdict(c), 'error', `${c.attrs.name}: an error, not a failure`);
    t.equal(kid(c, 'error')!.attrs.type, 'interrupted');
  }
  t.equal(kid(b!, 'error')!.attrs.message, 'interrupted (SIGTERM) before it finished');
  t.match(kid(a!, 'error')!.text, /\[wait\] transition/, 'what it had found is kept');
  t.equal(kid(doc, 'testsuite')!.attrs.failures, '0');
  t.equal(kid(doc, 'testsuite')!.attrs.errors, '2');
  // A fault is an error too, but not of type interrupted.
  const fault = parseXml(toJUnit(report([arch([outcome('x', { ok: false, fault: 'kernel', error: 'BootError: kernel panic' })])])));
  t.equal(kid(allCases(fault)[0]!, 'error')!.attrs.type, undefined);
});

t.test('suite and class names carry kernel and arch', async (t) => {
  const names = (a: Partial<ArchReport>) => {
    const s = kids(parseXml(toJUnit(report([arch([outcome('sample', { cpu: undefined })], a)]))), 'testsuite')[0]!;
    return [s.attrs.name, kids(s, 'testcase')[0]!.attrs.classname, kids(s, 'testcase')[0]!.attrs.name];
  };
  t.same(names({}), ['klp-harness debian:6.12 x86_64', 'klp-harness.debian_6_12.x86_64', 'sample'], 'no CPU: the bare scenario name');
  t.same(names({ kernel: undefined }), ['klp-harness linux-6.12.48 x86_64', 'klp-harness.x86_64', 'sample'], 'no --kernel: the version names the suite');
  t.same(names({ kernel: undefined, kernelVersion: undefined }), ['klp-harness x86_64', 'klp-harness.x86_64', 'sample']);
  const classes = allCases(parseXml(toJUnit(report([arch([outcome('a')]), arch([outcome('a')], { kernel: 'debian:6.1' })])))).map((c) => c.attrs.classname);
  t.same(classes, ['klp-harness.debian_6_12.x86_64', 'klp-harness.debian_6_1.x86_64'], 'two kernels, two classes');
});

t.test('timings go to system-out of a passing case; a failure without an error message says "failed"', async (t) => {
  const doc = parseXml(toJUnit(report([arch([outcome('timed', { timings: { stuckSeenMs: 120, remedyToDoneMs: 45 } }), outcome('bare', { ok: false, steps: [] })])])));
  const [timed, bare] = allCases(doc);
  t.equal(kid(timed!, 'system-out')!.text, 'stuckSeenMs=120 remedyToDoneMs=45');
  t.equal(kid(bare!, 'failure')!.attrs.message, 'failed');
  t.equal(kid(bare!, 'system-out'), undefined, 'no timings, no system-out');
});

t.test('upstream selftests: one case per check, failures carry expected and actual', async (t) => {
  const ks = outcome('kselftest', {
    ok: false,
    casesAreChecks: true,
    steps: [
      step('install', [check('test modules installed', true, 'installed')]),
      step('upstream test-callbacks.sh', [check('test-callbacks.sh: target module before livepatch', true, 'ok'), check('test-callbacks.sh: module_going <x>', false, 'ok', 'not ok\n--- expected\n+++ result\n-% rmmod test_klp\x1b[0m')]),
    ],
    error: 'check failed in upstream test-callbacks.sh',
  });
  const doc = parseXml(toJUnit(report([arch([ks])])));
  const cases = allCases(doc);
  t.same(cases.map((c) => c.attrs.name), ['test modules installed', 'test-callbacks.sh: target module before livepatch', 'test-callbacks.sh: module_going <x>']);
  t.ok(cases.every((c) => c.attrs.classname === 'klp-harness.debian_6_12.x86_64.kselftest'), 'the scenario is the class');
  t.same(cases.map(verdict), ['passed', 'passed', 'failure']);
  const f = kid(cases[2]!, 'failure')!;
  t.equal(f.attrs.message, 'test-callbacks.sh: module_going <x>');
  t.equal(f.text, 'expected: ok\nactual:\nnot ok\n--- expected\n+++ result\n-% rmmod test_klp[0m');
  t.same([doc.attrs.tests, doc.attrs.failures, doc.attrs.errors], ['3', '1', '0']);
});

t.test('known failures: an expected failure is skipped with its reason and not counted; an unexpected pass says XPASS', async (t) => {
  const xfail = outcome('replace-force', { ok: false, error: 'check failed in s: c', steps: [step('s', [check('c', false)])], known: { status: 'xfail', because: ['no fix upstream (docs/x.md)'] } });
  const xpass = outcome('sample', { known: { status: 'xpass', because: ['was broken (docs/y.md)'] }, timings: { a: 1 } });
  const doc = parseXml(toJUnit(report([arch([xfail, xpass])])));
  const [a, b] = allCases(doc);
  t.equal(verdict(a!), 'skipped');
  t.equal(kid(a!, 'skipped')!.attrs.message, 'expected failure: no fix upstream (docs/x.md)');
  t.match(kid(a!, 'system-out')!.text, /\[s\] c\n {2}expected: 0\n {2}actual: {3}1/, 'the failure is still there to read');
  t.equal(verdict(b!), 'passed');
  t.equal(kid(b!, 'system-out')!.text, 'XPASS: listed in known-failures.json but passed: was broken (docs/y.md)', 'XPASS, not the timings');
  t.same([doc.attrs.failures, doc.attrs.errors], ['0', '0']);
});

// An upstream-selftests scenario that ended on a kernel oops or an interrupt
// before any check failed (the guest died inside a script, so that step has
// no checks) is ok: false with a fault: one more case carries the error, so
// JUnit does not show it green (it once did).
t.test('an upstream-selftests scenario that ended on a fault or an interrupt without a failed check is not green', async (t) => {
  const steps = [step('install', [check('test modules installed', true, 'installed')]), step('upstream test-livepatch.sh', [], 'BootError: kernel panic: Oops')];
  for (const extra of [{ fault: 'kernel' as const }, { interrupted: true }]) {
    const ks = outcome('kselftest', { ok: false, casesAreChecks: true, steps, error: 'BootError: kernel panic: Oops', ...extra });
    const doc = parseXml(toJUnit(report([arch([ks])])));
    t.ok(allCases(doc).some((c) => verdict(c) === 'error' || verdict(c) === 'failure'), `${JSON.stringify(extra)}: some case fails or errors`);
    t.not(`${doc.attrs.failures}/${doc.attrs.errors}`, '0/0', `${JSON.stringify(extra)}: counted`);
  }
});

// A selftests scenario skipped before any step (a kernel without test
// modules) has no checks: one skipped case says why (it once had no case at all).
t.test('a skipped upstream-selftests scenario shows as skipped', async (t) => {
  const ks = outcome('kselftest', { casesAreChecks: true, steps: [], skipped: 'this kernel has neither CONFIG_TEST_LIVEPATCH=m nor test_modules/' });
  const cases = allCases(parseXml(toJUnit(report([arch([ks])]))));
  t.equal(cases.length, 1, 'one case');
  t.equal(cases[0] && verdict(cases[0]), 'skipped');
});
