// Runs one scenario against a booted guest and turns what happened into a
// ScenarioReport. A failed check ends the scenario; so does any error.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { describeError, faultOf, HarnessError } from '../core/errors.js';
import { LP_SYSFS } from '../vm/guestops.js';
import { processCpuMs } from '../vm/qemu.js';
import { blockingTasks, formatBlocking } from './sleeper.js';
import { CheckFailed, Inconclusive, Skipped, type Check, type Expectations, type PatchFeature, type Scenario, type ScenarioContext, type ScenarioReport, type StepApi, type StepReport, type Unit } from './types.js';

type BaseContext = Omit<ScenarioContext, 'step' | 'timing' | 'copyIn' | 'copyInAll' | 'cpu' | 'requireFeatures' | 'has' | 'unchecked' | 'event' | 'series'>;

export async function runScenario(scenario: Scenario, base: BaseContext, cpu?: string): Promise<ScenarioReport> {
  const started = Date.now();
  const sr = new ScenarioRun(scenario, base, cpu);
  const ctx = sr.context();
  try {
    await scenario.run(ctx);
    sr.recordMissing();
    if (sr.missing.length) throw new CheckFailed(`${MISSING_STEP}: ${sr.missing.map((c) => c.what).join(', ')}`);
  } catch (e) {
    sr.recordMissing();
    if (await sr.settle(e)) return finish(sr.report, started);
  }
  // Whatever happened above, the kernel must not have complained.
  try {
    await ctx.step('console clean and taint explained', async (s) => {
      const reports = base.vm.events.map((e) => `${e.kind}: ${e.line.trim()}`);
      s.equal('WARN/BUG/Oops/lockdep/RCU stall reports on the console', reports.join('\n') || 'none', 'none');
      const tainted = Number((await base.ops.read('/proc/sys/kernel/tainted')) || 0);
      const extra = base.expect.explainedTaint;
      const explained = EXPLAINED_TAINT | (extra?.mask ?? 0);
      s.equal(`taint flags other than livepatch (K) and out-of-tree module (O)${extra ? ` and ${describeTaint(extra.mask)} (${extra.why})` : ''}`, describeTaint(tainted & ~explained), 'none');
    });
  } catch (e) {
    sr.report.ok = false;
    sr.report.error ??= e instanceof CheckFailed ? `check failed in ${e.message}` : String(e);
  }
  return finish(sr.report, started);
}

/** One scenario on one guest: its report as it grows, and the context the scenario is given. */
class ScenarioRun {
  readonly report: ScenarioReport;
  /** Promised per-patch files found missing: failed checks of their own step, the scenario's verdict at its end. */
  readonly missing: Check[] = [];
  private readonly who: string;

  constructor(
    private readonly scenario: Scenario,
    private readonly base: BaseContext,
    private readonly cpu?: string,
  ) {
    this.report = { name: scenario.name, arch: base.arch.name, cpu, ok: true, steps: [], durationMs: 0, timings: {}, casesAreChecks: scenario.casesAreChecks };
    this.who = `${this.report.arch}${cpu ? `/${cpu}` : ''} ${scenario.name}`;
  }

  recordMissing(): void {
    if (this.missing.length && !this.report.steps.some((st) => st.name === MISSING_STEP)) this.report.steps.push({ name: MISSING_STEP, checks: this.missing, durationMs: 0 });
  }

  context(): ScenarioContext {
    const { base, report } = this;
    const ctx: ScenarioContext = {
      ...base,
      cpu: this.cpu,
      event: (what, atMs) => {
        if (Number.isFinite(atMs)) (report.timeline ??= []).push({ atMs, what });
      },
      series: (name, points) => {
        const kept = points.filter((p) => Number.isFinite(p.atMs));
        if (kept.length) (report.series ??= []).push({ name, points: kept });
      },
      requireFeatures: (patch) => this.requireFeatures(patch),
      has: async (patch, f, what) => {
        const path = `${LP_SYSFS}/${patch}/${f}`;
        if (await base.ops.exists(path)) return true;
        const promise = promiseOf(base.expect, f);
        if (promise) this.missing.push(missingCheck(path, promise));
        else ctx.unchecked(`${what}: this kernel has no ${path} (${inputsWithout(base.expect, f)})`);
        return false;
      },
      unchecked: (what) => {
        (report.unchecked ??= []).push(what);
        base.logger.info(`  ${this.who}: not checked: ${what}`);
      },
      timing: (name, ms) => (report.timings[name] = ms),
      copyIn: async (hostPath) => (await ctx.copyInAll([hostPath]))[0]!,
      copyInAll: async (hostPaths) => {
        const files = hostPaths.map((p) => ({ data: readFileSync(p), remotePath: `/root/${basename(p)}` }));
        await base.ops.putAll(files);
        return files.map((f) => f.remotePath);
      },
      step: (name, fn) => this.step(name, fn),
    };
    return ctx;
  }

  private async requireFeatures(patch: string): Promise<void> {
    for (const f of this.scenario.needs ?? []) {
      const path = `${LP_SYSFS}/${patch}/${f}`;
      if (await this.base.ops.exists(path)) continue;
      const promise = promiseOf(this.base.expect, f);
      if (promise) {
        this.missing.push(missingCheck(path, promise));
        throw new CheckFailed(`${MISSING_STEP}: ${path}`);
      }
      throw new Skipped(`this kernel has no ${path}, and the run's inputs do not promise it (${inputsWithout(this.base.expect, f)}); the scenario writes it`);
    }
  }

  private async step(name: string, fn: (s: StepApi) => Promise<void>): Promise<void> {
    const stepStarted = Date.now();
    const cpuBefore = processCpuMs(this.base.vm?.pid);
    const checks: Check[] = [];
    const step: StepReport = { name, checks, durationMs: 0 };
    this.report.steps.push(step);
    this.base.logger.info(`  ${this.who}: ${name}`);
    this.base.logger.status(this.report.arch, `scenario: ${this.scenario.name}${this.cpu ? `/${this.cpu}` : ''}: ${name}`);
    try {
      await fn(stepApi(checks));
    } catch (e) {
      step.error = describeError(e);
      throw e;
    } finally {
      step.durationMs = Date.now() - stepStarted;
      const cpuAfter = processCpuMs(this.base.vm?.pid);
      if (cpuBefore !== undefined && cpuAfter !== undefined) step.qemuCpuMs = cpuAfter - cpuBefore;
    }
    const failed = checks.filter((c) => !c.ok);
    if (failed.length) throw new CheckFailed(`${name}: ${failed.map((c) => c.what).join(', ')}`);
  }

  /** Records how the scenario ended on an exception; true when the report is final (no console check after it). */
  async settle(e: unknown): Promise<boolean> {
    const { report } = this;
    if (e instanceof Inconclusive) {
      Object.assign(report, { inconclusive: e.message, ok: false, error: `inconclusive: ${e.message}`, fault: 'infra' });
      this.base.logger.info(`  ${this.who}: inconclusive: ${e.message}`);
      return true;
    }
    if (e instanceof Skipped && !this.missing.length) {
      report.skipped = e.message;
      this.base.logger.info(`  ${this.who}: skipped: ${e.message}`);
      return true;
    }
    report.ok = false;
    report.error = e instanceof CheckFailed ? `check failed in ${e.message}` : e instanceof HarnessError ? e.report() : String(e);
    report.fault = faultOf(e);
    if (report.fault) return true;
    report.diagnosis = await diagnose(this.base.ops).catch((d) => `diagnosis failed: ${String(d)}`);
    if (report.diagnosis) report.error += `\n${report.diagnosis}`;
    return false;
  }
}

const MISSING_STEP = 'per-patch files the run\'s inputs promise';

/** Where the promise of a file comes from (the generation record, the series' record, --require), or undefined. */
function promiseOf(expect: Expectations, f: PatchFeature): string | undefined {
  const why = [expect.promised[f], expect.required.includes(f) ? `--require ${f}` : undefined].filter(Boolean);
  return why.length ? why.join('; ') : undefined;
}

/** Says what the inputs are when they do not promise a file. */
function inputsWithout(expect: Expectations, f: PatchFeature): string {
  const gen = expect.generation ? `upstream ${expect.generation.line} has no '${f}'` : (expect.noGeneration ?? 'no generation record');
  return `${gen}, and the series under test does not say it adds '${f}'`;
}

function missingCheck(path: string, promise: string): Check {
  return { what: `${path} (promised: ${promise})`, expected: 'present', actual: 'absent: the series under test failed to add it', ok: false };
}

/** The check helpers of one step, recording into `checks`. */
export function stepApi(checks: Check[]): StepApi {
  const equal = (what: string, actual: string | number | boolean, expected: string | number | boolean) => {
    const ok = actual === expected;
    checks.push({ what, expected: String(expected), actual: String(actual), ok });
    return ok;
  };
  const bound = (kind: 'atMost' | 'atLeast') => (what: string, value: number, limit: number, unit: Unit) => {
    const ok = Number.isFinite(value) && (kind === 'atMost' ? value <= limit : value >= limit);
    const expected = `${kind === 'atMost' ? '<=' : '>='} ${showValue(limit, unit)}`;
    checks.push({ what, expected, actual: showValue(value, unit), ok, measured: { value, limit, unit, bound: kind } });
    return ok;
  };
  return {
    equal,
    match: (what, actual, re) => {
      const ok = re.test(actual);
      // Short readings are shown whole; long ones (dmesg) by the matched part or the tail.
      const shown = actual.length <= 300 ? actual : ok ? (re.exec(actual)?.[0] ?? '') : actual.split('\n').slice(-15).join('\n');
      checks.push({ what, expected: `matches ${re}`, actual: shown, ok, pattern: { source: re.source, flags: re.flags } });
      return ok;
    },
    atMost: bound('atMost'),
    atLeast: bound('atLeast'),
    accepted: (what, w) => equal(what, w.ok ? 'accepted' : w.error, 'accepted'),
    refused: (what, w, error) => equal(what, w.ok ? 'accepted' : w.error, error),
  };
}

/**
 * A measured value as a person reads it: milliseconds as seconds with two
 * decimals (the guest clock ticks in 10 ms, so nothing is rounded away).
 */
export function showValue(value: number, unit: Unit): string {
  if (!Number.isFinite(value)) return 'not measured';
  return unit === 'ms' ? `${(value / 1000).toFixed(2)} s` : String(value);
}

function finish(report: ScenarioReport, started: number): ScenarioReport {
  report.durationMs = Date.now() - started;
  return report;
}

const TAINT_OOT_MODULE = 1 << 12;
const TAINT_LIVEPATCH = 1 << 15;
const EXPLAINED_TAINT = TAINT_OOT_MODULE | TAINT_LIVEPATCH;

/** Names the set bits of a taint mask, in the kernel's letters where known. */
export function describeTaint(mask: number): string {
  if (!mask) return 'none';
  const letters = 'PFSRMBUDAWCIOELKXT';
  const out: string[] = [];
  for (let bit = 0; bit < 31; bit++) if (mask & (1 << bit)) out.push(`${letters[bit] ?? '?'}(bit ${bit})`);
  return out.join(' ');
}

/** For a pending transition: which patch, which direction, and the tasks that block it. */
async function diagnose(ops: ScenarioContext['ops']): Promise<string | undefined> {
  const r = await ops.run(`for p in ${LP_SYSFS}/*/; do [ "$(cat $p/transition 2>/dev/null)" = 1 ] && echo "$(basename $p) $(cat $p/enabled)"; done`);
  const lines: string[] = [];
  for (const line of r.stdout.trim().split('\n').filter(Boolean)) {
    const [patch, enabled] = line.split(' ');
    const initial = enabled === '1' ? '0' : '1';
    const tasks = await blockingTasks(ops, initial);
    lines.push(`${patch} is in transition (${enabled === '1' ? 'patching' : 'unpatching'}); blocking: ${formatBlocking(tasks)}`);
  }
  return lines.length ? lines.join('\n') : undefined;
}
