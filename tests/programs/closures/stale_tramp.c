/* A trampoline that changes under the emulator: the same address runs
 * first one target, then (rewritten) another; its page loses exec
 * (mprotect RW), gets it back, is unmapped and mapped again RW (same
 * bytes), then RWX; another process sharing the address space (clone with
 * CLONE_VM) unmaps it and maps it RW with the same bytes; finally the
 * program execs itself (built -no-pie: the
 * same function addresses, so the same bytes) and writes the trampoline
 * into an RW page at the same address. Native execution is the oracle:
 * where the page is not executable the call faults (SEGV, caught), where it
 * is, it runs whatever the bytes say now. x86-64 GCC-style trampoline:
 * movabs $fn,%r11; movabs $chain,%r10; jmp *%r11. Prints lines and DONE. */
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
static long __attribute__((noinline)) two(long x) { return x * 2; }

static void write_tramp(unsigned char *at, long (*fn)(long))
{
    uint64_t target = (uint64_t)(uintptr_t)fn, chain = 0x1234;
    at[0] = 0x49, at[1] = 0xbb;
    memcpy(at + 2, &target, 8);
    at[10] = 0x49, at[11] = 0xba;
    memcpy(at + 12, &chain, 8);
    at[20] = 0x49, at[21] = 0xff, at[22] = 0xe3;
}

static void calls(const char *label, unsigned char *at, int n)
{
    volatile long total = 0;
    if (sigsetjmp(back, 1)) {
        printf("%s SEGV\n", label);
        return;
    }
    for (int i = 0; i < n; i++)
        total += ((long (*)(long))at)(i);
    printf("%s %ld\n", label, (long)total);
}

static unsigned char *map_at(int prot)
{
    unsigned char *page = mmap(PAGE_AT, PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (page != PAGE_AT) {
        printf("mmap failed\n");
        _exit(1);
    }
    return page;
}

static char child_stack[1 << 16] __attribute__((aligned(16)));

/* Run in a process sharing the caller's address space. */
static int unmap_and_remap(void *arg)
{
    munmap(arg, PAGE);
    write_tramp(map_at(PROT_READ | PROT_WRITE), one);
    return 0;
}

int main(int argc, char **argv)
{
    struct sigaction sa = {.sa_handler = on_segv};
    sigaction(SIGSEGV, &sa, NULL);
    if (argc > 1 && !strcmp(argv[1], "after-exec")) {
        unsigned char *page = map_at(PROT_READ | PROT_WRITE);
        write_tramp(page, one);
        calls("after-exec", page, 10);
        printf("DONE\n");
        return 0;
    }
    unsigned char *page = map_at(PROT_READ | PROT_WRITE | PROT_EXEC);
    write_tramp(page, one);
    calls("one", page, 1000);
    write_tramp(page, two);
    calls("rewritten", page, 1000);
    mprotect(page, PAGE, PROT_READ | PROT_WRITE);
    calls("not-exec", page, 10);
    mprotect(page, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC);
    calls("exec-again", page, 1000);
    munmap(page, PAGE);
    page = map_at(PROT_READ | PROT_WRITE);
    write_tramp(page, two);
    calls("remapped-rw", page, 10);
    munmap(page, PAGE);
    page = map_at(PROT_READ | PROT_WRITE | PROT_EXEC);
    write_tramp(page, one);
    calls("remapped-rwx", page, 1000);
    pid_t sharer = clone(unmap_and_remap, child_stack + sizeof(child_stack), CLONE_VM | SIGCHLD, page);
    if (sharer < 0 || waitpid(sharer, NULL, 0) != sharer) {
        printf("clone failed\n");
        return 1;
    }
    calls("remapped-by-vm-sharer", page, 10);
    fflush(stdout);
    execl("/proc/self/exe", argv[0], "after-exec", (char *)NULL);
    printf("exec failed\n");
    return 1;
}
