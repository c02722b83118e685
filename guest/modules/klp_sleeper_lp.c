// SPDX-License-Identifier: GPL-2.0
/*
 * klp_sleeper_lp: a livepatch replacing klp_sleeper_block() in the
 * klp_sleeper module. The new version counts itself in calls_new, which is
 * how the harness tells old code from new after a transition.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/sched/signal.h>
#include <linux/version.h>
#include "klp_sleeper.h"

static noinline int livepatch_klp_sleeper_block(struct klp_sleeper_blocker *b)
{
	atomic_inc(&b->calls_new);
	return klp_sleeper_sleep(b);
}

static struct klp_func funcs[] = {
	{ .old_name = "klp_sleeper_block", .new_func = livepatch_klp_sleeper_block },
	{ }
};

static struct klp_object objs[] = {
	{ .name = "klp_sleeper", .funcs = funcs },
	{ }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int __init klp_sleeper_lp_init(void)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 1, 0)
	return klp_enable_patch(&patch);
#else
	int ret = klp_register_patch(&patch);

	if (ret)
		return ret;
	ret = klp_enable_patch(&patch);
	if (ret)
		klp_unregister_patch(&patch);
	return ret;
#endif
}

static void __exit klp_sleeper_lp_exit(void)
{
#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 1, 0)
	klp_unregister_patch(&patch);
#endif
}

module_init(klp_sleeper_lp_init);
module_exit(klp_sleeper_lp_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("Livepatch for klp_sleeper_block()");
