/*
 * execstack: built with -z execstack, so PT_GNU_STACK asks for an executable
 * stack and the kernel grants it at exec -- no syscall asks. The program then
 * runs code it put in a stack buffer, if the stack really is executable.
 */
#include "common.h"

int main(void)
{
	unsigned char buf[32] __attribute__((aligned(16)));
	int exec;

	tw_init();
	exec = tw_show_map("stack", buf);
	if (exec == 1) {
		tw_put_code(buf);
		tw_run("stack_call", buf);
	}
	return tw_done();
}
