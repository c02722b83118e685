// The human summary printed at the end of a run.
import type { RunReport } from './pipeline.js';

const secs = (ms?: number) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`);

export function formatSummary(r: RunReport): string {
  const out: string[] = ['', 'klp-harness summary'];
  out.push(`  source: ${r.source.kernelSrc} + ${r.source.patches} (${r.source.reused ? 'cached' : 'prepared'} ${secs(r.source.durationMs)})`);
  for (const a of r.arches) {
    out.push(`  ${a.arch} (linux ${a.kernelVersion ?? '?'})`);
    out.push(`    build:        ${a.build ? `${secs(a.build.durationMs)}${a.build.reused ? ' (cached, no make)' : ''}` : '-'}`);
    out.push(`    image:        ${a.image ? `${secs(a.image.durationMs)}${a.image.reused ? ' (cached)' : ''}` : '-'}`);
    for (const b of a.boots) out.push(`    boot to SSH:  ${secs(b.bootMs)} (cpu ${b.cpu})`);
    for (const s of a.scenarios) {
      const t = Object.entries(s.timings).map(([k, v]) => `${k}=${secs(v)}`).join(' ');
      out.push(`    scenario ${s.name}${s.cpu ? `/${s.cpu}` : ''}: ${s.ok ? 'PASS' : 'FAIL'} (${secs(s.durationMs)}${t ? `; ${t}` : ''})`);
    }
    if (a.error) out.push(`    error: ${a.error.kind}: ${a.error.message}`);
  }
  out.push(`  total: ${secs(r.durationMs)}, exit code ${r.exitCode}`);
  out.push(`  artifacts: ${r.outDir}`);
  out.push(`  summary:   ${r.outDir}/summary.json`);
  out.push(`  junit:     ${r.outDir}/junit.xml`);
  out.push(`  log:       ${r.outDir}/harness.log`);
  return out.join('\n') + '\n';
}
