// SPDX-License-Identifier: GPL-2.0
/*
 * thread-blocker: a two-thread program whose second thread (not the thread
 * group leader) blocks a livepatch transition, while the leader does
 * something else. The kernel must check every thread of a process, not
 * only leaders: a kernel that switched this process by its leader would
 * let the second thread sleep on in the old code.
 *
 *   thread-blocker MODE FILE [STATE]
 *     MODE busy:  the leader keeps running (system calls in a loop); with
 *                 STATE, only until its own /proc/self/patch_state reads
 *                 STATE (it has switched), then it sleeps as in sleep mode:
 *                 a leader spinning on through a stuck transition costs a
 *                 vCPU for nothing
 *          sleep: the leader sleeps in futex_wait, outside the patched function
 *     FILE a klp_sleeper blocker file (/sys/kernel/debug/klp_sleeper/user-int, ...)
 *     STATE 0 or 1: the patch_state of a switched task
 *
 * The second thread reads FILE (it sleeps in klp_sleeper_block() until the
 * blocker is released), copies what it read to stdout and exits; the
 * leader waits for it (CLONE_CHILD_CLEARTID clears and wakes the tid word)
 * and exits 0, or 1 when the read failed.
 *
 * Freestanding and static like restart-canary (no C library in the guest
 * for our programs); the thread is a raw clone().
 */

#include "start.h"

/* _start: calls blocker_main(argc, argv). */
KLP_START(blocker_main);

#define CLONE_VM		0x00000100
#define CLONE_FS		0x00000200
#define CLONE_FILES		0x00000400
#define CLONE_SIGHAND		0x00000800
#define CLONE_THREAD		0x00010000
#define CLONE_SYSVSEM		0x00040000
#define CLONE_CHILD_CLEARTID	0x00200000
#define FUTEX_WAIT		0
#define AT_FDCWD		(-100)

#if defined(__x86_64__)
#define NR_READ 0
#define NR_PREAD64 17
#define NR_WRITE 1
#define NR_SCHED_YIELD 24
#define NR_EXIT_GROUP 231
#define NR_FUTEX 202
#define NR_OPENAT 257

static long sys6(long nr, long a, long b, long c, long d, long e, long f)
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

/*
 * long start_thread(flags, stack top, tid word, fn): clone(2); the new
 * thread runs fn() on its own stack and exits with its return value.
 */
asm(".globl start_thread\n"
    "start_thread:\n"
    "	mov %rdx, %r10\n"		/* child_tid */
    "	mov %rcx, %r9\n"		/* fn: kept across the system call */
    "	xor %edx, %edx\n"		/* parent_tid */
    "	xor %r8d, %r8d\n"		/* tls */
    "	mov $56, %eax\n"		/* clone */
    "	syscall\n"
    "	test %rax, %rax\n"
    "	jnz 1f\n"
    "	xor %ebp, %ebp\n"
    "	call *%r9\n"
    "	mov %rax, %rdi\n"
    "	mov $60, %eax\n"		/* exit: this thread only */
    "	syscall\n"
    "	hlt\n"
    "1:	ret\n");

#elif defined(__powerpc64__)
#define NR_READ 3
#define NR_PREAD64 179
#define NR_WRITE 4
#define NR_SCHED_YIELD 158
#define NR_EXIT_GROUP 234
#define NR_FUTEX 221
#define NR_OPENAT 286

/* sc returns errno with CR0[SO] set: made -errno here. */
static long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
	register long r0 asm("r0") = nr;
	register long r3 asm("r3") = a;
	register long r4 asm("r4") = b;
	register long r5 asm("r5") = c;
	register long r6 asm("r6") = d;
	register long r7 asm("r7") = e;
	register long r8 asm("r8") = f;

	asm volatile("sc\n"
		     "	bns+ 1f\n"
		     "	neg %1, %1\n"
		     "1:"
		     : "+r"(r0), "+r"(r3), "+r"(r4), "+r"(r5), "+r"(r6), "+r"(r7), "+r"(r8)
		     :
		     : "r9", "r10", "r11", "r12", "ctr", "xer", "cr0", "memory");
	return r3;
}

/*
 * long start_thread(flags r3, stack top r4, tid word r5, fn r6). powerpc's
 * clone takes (flags, stack, parent_tid, tls, child_tid). fn is kept in
 * r31 (saved in the red zone: the parent restores it).
 */
asm(".globl start_thread\n"
    "start_thread:\n"
    "	std 31, -8(1)\n"
    "	mr 31, 6\n"
    "	mr 7, 5\n"			/* child_tid */
    "	li 5, 0\n"			/* parent_tid */
    "	li 6, 0\n"			/* tls */
    "	li 0, 120\n"			/* clone */
    "	sc\n"
    "	bns+ 0f\n"
    "	neg 3, 3\n"
    "0:	cmpdi 3, 0\n"
    "	bne 1f\n"
    "	li 0, 0\n"
    "	stdu 0, -128(1)\n"		/* a first frame on the new stack */
    "	mr 12, 31\n"
    "	mtctr 12\n"
    "	bctrl\n"
    "	li 0, 1\n"			/* exit: this thread only */
    "	sc\n"
    "	trap\n"
    "1:	ld 31, -8(1)\n"
    "	blr\n");

#else
#error "thread-blocker: x86_64 and ppc64le only"
#endif

long start_thread(unsigned long flags, void *stack, volatile int *tid, long (*fn)(void));

static char stack[64 * 1024] __attribute__((aligned(16)));
static char data[4096];
static volatile int thread_tid;
static long fd;
static long thread_result = -1;

static long sys(long nr, long a, long b, long c)
{
	return sys6(nr, a, b, c, 0, 0, 0);
}

static long len(const char *s)
{
	long n = 0;

	while (s[n])
		n++;
	return n;
}

/*
 * The leader's own patch_state as a number (-1: no transition), or -2 when
 * it cannot be read. /proc/self is the process, so its patch_state is the
 * leader's.
 */
static long own_state(long pfd)
{
	char b[8];
	long r = pfd < 0 ? -1 : sys6(NR_PREAD64, pfd, (long)b, sizeof(b), 0, 0, 0);

	if (r <= 0)
		return -2;
	if (b[0] == '-')
		return -1;
	return b[0] - '0';
}

static void say(const char *s)
{
	sys(NR_WRITE, 2, (long)s, len(s));
}

static int same(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

/* The second thread: one read to its end (a fake signal restarts it unseen), then out. */
static long reader(void)
{
	long n = 0, r;

	while ((r = sys(NR_READ, fd, (long)data + n, sizeof(data) - n)) > 0)
		n += r;
	if (r == 0)
		sys(NR_WRITE, 1, (long)data, n);
	thread_result = r;
	return 0;
}

void blocker_main(long argc, char **argv)
{
	int busy;
	long tid, pfd = -1, done = -3;

	if (argc < 3 || !(same(argv[1], "busy") || same(argv[1], "sleep")) ||
	    (argc > 3 && !same(argv[3], "0") && !same(argv[3], "1"))) {
		say("usage: thread-blocker busy|sleep FILE [0|1]\n");
		sys(NR_EXIT_GROUP, 2, 0, 0);
	}
	busy = same(argv[1], "busy");
	if (busy && argc > 3) {
		done = argv[3][0] - '0';
		pfd = sys6(NR_OPENAT, AT_FDCWD, (long)"/proc/self/patch_state", 0, 0, 0, 0);
	}
	fd = sys6(NR_OPENAT, AT_FDCWD, (long)argv[2], 0, 0, 0, 0);
	if (fd < 0) {
		say("thread-blocker: cannot open the blocker file\n");
		sys(NR_EXIT_GROUP, 1, 0, 0);
	}
	thread_tid = 1;
	tid = start_thread(CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_CHILD_CLEARTID,
			   stack + sizeof(stack) - 256, &thread_tid, reader);
	if (tid < 0) {
		say("thread-blocker: clone failed\n");
		sys(NR_EXIT_GROUP, 1, 0, 0);
	}
	/*
	 * The kernel clears thread_tid and wakes it when the thread exits.
	 * Busy, the leader switches on its way out of one of its system calls
	 * and then reads its state as STATE; from then on it only waits. A
	 * state it cannot read, or a kernel that never switches it, keeps it
	 * spinning (the harness reads that state).
	 */
	while (thread_tid) {
		if (busy && own_state(pfd) == done)
			busy = 0;
		if (busy)
			sys(NR_SCHED_YIELD, 0, 0, 0);
		else
			sys6(NR_FUTEX, (long)&thread_tid, FUTEX_WAIT, thread_tid, 0, 0, 0);
	}
	sys(NR_EXIT_GROUP, thread_result == 0 ? 0 : 1, 0, 0);
}
