/* Memory moved over a granted trampoline by mremap(MREMAP_FIXED): the page
 * at PAGE_AT is mapped RWX (granted by emulate mode, which maps it RW) and
 * runs a GCC-style trampoline 1000 times; then a page elsewhere, holding
 * the very same bytes but mapped read-only (never asked executable), is
 * moved onto PAGE_AT with mremap(MREMAP_MAYMOVE | MREMAP_FIXED). Natively
 * a call there faults (SEGV, caught): the page is not executable. The same
 * again with the moved page read-write, and then with the move made by
 * another process sharing the address space (clone CLONE_VM, no
 * CLONE_THREAD). Prints lines and DONE. */
#define _GNU_SOURCE
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE_AT ((void *)0x10000000)
#define PAGE 4096

static sigjmp_buf back;

static void on_segv(int sig)
{
    (void)sig;
    siglongjmp(back, 1);
}

static long __attribute__((noinline)) one(long x) { return x + 1; }

static void write_tramp(unsigned char *at)
{
    uint64_t target = (uint64_t)(uintptr_t)one, chain = 0x1234;
    at[0] = 0x49, at[1] = 0xbb;
    memcpy(at + 2, &target, 8);
    at[10] = 0x49, at[11] = 0xba;
    memcpy(at + 12, &chain, 8);
    at[20] = 0x49, at[21] = 0xff, at[22] = 0xe3;
}

static void calls(const char *label, int n)
{
    volatile long total = 0;
    if (sigsetjmp(back, 1)) {
        printf("%s SEGV\n", label);
        return;
    }
    for (int i = 0; i < n; i++)
        total += ((long (*)(long))PAGE_AT)(i);
    printf("%s %ld\n", label, (long)total);
}

/* A page elsewhere with the trampoline's bytes, left with `prot`. */
static void *elsewhere(int prot)
{
    unsigned char *page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
        printf("mmap failed\n");
        _exit(1);
    }
    write_tramp(page);
    mprotect(page, PAGE, prot);
    return page;
}

static void move_onto_grant(void *from)
{
    if (mremap(from, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, PAGE_AT) != PAGE_AT) {
        printf("mremap failed\n");
        _exit(1);
    }
}

static int move_in_sharer(void *from)
{
    move_onto_grant(from);
    return 0;
}

static char child_stack[1 << 16] __attribute__((aligned(16)));

static void grant(void)
{
    unsigned char *page = mmap(PAGE_AT, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (page != PAGE_AT) {
        printf("mmap failed\n");
        _exit(1);
    }
    write_tramp(page);
    calls("granted", 1000);
}

int main(void)
{
    struct sigaction sa = {.sa_handler = on_segv};
    sigaction(SIGSEGV, &sa, NULL);
    grant();
    move_onto_grant(elsewhere(PROT_READ));
    calls("moved-read-only", 10);
    grant();
    move_onto_grant(elsewhere(PROT_READ | PROT_WRITE));
    calls("moved-read-write", 10);
    grant();
    pid_t sharer = clone(move_in_sharer, child_stack + sizeof(child_stack), CLONE_VM | SIGCHLD,
                         elsewhere(PROT_READ));
    if (sharer < 0 || waitpid(sharer, NULL, 0) != sharer) {
        printf("clone failed\n");
        return 1;
    }
    calls("moved-by-vm-sharer", 10);
    printf("DONE\n");
    return 0;
}
