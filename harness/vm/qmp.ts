// A small client for QEMU's machine protocol (QMP) on a unix socket: JSON
// lines, one command answered at a time, asynchronous events skipped. Used
// to save a booted guest's state (savevm), restore it (loadvm) and stop and run QEMU.
import { connect, type Socket } from 'node:net';
import { infraError } from '../core/errors.js';
import { pollUntil } from '../core/poll.js';
import { hostMs } from '../core/timeouts.js';

type Reply = { return?: unknown; error?: { class: string; desc: string }; event?: string; QMP?: unknown };

export class QmpClient {
  private buffer = '';
  private waiting: { resolve: (r: Reply) => void; reject: (e: Error) => void }[] = [];
  private closedWith?: Error;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (!line) continue;
        let msg: Reply;
        try {
          msg = JSON.parse(line) as Reply;
        } catch {
          continue;
        }
        if (msg.event) continue;
        this.waiting.shift()?.resolve(msg);
      }
    });
    const fail = (e: Error) => {
      this.closedWith ??= e;
      for (const w of this.waiting.splice(0)) w.reject(e);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('QMP connection closed')));
  }

  /**
   * Connects (QEMU may still be creating the socket: retried until deadlineMs) and leaves the greeting's capability
   * negotiation done. The deadline covers the greeting too: a QEMU started with -loadvm greets only once the state is loaded.
   */
  static async connect(path: string, deadlineMs = hostMs('qmpConnect'), gone: () => boolean = () => false): Promise<QmpClient> {
    const started = Date.now();
    const attempt = async (): Promise<QmpClient | Error> => {
      let c: QmpClient | undefined;
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = connect(path, () => resolve(s));
          s.once('error', reject);
        });
        c = new QmpClient(socket);
        const greeted = c.next().then(() => c!.execute('qmp_capabilities'));
        await bounded(greeted, Math.max(1, deadlineMs - (Date.now() - started)), 'QMP greeting');
        return c;
      } catch (e) {
        c?.close();
        if (gone()) throw infraError(`QEMU ended before its QMP socket ${path} answered`);
        return e as Error;
      }
    };
    const r = await pollUntil(attempt, (c) => c instanceof QmpClient, { everyMs: hostMs('qmpPoll'), deadlineMs });
    if (r.ok) return r.value as QmpClient;
    throw infraError(`QMP socket ${path} did not answer within ${deadlineMs / 1000} s: ${(r.last as Error | undefined)?.message ?? 'no attempt'}`);
  }

  private next(): Promise<Reply> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /** Runs one command; a QMP error is thrown with QEMU's description. */
  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const reply = this.next();
    this.socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    const r = await reply;
    if (r.error) throw infraError(`QMP ${command}: ${r.error.desc}`);
    return r.return;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A QMP call that must answer within ms (QMP itself has no deadline: a stopped QEMU never answers). */
export function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(infraError(`${what}: QEMU did not answer within ${ms / 1000} s`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
