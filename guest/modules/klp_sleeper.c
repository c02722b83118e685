// SPDX-License-Identifier: GPL-2.0
/*
 * klp_sleeper: tasks that sleep inside one function, klp_sleeper_block(),
 * on purpose, so that a livepatch replacing it has a transition that sticks.
 *
 * debugfs: /sys/kernel/debug/klp_sleeper/
 *   control     write "start kthread-int" | "start kthread-idle" |
 *               "start kthread-loop" | "release <blocker>" | "probe"
 *   user-int    read blocks TASK_INTERRUPTIBLE in klp_sleeper_block()
 *   user-idle   read blocks TASK_IDLE (uninterruptible) in it
 *   user-killable read blocks TASK_KILLABLE in it (only SIGKILL wakes it)
 *   status      one line per blocker: what its tasks saw
 * A read returns KLP_SLEEPER_PAYLOAD once its blocker is released.
 * Unloading releases every blocker and stops the kthreads.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/sched/signal.h>
#include <linux/seq_file.h>
#include <linux/uaccess.h>
#include "klp_sleeper.h"

#define KLP_SLEEPER_PAYLOAD "klp-sleeper payload 0123456789abcdefghijklmnopqrstuvwxyz\n"

enum { USER_INT, USER_IDLE, USER_KILLABLE, KTHREAD_INT, KTHREAD_IDLE, KTHREAD_LOOP, PROBE, NR_BLOCKERS };

static struct klp_sleeper_blocker blockers[NR_BLOCKERS] = {
	[USER_INT] = { .name = "user-int", .state = TASK_INTERRUPTIBLE },
	[USER_IDLE] = { .name = "user-idle", .state = TASK_IDLE },
	[KTHREAD_INT] = { .name = "kthread-int", .state = TASK_INTERRUPTIBLE },
	[USER_KILLABLE] = { .name = "user-killable", .state = TASK_KILLABLE },
	[KTHREAD_IDLE] = { .name = "kthread-idle", .state = TASK_IDLE },
	/* Naps interruptibly inside the function until released: a wake-up does not free it. */
	[KTHREAD_LOOP] = { .name = "kthread-loop", .state = TASK_INTERRUPTIBLE, .loop = true },
	/* "probe" never sleeps: it shows which version of the function runs. */
	[PROBE] = { .name = "probe", .state = TASK_INTERRUPTIBLE, .released = true },
};

static struct dentry *dir;

noinline int klp_sleeper_block(struct klp_sleeper_blocker *b)
{
	atomic_inc(&b->calls_old);
	return klp_sleeper_sleep(b);
}
EXPORT_SYMBOL_GPL(klp_sleeper_block);

static ssize_t blocker_read(struct file *file, char __user *buf, size_t count, loff_t *ppos)
{
	struct klp_sleeper_blocker *b = file->f_inode->i_private;
	int ret;

	if (*ppos == 0) {
		/* Sleep again after a spurious wake-up; a signal restarts the read. */
		while (!READ_ONCE(b->released)) {
			ret = klp_sleeper_block(b);
			if (ret)
				return ret;
		}
	}
	ret = simple_read_from_buffer(buf, count, ppos, KLP_SLEEPER_PAYLOAD,
				      sizeof(KLP_SLEEPER_PAYLOAD) - 1);
	if (ret > 0 && *ppos == sizeof(KLP_SLEEPER_PAYLOAD) - 1)
		atomic_inc(&b->reads_done);
	return ret;
}

static const struct file_operations blocker_fops = {
	.owner = THIS_MODULE,
	.read = blocker_read,
};

/* Kthreads: block once in klp_sleeper_block(), then idle elsewhere. */
static int sleeper_thread(void *data)
{
	struct klp_sleeper_blocker *b = data;

	while (!kthread_should_stop() && !READ_ONCE(b->released)) {
		klp_sleeper_block(b);
		if (b->state == TASK_INTERRUPTIBLE && !b->loop)
			break;	/* woken: leave the function and sleep below */
	}
	while (!kthread_should_stop()) {
		set_current_state(TASK_INTERRUPTIBLE);
		if (!kthread_should_stop())
			schedule();
		__set_current_state(TASK_RUNNING);
	}
	return 0;
}

static void release(struct klp_sleeper_blocker *b)
{
	WRITE_ONCE(b->released, true);
	wake_up_all(&b->wq);
}

static struct klp_sleeper_blocker *find_blocker(const char *name)
{
	int i;

	for (i = 0; i < NR_BLOCKERS; i++)
		if (!strcmp(blockers[i].name, name))
			return &blockers[i];
	return NULL;
}

static ssize_t control_write(struct file *file, const char __user *ubuf, size_t count, loff_t *ppos)
{
	char cmd[64], *arg;
	struct klp_sleeper_blocker *b;

	if (count >= sizeof(cmd))
		return -EINVAL;
	if (copy_from_user(cmd, ubuf, count))
		return -EFAULT;
	cmd[count] = '\0';
	strim(cmd);
	arg = strchr(cmd, ' ');
	if (arg)
		*arg++ = '\0';

	if (!strcmp(cmd, "probe")) {
		klp_sleeper_block(&blockers[PROBE]);
		return count;
	}
	b = arg ? find_blocker(arg) : NULL;
	if (!b)
		return -EINVAL;
	if (!strcmp(cmd, "release")) {
		release(b);
		return count;
	}
	if (!strcmp(cmd, "start") && (b == &blockers[KTHREAD_INT] || b == &blockers[KTHREAD_IDLE] ||
				      b == &blockers[KTHREAD_LOOP])) {
		struct task_struct *t;

		if (b->kthread)
			return -EBUSY;
		t = kthread_run(sleeper_thread, b, "klp_sleeper/%s", b->name);
		if (IS_ERR(t))
			return PTR_ERR(t);
		b->kthread = t;
		b->pid = t->pid;
		return count;
	}
	return -EINVAL;
}

static const struct file_operations control_fops = {
	.owner = THIS_MODULE,
	.write = control_write,
};

static int status_show(struct seq_file *m, void *v)
{
	int i;

	for (i = 0; i < NR_BLOCKERS; i++) {
		struct klp_sleeper_blocker *b = &blockers[i];

		seq_printf(m, "%s sleeping=%d calls_old=%d calls_new=%d calls_repl=%d interrupted=%d wakeups=%d reads_done=%d released=%d pid=%d\n",
			   b->name, atomic_read(&b->sleeping), atomic_read(&b->calls_old),
			   atomic_read(&b->calls_new), atomic_read(&b->calls_repl),
			   atomic_read(&b->interrupted), atomic_read(&b->wakeups),
			   atomic_read(&b->reads_done), READ_ONCE(b->released), b->pid);
	}
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(status);

static int __init klp_sleeper_init(void)
{
	int i;

	for (i = 0; i < NR_BLOCKERS; i++)
		init_waitqueue_head(&blockers[i].wq);
	dir = debugfs_create_dir("klp_sleeper", NULL);
	debugfs_create_file("control", 0200, dir, NULL, &control_fops);
	debugfs_create_file("status", 0444, dir, NULL, &status_fops);
	debugfs_create_file("user-int", 0444, dir, &blockers[USER_INT], &blocker_fops);
	debugfs_create_file("user-idle", 0444, dir, &blockers[USER_IDLE], &blocker_fops);
	debugfs_create_file("user-killable", 0444, dir, &blockers[USER_KILLABLE], &blocker_fops);
	return 0;
}

static void __exit klp_sleeper_exit(void)
{
	int i;

	debugfs_remove_recursive(dir);
	for (i = 0; i < NR_BLOCKERS; i++) {
		release(&blockers[i]);
		if (blockers[i].kthread)
			kthread_stop(blockers[i].kthread);
	}
}

module_init(klp_sleeper_init);
module_exit(klp_sleeper_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Tasks that sleep in one function, to make livepatch transitions stick");
