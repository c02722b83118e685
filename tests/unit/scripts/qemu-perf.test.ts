// The bench's reading of perf's reports: each QEMU's samples split by where they ran, and its busiest functions.
import t from 'tap';
import { sharesOf, topOf } from '../../../scripts/qemu-perf.js';

// As `perf report --sort comm,dso --stdio` prints it (trimmed).
const COMM_DSO = `# To display the perf.data header info, please use --header/--header-only options.
#
# Overhead  Command          Shared Object
# ........  ...............  .................
#
    30.00%  qemu-system-ppc  qemu-system-ppc64
    10.00%  qemu-system-ppc  [kernel.kallsyms]
    10.94%  swapper          [kernel.kallsyms]
    10.00%  qemu-system-x86  qemu-system-x86_64
     8.00%  node             node
     5.00%  qemu-system-ppc  [JIT] tid 14300
     3.00%  qemu-system-ppc  [JIT] tid 14298
     2.00%  qemu-system-ppc  libc.so.6
     5.00%  qemu-system-x86  [JIT] tid 14272
     5.00%  qemu-system-x86  [unknown]
`;

t.test('each QEMU command: its share of all samples, and how its own splits (summing to 100)', async (t) => {
  const shares = sharesOf(COMM_DSO);
  t.same(
    shares.map((s) => s.comm),
    ['qemu-system-ppc', 'qemu-system-x86'],
    'only QEMUs, not node or the idle task',
  );
  const ppc = shares[0]!;
  t.equal(ppc.total, 50);
  t.equal(ppc.qemu, 60);
  t.equal(ppc.kernel, 20);
  t.equal(ppc.generated, 16, 'every generated-code mapping (one per thread) counts together');
  t.equal(ppc.libraries, 4);
  t.equal(ppc.binary, 'qemu-system-ppc64', 'the binary named as perf names it, for the function report');
  const x86 = shares[1]!;
  t.equal(x86.total, 20);
  t.same([x86.qemu, x86.generated, x86.kernel, x86.libraries], [50, 25, 25, 0], 'samples perf could not place count as the kernel');
});

t.test('no QEMU in the report: nothing', async (t) => {
  t.same(sharesOf('# nothing\n     9.00%  node  node\n'), []);
});

t.test('busiest functions: named ones only, each once (summed), as percent of the QEMU\'s samples, at most n', async (t) => {
  const sym = `#
     5.00%  [.] qht_lookup_custom
     4.00%  [.] 0x0000000000976327
     2.50%  [.] helper_lookup_tb_ptr
     1.00%  [k] unmap_page_range
     0.50%  [.] tcg_gen_code
     0.50%  [.] qht_lookup_custom
`;
  t.same(topOf(sym, 50, 3), [
    { name: 'qht_lookup_custom', percent: 11 },
    { name: 'helper_lookup_tb_ptr', percent: 5 },
    { name: 'unmap_page_range', percent: 2 },
  ]);
});
