// Debian packages of the guest's architecture, fetched with a private apt
// state under the harness cache: the host's dpkg architectures are left alone.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256File } from '../core/cache.js';
import { infraError } from '../core/errors.js';
import { run, tail } from '../proc/exec.js';
import type { Logger } from '../core/log.js';

export interface AptState {
  root: string;
  debArch: string;
  options: string[];
}

/**
 * A private apt state under <cache>/apt/. `sources` (sources.list lines)
 * replaces the host's package sources, e.g. one pinned Debian suite for a
 * kernel source package; the state then lives in apt/<debArch>-<name>.
 */
export function aptState(cacheDir: string, debArch: string, sources?: { name: string; lines: string[] }): AptState {
  const root = join(cacheDir, 'apt', sources ? `${debArch}-${sources.name}` : debArch);
  for (const d of ['lists/partial', 'archives/partial', 'debs']) mkdirSync(join(root, d), { recursive: true });
  const status = join(root, 'status');
  if (!existsSync(status)) writeFileSync(status, '');
  const own = sources ? join(root, 'sources.list') : undefined;
  if (own) writeFileSync(own, sources!.lines.join('\n') + '\n');
  const options = [
    ...(own ? [`Dir::Etc::SourceList=${own}`, 'Dir::Etc::SourceParts=/dev/null'] : []),
    `Dir::State::Lists=${join(root, 'lists')}`,
    `Dir::State::status=${status}`,
    `Dir::Cache=${root}`,
    `Dir::Cache::archives=${join(root, 'archives')}`,
    `APT::Architecture=${debArch}`,
    `APT::Architectures=${debArch}`,
    // apt's own locks are off: the state is private, and the harness holds its own lock on it (apt/<debArch>) while apt runs.
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

/** One package version as the index lists it. */
export interface IndexRecord {
  package: string;
  version: string;
  architecture: string;
  sha256: string;
  size: number;
}

/** Parses `apt-cache show` output (Packages-file stanzas). */
export function parseIndexRecords(text: string): IndexRecord[] {
  return text
    .split(/\n\s*\n/)
    .map((stanza) => {
      const field = (k: string) => new RegExp(`^${k}:[ \\t]*(.*)$`, 'm').exec(stanza)?.[1]?.trim() ?? '';
      return { package: field('Package'), version: field('Version'), architecture: field('Architecture'), sha256: field('SHA256'), size: Number(field('Size')) };
    })
    .filter((r) => r.package && r.version);
}

/** Debian's order of characters in a version's non-digit parts: ~ before everything, even the end; letters before the rest. */
const charOrder = (c: string | undefined) => (c === undefined ? 0 : c === '~' ? -1 : /[A-Za-z]/.test(c) ? c.charCodeAt(0) : c.charCodeAt(0) + 256);

function comparePart(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    while ((i < a.length && !/\d/.test(a[i]!)) || (j < b.length && !/\d/.test(b[j]!))) {
      const ca = i < a.length && !/\d/.test(a[i]!) ? a[i] : undefined;
      const cb = j < b.length && !/\d/.test(b[j]!) ? b[j] : undefined;
      const d = charOrder(ca) - charOrder(cb);
      if (d) return Math.sign(d);
      i++;
      j++;
    }
    const na = /^\d*/.exec(a.slice(i))![0];
    const nb = /^\d*/.exec(b.slice(j))![0];
    i += na.length;
    j += nb.length;
    const d = BigInt(na || '0') - BigInt(nb || '0');
    if (d) return d > 0n ? 1 : -1;
  }
  return 0;
}

/** Compares two Debian versions (epoch:upstream-revision) as dpkg does: <0, 0, >0. */
export function compareDebVersions(a: string, b: string): number {
  const split = (v: string) => {
    const colon = v.indexOf(':');
    const epoch = colon >= 0 ? Number(v.slice(0, colon)) : 0;
    const rest = colon >= 0 ? v.slice(colon + 1) : v;
    const dash = rest.lastIndexOf('-');
    return { epoch, upstream: dash >= 0 ? rest.slice(0, dash) : rest, revision: dash >= 0 ? rest.slice(dash + 1) : '' };
  };
  const x = split(a);
  const y = split(b);
  return Math.sign(x.epoch - y.epoch) || comparePart(x.upstream, y.upstream) || comparePart(x.revision, y.revision);
}

/** The file name apt-get download gives a version (the epoch's colon is escaped). */
export const debFileName = (r: IndexRecord) => `${r.package}_${r.version.replace(/:/g, '%3a')}_${r.architecture}.deb`;

/** The newest version of each package the index knows, for the guest's architecture. */
export function newestRecords(records: IndexRecord[], packages: string[], debArch: string): Map<string, IndexRecord> {
  const out = new Map<string, IndexRecord>();
  for (const r of records) {
    if (!packages.includes(r.package) || (r.architecture !== debArch && r.architecture !== 'all')) continue;
    const have = out.get(r.package);
    if (!have || compareDebVersions(r.version, have.version) > 0) out.set(r.package, r);
  }
  return out;
}

/**
 * Downloads the given packages' .deb files and returns their paths. Each is
 * the newest version in the index and must have the index's SHA256: a file
 * already there that does not is fetched again; a fresh download lands
 * under a temporary directory and is renamed in only once it matches.
 */
export async function downloadDebs(state: AptState, packages: string[], logger: Logger): Promise<string[]> {
  const dir = join(state.root, 'debs');
  const logPath = join(state.root, 'download.log');
  const index = newestRecords(parseIndexRecords((await run('apt-cache', [...state.options, 'show', ...packages])).stdout), packages, state.debArch);
  const unknown = packages.filter((p) => !index.has(p));
  if (unknown.length) throw infraError(`the package index for ${state.debArch} does not list ${unknown.join(' ')}`, { hint: 'run again (apt-get update runs first); check the mirror' });
  const paths = new Map<string, string>();
  const missing: IndexRecord[] = [];
  for (const p of packages) {
    const r = index.get(p)!;
    const path = join(dir, debFileName(r));
    if (existsSync(path) && (await sha256File(path)) === r.sha256) paths.set(p, path);
    else {
      if (existsSync(path)) logger.info(`image ${state.debArch}: ${debFileName(r)} does not match the index's SHA256; fetching it again`);
      missing.push(r);
    }
  }
  if (missing.length) {
    logger.info(`image ${state.debArch}: downloading ${missing.map((r) => `${r.package}=${r.version}`).join(' ')}`);
    const tmp = mkdtempSync(join(dir, '.partial-'));
    try {
      await run('apt-get', [...state.options, 'download', ...missing.map((r) => `${r.package}=${r.version}`)], { cwd: tmp, logger, logPath });
      for (const r of missing) {
        const got = join(tmp, debFileName(r));
        if (!existsSync(got)) throw infraError(`package ${r.package} ${r.version} (${state.debArch}) was not downloaded`, { logPath });
        const sum = await sha256File(got);
        if (sum !== r.sha256) {
          throw infraError(`package ${debFileName(r)} does not match the index`, {
            details: `SHA256 ${sum}, index says ${r.sha256}`,
            logPath,
            hint: 'a mirror or proxy served a different file; run again, or check the mirror',
          });
        }
        renameSync(got, join(dir, debFileName(r)));
        paths.set(r.package, join(dir, debFileName(r)));
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return packages.map((p) => paths.get(p)!);
}
