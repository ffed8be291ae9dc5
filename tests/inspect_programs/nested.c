/*
 * A GCC nested function whose address is taken: GCC writes a trampoline into
 * main's stack frame (so the stack must be executable) and the call goes
 * through it. The nested function pauses (reading stdin) while the
 * trampoline is live.
 *
 * Prints: ADDR trampoline|chain_var 0x..., READY (from inside the nested call).
 */
#include "common.h"

static int __attribute__((noinline)) call_through(int (*fn)(int), int x)
{
	return fn(x);
}

int main(void)
{
	int bias = 41;
	unsigned long tramp = 0;

	int tw_nested(int x)
	{
		char c;

		tw_emit("ADDR trampoline %#lx", tramp);
		tw_emit("ADDR chain_var %#lx", (unsigned long)(uintptr_t)&bias);
		tw_emit("READY");
		if (read(STDIN_FILENO, &c, 1) < 0)
			return -1;
		return x + bias;
	}

	tw_init();
	tramp = (unsigned long)(uintptr_t)tw_nested;
	return call_through(tw_nested, 1) == 42 ? 0 : 1;
}
