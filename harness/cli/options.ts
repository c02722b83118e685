// Each subcommand declares its own options, each with the words --help
// prints for it (the help is made from these tables, so it cannot drift);
// parsing rejects an option the subcommand does not take, naming the
// subcommands that do take it.
import { resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { usageError } from '../core/errors.js';

/** An option as parseArgs takes it, with what --help says of it (`arg` names its value). */
type Option = NonNullable<ParseArgsConfig['options']>[string] & { help: string; arg?: string };
export type Options = Record<string, Option>;

/** Options every subcommand takes. */
export const COMMON = {
  help: { type: 'boolean', short: 'h', help: 'this text' },
} as const satisfies Options;

/** Where the kernel and the cache come from (run, repro, shell). */
export const INPUTS = {
  'kernel-src': { type: 'string', arg: 'PATH', help: 'kernel tarball or tree (default: /usr/src/linux-source-6.1.tar.xz);\na tree is copied, never modified' },
  patches: { type: 'string', arg: 'PATH', help: "quilt directory (series + patches) or mbox (default: patches/);\n'none' runs the kernel source as it is" },
  kconfigs: { type: 'string', arg: 'DIR', help: 'config fragments: common.config + <arch>.config (default: kconfigs/)' },
  'kconfig-extra': { type: 'string', multiple: true, arg: 'FILE', help: 'one more fragment after those, e.g. kconfigs/debug.config\n(lockdep, for the race scenario); repeatable' },
  'cache-dir': { type: 'string', arg: 'DIR', help: 'build cache (default: $KLP_HARNESS_CACHE or ~/.cache/klp-harness)' },
  qemu: { type: 'string', arg: 'WHICH', help: "auto (default: per arch, the host's QEMU where it can\nrestore snapshots, else trixie's), host (the host's QEMU),\ntrixie (Debian 13's QEMU with its own libraries, fetched\ninto the cache), or backports (bookworm-backports' QEMU)" },
} as const satisfies Options;

/** A subcommand's parser; it carries its table (for --help) and its name. */
export interface CommandParser<T extends Options = Options> {
  (args: string[], siblings?: readonly CommandParser[]): ReturnType<typeof parseArgs<{ args: string[]; options: typeof COMMON & T; allowPositionals: true; strict: true }>>;
  readonly command: string;
  readonly options: Readonly<typeof COMMON & T>;
}

/**
 * The parser of a subcommand's options (strict: an option it does not take is
 * bad usage). Given the other subcommands' parsers, the error names the ones
 * that do take it.
 */
export function commandOptions<T extends Options>(command: string, options: T): CommandParser<T> {
  const all = Object.freeze({ ...COMMON, ...options });
  const parse = (args: string[], siblings: readonly CommandParser[] = []) => {
    try {
      return parseArgs({ args, options: all, allowPositionals: true, strict: true });
    } catch (e) {
      throw unknownOption(command, e as Error & { code?: string }, siblings);
    }
  };
  return Object.freeze(Object.assign(parse, { command, options: all }));
}

function unknownOption(command: string, e: Error & { code?: string }, siblings: readonly CommandParser[]): Error {
  const name = /'(-[^']+)'/.exec(e.message)?.[1];
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && name) {
    const bare = name.replace(/^-+/, '');
    const owners = siblings.filter((p) => p.command !== command && bare in p.options).map((p) => p.command);
    if (owners.length) {
      return usageError(`option '${name}' does not apply to 'klp-harness ${command}'`, { hint: `it is an option of: ${owners.map((c) => `klp-harness ${c}`).join(', ')}` });
    }
    return usageError(`Unknown option '${name}' for 'klp-harness ${command}'`, { hint: `see klp-harness --help` });
  }
  return usageError(`${e.message.split('. ')[0]} (klp-harness ${command})`, { hint: 'see klp-harness --help' });
}

/** Rejects positional arguments a subcommand does not take. */
export function noPositionals(command: string, positionals: string[]): void {
  if (positionals.length) throw usageError(`'klp-harness ${command}' takes no arguments, got: ${positionals.join(' ')}`, { hint: 'see klp-harness --help' });
}

/** A path option made absolute at the door (it ends up in make O=, in reports, in child processes' cwd); empty counts as not given. */
export function pathOption(v: string | undefined): string | undefined {
  return v ? resolve(v) : undefined;
}

/** The options of a subcommand as --help lists them, from its table. */
export function optionsHelp(parser: Pick<CommandParser, 'options'>): string {
  const lines: string[] = [];
  for (const [name, o] of Object.entries(parser.options) as [string, Option][]) {
    const head = `  ${o.short ? `-${o.short}, ` : ''}--${name}${o.arg ? ` ${o.arg}` : ''}`;
    const [first, ...rest] = o.help.split('\n');
    lines.push(`${head.padEnd(22)} ${first}`, ...rest.map((r) => `${' '.repeat(23)}${r}`));
  }
  return lines.join('\n') + '\n';
}
