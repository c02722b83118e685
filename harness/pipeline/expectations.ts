// What a run expects of the kernel under test, from the run's inputs only:
// the generation record of the kernel's version line (what upstream's code
// does, written down in kernels.ts), the series' own record of the files it
// adds, and --require. Never from the patched tree or the guest.
import { generationOf, GENERATIONS, type KernelRecord } from '../kernel/kernels.js';
import { ADDS_FILE, type Series } from '../kernel/patches.js';
import type { Expectations, PatchFeature } from '../scenarios/types.js';

export function expectationsOf(opts: { kernel?: KernelRecord; require?: PatchFeature[] }, version: string, series: Series): Expectations {
  // The version line is the input's identity (its top Makefile, or the --kernel record), not its behaviour.
  const generation = generationOf(opts.kernel?.line ?? version);
  const promised: Expectations['promised'] = {};
  for (const f of generation?.patchFiles ?? []) promised[f] = `upstream ${generation!.line} has it`;
  for (const f of series.adds ?? []) promised[f as PatchFeature] = `the series says it adds it (${series.origin}/${ADDS_FILE})`;
  return {
    generation,
    noGeneration: generation ? undefined : `no generation record for linux ${version} (records: ${GENERATIONS.map((g) => g.line).join(', ')})`,
    promised,
    required: opts.require ?? [],
  };
}
