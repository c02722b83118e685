// SPDX-License-Identifier: GPL-2.0
/*
 * restart-canary: a user task that sleeps in restartable system calls while
 * livepatch's fake signal flies, and says so when a restart goes wrong.
 *
 * The fake signal wakes a task out of a sleeping system call; the kernel
 * must then restart that call as if nothing happened (LIVEPATCH.md). With
 * no signal handler installed, a pselect6 or nanosleep with a 30 s timeout
 * therefore only ever returns 0 here. Any other return is printed, with the
 * entry path it came through, and the canary exits 1.
 *
 *   restart-canary MODE CALL
 *     MODE: syscall (x86_64), scv or sc (ppc64le: scv on POWER9 and later)
 *     CALL: pselect6 or nanosleep
 *
 *   restart-canary MODE rounds WAKE SLEEP_MS CALL...
 *     Sleeps once per CALL, in order, for SLEEP_MS each, and prints one line
 *     per round (see round() below) instead of stopping at the first wrong
 *     return. WAKE says what wakes it mid-sleep:
 *       uring:MS  an io_uring timeout of MS armed just before each sleep
 *                 (raw io_uring_setup/io_uring_enter): its completion is
 *                 queued as task work with TWA_SIGNAL, i.e. set_notify_signal(),
 *                 the same wake-up as livepatch's fake signal, no livepatch needed
 *       external  nothing of ours: livepatch's fake signal, written by the harness
 *     The order matters: a nanosleep interrupted and restarted leaves its
 *     restart block behind, and a later call misrouted to restart_syscall()
 *     runs it (returning 0 long before its own timeout).
 *
 * Freestanding (no libc): the guest image has no C library for our own
 * programs, and the entry instruction must be the one named, not whichever
 * one a libc picks. Built with the guest modules (harness/modules.ts).
 */

#include "start.h"

/* _start: calls canary_main(argc, argv). */
KLP_START(canary_main);

struct timespec_k {
	long tv_sec;
	long tv_nsec;
};

typedef long (*syscall_fn)(long nr, long a, long b, long c, long d, long e, long f);

#if defined(__x86_64__)
#define NR_WRITE 1
#define NR_EXIT 60
#define NR_NANOSLEEP 35
#define NR_PSELECT6 270
#define NR_MMAP 9
#define NR_GETRUSAGE 98
#define NR_CLOCK_GETTIME 228

static long sys_syscall(long nr, long a, long b, long c, long d, long e, long f)
{
	register long r10 asm("r10") = d;
	register long r8 asm("r8") = e;
	register long r9 asm("r9") = f;
	long ret;

	asm volatile("syscall"
		     : "=a"(ret)
		     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
		     : "rcx", "r11", "memory");
	return ret;
}

static syscall_fn pick(const char *mode)
{
	return mode[0] == 's' && mode[1] == 'y' ? sys_syscall : 0;
}

#elif defined(__powerpc64__)
#define NR_WRITE 4
#define NR_EXIT 1
#define NR_NANOSLEEP 162
#define NR_PSELECT6 280
#define NR_MMAP 90
#define NR_GETRUSAGE 77
#define NR_CLOCK_GETTIME 246

/* The system call number and six arguments, where both entry instructions take them. */
#define PPC_SYSCALL_REGS					\
	register long r0 asm("r0") = nr;			\
	register long r3 asm("r3") = a;				\
	register long r4 asm("r4") = b;				\
	register long r5 asm("r5") = c;				\
	register long r6 asm("r6") = d;				\
	register long r7 asm("r7") = e;				\
	register long r8 asm("r8") = f
#define PPC_SYSCALL_OUTPUTS "+r"(r0), "+r"(r3), "+r"(r4), "+r"(r5), "+r"(r6), "+r"(r7), "+r"(r8)

/*
 * scv 0 returns -errno in r3; sc returns errno with CR0[SO] set. Both are
 * written as words so that a POWER8 build of this file still has scv.
 */
static long sys_scv(long nr, long a, long b, long c, long d, long e, long f)
{
	PPC_SYSCALL_REGS;

	asm volatile(".long 0x44000001 /* scv 0 */"
		     : PPC_SYSCALL_OUTPUTS
		     :
		     : "r9", "r10", "r11", "r12", "lr", "ctr", "xer", "cr0", "cr1", "cr5", "cr6", "cr7", "memory");
	return r3;
}

static long sys_sc(long nr, long a, long b, long c, long d, long e, long f)
{
	PPC_SYSCALL_REGS;

	asm volatile(".long 0x44000002 /* sc */\n"
		     "	bns+ 1f\n"
		     "	neg %1, %1\n"
		     "1:"
		     : PPC_SYSCALL_OUTPUTS
		     :
		     : "r9", "r10", "r11", "r12", "ctr", "xer", "cr0", "memory");
	return r3;
}

static syscall_fn pick(const char *mode)
{
	if (mode[0] == 's' && mode[1] == 'c' && mode[2] == 'v')
		return sys_scv;
	if (mode[0] == 's' && mode[1] == 'c' && mode[2] == 0)
		return sys_sc;
	return 0;
}

#else
#error "restart-canary: x86_64 and ppc64le only"
#endif

static syscall_fn sys;

static long len(const char *s)
{
	long n = 0;

	while (s[n])
		n++;
	return n;
}

static char *put(char *p, const char *s)
{
	while (*s)
		*p++ = *s++;
	return p;
}

static char *put_num(char *p, long v)
{
	char digits[24];
	int i = 0;

	if (v < 0) {
		*p++ = '-';
		v = -v;
	}
	do {
		digits[i++] = '0' + v % 10;
		v /= 10;
	} while (v);
	while (i)
		*p++ = digits[--i];
	return p;
}

static void say(const char *s)
{
	sys(NR_WRITE, 1, (long)s, len(s), 0, 0, 0);
}

static int same(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

/* The same numbers on every arch since 5.1. */
#define NR_IO_URING_SETUP 425
#define NR_IO_URING_ENTER 426
#define IORING_OP_TIMEOUT 11
#define IORING_OFF_SQ_RING 0L
#define IORING_OFF_CQ_RING 0x8000000L
#define IORING_OFF_SQES 0x10000000L
#define ETIME 62

/* include/uapi/linux/io_uring.h, the fields we use (same layout since 5.1). */
struct io_sqring_offsets_k {
	unsigned int head, tail, ring_mask, ring_entries, flags, dropped, array, resv1;
	unsigned long resv2;
};

struct io_cqring_offsets_k {
	unsigned int head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1;
	unsigned long resv2;
};

struct io_uring_params_k {
	unsigned int sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd, resv[3];
	struct io_sqring_offsets_k sq_off;
	struct io_cqring_offsets_k cq_off;
};

struct io_uring_cqe_k {
	unsigned long user_data;
	int res;
	unsigned int flags;
};

/* The ring: one timeout in flight at a time. */
static struct {
	long fd;
	unsigned int *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
	struct io_uring_cqe_k *cqes;
	volatile unsigned long *sqe;
	struct timespec_k ts;
} ring;

static struct io_uring_params_k params; /* zeroed: static */

static char *map(long len, long off)
{
	/* PROT_READ|PROT_WRITE, MAP_SHARED|MAP_POPULATE */
	return (char *)sys(NR_MMAP, 0, len, 3, 0x01 | 0x8000, ring.fd, off);
}

static long ring_setup(void)
{
	char *sq, *cq;

	ring.fd = sys(NR_IO_URING_SETUP, 4, (long)&params, 0, 0, 0, 0);
	if (ring.fd < 0)
		return ring.fd;
	sq = map(params.sq_off.array + params.sq_entries * 4, IORING_OFF_SQ_RING);
	cq = map(params.cq_off.cqes + params.cq_entries * sizeof(struct io_uring_cqe_k), IORING_OFF_CQ_RING);
	ring.sqe = (volatile unsigned long *)map(params.sq_entries * 64, IORING_OFF_SQES);
	if ((unsigned long)sq > -4096UL)
		return (long)sq;
	if ((unsigned long)cq > -4096UL)
		return (long)cq;
	if ((unsigned long)ring.sqe > -4096UL)
		return (long)ring.sqe;
	ring.sq_tail = (unsigned int *)(sq + params.sq_off.tail);
	ring.sq_mask = (unsigned int *)(sq + params.sq_off.ring_mask);
	ring.sq_array = (unsigned int *)(sq + params.sq_off.array);
	ring.cq_head = (unsigned int *)(cq + params.cq_off.head);
	ring.cq_tail = (unsigned int *)(cq + params.cq_off.tail);
	ring.cq_mask = (unsigned int *)(cq + params.cq_off.ring_mask);
	ring.cqes = (struct io_uring_cqe_k *)(cq + params.cq_off.cqes);
	return 0;
}

/* Queues one IORING_OP_TIMEOUT of `ms` (a pure timer: count 0) and submits it. */
static long arm_timeout(long ms)
{
	unsigned int tail = *ring.sq_tail;
	int i;

	ring.ts.tv_sec = ms / 1000;
	ring.ts.tv_nsec = (ms % 1000) * 1000000;
	/* One SQE, slot 0, written field by field (no memset in a freestanding build). */
	for (i = 0; i < 8; i++)
		ring.sqe[i] = 0;
	ring.sqe[0] = IORING_OP_TIMEOUT | (0xffffffffUL << 32);	/* opcode, flags 0, ioprio 0, fd -1 */
	ring.sqe[2] = (unsigned long)&ring.ts;				/* addr */
	ring.sqe[3] = 1;						/* len 1, timeout_flags 0 */
	ring.sqe[4] = 0x7e57;						/* user_data */
	ring.sq_array[tail & *ring.sq_mask] = 0;
	__atomic_store_n(ring.sq_tail, tail + 1, __ATOMIC_RELEASE);
	return sys(NR_IO_URING_ENTER, ring.fd, 1, 0, 0, 0, 0);
}

/* Completions since the last call, and the result of the last one. */
static long reap(long *res)
{
	unsigned int head = *ring.cq_head, tail = __atomic_load_n(ring.cq_tail, __ATOMIC_ACQUIRE);
	long n = 0;

	for (; head != tail; head++, n++)
		*res = ring.cqes[head & *ring.cq_mask].res;
	__atomic_store_n(ring.cq_head, head, __ATOMIC_RELEASE);
	return n;
}

static long now_us(void)
{
	struct timespec_k t;

	sys(NR_CLOCK_GETTIME, 1 /* CLOCK_MONOTONIC */, (long)&t, 0, 0, 0, 0);
	return t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* Voluntary context switches so far: one per sleep, so a woken and restarted sleep counts two. */
static long sleeps(void)
{
	long ru[18];

	sys(NR_GETRUSAGE, 0 /* RUSAGE_SELF */, (long)ru, 0, 0, 0, 0);
	return ru[4 + 12]; /* two timevals, then ru_maxrss ... ru_nvcsw */
}

static long parse_num(const char *s)
{
	long v = 0;

	while (*s >= '0' && *s <= '9')
		v = v * 10 + *s++ - '0';
	return *s ? -1 : v;
}

static void usage(void)
{
	say("usage: restart-canary syscall|scv|sc pselect6|nanosleep\n"
	    "       restart-canary syscall|scv|sc rounds uring:MS|external SLEEP_MS pselect6|nanosleep...\n");
	sys(NR_EXIT, 2, 0, 0, 0, 0, 0);
}

/*
 * One sleep of `ms`, woken mid-way by what `wake` names; prints
 *   restart-canary: round N: CALL via MODE (wake WAKE): returned R after E ms of S ms, K sleeps, C timer completions (res X)
 * The harness checks R = 0, E >= S, K >= 2 (it was woken and slept again)
 * and, for uring, C = 1 with X = -ETIME (the task work ran).
 */
static void round(long n, const char *mode, const char *call, const char *wake, long ms, long wake_ms)
{
	struct timespec_k t = { ms / 1000, (ms % 1000) * 1000000 };
	char line[240], *p;
	long armed = 0, before, start, r, end, k, done = 0, res = 0;

	if (wake_ms >= 0)
		armed = arm_timeout(wake_ms);
	before = sleeps();
	start = now_us();
	r = same(call, "nanosleep") ? sys(NR_NANOSLEEP, (long)&t, 0, 0, 0, 0, 0)
				   : sys(NR_PSELECT6, 0, 0, 0, 0, (long)&t, 0);
	end = now_us();
	k = sleeps() - before;
	if (wake_ms >= 0) {
		/* A sleep that came back early leaves its timer pending: wait for it, so rounds do not mix. */
		struct timespec_k rest = { 0, 0 };
		long left = wake_ms * 1000 - (end - start);

		if (left > 0) {
			rest.tv_sec = left / 1000000;
			rest.tv_nsec = (left % 1000000) * 1000;
			sys(NR_NANOSLEEP, (long)&rest, 0, 0, 0, 0, 0);
		}
		done = reap(&res);
	}
	p = put(line, "restart-canary: round ");
	p = put_num(p, n);
	p = put(p, ": ");
	p = put(p, call);
	p = put(p, " via ");
	p = put(p, mode);
	p = put(p, " (wake ");
	p = put(p, wake);
	p = put(p, "): returned ");
	p = put_num(p, r);
	p = put(p, " after ");
	p = put_num(p, (end - start) / 1000);
	p = put(p, " ms of ");
	p = put_num(p, ms);
	p = put(p, " ms, ");
	p = put_num(p, k);
	p = put(p, " sleeps");
	if (wake_ms >= 0) {
		p = put(p, ", ");
		p = put_num(p, armed == 1 ? done : armed);
		p = put(p, armed == 1 ? " timer completions (res " : " (io_uring_enter failed, res ");
		p = put_num(p, res);
		p = put(p, ")");
	}
	p = put(p, "\n");
	*p = 0;
	say(line);
}

static void rounds(long argc, char **argv)
{
	const char *wake = argv[3];
	long wake_ms = -1, ms = parse_num(argv[4]), i;

	if (wake[0] == 'u' && wake[1] == 'r' && wake[2] == 'i' && wake[3] == 'n' && wake[4] == 'g' && wake[5] == ':') {
		wake_ms = parse_num(wake + 6);
		if (wake_ms < 0)
			usage();
		i = ring_setup();
		if (i < 0) {
			char line[80], *p = put(line, "restart-canary: io_uring_setup failed: ");

			p = put_num(p, i);
			p = put(p, "\n");
			*p = 0;
			say(line);
			sys(NR_EXIT, 3, 0, 0, 0, 0, 0);
		}
	} else if (!same(wake, "external")) {
		usage();
	}
	if (ms <= 0)
		usage();
	for (i = 5; i < argc; i++)
		if (!(same(argv[i], "pselect6") || same(argv[i], "nanosleep")))
			usage();
	for (i = 5; i < argc; i++)
		round(i - 4, argv[1], argv[i], wake, ms, wake_ms);
	sys(NR_EXIT, 0, 0, 0, 0, 0, 0);
}

void canary_main(long argc, char **argv)
{
	char line[160], *p;
	long rounds_done = 0;
	int sleep;

	/* No known entry path yet: the usage message exits through the default one. */
#if defined(__x86_64__)
	sys = sys_syscall;
#else
	sys = sys_sc;
#endif
	if (argc < 3 || !pick(argv[1]))
		usage();
	sys = pick(argv[1]);
	if (same(argv[2], "rounds")) {
		if (argc < 6)
			usage();
		rounds(argc, argv);
	}
	if (!(same(argv[2], "pselect6") || same(argv[2], "nanosleep")))
		usage();
	sleep = same(argv[2], "nanosleep");
	for (;;) {
		struct timespec_k t = { 30, 0 };
		long r = sleep ? sys(NR_NANOSLEEP, (long)&t, 0, 0, 0, 0, 0)
			       : sys(NR_PSELECT6, 0, 0, 0, 0, (long)&t, 0);

		if (r != 0) {
			p = put(line, "<3>restart-canary: ");
			p = put(p, argv[2]);
			p = put(p, " via ");
			p = put(p, argv[1]);
			p = put(p, " returned ");
			p = put_num(p, r);
			p = put(p, " (expected 0: a sleep restarted after a fake signal) after ");
			p = put_num(p, rounds_done);
			p = put(p, " full sleeps\n");
			*p = 0;
			say(line);
			sys(NR_EXIT, 1, 0, 0, 0, 0, 0);
		}
		rounds_done++;
	}
}
