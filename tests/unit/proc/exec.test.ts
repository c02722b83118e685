// Short host commands (proc/exec.ts) on real tiny shell commands: output is
// captured, a failure is a HarnessError naming the command with its output's
// tail, a timeout ends the whole group, the log file and onLine get the output.
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { HarnessError } from '../../../harness/core/errors.js';
import { createLogger } from '../../../harness/core/log.js';
import { formatCommand, run, shellQuote, tail, type CommandFailure } from '../../../harness/proc/exec.js';
import { liveChildren } from '../../../harness/proc/supervisor.js';
import { goneSoon, setEnv, tempDir } from '../../helpers.js';

/** Kills a pid (and its group, if it leads one) at the end of test t, in case a check failed before it was gone. */
function killLater(t: { teardown(fn: () => void): void }, pid: () => number) {
  t.teardown(() => {
    for (const p of [-pid(), pid()]) {
      try {
        if (p) process.kill(p, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  });
}

t.test('a quoted command, pasted into a shell, gives back the same arguments', async (t) => {
  t.equal(shellQuote(''), "''", 'an empty argument stays an argument');
  t.equal(shellQuote('O=/tmp/build-1,x:y@z+%'), 'O=/tmp/build-1,x:y@z+%', 'plain words are left as they are');
  const args = ['a b', "it's", '$HOME', '`id`', 'x;y', '', 'back\\slash', '*', 'line\nbreak', '"dq"'];
  for (const a of args) t.not(shellQuote(a), a, `${JSON.stringify(a)} is quoted`);
  const line = formatCommand('printf', ['%s\\0', ...args]);
  t.match(line, /^printf /);
  const out = execFileSync('sh', ['-c', line], { encoding: 'utf8' });
  t.same(out.split('\0').slice(0, -1), args, 'sh -c on the printed line passes each argument unchanged');
});

t.test('tail keeps the last n lines, without the final newline', async (t) => {
  t.equal(tail('a\nb\nc\nd\n', 2), 'c\nd');
  t.equal(tail('a\nb\n\n\n', 5), 'a\nb', 'trailing blank lines are dropped');
  t.equal(tail('only', 3), 'only');
});

t.test('output is captured: stdout, stderr, and both in order of arrival', async (t) => {
  // 0.3 s apart: output that arrives while node is busy is read in one turn, pipes in either order (CI saw 50 ms fail).
  const r = await run('sh', ['-c', 'echo out; sleep 0.3; echo err >&2; sleep 0.3; echo more']);
  t.equal(r.stdout, 'out\nmore');
  t.equal(r.stderr, 'err');
  t.equal(r.output, 'out\nerr\nmore', 'the interleaved output');
  t.ok(r.durationMs >= 590 && r.durationMs < 10_000, `duration measured (${r.durationMs} ms)`);
});

t.test('cwd, env and input reach the command; it is logged verbosely and supervised while it runs', async (t) => {
  const dir = tempDir(t);
  const lines: string[] = [];
  const logger = createLogger('verbose', (s) => lines.push(s));
  let supervised: string[] = [];
  const r = await run('sh', ['-c', 'pwd; echo "$KLP_TEST_VAR"; cat'], {
    cwd: dir,
    env: { KLP_TEST_VAR: 'from env' },
    input: 'from stdin\n',
    logger,
    onLine: () => (supervised = liveChildren().map((c) => c.name)),
  });
  t.same(r.stdout.split('\n'), [dir, 'from env', 'from stdin']);
  t.match(lines.join(''), /\] \$ sh -c 'pwd; echo "\$KLP_TEST_VAR"; cat'\n/, 'the shell-quoted command in the verbose log');
  t.same(supervised, ['sh'], 'the command was tracked by the supervisor while it ran');
  t.notOk(liveChildren().some((c) => c.name === 'sh'), 'and is forgotten once it ended');
});

t.test('a non-zero exit is an infrastructure error with the command, exit code and the last 30 lines', async (t) => {
  const log = join(tempDir(t), 'cmd.log');
  const script = 'i=1; while [ $i -le 40 ]; do echo "line $i"; i=$((i+1)); done; exit 3';
  const err = await run('sh', ['-c', script], { logPath: log }).catch((e: unknown) => e);
  t.ok(err instanceof HarnessError, 'a HarnessError');
  const e = err as HarnessError;
  t.equal(e.kind, 'infra');
  t.equal(e.message, 'command failed: sh');
  t.equal(e.context.command, formatCommand('sh', ['-c', script]));
  t.equal(e.context.exitCode, 3);
  t.equal(e.context.logPath, log);
  const details = e.context.details!.split('\n');
  t.equal(details.length, 30, 'the last 30 lines');
  t.equal(details[0], 'line 11');
  t.equal(details.at(-1), 'line 40');
  t.match(e.report(), /exit code: 3[\s\S]*\| line 40[\s\S]*full log: /, 'the report says it all');
});

t.test('onFailure builds the error from what happened', async (t) => {
  let seen: CommandFailure | undefined;
  const err = await run('sh', ['-c', 'echo bad patch >&2; exit 1'], {
    onFailure: (f) => ((seen = f), new HarnessError('patch', `patch failed: ${f.output}`)),
  }).catch((e: unknown) => e);
  t.equal((err as HarnessError).kind, 'patch', "the caller's error is thrown");
  t.equal((err as HarnessError).message, 'patch failed: bad patch');
  t.equal(seen?.exitCode, 1);
  t.equal(seen?.timedOut, false);
  t.equal(seen?.command, "sh -c 'echo bad patch >&2; exit 1'");
});

t.test('a timeout ends the whole process group, grandchildren included, and says so', async (t) => {
  let grandchild = 0;
  killLater(t, () => grandchild);
  let seen: CommandFailure | undefined;
  const started = Date.now();
  const err = await run('sh', ['-c', 'sleep 30 & echo "child $!"; wait'], {
    timeoutMs: 300,
    onLine: (l) => (grandchild = Number(/child (\d+)/.exec(l)?.[1] ?? grandchild)),
    onFailure: (f) => ((seen = f), new HarnessError('build', 'timed out')),
  }).catch((e: unknown) => e);
  t.equal((err as HarnessError).kind, 'build');
  t.ok(Date.now() - started < 5000, `ended at the timeout, not after the sleep (${Date.now() - started} ms)`);
  t.equal(seen?.timedOut, true, 'timedOut is set');
  t.equal(seen?.signal, 'SIGTERM');
  t.ok(grandchild > 0, 'the grandchild was seen');
  t.ok(await goneSoon(grandchild), 'the grandchild is gone too');
});

t.test(
  'a timeout also holds when the command exits but leaves a child holding its output',
  async (t) => {
    let grandchild = 0;
    killLater(t, () => grandchild);
    const started = Date.now();
    const r = await run('sh', ['-c', 'sleep 1.5 & echo "child $!"'], { timeoutMs: 200, onLine: (l) => (grandchild = Number(/child (\d+)/.exec(l)?.[1] ?? grandchild)) }).then(
      () => 'returned',
      (e: Error) => e.message,
    );
    t.match(r, /timed out/, 'run() fails as timed out');
    t.ok(Date.now() - started < 1000, `at its timeout (took ${Date.now() - started} ms)`);
  },
);

t.test('the log file gets the command line and its output, appended run after run', async (t) => {
  const log = join(tempDir(t), 'make.log');
  await run('sh', ['-c', 'echo first; echo to-stderr >&2'], { logPath: log });
  await run('sh', ['-c', 'echo second; exit 2'], { logPath: log }).catch(() => undefined);
  t.equal(
    readFileSync(log, 'utf8'),
    "$ sh -c 'echo first; echo to-stderr >&2'\nfirst\nto-stderr\n$ sh -c 'echo second; exit 2'\nsecond\n",
    'both runs, a failed one too, with stderr',
  );
});

t.test('onLine gets whole lines, however the output is split into chunks', async (t) => {
  const lines: string[] = [];
  await run('sh', ['-c', "printf 'ab'; sleep 0.1; printf 'c\\nde'; sleep 0.1; printf 'f\\ng\\n\\nh\\n'"], { onLine: (l) => lines.push(l) });
  t.same(lines, ['abc', 'def', 'g', '', 'h']);
});

t.test('a program that is not there is a missing host tool, with or without setpriv', async (t) => {
  setEnv(t, { KLP_HARNESS_NO_PDEATHSIG: undefined });
  const viaSetpriv = (await run('klp-no-such-tool-here', ['x']).catch((e: unknown) => e)) as HarnessError;
  t.equal(viaSetpriv.message, "host tool 'klp-no-such-tool-here' is not installed");
  t.equal(viaSetpriv.kind, 'infra');
  t.match(viaSetpriv.context.hint, /scripts\/setup-host\.sh/);
  t.equal(viaSetpriv.context.command, 'klp-no-such-tool-here x');
  process.env.KLP_HARNESS_NO_PDEATHSIG = '1';
  const direct = (await run('klp-no-such-tool-here', []).catch((e: unknown) => e)) as HarnessError;
  t.equal(direct.message, "host tool 'klp-no-such-tool-here' is not installed", 'spawn’s ENOENT says the same');
});

t.test('a program that cannot be started for another reason says why, not that it is missing', async (t) => {
  setEnv(t, { KLP_HARNESS_NO_PDEATHSIG: '1' });
  const file = join(tempDir(t), 'not-executable');
  writeFileSync(file, '#!/bin/sh\necho hi\n');
  chmodSync(file, 0o644);
  const err = (await run(file, []).catch((e: unknown) => e)) as HarnessError;
  t.match(err.message, /^could not run .*not-executable: .*EACCES/);
  t.equal(err.context.hint, undefined, 'no hint to install packages');
});

t.test(
  'a working directory that does not exist is not reported as a missing tool',
  async (t) => {
    const err = (await run('sh', ['-c', 'true'], { cwd: join(tempDir(t), 'gone') }).catch((e: unknown) => e)) as HarnessError;
    t.notMatch(err.message, /is not installed/);
  },
);

t.test('under the death-signal wrapper the command is a child of node itself: setpriv execs it', async (t) => {
  setEnv(t, { KLP_HARNESS_NO_PDEATHSIG: undefined });
  const r = await run('sh', ['-c', 'echo $PPID; cat /proc/$$/comm']);
  t.same(r.stdout.split('\n'), [String(process.pid), 'sh'], 'no setpriv process in between');
});
