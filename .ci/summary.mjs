// Reads the log of `npm test` and prints, last, what a CI reader needs when
// only the tail of the output is kept: the totals, and for every failed test
// its file, its subtest path and the first lines of its diagnostics.
import { readFileSync } from 'node:fs';

const lines = readFileSync(process.argv[2], 'utf8').split('\n');
let pass = 0, fail = 0, skip = 0;
for (const line of lines) {
  const m = /^# \{ total: (\d+)(?:, pass: (\d+))?(?:, fail: (\d+))?(?:, skip: (\d+))?/.exec(line);
  if (m) { pass += Number(m[2] ?? 0); fail += Number(m[3] ?? 0); skip += Number(m[4] ?? 0); }
}

// `# Subtest: name` opens a level at its indentation; a leaf `not ok` is one
// that no deeper `not ok` explains (its YAML block follows it).
const open = [];
const failures = [];
for (let i = 0; i < lines.length; i++) {
  const line = lines[i];
  const sub = /^( *)# Subtest: (.*)$/.exec(line);
  if (sub) {
    const depth = sub[1].length;
    while (open.length && open[open.length - 1].depth >= depth) open.pop();
    open.push({ depth, name: sub[2] });
    continue;
  }
  const bad = /^( *)not ok \d+ - (.*?)(?: # time=.*)?$/.exec(line);
  if (!bad || /# (TODO|SKIP)/.test(line)) continue;
  const depth = bad[1].length;
  const path = open.filter((o) => o.depth < depth).map((o) => o.name);
  const diag = [];
  if (/^ *---$/.test(lines[i + 1] ?? '')) {
    for (let j = i + 2; j < lines.length && !/^ *\.\.\.$/.test(lines[j]) && diag.length < 14; j++) {
      diag.push(lines[j].trim().slice(0, 200));
    }
  }
  failures.push({ depth, path, name: bad[2], diag });
}
// Keep the deepest failures only: a parent's `not ok` repeats its child's.
const leaves = failures.filter((f) => !failures.some((g) => g !== f && g.depth > f.depth &&
  g.path.slice(0, f.path.length + 1).join('\0') === [...f.path, f.name].join('\0')));
if (leaves.length) {
  console.log(`failed tests (${leaves.length}):`);
  for (const f of leaves.slice(0, 10)) {
    console.log(`- ${[...f.path, f.name].join(' > ')}`);
    for (const d of f.diag) console.log(`    ${d}`);
  }
  if (leaves.length > 10) console.log(`  ... and ${leaves.length - 10} more (search the log for "not ok")`);
}
console.log(`tests: ${pass} passed, ${fail} failed, ${skip} skipped`);
