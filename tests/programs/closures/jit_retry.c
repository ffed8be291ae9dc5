/* A tiny JIT that makes its code executable lazily: it writes code into a
 * read-write page and calls it; its SIGSEGV handler makes the page
 * writable and executable, and the call is retried. Prints VAL and DONE. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static unsigned char *page;

static void on_segv(int sig)
{
    (void)sig;
    if (mprotect(page, 4096, PROT_READ | PROT_WRITE | PROT_EXEC) != 0)
        _exit(3);
}

int main(void)
{
    page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED)
        return 1;
    memcpy(page, "\xb8\x2a\x00\x00\x00\xc3", 6); /* mov $42,%eax; ret */
    signal(SIGSEGV, on_segv);
    printf("VAL jit %d\n", ((int (*)(void))page)());
    printf("DONE\n");
    return 0;
}
