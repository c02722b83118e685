/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The entry point of the guest's freestanding programs (no libc, static):
 * KLP_START(fn) defines _start, which calls fn(argc, argv) on an aligned
 * stack; fn never returns (it ends with exit_group).
 */
#ifndef KLP_START_H
#define KLP_START_H

#if defined(__x86_64__)
#define KLP_START(fn)                   \
	asm(".globl _start\n"           \
	    "_start:\n"                 \
	    "	xor %rbp, %rbp\n"       \
	    "	mov (%rsp), %rdi\n"     \
	    "	lea 8(%rsp), %rsi\n"    \
	    "	and $-16, %rsp\n"       \
	    "	call " #fn "\n"         \
	    "	hlt\n")
#elif defined(__powerpc64__)
/* A static executable gets no TOC pointer: found from our own address. */
#define KLP_START(fn)                            \
	asm(".globl _start\n"                    \
	    "_start:\n"                          \
	    "	bl 0f\n"                         \
	    "0:	mflr 12\n"                       \
	    "	addi 12, 12, -4\n"               \
	    "	addis 2, 12, .TOC.-_start@ha\n"  \
	    "	addi 2, 2, .TOC.-_start@l\n"     \
	    "	ld 3, 0(1)\n"                    \
	    "	addi 4, 1, 8\n"                  \
	    "	li 0, 0\n"                       \
	    "	stdu 1, -128(1)\n"               \
	    "	bl " #fn "\n"                    \
	    "	nop\n")
#else
#error "start.h: x86_64 and ppc64le only"
#endif

#endif
