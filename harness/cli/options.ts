// Each subcommand declares its own options; parsing one of them rejects an
// option it does not take, naming the subcommands that do take it.
import { resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { usageError } from '../core/errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Options every subcommand takes. */
export const COMMON = {
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

/** Where the kernel and the cache come from (run, repro, shell). */
export const INPUTS = {
  'kernel-src': { type: 'string' },
  patches: { type: 'string' },
  kconfigs: { type: 'string' },
  'kconfig-extra': { type: 'string', multiple: true },
  'cache-dir': { type: 'string' },
  qemu: { type: 'string' },
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
