// SPDX-License-Identifier: GPL-2.0
/*
 * klp-poll: reads a file every EVERY ms of the guest's clock until a reading
 * ends the wait or FOR ms have passed, and prints every reading with its
 * moment, in one write at the end. The harness's waits and samples of
 * sysfs files (a livepatch's `transition`, a task's `patch_state`) run here
 * instead of a shell loop: under emulation (ppc64le) a shell's reading cost
 * about 4 ms of QEMU CPU (its builtins read a byte per system call), one
 * here about 2.6 ms, nearly all of it the wakeup itself.
 *
 *   klp-poll [-e EVERY] [-f FOR] [-t T0] [-a ALSO] [-s VALUE]... [-x VALUE] [-l] PATH
 *     -e EVERY  ms between readings (default 100)
 *     -f FOR    ms of guest clock after T0 past which the wait ends (default 0: one reading)
 *     -t T0     the wait's start on the guest clock (ms of /proc/uptime); default: now
 *     -a ALSO   a second file read at each reading, after PATH
 *     -s VALUE  a reading of PATH equal to VALUE ends the wait (up to 8)
 *     -x VALUE  a reading of PATH other than VALUE ends the wait
 *     -l        print only the last reading (a wait; a sample wants them all)
 *
 * A reading is the file's first line without leading and trailing blanks,
 * as the shell's `read v` gives it, and "gone" when the file cannot be
 * opened or holds no whole line (a removed sysfs directory; a file not yet
 * written). Limits, enough for sysfs and /proc values: the first line must
 * end within 4096 bytes (else "gone"), a reading is cut at 255 bytes, no
 * backslash is processed, and the harness takes a reading to be one word. The clock is CLOCK_BOOTTIME cut to hundredths, as /proc/uptime
 * shows it, so moments compare with the rest of the harness's.
 *
 * Output: "p VALUE MS [OTHER]" per reading, then "end VALUE ELAPSED T0 MS"
 * (ELAPSED = the last reading's MS - T0). Exit 0; 2 on bad usage.
 *
 * Freestanding and static like the guest's other programs: no C library.
 */

#include "modules/start.h"

/* _start: calls poll_main(argc, argv). */
KLP_START(poll_main);

#define AT_FDCWD		(-100)
#define CLOCK_BOOTTIME		7

#if defined(__x86_64__)
#define NR_READ 0
#define NR_WRITE 1
#define NR_CLOSE 3
#define NR_NANOSLEEP 35
#define NR_CLOCK_GETTIME 228
#define NR_EXIT_GROUP 231
#define NR_OPENAT 257

static long sys4(long nr, long a, long b, long c, long d)
{
	register long r10 asm("r10") = d;
	long ret;

	asm volatile("syscall"
		     : "=a"(ret)
		     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
		     : "rcx", "r11", "memory");
	return ret;
}

#elif defined(__powerpc64__)
#define NR_READ 3
#define NR_WRITE 4
#define NR_CLOSE 6
#define NR_NANOSLEEP 162
#define NR_CLOCK_GETTIME 246
#define NR_EXIT_GROUP 234
#define NR_OPENAT 286

/* sc flags an error with CR0[SO] and a positive errno: made -errno here. */
static long sys4(long nr, long a, long b, long c, long d)
{
	register long r0 asm("r0") = nr;
	register long r3 asm("r3") = a;
	register long r4 asm("r4") = b;
	register long r5 asm("r5") = c;
	register long r6 asm("r6") = d;

	asm volatile("sc\n"
		     "	bns+ 1f\n"
		     "	neg %1, %1\n"
		     "1:"
		     : "+r"(r0), "+r"(r3), "+r"(r4), "+r"(r5), "+r"(r6)
		     :
		     : "r7", "r8", "r9", "r10", "r11", "r12", "ctr", "xer", "cr0", "memory");
	return r3;
}

#else
#error "klp-poll: x86_64 and ppc64le only"
#endif

struct ts {
	long sec;
	long nsec;
};

#define MAX_STOPS 8
#define OUT_SIZE (256 * 1024)

static char out[OUT_SIZE];
static long out_len;

static void flush(void)
{
	long off = 0;

	while (off < out_len) {
		long n = sys4(NR_WRITE, 1, (long)(out + off), out_len - off, 0);

		if (n <= 0)
			break;
		off += n;
	}
	out_len = 0;
}

static void put(const char *s, long n)
{
	while (n > 0) {
		long room = OUT_SIZE - out_len;
		long k = n < room ? n : room;

		for (long i = 0; i < k; i++)
			out[out_len + i] = s[i];
		out_len += k;
		s += k;
		n -= k;
		if (out_len == OUT_SIZE)
			flush();
	}
}

static long len(const char *s)
{
	long n = 0;

	while (s[n])
		n++;
	return n;
}

static void puts_(const char *s)
{
	put(s, len(s));
}

static void putnum(long v)
{
	char b[24];
	int i = sizeof(b);
	int neg = v < 0;
	unsigned long u = neg ? -(unsigned long)v : (unsigned long)v;

	do {
		b[--i] = '0' + u % 10;
		u /= 10;
	} while (u);
	if (neg)
		b[--i] = '-';
	put(b + i, sizeof(b) - i);
}

static int same(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

/* A decimal number; -1 for anything else. */
static long number(const char *s)
{
	long v = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v;
}

/* The guest's clock in ms, at /proc/uptime's resolution (hundredths). */
static long now_ms(void)
{
	struct ts t;

	sys4(NR_CLOCK_GETTIME, CLOCK_BOOTTIME, (long)&t, 0, 0);
	return t.sec * 1000 + t.nsec / 10000000 * 10;
}

static void sleep_ms(long ms)
{
	struct ts t = { ms / 1000, (ms % 1000) * 1000000 };

	sys4(NR_NANOSLEEP, (long)&t, 0, 0, 0);
}

/*
 * Reads path into buf as `read v` would take it: the first line, blanks
 * trimmed at both ends. "gone" when it cannot be opened or has no newline.
 */
static void reading(const char *path, char *buf, long size)
{
	static char raw[4096];
	static const char gone[] = "gone";
	long fd = sys4(NR_OPENAT, AT_FDCWD, (long)path, 0, 0);
	long n = 0, r, start, end;

	if (fd >= 0) {
		while (n < (long)sizeof(raw) && (r = sys4(NR_READ, fd, (long)(raw + n), sizeof(raw) - n, 0)) > 0)
			n += r;
		sys4(NR_CLOSE, fd, 0, 0, 0);
	}
	for (end = 0; end < n && raw[end] != '\n'; end++)
		;
	if (fd < 0 || end == n) {
		for (r = 0; r < (long)sizeof(gone); r++)
			buf[r] = gone[r];
		return;
	}
	for (start = 0; start < end && (raw[start] == ' ' || raw[start] == '\t'); start++)
		;
	while (end > start && (raw[end - 1] == ' ' || raw[end - 1] == '\t'))
		end--;
	if (end - start > size - 1)
		end = start + size - 1;
	for (r = 0; r < end - start; r++)
		buf[r] = raw[start + r];
	buf[r] = 0;
}

static void usage(void)
{
	static const char msg[] = "usage: klp-poll [-e EVERY] [-f FOR] [-t T0] [-a ALSO] [-s VALUE]... [-x VALUE] [-l] PATH\n";

	sys4(NR_WRITE, 2, (long)msg, sizeof(msg) - 1, 0);
	sys4(NR_EXIT_GROUP, 2, 0, 0, 0);
}

static void point(const char *v, long ms, const char *also, const char *w)
{
	puts_("p ");
	puts_(v);
	put(" ", 1);
	putnum(ms);
	if (also) {
		put(" ", 1);
		puts_(w);
	}
	put("\n", 1);
}

long poll_main(long argc, char **argv)
{
	const char *stops[MAX_STOPS];
	const char *path = 0, *also = 0, *unless = 0;
	long every = 100, for_ms = 0, t0 = -1, nstops = 0, last_only = 0;
	static char v[256], w[256];
	long ms, e, i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (a[0] != '-' || !a[1]) {
			if (path)
				usage();
			path = a;
		} else if (same(a, "-l")) {
			last_only = 1;
		} else if (i + 1 >= argc) {
			usage();
		} else if (same(a, "-e")) {
			every = number(argv[++i]);
		} else if (same(a, "-f")) {
			for_ms = number(argv[++i]);
		} else if (same(a, "-t")) {
			t0 = number(argv[++i]);
			if (t0 < 0)
				usage();
		} else if (same(a, "-a")) {
			also = argv[++i];
		} else if (same(a, "-s") && nstops < MAX_STOPS) {
			stops[nstops++] = argv[++i];
		} else if (same(a, "-x")) {
			unless = argv[++i];
		} else {
			usage();
		}
	}
	if (!path || every < 1 || for_ms < 0)
		usage();
	if (t0 < 0)
		t0 = now_ms();
	for (;;) {
		int stop = 0;

		reading(path, v, sizeof(v));
		ms = now_ms();
		e = ms - t0;
		if (also)
			reading(also, w, sizeof(w));
		for (i = 0; i < nstops; i++)
			stop |= same(v, stops[i]);
		if (unless && !same(v, unless))
			stop = 1;
		if (!last_only)
			point(v, ms, also, w);
		if (stop || e >= for_ms)
			break;
		sleep_ms(every);
	}
	if (last_only)
		point(v, ms, also, w);
	puts_("end ");
	puts_(v);
	put(" ", 1);
	putnum(e);
	put(" ", 1);
	putnum(t0);
	put(" ", 1);
	putnum(ms);
	put("\n", 1);
	flush();
	sys4(NR_EXIT_GROUP, 0, 0, 0, 0);
	return 0;
}
