// Patch series: a quilt directory (series file + patches) or an mbox, and
// the explanation of a patch that does not apply (which file, which hunk).
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { patchError, usageError } from '../core/errors.js';

export interface Patch {
  name: string;
  text: string;
  /** Leading path components to strip (quilt's -pN); 1 when absent. */
  strip?: number;
}

export interface Series {
  origin: string;
  patches: Patch[];
  /**
   * The series' own record of the per-patch sysfs files it adds (its `adds`
   * file, one name a line): a run expects them, so one missing is the series
   * failing, not a kernel without the lever. Undefined when the series keeps
   * no record (an mbox, `none`).
   */
  adds?: string[];
}

/** The file in a quilt directory naming the per-patch files the series adds. */
export const ADDS_FILE = 'adds';

/** `--patches none`: the kernel source as it is, without any series. */
export const NO_PATCHES = 'none';

/** Reads a quilt directory or an mbox file into an ordered list of patches; `none` is the empty series. */
export function readSeries(path: string): Series {
  if (path === NO_PATCHES) return { origin: NO_PATCHES, patches: [] };
  const origin = resolve(path);
  if (!existsSync(origin)) {
    throw usageError(`patch series ${origin} does not exist`, {
      hint: 'pass --patches with a quilt directory (series file + .patch files) or an mbox file',
    });
  }
  if (statSync(origin).isDirectory()) return readQuilt(origin);
  return { origin, patches: splitMbox(readFileSync(origin, 'utf8'), basename(origin)) };
}

function readQuilt(dir: string): Series {
  const seriesFile = join(dir, 'series');
  if (!existsSync(seriesFile)) {
    const found = readdirSync(dir).filter((f) => f.endsWith('.patch'));
    throw usageError(`${dir} has no 'series' file`, {
      hint: found.length
        ? `list the patches in order in ${seriesFile} (found: ${found.join(', ')})`
        : 'a quilt series directory needs a series file naming its .patch files in order',
    });
  }
  const entries = readFileSync(seriesFile, 'utf8')
    .split('\n')
    .map((l, i) => ({ line: i + 1, words: l.replace(/#.*/, '').trim().split(/\s+/).filter(Boolean) }))
    .filter((e) => e.words.length);
  if (entries.length === 0) {
    throw usageError(`series file ${seriesFile} is empty`, { hint: 'name at least one patch in it' });
  }
  const realDir = realpathSync(dir);
  const patches = entries.map(({ line, words }) => {
    const [name, ...opts] = words as [string, ...string[]];
    const where = `${seriesFile}:${line}`;
    const strip = stripOption(opts, where);
    const file = resolve(dir, name);
    if (!existsSync(file)) {
      throw usageError(`series file ${seriesFile} names ${name}, which does not exist`, {
        hint: `add ${file} or remove it from the series`,
      });
    }
    // A series names patches in its own directory: a path that leads out of it (.., absolute, a symlink) is refused, never read.
    const real = realpathSync(file);
    if (!real.startsWith(`${realDir}/`)) {
      throw usageError(`${where}: ${name} is outside the series directory (${real})`, {
        hint: `a series may only name patch files inside ${dir}; copy the patch there`,
      });
    }
    if (!statSync(real).isFile()) {
      throw usageError(`${where}: ${name} is not a regular file`, { hint: 'name a .patch file, not a directory or device' });
    }
    return strip === undefined ? { name, text: readFileSync(real, 'utf8') } : { name, text: readFileSync(real, 'utf8'), strip };
  });
  const addsFile = join(dir, ADDS_FILE);
  const adds = existsSync(addsFile) ? readFileSync(addsFile, 'utf8').split('\n').map((l) => l.replace(/#.*/, '').trim()).filter(Boolean) : undefined;
  return adds ? { origin: dir, patches, adds } : { origin: dir, patches };
}

/** A series line's options: quilt's -pN (also -p N) is honoured; anything else is refused by name. */
function stripOption(opts: string[], where: string): number | undefined {
  let strip: number | undefined;
  for (let i = 0; i < opts.length; i++) {
    const o = opts[i]!;
    const m = /^-p(\d*)$/.exec(o);
    const value = m ? (m[1] || opts[++i]) : undefined;
    if (!m || value === undefined || !/^\d+$/.test(value)) {
      throw usageError(`${where}: option '${o}' is not supported`, { hint: 'a series line is a patch name, optionally followed by -pN (e.g. -p0); apply other options to the patch itself' });
    }
    strip = Number(value);
  }
  return strip;
}

/** Splits an mbox (git format-patch --stdout, b4) into its messages. */
export function splitMbox(text: string, label: string): Patch[] {
  const parts = text.split(/^(?=From [0-9a-f]{7,40} |From \S+@\S+ )/m).filter((p) => p.trim());
  const patches = parts
    .filter((p) => /^(---|\+\+\+) /m.test(p))
    .map((p, i) => {
      const subject = /^Subject:\s*(.*)$/m.exec(p)?.[1]?.trim() ?? `patch ${i + 1}`;
      return { name: `${String(i + 1).padStart(4, '0')} ${subject}`, text: p };
    });
  if (patches.length === 0) throw usageError(`${label} holds no patches`, { hint: 'give an mbox made by git format-patch --stdout' });
  return patches;
}

/** The text of hunk number n (1-based) of the diff for the given file in a patch. */
export function findHunk(patchText: string, file: string, n: number): string | undefined {
  const lines = patchText.split('\n');
  let inFile = false;
  let count = 0;
  let out: string[] | undefined;
  for (const line of lines) {
    if (line.startsWith('+++ ')) {
      if (out) break;
      const target = line.slice(4).split('\t')[0]!.replace(/^[^/]+\//, '');
      inFile = target === file;
      continue;
    }
    if (!inFile) continue;
    if (line.startsWith('@@')) {
      if (out) break;
      count++;
      if (count === n) out = [line];
      continue;
    }
    if (out) {
      if (/^(diff |--- |Only in |-- $)/.test(line)) break;
      out.push(line);
    }
  }
  return out?.join('\n');
}

/** Builds the error for a patch that `patch --dry-run` rejected, with the failed hunks. */
export function explainRejection(patch: Patch, patchOutput: string, origin: string) {
  let current = '';
  const failed: string[] = [];
  for (const line of patchOutput.split('\n')) {
    const f = /^(?:checking|patching) file (.+)$/.exec(line);
    if (f) current = f[1]!.trim();
    const h = /^Hunk #(\d+) FAILED/.exec(line);
    if (h && current) {
      const hunk = findHunk(patch.text, current, Number(h[1]));
      failed.push(`${current}, hunk #${h[1]}:\n${hunk ?? '(hunk text not found in the patch)'}`);
    }
    const missing = /can't find file to patch|No file to patch/.exec(line);
    if (missing) failed.push(`a file the patch changes does not exist in the tree (${line.trim()})`);
  }
  return patchError(`patch '${patch.name}' does not apply`, {
    details: [`series: ${origin}`, 'patch said:', patchOutput.trim(), '', ...failed].join('\n'),
    hint: 'rebase the patch onto this kernel tree, or pass --kernel-src with the tree it was written for',
  });
}
