// The scenario registry: --scenario NAME picks from here.
import { usageError } from '../core/errors.js';
import { kselftest } from './kselftest.js';
import { MATRIX } from './matrix.js';
import { race } from './race.js';
import { restartAfterNotifySignal, restartAfterNotifySignalNoFlush } from './restart-notify.js';
import { sample } from './sample.js';
import { tracedPatch } from './traced-patch.js';
import type { Scenario } from './types.js';

/** The default list; the upstream selftests join it with --kselftest. */
export const SCENARIOS: readonly Scenario[] = [sample, ...MATRIX, tracedPatch, restartAfterNotifySignal, restartAfterNotifySignalNoFlush];
/** Also by name: the upstream selftests and the race (meant for the debug kernel). */
export const ALL_SCENARIOS: readonly Scenario[] = [...SCENARIOS, kselftest, race];

export function pickScenarios(names: string[] | undefined): Scenario[] {
  if (!names || names.length === 0) return [...SCENARIOS];
  return names.map((n) => {
    const s = ALL_SCENARIOS.find((x) => x.name === n);
    if (!s) throw usageError(`unknown scenario '${n}'`, { hint: `use one of: ${ALL_SCENARIOS.map((x) => x.name).join(', ')}` });
    return s;
  });
}
