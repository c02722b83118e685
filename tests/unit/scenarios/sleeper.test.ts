// What the kernel's dynamic-debug lines after a lever's write say: retries
// that still found a blocker in a patched function, and other tasks a
// retry waited on (load), never counted against the blocker.
import t from 'tap';
import { parseAfterWrite } from '../../../harness/scenarios/sleeper.js';

t.test('retries per blocker and the other tasks a retry waited on', async (t) => {
  const lines = [
    '[   12.000001] livepatch: klp_try_switch_task: cat:71 is sleeping on function klp_sleeper_block',
    '[   13.000002] livepatch: klp_try_switch_task: thread-blocker:80 is sleeping on function klp_sleeper_block',
    '[   13.000003] livepatch: klp_try_switch_task: dropbear:55 is running',
    '[   14.000004] livepatch: klp_try_switch_task: cat:71 is sleeping on function klp_sleeper_block',
    '[   14.000005] livepatch: klp_try_switch_task: kworker/0:1:12 has an unreliable stack',
    '[   14.100000] livepatch: signaling remaining tasks',
  ];
  const seen = parseAfterWrite(lines, [71, 80, 99]);
  t.same([...seen.blockerRetries], [[71, 2], [80, 1], [99, 0]]);
  t.same(seen.others, ['dropbear:55 is running', 'kworker/0:1:12 has an unreliable stack'], 'comm with a colon keeps its pid');
  t.same(parseAfterWrite([], [71]).others, []);
});
