// Config fragments: parse them, and after olddefconfig check that every
// option they ask for survived, saying which did not and where it is defined.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configError } from '../core/errors.js';
import { run } from '../proc/exec.js';

/** Option name (without CONFIG_) to value: 'y', 'm', a string or number, or 'n' for "is not set". */
export type ConfigMap = Map<string, string>;

export function parseConfig(text: string): ConfigMap {
  const map: ConfigMap = new Map();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const unset = /^# CONFIG_(\w+) is not set$/.exec(line);
    if (unset) {
      map.set(unset[1]!, 'n');
      continue;
    }
    const set = /^CONFIG_(\w+)=(.*)$/.exec(line);
    if (set) map.set(set[1]!, set[2]!);
  }
  return map;
}

export interface Mismatch {
  option: string;
  wanted: string;
  got: string;
}

/** Options whose final value differs from what the fragments asked. */
export function findMismatches(wanted: ConfigMap, final: ConfigMap): Mismatch[] {
  const out: Mismatch[] = [];
  for (const [option, value] of wanted) {
    const got = final.get(option) ?? 'n';
    if (got !== value) out.push({ option, wanted: value, got });
  }
  return out;
}

/** Finds `config NAME` in the tree's Kconfig files and returns where, with its depends lines. */
export async function whereDefined(tree: string, option: string): Promise<string | undefined> {
  const r = await run('grep', ['-rn', '--include=Kconfig*', '-E', `^\\s*(menu)?config ${option}$`, tree]).catch(() => undefined);
  const hit = r?.stdout.split('\n')[0];
  if (!hit) return undefined;
  const [file, lineNo] = hit.split(':');
  const lines = readFileSync(file!, 'utf8').split('\n');
  const deps: string[] = [];
  for (let i = Number(lineNo); i < lines.length && !/^\s*(menu)?config |^\s*(endmenu|endif|menu|if|choice|endchoice)\b/.test(lines[i]!); i++) {
    if (/^\s*(depends on|select|imply)\b/.test(lines[i]!)) deps.push(lines[i]!.trim());
  }
  return `${file!.slice(tree.length + 1)}:${lineNo}${deps.length ? ` (${deps.join('; ')})` : ''}`;
}

/** Throws a ConfigError listing options that did not survive, with why where the Kconfig tells. */
export async function checkConfig(opts: {
  tree: string;
  buildDir: string;
  wanted: ConfigMap;
  fragments: string[];
  arch: string;
}): Promise<void> {
  const final = parseConfig(readFileSync(join(opts.buildDir, '.config'), 'utf8'));
  const bad = findMismatches(opts.wanted, final);
  if (bad.length === 0) return;
  const lines: string[] = [];
  for (const m of bad) {
    const where = await whereDefined(opts.tree, m.option);
    lines.push(`CONFIG_${m.option}: asked ${m.wanted}, got ${m.got}${where ? `; defined at ${where}` : '; no such option in this tree'}`);
  }
  throw configError(`${bad.length} requested option(s) did not survive olddefconfig`, {
    arch: opts.arch,
    details: [`fragments: ${opts.fragments.join(', ')}`, ...lines].join('\n'),
    logPath: join(opts.buildDir, '.config'),
    hint: 'enable what those options depend on in the fragment, or drop them',
  });
}
