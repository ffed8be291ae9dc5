/*
 * interp0_victim: a program whose PT_INTERP names /tmp/tw_interp0/ld, a
 * file attack_fuse_exec (with a VICTIM) serves from a FUSE mount it makes there; it is
 * built before any run (clean), and never runs itself: the interpreter
 * runs first and ends the process.
 */
#include "common.h"

int main(void)
{
	tw_init();
	tw_emit("RAN victim_main");
	return 0;
}
