// SPDX-License-Identifier: GPL-2.0
/*
 * klp_sleeper_lp_replace: an atomic-replace livepatch (.replace = true) of
 * klp_sleeper_block(). Loaded over klp_sleeper_lp, its transition waits for
 * the tasks sleeping in klp_sleeper_lp's version; once done, klp_sleeper_lp
 * is disabled and freed. Its version counts itself in calls_repl.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/livepatch.h>
#include <linux/module.h>
#include "klp_sleeper.h"

static noinline int replace_klp_sleeper_block(struct klp_sleeper_blocker *b)
{
	atomic_inc(&b->calls_repl);
	return klp_sleeper_sleep(b);
}

static struct klp_func funcs[] = {
	{ .old_name = "klp_sleeper_block", .new_func = replace_klp_sleeper_block },
	{ }
};

static struct klp_object objs[] = {
	{ .name = "klp_sleeper", .funcs = funcs },
	{ }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
	.replace = true,
};

static int __init klp_sleeper_lp_replace_init(void)
{
	return klp_enable_patch(&patch);
}

/* Nothing to undo; without an exit function the module could never be removed. */
static void __exit klp_sleeper_lp_replace_exit(void)
{
}

module_init(klp_sleeper_lp_replace_init);
module_exit(klp_sleeper_lp_replace_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("Atomic-replace livepatch for klp_sleeper_block()");
