/* GCC nested functions whose address is taken: the trampoline lives on the
 * (executable) stack. Called from the main thread, a second thread and
 * recursively (a trampoline per frame). Prints VAL lines and DONE. */
#include <pthread.h>
#include <stdio.h>

static int __attribute__((noinline)) apply(int (*f)(int), int x) { return f(x); }

static long recursive(int depth)
{
    int add(int v) { return v + depth; }
    if (depth == 0)
        return apply(add, 0);
    return apply(add, (int)recursive(depth - 1));
}

static void *second(void *arg)
{
    int base = *(int *)arg;
    int mul(int v) { return v * base; }
    long total = 0;
    for (int i = 0; i < 1000; i++)
        total += apply(mul, i);
    printf("VAL thread %ld\n", total);
    return NULL;
}

int main(void)
{
    int base = 3;
    int add(int v) { return v + base; }
    long total = 0;
    for (int i = 0; i < 1000; i++)
        total += apply(add, i);
    printf("VAL main %ld\n", total);
    printf("VAL recursive %ld\n", recursive(200));
    pthread_t thread;
    int factor = 7;
    if (pthread_create(&thread, NULL, second, &factor) != 0 || pthread_join(thread, NULL) != 0) {
        printf("VAL thread failed\n");
        return 1;
    }
    printf("DONE\n");
    return 0;
}
