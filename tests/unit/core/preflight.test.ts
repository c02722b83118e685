// Preflight: what the chosen arches need on the host, looked up on a PATH the
// test controls, and one error naming every missing tool with its Debian
// package (each package once) in the install command.
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ARCHES } from '../../../harness/core/arch.js';
import type { HarnessError } from '../../../harness/core/errors.js';
import { onPath, preflight, requirements } from '../../../harness/core/preflight.js';
import { tempDir } from '../../helpers.js';

const x86 = ARCHES.x86_64!;
const ppc = ARCHES.ppc64le!;

/** A directory holding an executable stub for each command in names. */
function fakeBin(t: { teardown(fn: () => void): void }, names: string[]): string {
  const dir = tempDir(t);
  for (const n of names) {
    writeFileSync(join(dir, n), '#!/bin/sh\n');
    chmodSync(join(dir, n), 0o755);
  }
  return dir;
}

const commands = (reqs: { need: string }[]) => reqs.map((r) => r.need).filter((n) => !n.startsWith('/'));
/** The absolute files among the requirements that this host lacks (the test cannot plant those). */
const hostLacks = <R extends { need: string }>(reqs: R[]): R[] => reqs.filter((r) => r.need.startsWith('/') && !onPath(r.need));

function preflightError(arches = [x86], pathVar?: string): HarnessError | undefined {
  try {
    preflight(arches, pathVar);
  } catch (e) {
    return e as HarnessError;
  }
  return undefined;
}

t.test("each arch adds its compiler and its QEMU, from its record, to what every run needs", async (t) => {
  const common = requirements([]);
  t.ok(common.length > 0);
  t.ok(common.some((r) => r.need === 'make' && r.debPackage === 'make'), 'make, from package make');
  t.ok(common.some((r) => r.need.startsWith('/')), 'headers are checked as files');
  t.same(requirements([x86]), [...common, { need: x86.compiler.tool, debPackage: x86.compiler.debPackage }, { need: x86.qemu.binary, debPackage: x86.qemu.debPackage }]);
  t.same(requirements([x86, ppc]).slice(common.length).map((r) => r.need), [x86.compiler.tool, x86.qemu.binary, ppc.compiler.tool, ppc.qemu.binary]);
  requirements([x86]).push({ need: 'planted', debPackage: 'x' });
  t.same(requirements([]), common, 'the common list is not changed by a caller');
});

t.test('onPath: a command on the given PATH, or an absolute file that exists', async (t) => {
  const bin = fakeBin(t, ['klp-tool']);
  t.equal(onPath('klp-tool', bin), true);
  t.equal(onPath('klp-tool', tempDir(t)), false);
  t.equal(onPath(join(bin, 'klp-tool'), ''), true, 'an absolute path is looked at, not searched');
  t.equal(onPath(join(bin, 'other'), bin), false);
});

t.test('every tool there: no error; each one missing is named with its package', async (t) => {
  const reqs = requirements([x86]);
  const everything = fakeBin(t, commands(reqs));
  const lacking = hostLacks(reqs);
  if (lacking.length === 0) t.doesNotThrow(() => preflight([x86], everything), 'all present');
  else t.match(preflightError([x86], everything)?.message, new RegExp(`^missing host tools: ${lacking.map((r) => r.need).join('.*')}`), 'only the headers this host lacks');

  const withoutXz = fakeBin(t, commands(reqs).filter((c) => c !== 'xz' && c !== x86.qemu.binary));
  const err = preflightError([x86], withoutXz);
  t.equal(err?.kind, 'infra');
  const named = err?.message.replace(/^missing host tools: /, '').split(', ') ?? [];
  t.same(
    named.filter((n) => !n.startsWith('/')),
    ['xz (Debian package xz-utils)', `${x86.qemu.binary} (Debian package ${x86.qemu.debPackage})`],
    'the missing commands, in order, with their packages',
  );
  t.match(err?.context.hint, new RegExp(`apt-get install xz-utils ${x86.qemu.debPackage}`), 'the install command');
  t.match(err?.context.hint, /scripts\/setup-host\.sh/);
});

t.test('nothing on PATH: every command is named, and each package only once in the install command', async (t) => {
  const reqs = requirements([x86, ppc]);
  const err = preflightError([x86, ppc], tempDir(t));
  const named = err?.message.replace(/^missing host tools: /, '').split(', ') ?? [];
  t.same(
    named.filter((n) => !n.startsWith('/')),
    reqs.filter((r) => !r.need.startsWith('/')).map((r) => `${r.need} (Debian package ${r.debPackage})`),
  );
  const installed = /apt-get install (.*)$/.exec(err?.context.hint ?? '')?.[1]?.split(' ') ?? [];
  t.ok(installed.includes('apt'), 'apt-get and apt-cache both come from apt');
  t.equal(installed.filter((p) => p === 'apt').length, 1, 'which is asked for once');
  t.same(new Set(installed), new Set([...commands(reqs).map((c) => reqs.find((r) => r.need === c)!.debPackage), ...hostLacks(reqs).map((r) => r.debPackage)]), 'every package of a missing tool');
});
