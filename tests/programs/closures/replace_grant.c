/* Granted memory replaced by calls other than munmap, mmap and mremap: a
 * GCC-style trampoline runs 1000 times from a page mapped RWX (granted by
 * emulate mode, which maps it RW); then a System V shared memory segment
 * holding the same bytes is attached read-only over it (shmat SHM_REMAP).
 * Then the heap's top page is made RWX, runs the trampoline 1000 times,
 * and is given back with brk and taken again: fresh read-write memory,
 * never asked executable, where the same bytes are written. Natively a call
 * into either faults (SEGV, caught). Prints lines and DONE. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
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

static void calls(const char *label, void *at, int n)
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

int main(void)
{
    struct sigaction sa = {.sa_handler = on_segv};
    sigaction(SIGSEGV, &sa, NULL);
    unsigned char *page = mmap(PAGE_AT, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (page != PAGE_AT)
        return 1;
    write_tramp(page);
    calls("granted", page, 1000);
    int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    unsigned char *shm = id < 0 ? NULL : shmat(id, NULL, 0);
    if (shm == NULL || shm == (void *)-1)
        return 1;
    write_tramp(shm);
    shmdt(shm);
    if (shmat(id, PAGE_AT, SHM_REMAP | SHM_RDONLY) != PAGE_AT)
        return 1;
    shmctl(id, IPC_RMID, NULL);
    calls("shm-over-grant", page, 10);

    char *top = sbrk(0);
    char *heap = (char *)(((uintptr_t)top + 2 * PAGE) & ~(uintptr_t)(PAGE - 1));
    if (brk(heap + PAGE) != 0 || mprotect(heap, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC) != 0)
        return 1;
    write_tramp((unsigned char *)heap);
    calls("heap-granted", heap, 1000);
    if (brk(heap) != 0 || brk(heap + PAGE) != 0)
        return 1;
    write_tramp((unsigned char *)heap);
    calls("heap-again", heap, 10);
    printf("DONE\n");
    return 0;
}
