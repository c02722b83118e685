// The two guards that keep a QEMU or make from outliving the harness when
// node itself dies (SIGKILL, out of memory, a crash), where no exit handler
// runs:
// - each child is started under `setpriv --pdeathsig KILL`, so the kernel
//   kills it the moment node dies;
// - a reaper, a small shell outside node's session, holds the list of child
//   process groups and kills them when its pipe from node closes, which is
//   what node's death looks like to it (pdeathsig reaches only the child
//   itself, not the compilers a make started).
// The third, the run records a later run sweeps, is in records.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** The executable file a command name finds in PATH (or in pathVar), if any. */
export function findOnPath(tool: string, pathVar = process.env.PATH ?? ''): string | undefined {
  for (const dir of pathVar.split(delimiter)) {
    const file = join(dir || '.', tool);
    try {
      accessSync(file, constants.X_OK);
      if (statSync(file).isFile()) return file; // a directory passes X_OK too
    } catch {
      /* next */
    }
  }
  return undefined;
}

/**
 * The argv that starts file under `setpriv --pdeathsig KILL` (util-linux):
 * setpriv sets the signal and execs the program, so the pid is the program's.
 * Without setpriv the program runs as it is (the reaper and the sweep remain).
 */
export function withDeathSignal(file: string, args: readonly string[]): { file: string; args: string[] } {
  const setpriv = process.env.KLP_HARNESS_NO_PDEATHSIG ? undefined : findOnPath('setpriv');
  return setpriv ? { file: setpriv, args: ['--pdeathsig', 'KILL', '--', file, ...args] } : { file, args: [...args] };
}

/** setpriv's own words when it could not start the program (then the program is missing). */
export const setprivMissing = (output: string) => /setpriv: failed to execute/.test(output);

// The reaper reads "+ PGID" and "- PGID" lines; at end of input it kills
// the groups still listed. Builtins only: it must not need PATH or forks.
const REAPER = `set -f; g=' '
while read -r op id; do
  case $op in
    +) g="$g$id " ;;
    -) case $g in *" $id "*) g="\${g%% $id *} \${g#* $id }" ;; esac ;;
  esac
done
for id in $g; do kill -s KILL -- "-$id" 2>/dev/null; done`;

/** The reaper of one harness process, started on first use. */
export class Reaper {
  private child?: ChildProcess;

  /**
   * Starts it if it is not running. Called before a child is spawned, so that
   * telling it about the child is one write to a pipe: node dying between the
   * spawn and that write is the one moment a group can escape the reaper
   * (the next run's sweep still finds it).
   */
  start(): void {
    if (!this.child) {
      // Its own session: a kill of node's process group does not take it along.
      const child = spawn('/bin/sh', ['-c', REAPER], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
      child.on('error', () => {});
      child.stdin!.on('error', () => {});
      child.unref();
      (child.stdin as unknown as { unref?: () => void }).unref?.();
      this.child = child;
    }
  }

  /** Tells it about a child group: '+' started, '-' ended. */
  tell(op: '+' | '-', pgid: number): void {
    this.start();
    this.child!.stdin!.write(`${op} ${pgid}\n`);
  }
}
