// The scenario registry: --scenario NAME picks from here.
import { usageError } from '../errors.js';
import { MATRIX } from './matrix.js';
import { sample } from './sample.js';
import type { Scenario } from './types.js';

export const SCENARIOS: readonly Scenario[] = [sample, ...MATRIX];

export function pickScenarios(names: string[] | undefined): Scenario[] {
  if (!names || names.length === 0) return [...SCENARIOS];
  return names.map((n) => {
    const s = SCENARIOS.find((x) => x.name === n);
    if (!s) throw usageError(`unknown scenario '${n}'`, { hint: `use one of: ${SCENARIOS.map((x) => x.name).join(', ')}` });
    return s;
  });
}
