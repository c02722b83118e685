// Stand-ins for the slow or networked host tools, so that the source, build,
// image and module stages run for real around them in seconds: a `make` that
// behaves like kbuild where it matters here (an object is rebuilt when its
// source is newer or its recorded command line changed, and the command line
// holds the absolute source path), and apt/dpkg-deb that serve two tiny
// packages. Compilers answer --version and write the file -o names.
// The scripts themselves are in tests/fixtures/fake-bin/.
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixture } from './helpers.js';

/** Writes the fake tools into dir and returns it (put it first in PATH). */
export function fakeTools(dir: string): string {
  mkdirSync(dir, { recursive: true });
  for (const name of ['make', 'apt-get', 'apt-cache', 'dpkg-deb']) copyFileSync(fixture(`fake-bin/${name}`), join(dir, name));
  // A compiler answers --version and, given -o FILE, writes FILE (the guest's user programs).
  const compiler = (name: string) =>
    `#!/bin/sh\nout=; prev=\nfor a in "$@"; do [ "$prev" = -o ] && out=$a; prev=$a; done\n` +
    `if [ -n "$out" ]; then printf 'fake program: %s\\n' "$*" > "$out"; else echo "${name} (fake) 12.2.0"; fi\n`;
  const tools: Record<string, string> = { gcc: compiler('gcc'), 'powerpc64le-linux-gnu-gcc': compiler('powerpc64le-linux-gnu-gcc') };
  for (const [name, text] of Object.entries(tools)) {
    writeFileSync(join(dir, name), text);
    chmodSync(join(dir, name), 0o755);
  }
  return dir;
}

/** Config fragments the fake kbuild keeps as they are. */
export function fakeKconfigs(dir: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'common.config'), 'CONFIG_LIVEPATCH=y\n');
  writeFileSync(join(dir, 'x86_64.config'), 'CONFIG_X86_64=y\n');
  writeFileSync(join(dir, 'ppc64le.config'), 'CONFIG_PPC64=y\n');
  return dir;
}

/** The environment for a child using the fake tools (no ccache: the fake make ignores CC). */
export function fakeEnv(bin: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${bin}:${process.env.PATH}`, KLP_HARNESS_CCACHE: '0', ...extra };
}
