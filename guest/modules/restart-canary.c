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
 * Freestanding (no libc): the guest image has no C library for our own
 * programs, and the entry instruction must be the one named, not whichever
 * one a libc picks. Built with the guest modules (harness/modules.ts).
 */

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

asm(".globl _start\n"
    "_start:\n"
    "	xor %rbp, %rbp\n"
    "	mov (%rsp), %rdi\n"
    "	lea 8(%rsp), %rsi\n"
    "	and $-16, %rsp\n"
    "	call canary_main\n"
    "	hlt\n");

#elif defined(__powerpc64__)
#define NR_WRITE 4
#define NR_EXIT 1
#define NR_NANOSLEEP 162
#define NR_PSELECT6 280

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

/* A static executable gets no TOC pointer: find it from our own address. */
asm(".globl _start\n"
    "_start:\n"
    "	bl 0f\n"
    "0:	mflr 12\n"
    "	addi 12, 12, -4\n"
    "	addis 2, 12, .TOC.-_start@ha\n"
    "	addi 2, 2, .TOC.-_start@l\n"
    "	ld 3, 0(1)\n"
    "	addi 4, 1, 8\n"
    "	li 0, 0\n"
    "	stdu 1, -128(1)\n"
    "	bl canary_main\n"
    "	nop\n");
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

void canary_main(long argc, char **argv)
{
	char line[160], *p;
	long rounds = 0;
	int sleep;

	if (argc < 3 || !pick(argv[1]) || !(same(argv[2], "pselect6") || same(argv[2], "nanosleep"))) {
		/* No known entry path yet: exit through the default one. */
#if defined(__x86_64__)
		sys = sys_syscall;
#else
		sys = sys_sc;
#endif
		say("usage: restart-canary syscall|scv|sc pselect6|nanosleep\n");
		sys(NR_EXIT, 2, 0, 0, 0, 0, 0);
	}
	sys = pick(argv[1]);
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
			p = put_num(p, rounds);
			p = put(p, " full sleeps\n");
			*p = 0;
			say(line);
			sys(NR_EXIT, 1, 0, 0, 0, 0, 0);
		}
		rounds++;
	}
}
