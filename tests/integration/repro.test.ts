// `klp-harness repro` driven as a person would: in a real terminal (tmux),
// typing into the guest shell it opens.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { ROOT } from '../helpers.js';

const session = `klp-repro-${process.pid}`;
const tmux = (...args: string[]) => execFileSync('tmux', args, { encoding: 'utf8' });
const screen = () => tmux('capture-pane', '-p', '-J', '-S', '-200', '-t', session);

async function waitFor(re: RegExp, ms: number): Promise<string> {
  const end = Date.now() + ms;
  let text = '';
  while (Date.now() < end) {
    text = screen();
    if (re.test(text)) return text;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${re}; screen:\n${text}`);
}

t.test('repro leaves signal-user-int stuck; writing signal from the guest shell completes it', async (t) => {
  const cli = join(ROOT, 'bin/klp-harness.js');
  tmux('new-session', '-d', '-s', session, '-x', '160', '-y', '50', `node ${cli} repro --arch x86_64 --scenario signal-user-int; echo REPRO-EXIT=$?; sleep 60`);
  t.teardown(() => {
    try {
      tmux('kill-session', '-t', session);
    } catch {
      /* already gone */
    }
  });
  const ready = await waitFor(/Leaving this shell[\s\S]*# $/m, 240_000);
  t.match(ready, /transition of klp_sleeper_lp is pending\. Blocking: pid \d+ cat patch_state=0 in klp_sleeper_block/, 'the blocker is listed');
  t.match(ready, /From a second terminal: ssh -i \S+ -p \d+ /, 'a one-line ssh command');
  t.match(ready, /\/sys\/kernel\/livepatch\/klp_sleeper_lp\/signal/);

  tmux('send-keys', '-t', session, 'echo T=$(cat /sys/kernel/livepatch/klp_sleeper_lp/transition)', 'Enter');
  t.match(await waitFor(/^T=1\s*$/m, 20_000), /^T=1\s*$/m, 'stuck when the shell opens');

  tmux('send-keys', '-t', session, 'echo 1 > /sys/kernel/livepatch/klp_sleeper_lp/signal; sleep 2; echo DONE=$(cat /sys/kernel/livepatch/klp_sleeper_lp/transition)', 'Enter');
  t.match(await waitFor(/^DONE=\d\s*$/m, 30_000), /^DONE=0\s*$/m, 'transition finished after writing signal');

  tmux('send-keys', '-t', session, 'sleep 100', 'Enter');
  await new Promise((r) => setTimeout(r, 1000));
  tmux('send-keys', '-t', session, 'C-c');
  tmux('send-keys', '-t', session, 'echo AFTER=ctrl-c', 'Enter');
  t.match(await waitFor(/^AFTER=ctrl-c\s*$/m, 20_000), /^AFTER=ctrl-c/m, 'Ctrl-C went to the guest; the shell lives on');

  tmux('send-keys', '-t', session, 'exit', 'Enter');
  const end = await waitFor(/REPRO-EXIT=\d+/, 30_000);
  t.match(end, /VM stopped/, 'leaving the shell stopped the VM');
  t.match(end, /REPRO-EXIT=0/, 'repro exited 0');
});
