// Each subcommand declares its own options, each with the words --help
// prints for it (the help is made from these tables, so it cannot drift);
// parsing rejects an option the subcommand does not take, naming the
// subcommands that do take it.
import { resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { usageError } from '../core/errors.js';

/** An option as parseArgs takes it, with what --help says of it (`arg` names its value). */
type Option = NonNullable<ParseArgsConfig['options']>[string] & { help: string; arg?: string };
type Options = Record<string, Option>;

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
  qemu: { type: 'string', arg: 'WHICH', help: "host (default: the host's QEMU) or backports (Debian's\nbookworm-backports QEMU, fetched into the cache)" },
} as const satisfies Options;

/** Every subcommand's options, filled in by each subcommand's module (for the "belongs to" hint). */
const registry = new Map<string, Options>();

/** Registers a subcommand's options and returns its parser (strict: an option it does not take is bad usage). */
export function commandOptions<T extends Options>(command: string, options: T) {
  const all = { ...COMMON, ...options };
  registry.set(command, all);
  return (args: string[]) => {
    try {
      return parseArgs({ args, options: all, allowPositionals: true, strict: true });
    } catch (e) {
      throw unknownOption(command, e as Error & { code?: string });
    }
  };
}

function unknownOption(command: string, e: Error & { code?: string }): Error {
  const name = /'(-[^']+)'/.exec(e.message)?.[1];
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && name) {
    const bare = name.replace(/^-+/, '');
    const owners = [...registry].filter(([, opts]) => bare in opts).map(([c]) => c);
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
export function optionsHelp(command: string): string {
  const opts = registry.get(command);
  if (!opts) return '';
  const lines: string[] = [];
  for (const [name, o] of Object.entries(opts)) {
    const head = `  ${o.short ? `-${o.short}, ` : ''}--${name}${o.arg ? ` ${o.arg}` : ''}`;
    const [first, ...rest] = o.help.split('\n');
    lines.push(`${head.padEnd(22)} ${first}`, ...rest.map((r) => `${' '.repeat(23)}${r}`));
  }
  return lines.join('\n') + '\n';
}

/** Every registered subcommand and its options (for the tests: each option says what it does). */
export const registeredOptions = (): ReadonlyMap<string, Options> => registry;
