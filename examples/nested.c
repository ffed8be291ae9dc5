/* A GCC nested function whose address is taken: GCC builds a trampoline on
 * the stack, so the linker marks the stack executable (PT_GNU_STACK RWX).
 *   gcc -o nested examples/nested.c && trampwatch run -- ./nested        */
#include <stdio.h>

static int apply(int (*fn)(int), int value) { return fn(value); }

int main(void)
{
    int offset = 40;
    int add(int x) { return x + offset; }
    printf("nested function returned %d\n", apply(add, 2));
    return 0;
}
