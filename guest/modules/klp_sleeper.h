/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared between klp_sleeper (the blockers) and klp_sleeper_lp (the
 * livepatch that replaces klp_sleeper_block()).
 */
#ifndef KLP_SLEEPER_H
#define KLP_SLEEPER_H

#include <linux/atomic.h>
#include <linux/sched.h>
#include <linux/wait.h>

struct klp_sleeper_blocker {
	const char *name;
	unsigned int state;		/* TASK_INTERRUPTIBLE or TASK_IDLE */
	wait_queue_head_t wq;
	bool released;			/* set by "release <name>" or unload */
	atomic_t sleeping;		/* tasks inside klp_sleeper_block() now */
	atomic_t calls_old;		/* entries into the original function */
	atomic_t calls_new;		/* entries into the livepatched one */
	atomic_t interrupted;		/* returns with -ERESTARTSYS */
	atomic_t reads_done;		/* user reads that returned data */
	pid_t pid;			/* last task that blocked here */
	struct task_struct *kthread;
};

/*
 * Sleeps once in b->state unless the blocker is released. Returns
 * -ERESTARTSYS when an interruptible sleep sees a (fake) signal.
 */
int klp_sleeper_block(struct klp_sleeper_blocker *b);

#endif
