// Every child process the harness starts is registered here, so that an
// exit, an error or a signal (SIGINT, SIGTERM) ends each one's whole process
// group: no QEMU or make outlives the harness.

interface Tracked {
  pid?: number;
  name: string;
}

const live = new Set<Tracked>();
const cleanups = new Set<() => void>();
let installed = false;
let interrupted = false;

function killGroup(t: Tracked, signal: NodeJS.Signals) {
  if (!t.pid) return;
  try {
    process.kill(-t.pid, signal);
  } catch {
    try {
      process.kill(t.pid, signal);
    } catch {
      /* already gone */
    }
  }
}

/** Kills every tracked child group with SIGKILL and runs the cleanup hooks. Synchronous. */
export function killAll(): void {
  for (const t of live) killGroup(t, 'SIGKILL');
  live.clear();
  for (const c of cleanups) {
    try {
      c();
    } catch {
      /* keep going */
    }
  }
  cleanups.clear();
}

function install() {
  if (installed) return;
  installed = true;
  process.on('exit', killAll);
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) process.exit(130); // a second Ctrl-C ends at once
    interrupted = true;
    process.stderr.write(`\nklp-harness: ${sig}: stopping ${live.size} child process group(s)\n`);
    for (const t of live) killGroup(t, 'SIGTERM');
    setTimeout(() => {
      killAll();
      process.exit(130);
    }, 1500).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
}

/** Registers a child (started with detached: true) and returns the function that forgets it. */
export function track(child: { pid?: number }, name: string): () => void {
  install();
  const t: Tracked = { pid: child.pid, name };
  live.add(t);
  return () => live.delete(t);
}

/** Registers a synchronous cleanup (temp files) run on exit or signal. */
export function onCleanup(fn: () => void): () => void {
  install();
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

export const wasInterrupted = () => interrupted;
export const liveChildren = () => [...live].map((t) => ({ pid: t.pid, name: t.name }));
