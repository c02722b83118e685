// Per-architecture knowledge, kept as data. The pipeline never branches on
// an arch name; it reads these records.
import { usageError } from './errors.js';

export interface ArchRecord {
  /** Our name for it, as given to --arch. */
  readonly name: string;
  /** ARCH= for kbuild. */
  readonly linuxArch: string;
  /** CROSS_COMPILE= prefix, '' for a native build. */
  readonly crossCompile: string;
  /** Host tool that must exist for the build, and the Debian package that has it. */
  readonly compiler: { readonly tool: string; readonly debPackage: string };
  /** The fragment in kconfigs/ besides common.config. */
  readonly kconfigFragment: string;
  /** make target and the image it leaves, relative to the build directory. */
  readonly imageTarget: string;
  readonly imagePath: string;
  /** Debian architecture of the guest's user space. */
  readonly debArch: string;
  /** uname -m in the guest, checked after boot. */
  readonly unameMachine: string;
  readonly qemu: {
    readonly binary: string;
    readonly debPackage: string;
    /** Machine, firmware and CPU arguments; the CPU model is filled in from cpuModels. */
    readonly machineArgs: readonly string[];
    readonly cpuModels: readonly string[];
    readonly console: string;
    readonly memoryMiB: number;
    /** Guests restore from snapshots only with this QEMU version or later, and why (see vm/snapshot.ts). */
    readonly snapshotsFrom?: { readonly version: string; readonly why: string };
    /**
     * Where a QEMU that has snapshots restores only some guests right: the
     * vCPUs a restored guest gets, the CPU models that restore at all (others
     * boot), and why. stateSections: per CPU model, a section (QEMU's
     * idstr) a saved state must hold for the restored guest to work; a state
     * without it is recorded as unusable for that QEMU and its guests boot.
     */
    readonly restoreLimits?: {
      readonly smp: number;
      readonly cpuModels: readonly string[];
      readonly why: string;
      readonly stateSections?: Readonly<Record<string, { readonly section: string; readonly why: string }>>;
    };
  };
  /** Node's process.arch of a host that can run this guest with KVM. */
  readonly kvmHostArch: string;
  /** ppc64le under TCG is several times slower; every timeout is multiplied by this. */
  readonly timeoutScale: number;
  /**
   * Bounds measured on the guest's own clock (how soon the kernel finishes a
   * transition after a lever) scale far less than host-side waits: the
   * guest's clock runs in real time, only its work is slower.
   */
  readonly guestClockScale: number;
  /**
   * ppc64le: the system call instruction glibc must use on each CPU model
   * (POWER9 has scv, POWER8 only sc), proven from AT_HWCAP2 in the guest.
   */
  readonly syscallByCpu?: Readonly<Record<string, 'scv' | 'sc'>>;
  /**
   * Kernel command-line words that turn off the L1D flush on the way back to
   * user space, and the kernel's log line saying they did. ppc64's fallback
   * flush (rfscv_flush_fallback, chosen under QEMU's cap-cfpc=broken) uses
   * r7/r8 as scratch, which decides whether a restarted scv call gets its
   * arguments back (scenarios/restart-notify.ts runs with and without).
   */
  readonly exitFlushOff?: { readonly args: readonly string[]; readonly proof: string };
  /** Extra flags for the out-of-tree guest modules (ccflags-y). */
  readonly moduleCflags: string;
  /** Flags for the guest's own user programs (guest/modules/restart-canary.c): the oldest CPU model run. */
  readonly userCflags: readonly string[];
}

const X86_64: ArchRecord = {
  name: 'x86_64',
  linuxArch: 'x86_64',
  crossCompile: '',
  compiler: { tool: 'gcc', debPackage: 'gcc' },
  kconfigFragment: 'x86_64.config',
  imageTarget: 'bzImage',
  imagePath: 'arch/x86/boot/bzImage',
  debArch: 'amd64',
  unameMachine: 'x86_64',
  qemu: {
    binary: 'qemu-system-x86_64',
    debPackage: 'qemu-system-x86',
    // qboot starts the kernel much faster than SeaBIOS.
    machineArgs: ['-M', 'q35,i8042=off,sata=off,smbus=off', '-bios', 'qboot.rom'],
    cpuModels: ['max'],
    console: 'ttyS0',
    // The guests use about 20 MiB (busybox, dropbear, the modules). Every page of it costs a QEMU
    // that starts on a saved state: loading it reads the zero pages too, and a host kernel that
    // maps no shared zero page (seen here, a guest itself) backs each with memory of its own.
    // 256 -> 128 took a first restore from 0.95-1.44 s to 0.21-0.85 s of QEMU CPU (2026-12-01).
    memoryMiB: 128,
  },
  kvmHostArch: 'x64',
  timeoutScale: 1,
  guestClockScale: 1,
  moduleCflags: '',
  userCflags: [],
};

const PPC64LE: ArchRecord = {
  name: 'ppc64le',
  linuxArch: 'powerpc',
  crossCompile: 'powerpc64le-linux-gnu-',
  compiler: { tool: 'powerpc64le-linux-gnu-gcc', debPackage: 'gcc-powerpc64le-linux-gnu' },
  kconfigFragment: 'ppc64le.config',
  imageTarget: 'vmlinux',
  imagePath: 'vmlinux',
  debArch: 'ppc64el',
  unameMachine: 'ppc64le',
  qemu: {
    binary: 'qemu-system-ppc64',
    debPackage: 'qemu-system-ppc',
    // VOF boots to SSH faster than SLOF; the cap-* settings silence TCG warnings.
    machineArgs: ['-M', 'pseries,x-vof=on,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off'],
    cpuModels: ['power9', 'power8'],
    console: 'hvc0',
    // As x86_64 (the guests use about 20 MiB). A first restore touches every page of the guest's
    // RAM (system time, the host kernel backing it): with 1024 it cost 4-5 s of QEMU CPU on a busy
    // host against 0.5-0.7 s at 512; at 256 the default matrix took 118 s of QEMU CPU against
    // 125-134 s at 512 (runs side by side, 2026-12-01).
    // pseries takes RAM in whole 256 MiB blocks ("Memory size 0x8000000 is not aligned to 256 MiB").
    memoryMiB: 256,
    // Seen with 7.2: the restored guest answers SSH, but usleep never returns.
    snapshotsFrom: { version: '8.1', why: "QEMU before 8.1 does not carry the emulated decrementer across a migration, so a restored pseries guest's timers never fire" },
    // A second vCPU comes back with an interrupt pending that is not taken in time: seen with
    // 10.0.2 (XIVE thread context NSR set, IPB 02, never taken) and with 10.0.13 (POWER9 and
    // POWER8 answered SSH only 6-11 s after a two-vCPU restore, 0.7 s with one). A pseries
    // guest's state must carry its CPUs' interrupt presenters: QEMU 10.0.2's has no
    // 'icp/server' section for XICS (POWER8; the registration was lost when pseries-2.9 was
    // removed, QEMU commit 24ee9229fe31, and restored by "hw/intc/xics: Add missing call to
    // register vmstate_icp_server" in the 10.0 and 10.1 stable series), so the loaded CPU's
    // priority is the reset value 0 (`info pic`: XIRR=00000000, ff000000 when saved) and it
    // rejects every interrupt for ever; 10.0.13 (Debian 13) has it. 7.2 carries the ICP but
    // not the decrementer (snapshotsFrom).
    restoreLimits: {
      smp: 1,
      cpuModels: ['power9', 'power8'],
      why: 'a restored pseries guest takes its interrupts in time only with one vCPU (a second vCPU comes back with an interrupt pending that it does not take)',
      stateSections: {
        power9: { section: 'xive-tctx', why: "the saved state has no XIVE thread context ('xive-tctx'), so the restored CPUs would take no interrupts" },
        power8: { section: 'icp/server', why: "the saved state has no XICS interrupt presenter ('icp/server': lost in QEMU 10.0.2 and fixed in later 10.0 and 10.1 stable releases), so the restored CPUs would reject every interrupt" },
      },
    },
  },
  kvmHostArch: 'ppc64',
  timeoutScale: 4,
  guestClockScale: 1.5,
  syscallByCpu: { power9: 'scv', power8: 'sc' },
  exitFlushOff: { args: ['no_rfi_flush'], proof: 'rfi-flush: disabled on command line' },
  // Tail calls in patched functions have corrupted the TOC on ppc64 (kpatch #1002).
  moduleCflags: '-fno-optimize-sibling-calls',
  userCflags: ['-mcpu=power8'],
};

export const ARCHES: Readonly<Record<string, ArchRecord>> = Object.freeze({
  [X86_64.name]: X86_64,
  [PPC64LE.name]: PPC64LE,
});

export const archNames = (): string[] => Object.keys(ARCHES);

/** Looks an arch up by name; an unknown one is a usage error listing the known ones. */
export function getArch(name: string): ArchRecord {
  const rec = ARCHES[name];
  if (!rec) throw usageError(`unknown arch '${name}'`, { hint: `use one of: ${archNames().join(', ')}` });
  return rec;
}

/** Parses a comma-separated --arch value. */
export function parseArchList(value: string): ArchRecord[] {
  const names = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw usageError('--arch is empty', { hint: `use one of: ${archNames().join(', ')}` });
  return [...new Set(names)].map(getArch);
}
