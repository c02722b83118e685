// Options added for the debug kernel, kernels without our series and KTAP.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { readSeries } from '../../../harness/kernel/patches.js';
import { runCli } from '../../cli-helpers.js';
import { parseRequire } from '../../../harness/cli/run.js';
import { projectPath } from '../../../harness/core/paths.js';

t.test('a missing --kconfig-extra fragment is bad input, named', async (t) => {
  const cache = mkdtempSync(join(tmpdir(), 'klp-opt-'));
  const r = await runCli(['run', '--arch', 'x86_64', '--cache-dir', cache, '--kconfig-extra', 'kconfigs/nope.config']);
  t.equal(r.code, 4);
  t.match(r.stderr, /--kconfig-extra \S*kconfigs\/nope\.config is not a file/);
});

t.test('--patches none is the empty series, not a path', async (t) => {
  t.same(readSeries('none'), { origin: 'none', patches: [] });
  t.throws(() => readSeries(join(tmpdir(), 'no-such-series-dir')), /does not exist/);
});

t.test('--require names per-patch files; anything else is bad usage', async (t) => {
  t.same(parseRequire('signal,force'), ['signal', 'force']);
  t.equal(parseRequire(undefined), undefined);
  t.throws(() => parseRequire('signal,banana'), /bad --require 'signal,banana'/);
  t.throws(() => parseRequire(','), /bad --require/);
});

t.test('a series keeps its own record of the per-patch files it adds', async (t) => {
  t.same(readSeries(projectPath('patches')).adds, ['signal'], 'patches/adds');
  t.same(readSeries(projectPath('patches/5.10')).adds, ['signal']);
  t.equal(readSeries('none').adds, undefined, 'no series, no promise');
});

t.test('--help names the new options', async (t) => {
  const r = await runCli(['--help']);
  t.equal(r.code, 0);
  t.match(r.stdout, /--kconfig-extra FILE/);
  t.match(r.stdout, /--ktap/);
  t.match(r.stdout, /--require FILES/);
  t.match(r.stdout, /'none' runs the kernel source as it is/);
});

t.test('each subcommand takes its own options: another one\'s is bad usage naming its owner', async (t) => {
  const cases: [string[], RegExp][] = [
    [['run', '--prune'], /option '--prune' does not apply to 'klp-harness run'[\s\S]*klp-harness cache/],
    [['repro', '--arch', 'x86_64', '--scenario', 'signal-user-int', '--quiet'], /option '--quiet' does not apply to 'klp-harness repro'[\s\S]*klp-harness run/],
    [['shell', '--arch', 'x86_64', '--scenario', 'x'], /option '--scenario' does not apply to 'klp-harness shell'/],
    [['merge', '--arch', 'x86_64', 'a.json'], /option '--arch' does not apply to 'klp-harness merge'/],
    [['cache', '--out', '/tmp/x'], /option '--out' does not apply to 'klp-harness cache'/],
    [['cache', '--max-age', '3'], /--max-age goes with --prune/],
    [['run', 'extra'], /'klp-harness run' takes no arguments, got: extra/],
    [['frob'], /unknown command 'frob'/],
  ];
  for (const [args, re] of cases) {
    const r = await runCli(args);
    t.equal(r.code, 4, `${args.join(' ')}: exit 4`);
    t.match(r.stderr, re, args.join(' '));
  }
});

t.test('--jobs takes a whole number of guests, 1 or more; anything else is bad usage saying what to give', async (t) => {
  const cache = mkdtempSync(join(tmpdir(), 'klp-opt-'));
  for (const bad of ['0', '-2', '1.5', 'many']) {
    const r = await runCli(['run', '--arch', 'x86_64', '--cache-dir', cache, `--jobs=${bad}`]);
    t.equal(r.code, 4, `--jobs ${bad}`);
    t.match(r.stderr, new RegExp(`bad --jobs '${bad.replace('.', '\\.')}'[\\s\\S]*whole number of 1 or more`));
  }
  const help = await runCli(['--help']);
  t.match(help.stdout, /--jobs N/);
  t.match(help.stdout, /--no-snapshot/);
});

t.test('--help is made from the option tables: every option of every subcommand is listed with what it does', async (t) => {
  const { helpText, PARSERS } = await import('../../../harness/cli/main.js');
  const { optionsHelp } = await import('../../../harness/cli/options.js');
  const help = helpText();
  t.same(PARSERS.map((p) => p.command).sort(), ['cache', 'merge', 'report', 'repro', 'run', 'shell'], 'every subcommand has its parser');
  for (const parser of PARSERS) {
    for (const [name, o] of Object.entries(parser.options)) {
      t.ok((o as { help: string }).help.trim().length > 3, `${parser.command} --${name} says what it does`);
      t.match(optionsHelp(parser), new RegExp(`--${name}\\b`), `${parser.command}'s help lists --${name}`);
    }
  }
  const run = PARSERS.find((p) => p.command === 'run')!;
  for (const name of Object.keys(run.options)) t.match(help, new RegExp(`--${name}\\b`), `--help lists run's --${name}`);
});
