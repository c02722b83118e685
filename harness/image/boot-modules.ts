// A binary kernel (a distribution's, or one given by path) has as modules
// what our own kernels have built in: the virtio PCI transport, the network
// device, the RNG. The guest image gets exactly those of them the kernel
// needs to reach SSH, taken from the kernel's own /lib/modules (with what
// modules.dep says they depend on), loaded by a small /init before ours.
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { infraError } from '../core/errors.js';
import { run } from '../proc/exec.js';
import { writeCpio, type CpioEntry } from './cpio.js';

/** The drivers of the devices our QEMU command line gives a guest (vm/qemu.ts): virtio-net-pci, virtio-rng-pci. */
export const BOOT_MODULES = ['virtio_pci', 'virtio_net', 'virtio_rng'] as const;

/** A module's name as the kernel knows it: file name without .ko(.xz|.zst|.gz), dashes as underscores. */
export const moduleName = (path: string) => basename(path).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');

export interface BootModulePlan {
  /** Paths relative to the modules directory, in load order (dependencies first). */
  load: string[];
  /** Wanted modules the kernel has built in (modules.builtin): nothing to load. */
  builtin: string[];
  /** Wanted modules the kernel has neither built in nor as a module. */
  missing: string[];
}

/** What to load for `wanted`, from a kernel's modules.dep and modules.builtin (their text). */
export function planBootModules(modulesDep: string, modulesBuiltin: string, wanted: readonly string[]): BootModulePlan {
  const deps = new Map<string, { path: string; deps: string[] }>();
  for (const line of modulesDep.split('\n')) {
    const m = /^([^:\s]+):\s*(.*)$/.exec(line.trim());
    if (m) deps.set(moduleName(m[1]!), { path: m[1]!, deps: m[2]!.split(/\s+/).filter(Boolean) });
  }
  const builtinNames = new Set(modulesBuiltin.split('\n').filter(Boolean).map(moduleName));
  const load: string[] = [];
  const builtin: string[] = [];
  const missing: string[] = [];
  const visit = (name: string, chain: string[]) => {
    const d = deps.get(name);
    if (!d || load.includes(d.path)) return;
    if (chain.includes(name)) throw new Error(`modules.dep has a cycle: ${[...chain, name].join(' -> ')}`);
    // modules.dep lists a module's dependencies so that loading them from the last to the first works.
    for (const dep of [...d.deps].reverse()) visit(moduleName(dep), [...chain, name]);
    load.push(d.path);
  };
  for (const w of wanted) {
    if (deps.has(w)) visit(w, []);
    else if (builtinNames.has(w)) builtin.push(w);
    else missing.push(w);
  }
  return { load, builtin, missing };
}

/** The plan for a kernel's modules directory; a wanted driver it lacks entirely is an error naming it. */
export function bootModulesOf(modulesDir: string, wanted: readonly string[] = BOOT_MODULES): BootModulePlan {
  const read = (f: string) => (existsSync(join(modulesDir, f)) ? readFileSync(join(modulesDir, f), 'utf8') : '');
  const plan = planBootModules(read('modules.dep'), read('modules.builtin'), wanted);
  if (plan.missing.length) {
    throw infraError(`the kernel in ${modulesDir} has neither built in nor as a module: ${plan.missing.join(', ')}`, {
      hint: 'the guest reaches SSH over virtio-net-pci with virtio-rng-pci; a kernel without these drivers cannot run the scenarios',
    });
  }
  return plan;
}

/** The init that loads the boot modules, then runs ours (kept as /init.klp). */
export const BOOT_INIT = `#!/bin/busybox sh
# klp-harness: the drivers this kernel has as modules (its own, from its package), then the usual init.
for m in $(/bin/busybox cat /lib/klp-boot-modules/order); do
	/bin/busybox insmod /lib/klp-boot-modules/$m.ko || /bin/busybox echo "klp-init: insmod $m failed"
done
exec /init.klp
`;

/** A module file's content, decompressed (busybox insmod takes plain .ko files). */
async function moduleData(path: string): Promise<Buffer> {
  const tool = path.endsWith('.xz') ? 'xz' : path.endsWith('.zst') ? 'zstd' : path.endsWith('.gz') ? 'gzip' : undefined;
  if (!tool) return readFileSync(path);
  return Buffer.from((await run('sh', ['-c', `${tool} -dc "$1" | base64 -w0`, 'sh', path])).stdout, 'base64');
}

/**
 * A second cpio archive to append to a guest image (the kernel unpacks
 * concatenated archives in order, a later file replacing an earlier one):
 * the modules, their order, our init moved to /init.klp and the loader as /init.
 */
export async function bootModulesArchive(modulesDir: string, plan: BootModulePlan, initScript: string): Promise<Buffer> {
  const entries: CpioEntry[] = [
    { type: 'dir', path: '/lib' },
    { type: 'dir', path: '/lib/klp-boot-modules' },
  ];
  for (const rel of plan.load) entries.push({ type: 'file', path: `/lib/klp-boot-modules/${moduleName(rel)}.ko`, data: await moduleData(join(modulesDir, rel)) });
  entries.push(
    { type: 'file', path: '/lib/klp-boot-modules/order', data: Buffer.from(plan.load.map(moduleName).join('\n') + '\n') },
    { type: 'file', path: '/init.klp', data: Buffer.from(initScript), mode: 0o755 },
    { type: 'file', path: '/init', data: Buffer.from(BOOT_INIT), mode: 0o755 },
  );
  return writeCpio(entries);
}
