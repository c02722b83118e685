// What a run expects of the kernel under test, from the run's inputs only:
// the generation record of the kernel's version line (what upstream's code
// does, written down in kernels.ts), the series' own record of the files it
// adds, and --require. Never from the patched tree or the guest.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { configValue, type BinaryKernel } from '../kernel/binary-kernel.js';
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

/** TAINT_UNSIGNED_MODULE ('E'): a kernel that checks module signatures loaded one without. */
const TAINT_UNSIGNED_MODULE = 1 << 13;

/**
 * A binary kernel's additions to the run's expectations, from its own
 * inputs (its config and files, never the booted guest): the taint our
 * unsigned modules cause, and the livepatch sample it lacks.
 */
export function binaryExpectations(expect: Expectations, k: BinaryKernel): Expectations {
  const out = { ...expect };
  if (configValue(k.config, 'CONFIG_MODULE_SIG') === 'y') {
    out.explainedTaint = { mask: TAINT_UNSIGNED_MODULE, why: `${k.release} checks module signatures (CONFIG_MODULE_SIG=y) and the guest modules built here are unsigned` };
  }
  const sample = join(k.buildDir, 'samples/livepatch/livepatch-sample.ko');
  if (!existsSync(sample)) {
    out.noSampleModule = `${k.label} comes without livepatch-sample.ko (not in ${sample}; CONFIG_SAMPLE_LIVEPATCH ${configValue(k.config, 'CONFIG_SAMPLE_LIVEPATCH') ?? 'not set'} in its config)`;
  }
  return out;
}
