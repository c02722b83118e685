// How a test starts a node child (the CLI, a stage runner) without tap's
// process-info hooks. tap's runner puts `--import @tapjs/processinfo` in
// NODE_OPTIONS and re-adds it to every spawn's environment (process-on-spawn),
// whatever env the spawn is given. With coverage off those hooks only cost
// time: on Node 20 every module a child loads passes through a worker thread,
// and a CLI start takes about 3 times as long (tests/unit/cli/main.test.js:
// 7 s as plain node, 17-21 s under tap). So the child is started through
// /usr/bin/env, which sets NODE_OPTIONS (the caller's, without tap's hooks) after
// tap's hook has run and then execs node: same pid, same signals.

/** NODE_OPTIONS without the options tap added. */
export function withoutTapHooks(nodeOptions = ''): string {
  return nodeOptions
    .split(/\s+/)
    .filter((o) => o !== '' && !/[\\/]@tapjs[\\/]/.test(o))
    .join(' ');
}

/** The command and arguments that run `cmd args...` (node, npx, npm) as a child free of tap's hooks. */
export function untapped(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): [string, string[]] {
  return ['/usr/bin/env', [`NODE_OPTIONS=${withoutTapHooks(env.NODE_OPTIONS)}`, cmd, ...args]];
}

/** `node script args...` as a child free of tap's hooks. */
export const nodeChild = (script: string, args: readonly string[], env?: NodeJS.ProcessEnv) => untapped(process.execPath, [script, ...args], env);
