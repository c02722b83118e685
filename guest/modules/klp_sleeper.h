/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared between klp_sleeper (the blockers), klp_sleeper_lp (the
 * livepatch that replaces klp_sleeper_block()) and klp_sleeper_lp_replace
 * (an atomic-replace livepatch of the same function).
 */
#ifndef KLP_SLEEPER_H
#define KLP_SLEEPER_H

#include <linux/atomic.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/wait.h>

struct klp_sleeper_blocker {
	const char *name;
	unsigned int state;		/* TASK_INTERRUPTIBLE, TASK_KILLABLE or TASK_IDLE */
	bool loop;			/* stays inside the function until released */
	wait_queue_head_t wq;
	bool released;			/* set by "release <name>" or unload */
	atomic_t sleeping;		/* tasks inside klp_sleeper_block() now */
	atomic_t calls_old;		/* entries into the original function */
	atomic_t calls_new;		/* entries into the livepatched one */
	atomic_t calls_repl;		/* entries into the replacing patch's one */
	atomic_t interrupted;		/* returns with -ERESTARTSYS */
	atomic_t wakeups;		/* returns from schedule() inside the function */
	atomic_t reads_done;		/* user reads that returned data */
	pid_t pid;			/* last task that blocked here */
	struct task_struct *kthread;
};

/*
 * Sleeps once in b->state unless the blocker is released (a "loop" blocker
 * sleeps in naps until released, never leaving the function). Every
 * return from schedule() counts in b->wakeups. Returns -ERESTARTSYS when an
 * interruptible sleep sees a (fake) signal, or a killable one a fatal signal.
 */
int klp_sleeper_block(struct klp_sleeper_blocker *b);

/*
 * The body both versions of klp_sleeper_block() share, inlined into each so
 * that a sleeping task's stack shows the patched function itself.
 */
static __always_inline int klp_sleeper_sleep(struct klp_sleeper_blocker *b)
{
	DEFINE_WAIT(wait);
	int ret = 0;

	b->pid = current->pid;
	atomic_inc(&b->sleeping);
	for (;;) {
		long left;

		prepare_to_wait(&b->wq, &wait, b->state);
		if (READ_ONCE(b->released))
			break;
		if (signal_pending_state(b->state, current)) {
			ret = -ERESTARTSYS;
			break;
		}
		/*
		 * A looping blocker naps 10 s at a time: long enough that a nap
		 * almost never runs out while a scenario watches (a wake-up in
		 * the nap's last jiffy would read as a timeout and go uncounted).
		 */
		left = schedule_timeout(b->loop ? 10 * HZ : MAX_SCHEDULE_TIMEOUT);
		/* A nap that ran out is not a wake-up; anything else is. */
		if (!b->loop || left)
			atomic_inc(&b->wakeups);
		if (!b->loop)
			break;
	}
	finish_wait(&b->wq, &wait);
	if (!ret && signal_pending_state(b->state, current))
		ret = -ERESTARTSYS;
	atomic_dec(&b->sleeping);
	if (ret)
		atomic_inc(&b->interrupted);
	return ret;
}

#endif
