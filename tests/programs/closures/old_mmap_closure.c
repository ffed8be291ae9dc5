/* A 32-bit libffi closure on memory from i386's old mmap (int $0x80, number
 * 90: its arguments in a block in memory), asked writable and executable:
 * the closure's trampoline is written there and called, 1000 times, from
 * the main thread while a second thread keeps rewriting a copy of the block
 * between RW and RWX (the old mmap of RW memory it makes each round is
 * freed again). Prints VAL lines and DONE. Build -m32. */
#include <ffi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>

#define OLD_MMAP 90
#define MUNMAP 91

struct old_mmap_args {
    uint32_t addr, len, prot, flags, fd, offset;
};

static long int80(long nr, long a, long b)
{
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b) : "memory", "cc");
    return ret;
}

static void handler(ffi_cif *cif, void *ret, void **args, void *data)
{
    (void)cif;
    *(ffi_arg *)ret = *(int *)args[0] * 2 + *(int *)data;
}

static struct old_mmap_args flipping = {0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                                        (uint32_t)-1, 0};
static atomic_int stop;

static void *flipper(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop))
        flipping.prot ^= PROT_EXEC;
    return NULL;
}

int main(void)
{
    struct old_mmap_args args = {0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS,
                                 (uint32_t)-1, 0};
    long page = int80(OLD_MMAP, (long)&args, 0);
    if (page < 0 && page > -4096) {
        printf("VAL old_mmap failed %ld\n", page);
        return 1;
    }
    ffi_cif cif;
    ffi_type *types[] = { &ffi_type_sint };
    int offset = 7;
    ffi_closure *closure = (ffi_closure *)(uintptr_t)page;
    if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 1, &ffi_type_sint, types) != FFI_OK
        || ffi_prep_closure_loc(closure, &cif, handler, &offset, closure) != FFI_OK) {
        printf("VAL prep failed\n");
        return 1;
    }
    int (*fn)(int) = (int (*)(int))(uintptr_t)page;
    pthread_t thread;
    pthread_create(&thread, NULL, flipper, NULL);
    long total = 0, racing = 0;
    for (int i = 0; i < 1000; i++) {
        total += fn(i);
        long other = int80(OLD_MMAP, (long)&flipping, 0);
        if (!(other < 0 && other > -4096)) {
            racing++;
            int80(MUNMAP, other, 4096);
        }
    }
    atomic_store(&stop, 1);
    pthread_join(thread, NULL);
    printf("VAL total %ld\n", total);
    printf("VAL mapped %ld\n", racing);
    printf("DONE\n");
    return 0;
}
