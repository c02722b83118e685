import t from 'tap';
import { createLogger } from '../../../harness/core/log.js';

t.test('not a terminal: timestamped lines only, no control characters, status ignored', async (t) => {
  let text = '';
  const log = createLogger('normal', { out: (s) => (text += s), live: false });
  log.status('x86_64', 'build: 10 of ~900 files compiled');
  log.info('build x86_64: make ...');
  log.verbose('not shown');
  t.match(text, /^\[\d\d:\d\d:\d\d\] build x86_64: make \.\.\.\n$/);
  // eslint-disable-next-line no-control-regex
  t.notMatch(text, /[\x1b\r]/);
});

t.test('on a terminal: a live task list per arch stays below the log lines', async (t) => {
  let text = '';
  const log = createLogger('normal', { out: (s) => (text += s), live: true });
  log.status('x86_64', 'build: 10 of ~900 files compiled');
  log.status('ppc64le', 'waiting: one kernel build at a time');
  log.info('a log line');
  t.match(text, /x86_64 +build: 10 of ~900 files compiled \(\d+ s\)/);
  t.match(text, /ppc64le +waiting: one kernel build at a time/);
  // The block's two lines are erased (erase line, up, erase line, up, erase line, column 1), then the line, then the block again.
  // eslint-disable-next-line no-control-regex
  t.match(text, /\x1b\[2K\x1b\[1A\x1b\[2K\x1b\[1A\x1b\[2K\x1b\[G\[\d\d:\d\d:\d\d\] a log line\n {2}x86_64/, 'block erased, line printed, block drawn again');
});

t.test('on a terminal: a task longer than the terminal is cut to one line, so the erase counts what was drawn', async (t) => {
  let text = '';
  const log = createLogger('normal', { out: (s) => (text += s), live: true });
  log.status('x86_64', `build: ${'x'.repeat(300)}`);
  const drawn = text.split('\n')[0]!;
  t.ok(drawn.length < 100, `the drawn line is ${drawn.length} characters (terminal: 100 off a terminal)`);
  t.match(drawn, /x…$/, 'and says it was cut');
  text = '';
  log.info('next');
  // eslint-disable-next-line no-control-regex
  t.match(text, /^\x1b\[2K\x1b\[1A\x1b\[2K\x1b\[G\[\d\d:\d\d:\d\d\] next\n/, 'one line and the cursor line erased, not more');
});

t.test('quiet: nothing but what the caller prints itself', async (t) => {
  let text = '';
  const log = createLogger('quiet', { out: (s) => (text += s), live: true });
  log.status('x86_64', 'build: 1');
  log.info('hidden');
  t.equal(text, '');
});

t.test('endLive removes the list for good', async (t) => {
  let text = '';
  const log = createLogger('normal', { out: (s) => (text += s), live: true });
  log.status('x86_64', 'boot: max');
  log.endLive();
  const after = text.length;
  log.status('x86_64', 'scenario: x');
  log.info('plain');
  t.match(text.slice(after), /^\[\d\d:\d\d:\d\d\] plain\n$/, 'only the plain line after endLive');
});
