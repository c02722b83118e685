// Runs one scenario against a booted guest and turns what happened into a
// ScenarioReport. A failed check ends the scenario; so does any error.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { HarnessError } from '../errors.js';
import { CheckFailed, type Check, type Scenario, type ScenarioContext, type ScenarioReport, type StepApi } from './types.js';

export async function runScenario(
  scenario: Scenario,
  base: Omit<ScenarioContext, 'step' | 'timing' | 'copyIn'>,
  cpu?: string,
): Promise<ScenarioReport> {
  const started = Date.now();
  const report: ScenarioReport = { name: scenario.name, arch: base.arch.name, cpu, ok: true, steps: [], durationMs: 0, timings: {} };
  const ctx: ScenarioContext = {
    ...base,
    timing: (name, ms) => (report.timings[name] = ms),
    copyIn: async (hostPath) => {
      const guestPath = `/root/${basename(hostPath)}`;
      await base.ops.ssh.put(readFileSync(hostPath), guestPath);
      return guestPath;
    },
    step: async (name, fn) => {
      const stepStarted = Date.now();
      const checks: Check[] = [];
      const api: StepApi = {
        equal: (what, actual, expected) => {
          const ok = actual === expected;
          checks.push({ what, expected, actual, ok });
          return ok;
        },
        match: (what, actual, re) => {
          const ok = re.test(actual);
          const shown = ok ? (re.exec(actual)?.[0] ?? '') : actual.split('\n').slice(-15).join('\n');
          checks.push({ what, expected: `matches ${re}`, actual: shown, ok });
          return ok;
        },
      };
      const step = { name, checks, durationMs: 0, error: undefined as string | undefined };
      report.steps.push(step);
      base.logger.info(`  ${report.arch}${cpu ? `/${cpu}` : ''} ${scenario.name}: ${name}`);
      try {
        await fn(api);
      } catch (e) {
        step.error = e instanceof HarnessError ? e.report() : String((e as Error)?.stack ?? e);
        throw e;
      } finally {
        step.durationMs = Date.now() - stepStarted;
      }
      const failed = checks.filter((c) => !c.ok);
      if (failed.length) throw new CheckFailed(`${name}: ${failed.map((c) => c.what).join(', ')}`);
    },
  };
  try {
    await scenario.run(ctx);
  } catch (e) {
    report.ok = false;
    report.error = e instanceof CheckFailed ? `check failed in ${e.message}` : e instanceof HarnessError ? e.report() : String(e);
  }
  report.durationMs = Date.now() - started;
  return report;
}
