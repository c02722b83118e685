// Debian packages of the guest's architecture, fetched with a private apt
// state under the harness cache: the host's dpkg architectures are left alone.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { infraError } from './errors.js';
import { run, tail } from './exec.js';
import type { Logger } from './log.js';

export interface AptState {
  root: string;
  debArch: string;
  options: string[];
}

export function aptState(cacheDir: string, debArch: string): AptState {
  const root = join(cacheDir, 'apt', debArch);
  for (const d of ['lists/partial', 'archives/partial', 'debs']) mkdirSync(join(root, d), { recursive: true });
  const status = join(root, 'status');
  if (!existsSync(status)) writeFileSync(status, '');
  const options = [
    `Dir::State::Lists=${join(root, 'lists')}`,
    `Dir::State::status=${status}`,
    `Dir::Cache=${root}`,
    `Dir::Cache::archives=${join(root, 'archives')}`,
    `APT::Architecture=${debArch}`,
    `APT::Architectures=${debArch}`,
    'Debug::NoLocking=1',
  ].flatMap((o) => ['-o', o]);
  return { root, debArch, options };
}

/** Failed index downloads in `apt-get update` output, and whether they may be ignored. */
export function classifyUpdateFailures(output: string): { failed: string[]; tolerable: boolean } {
  const failed = output
    .split('\n')
    .filter((l) => /^(E: Failed to fetch|Err:\d+)/.test(l))
    .map((l) => l.trim());
  const urls = failed.map((l) => /(https?:\/\/\S+|\S+:\/\/\S+)/.exec(l)?.[1] ?? l);
  const other = output.split('\n').filter((l) => /^E: /.test(l) && !/Failed to fetch|Some index files failed to download/.test(l));
  // The security suite's index is seen to fail now and then while the main suite works.
  const tolerable = failed.length > 0 && other.length === 0 && urls.every((u) => /-security\b/.test(u));
  return { failed, tolerable };
}

/** Refreshes the private package lists; tolerates only a failing security-suite index. */
export async function aptUpdate(state: AptState, logger: Logger): Promise<void> {
  const logPath = join(state.root, 'update.log');
  logger.info(`image ${state.debArch}: apt-get update (private state in ${state.root})`);
  try {
    await run('apt-get', [...state.options, 'update'], { logPath, logger });
  } catch (e) {
    const details = (e as { context?: { details?: string } }).context?.details ?? '';
    const out = readFileSync(logPath, 'utf8');
    const { failed, tolerable } = classifyUpdateFailures(out);
    if (!tolerable) {
      throw infraError(`apt-get update for ${state.debArch} failed`, {
        logPath,
        details: failed.length ? failed.join('\n') : details || tail(out, 20),
        hint: 'check the host can reach Debian mirrors (/etc/apt/sources.list*); run again',
      });
    }
    logger.info(`image ${state.debArch}: ignoring a failed security index (${failed.length} line(s), see ${logPath})`);
  }
  const lists = readdirSync(join(state.root, 'lists')).filter((f) => f.includes('Packages'));
  if (lists.length === 0) {
    throw infraError(`apt-get update for ${state.debArch} left no package lists`, { logPath });
  }
}

/** Parses `apt-cache depends --recurse` output into the list of real packages. */
export function parseDependsClosure(output: string): string[] {
  const pkgs = new Set<string>();
  for (const line of output.split('\n')) {
    if (!line || /^\s/.test(line) || line.startsWith('<')) continue;
    pkgs.add(line.trim().replace(/:\S+$/, ''));
  }
  return [...pkgs].sort();
}

/** The packages plus everything they depend on (Depends and Pre-Depends), from package metadata. */
export async function dependencyClosure(state: AptState, packages: string[]): Promise<string[]> {
  const r = await run('apt-cache', [
    ...state.options,
    'depends',
    '--recurse',
    '--no-recommends',
    '--no-suggests',
    '--no-conflicts',
    '--no-breaks',
    '--no-replaces',
    '--no-enhances',
    ...packages,
  ]);
  return parseDependsClosure(r.stdout);
}

/** Downloads the given packages' .deb files (skipping ones already there) and returns their paths. */
export async function downloadDebs(state: AptState, packages: string[], logger: Logger): Promise<string[]> {
  const dir = join(state.root, 'debs');
  const have = () => readdirSync(dir).filter((f) => f.endsWith('.deb'));
  const before = have();
  const missing = packages.filter((p) => !before.some((f) => f.startsWith(`${p}_`)));
  if (missing.length) {
    logger.info(`image ${state.debArch}: downloading ${missing.join(' ')}`);
    await run('apt-get', [...state.options, 'download', ...missing], { cwd: dir, logger, logPath: join(state.root, 'download.log') });
  }
  const after = missing.length ? have() : before;
  return packages.map((p) => {
    const f = after.filter((n) => n.startsWith(`${p}_`)).sort().pop();
    if (!f) throw infraError(`package ${p} (${state.debArch}) was not downloaded`, { logPath: join(state.root, 'download.log') });
    return join(dir, f);
  });
}
