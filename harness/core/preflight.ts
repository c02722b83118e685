// Checks, before any work, that the host has every tool the chosen arches
// need, and names the Debian package of each one that is missing.
import { existsSync } from 'node:fs';
import type { ArchRecord } from './arch.js';
import { infraError } from './errors.js';
import { findOnPath } from '../proc/guards.js';

export interface Requirement {
  /** A command looked up in PATH, or an absolute file path. */
  need: string;
  debPackage: string;
}

const COMMON: Requirement[] = [
  { need: 'make', debPackage: 'make' },
  { need: 'tar', debPackage: 'tar' },
  { need: 'xz', debPackage: 'xz-utils' },
  { need: 'patch', debPackage: 'patch' },
  { need: 'rsync', debPackage: 'rsync' },
  { need: 'flex', debPackage: 'flex' },
  { need: 'bison', debPackage: 'bison' },
  { need: 'bc', debPackage: 'bc' },
  { need: 'apt-get', debPackage: 'apt' },
  { need: 'apt-cache', debPackage: 'apt' },
  { need: 'dpkg-deb', debPackage: 'dpkg' },
  { need: '/usr/include/gelf.h', debPackage: 'libelf-dev' },
  { need: '/usr/include/openssl/opensslv.h', debPackage: 'libssl-dev' },
];

/** Everything the given arches need on the host. */
export function requirements(arches: ArchRecord[]): Requirement[] {
  const reqs = [...COMMON];
  for (const a of arches) {
    reqs.push({ need: a.compiler.tool, debPackage: a.compiler.debPackage });
    reqs.push({ need: a.qemu.binary, debPackage: a.qemu.debPackage });
  }
  return reqs;
}

/** Whether a command is in PATH (or an absolute file exists). */
export function onPath(cmd: string, pathVar = process.env.PATH ?? ''): boolean {
  return cmd.startsWith('/') ? existsSync(cmd) : findOnPath(cmd, pathVar) !== undefined;
}

/** Throws an infrastructure error naming each missing tool and its Debian package. */
export function preflight(arches: ArchRecord[], pathVar?: string): void {
  const missing = requirements(arches).filter((r) => !onPath(r.need, pathVar));
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing.map((m) => m.debPackage))];
  throw infraError(`missing host tools: ${missing.map((m) => `${m.need} (Debian package ${m.debPackage})`).join(', ')}`, {
    hint: `run scripts/setup-host.sh as root, or: apt-get install ${pkgs.join(' ')}`,
  });
}
