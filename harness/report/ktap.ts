// KTAP version 1 (the kernel's Documentation/dev-tools/ktap.rst), the
// format KernelCI, LAVA and `kunit.py parse` read: one test per arch (and
// kernel), nested one per scenario (and CPU), nested one per check. A
// failed check is followed by diagnostic lines with what was expected and
// what the guest said; a skipped scenario carries `# SKIP` and its reason.
// A failure known-failures.json expects is `not ok ... # TODO <reason>` (and
// so are its failed checks); a listed scenario that passed is
// `ok ... # TODO <reason>` with an `# XPASS` line: TAP's TODO, which KTAP
// inherits ("not expected to pass at the moment").
import type { RunReport, ScenarioOutcome } from './run-report.js';
import type { ScenarioReport } from '../scenarios/types.js';

const INDENT = '    ';

/** A test name on one line: no '#' (it starts a directive) and no line breaks. */
const name = (s: string) => s.replace(/#/g, 'no.').replace(/\s+/g, ' ').trim();
const diag = (s: string) => s.split('\n').filter((l) => l.trim()).map((l) => `# ${l}`);

interface Node {
  name: string;
  ok: boolean;
  skip?: string;
  /** A TODO directive's text: an expected failure (not ok) or an unexpected pass (ok). */
  todo?: string;
  diagnostics?: string[];
  children?: Node[];
}

/** The leaves a KTAP reader counts: a test without subtests is one. */
/** (`failed` counts every `not ok`, TODO ones too, as kunit.py parse does; `xfail` and `xpass` count the TODO leaves.) */
export function ktapCounts(r: RunReport): { total: number; passed: number; failed: number; skipped: number; xfail: number; xpass: number } {
  const counts = { total: 0, passed: 0, failed: 0, skipped: 0, xfail: 0, xpass: 0 };
  const walk = (n: Node) => {
    if (n.children?.length) return n.children.forEach(walk);
    counts.total++;
    if (n.skip !== undefined) counts.skipped++;
    else if (n.ok) counts.passed++;
    else counts.failed++;
    if (n.todo !== undefined) counts[n.ok ? 'xpass' : 'xfail']++;
  };
  treeOf(r).forEach(walk);
  return counts;
}

function scenarioNode(s: ScenarioOutcome): Node {
  const node = plainScenarioNode(s);
  if (!s.known) return node;
  const todo = name(`known failure: ${s.known.because.join('; ')}`);
  if (s.known.status === 'xpass') {
    node.todo = todo;
    node.diagnostics = [...(node.diagnostics ?? []), ...diag('XPASS: listed in known-failures.json but passed; remove its entry')];
    // A leaf scenario carries the directive itself; with checks, so does each one (they all passed).
    for (const c of node.children ?? []) c.todo = todo;
    return node;
  }
  node.todo = todo;
  for (const c of node.children ?? []) if (!c.ok) c.todo = todo;
  return node;
}

function plainScenarioNode(s: ScenarioReport): Node {
  const title = name(`${s.name}${s.cpu ? ` ${s.cpu}` : ''}`);
  if (s.skipped) return { name: title, ok: true, skip: name(s.skipped) };
  const children: Node[] = s.steps.flatMap((st) =>
    st.checks.map((c) => ({
      name: name(`${st.name}: ${c.what}`),
      ok: c.ok,
      diagnostics: c.ok ? undefined : [...diag(`expected: ${c.expected}`), ...diag(`actual: ${c.actual}`)],
    })),
  );
  // A scenario that ended before any check (an error, an interruption) is one failed leaf with the reason.
  const reason = s.ok ? undefined : diag(s.error ?? 'failed');
  if (!children.length) return { name: title, ok: s.ok, diagnostics: reason };
  return { name: title, ok: s.ok, children, diagnostics: children.every((c) => c.ok) ? reason : undefined };
}

function treeOf(r: RunReport): Node[] {
  return r.arches.map((a) => {
    const title = name(`${a.kernel ? `${a.kernel} ` : ''}${a.arch}${a.kernelVersion ? ` linux-${a.kernelVersion}` : ''}`);
    const children = a.scenarios.map(scenarioNode);
    if (a.error) children.push({ name: 'pipeline', ok: false, diagnostics: diag(`${a.error.kind}: ${a.error.message}`) });
    // An expected failure (TODO) does not make its parent fail.
    return { name: title, ok: children.every((c) => c.ok || c.todo !== undefined), children };
  });
}

function emit(nodes: Node[], depth: number, out: string[], header?: string) {
  const pad = INDENT.repeat(depth);
  out.push(`${pad}KTAP version 1`);
  if (header) out.push(`${pad}# Subtest: ${header}`);
  out.push(`${pad}1..${nodes.length}`);
  nodes.forEach((n, i) => {
    if (n.children?.length) emit(n.children, depth + 1, out, n.name);
    const directive = n.skip !== undefined ? ` # SKIP ${n.skip}` : n.todo !== undefined ? ` # TODO ${n.todo}` : '';
    out.push(`${pad}${n.ok ? 'ok' : 'not ok'} ${i + 1} ${n.name}${directive}`);
    for (const d of n.diagnostics ?? []) out.push(`${pad}${d}`);
  });
}

export function toKTAP(r: RunReport): string {
  const out: string[] = [];
  emit(treeOf(r), 0, out);
  return out.join('\n') + '\n';
}
