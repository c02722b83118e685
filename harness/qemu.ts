// Supervises one QEMU process: own process group, console kept in a file
// and a ring buffer, fatal console lines reported at once, stopped with
// SIGTERM then SIGKILL to the whole group. The only code that starts QEMU.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, createWriteStream, type WriteStream } from 'node:fs';
import type { ArchRecord } from './arch.js';
import { track } from './children.js';
import { classifyLine, cleanConsoleLine, isFatal, RingBuffer, type ConsoleEvent } from './console.js';
import { formatCommand } from './exec.js';

export interface QemuOptions {
  arch: ArchRecord;
  kernel: string;
  initrd: string;
  sshPort: number;
  consoleLog: string;
  cpu?: string;
  smp?: number;
  extraAppend?: string[];
  accel?: 'kvm' | 'tcg';
  /** Called with each console line (--verbose streams them). */
  onConsoleLine?: (line: string) => void;
  /** Replaces the QEMU binary (tests use a fake script). */
  binary?: string;
}

/** KVM when /dev/kvm is usable and the guest is the host's arch; else TCG (software emulation). */
export function pickAccel(arch: ArchRecord, hostArch: string = process.arch, kvmDevice = '/dev/kvm'): 'kvm' | 'tcg' {
  if (process.env.KLP_HARNESS_ACCEL === 'tcg' || hostArch !== arch.kvmHostArch) return 'tcg';
  try {
    accessSync(kvmDevice, constants.R_OK | constants.W_OK);
    return 'kvm';
  } catch {
    return 'tcg';
  }
}

/** The QEMU argv for a boot, from the arch record alone. */
export function qemuArgs(o: QemuOptions): string[] {
  const q = o.arch.qemu;
  const accel = o.accel ?? 'tcg';
  // trust_cpu: seed the crng from the CPU (RDRAND under TCG) so the SSH server does not wait for entropy.
  const append = [`console=${q.console}`, 'panic=-1', 'printk.time=1', 'random.trust_cpu=on', ...(o.extraAppend ?? [])];
  return [
    ...q.machineArgs,
    '-accel', accel,
    '-cpu', accel === 'kvm' ? 'host' : (o.cpu ?? q.cpuModels[0]!),
    '-smp', String(o.smp ?? 2),
    '-m', String(q.memoryMiB),
    '-display', 'none',
    '-monitor', 'none',
    '-serial', 'stdio',
    '-no-reboot',
    '-kernel', o.kernel,
    '-initrd', o.initrd,
    '-append', append.join(' '),
    '-netdev', `user,id=n0,hostfwd=tcp:127.0.0.1:${o.sshPort}-:22`,
    '-device', 'virtio-net-pci,netdev=n0',
    '-device', 'virtio-rng-pci',
  ];
}

export type VmExit = { code: number | null; signal: NodeJS.Signals | null; stderr: string };

export class QemuVM {
  readonly command: string;
  readonly startedAt = Date.now();
  /** When the console last printed a line (the boot watchdog's clock). */
  lastLineAt = Date.now();
  readonly console = new RingBuffer(120);
  readonly events: ConsoleEvent[] = [];
  /** Resolves when QEMU exits, for whatever reason. */
  readonly exited: Promise<VmExit>;
  /** Resolves with the first fatal console event (panic). */
  readonly fatal: Promise<ConsoleEvent>;
  private child: ChildProcess;
  private log: WriteStream;
  private stderr = '';
  private exitInfo?: VmExit;
  private lineWaiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  private allText: string[] = [];

  constructor(readonly options: QemuOptions) {
    const binary = options.binary ?? options.arch.qemu.binary;
    const args = qemuArgs(options);
    this.command = formatCommand(binary, args);
    this.log = createWriteStream(options.consoleLog, { flags: 'a' });
    this.log.write(`# ${this.command}\n`);
    this.child = spawn(binary, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const untrack = track(this.child, binary);
    let resolveFatal!: (e: ConsoleEvent) => void;
    this.fatal = new Promise((r) => (resolveFatal = r));
    let partial = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      this.log.write(chunk);
      const text = partial + chunk.toString('utf8');
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const raw of lines) {
        const line = cleanConsoleLine(raw);
        this.lastLineAt = Date.now();
        this.console.push(line);
        this.allText.push(line);
        options.onConsoleLine?.(line);
        const ev = classifyLine(line);
        if (ev) {
          this.events.push(ev);
          if (isFatal(ev)) resolveFatal(ev);
        }
        this.lineWaiters = this.lineWaiters.filter((w) => (w.re.test(line) ? (w.resolve(line), false) : true));
      }
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString('utf8');
      this.log.write(`# qemu stderr: ${chunk.toString('utf8')}`);
    });
    this.exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        untrack();
        this.exitInfo ??= { code, signal, stderr: this.stderr };
        this.log.end();
        resolve(this.exitInfo);
      };
      this.child.on('exit', done);
      this.child.on('error', (e) => {
        this.stderr += String(e.message);
        done(null, null);
      });
    });
  }

  get pid() {
    return this.child.pid;
  }
  get running() {
    return this.exitInfo === undefined;
  }
  get exit() {
    return this.exitInfo;
  }

  /** Waits for a console line matching re. */
  waitForLine(re: RegExp): Promise<string> {
    const hit = this.allText.find((l) => re.test(l));
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve) => this.lineWaiters.push({ re, resolve }));
  }

  /** Stops QEMU: SIGTERM to its group, SIGKILL after graceMs. */
  async stop(graceMs = 3000): Promise<VmExit> {
    if (this.running && this.child.pid) {
      const kill = (sig: NodeJS.Signals) => {
        try {
          process.kill(-this.child.pid!, sig);
        } catch {
          /* gone */
        }
      };
      kill('SIGTERM');
      const timer = setTimeout(() => kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    return this.exited;
  }
}
