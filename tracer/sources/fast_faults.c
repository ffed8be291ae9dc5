/* The fast path of emulate mode's faults (tracer/sources/fast_faults.py).
 *
 * tw_wait() stands in for the ptrace source's waitpid(-1, __WALL). A stop
 * that is a SIGSEGV signal-delivery stop of a thread the tracer tracks here,
 * at a PC the emulator remembered for that process, whose bytes (read now
 * through the thread's /proc/TID/mem) are still those the emulator decided
 * on, gets the emulator's decision again: the register writes it chose,
 * PTRACE_SETREGS, and the resume request the tracer would make, with the
 * signal suppressed. Then it waits again. Every other stop, and any failure
 * or mismatch on the way, is returned to the caller as waitpid gave it: the
 * Python tracer stays the authority, this only repeats its pure decisions.
 *
 * No locking: one tracer thread calls everything here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#define TW_CODE_MAX 32
#define TW_WRITES_MAX 8
#define TW_BUCKETS 4096
#define TW_ENTRIES_MAX 65536

struct tw_entry {
    struct tw_entry *next;
    int tgid;
    uint64_t pc;
    uint64_t cs;
    uint32_t len;
    uint8_t code[TW_CODE_MAX];
    uint32_t nwrites;
    uint32_t offsets[TW_WRITES_MAX];
    uint64_t values[TW_WRITES_MAX];
};

struct tw_task {
    struct tw_task *next;
    int tid;
    int tgid;
    long request;
    int mem_fd;
};

static struct tw_entry *entries[TW_BUCKETS];
static struct tw_task *tasks[TW_BUCKETS];
static unsigned long entry_count;
static unsigned long served;

static unsigned bucket_of(int tgid, uint64_t pc)
{
    return (unsigned)((pc >> 3) ^ (pc >> 15) ^ (uint64_t)tgid * 2654435761u) % TW_BUCKETS;
}

static struct tw_entry **entry_slot(int tgid, uint64_t pc)
{
    struct tw_entry **slot = &entries[bucket_of(tgid, pc)];
    while (*slot && ((*slot)->tgid != tgid || (*slot)->pc != pc))
        slot = &(*slot)->next;
    return slot;
}

static struct tw_task **task_slot(int tid)
{
    struct tw_task **slot = &tasks[(unsigned)tid % TW_BUCKETS];
    while (*slot && (*slot)->tid != tid)
        slot = &(*slot)->next;
    return slot;
}

/* Remember the decision for a fault of process tgid at pc: the bytes it was
 * decided on (len <= 32), the code segment, and nwrites (offset into struct
 * user_regs_struct, value) pairs. Returns 0, or -1 when it cannot be kept
 * (the Python path then goes on serving it). */
int tw_remember(int tgid, uint64_t pc, uint64_t cs, const uint8_t *code, uint32_t len, uint32_t nwrites,
                const uint32_t *offsets, const uint64_t *values)
{
    if (len == 0 || len > TW_CODE_MAX || nwrites > TW_WRITES_MAX)
        return -1;
    for (uint32_t i = 0; i < nwrites; i++)
        if (offsets[i] % sizeof(unsigned long) || offsets[i] >= sizeof(struct user_regs_struct))
            return -1;
    struct tw_entry **slot = entry_slot(tgid, pc);
    struct tw_entry *entry = *slot;
    if (entry == NULL) {
        if (entry_count >= TW_ENTRIES_MAX || (entry = calloc(1, sizeof(*entry))) == NULL)
            return -1;
        entry->tgid = tgid;
        entry->pc = pc;
        *slot = entry;
        entry_count++;
    }
    entry->cs = cs;
    entry->len = len;
    memcpy(entry->code, code, len);
    entry->nwrites = nwrites;
    memcpy(entry->offsets, offsets, nwrites * sizeof(*offsets));
    memcpy(entry->values, values, nwrites * sizeof(*values));
    return 0;
}

/* Forget the decisions for process tgid at PCs in [start, end). */
void tw_forget(int tgid, uint64_t start, uint64_t end)
{
    for (unsigned b = 0; b < TW_BUCKETS; b++) {
        struct tw_entry **slot = &entries[b];
        while (*slot) {
            struct tw_entry *entry = *slot;
            if (entry->tgid == tgid && entry->pc >= start && entry->pc < end) {
                *slot = entry->next;
                free(entry);
                entry_count--;
            } else {
                slot = &entry->next;
            }
        }
    }
}

/* Serve thread tid (of process tgid) here, resuming it with `request`
 * (PTRACE_CONT, or PTRACE_SYSCALL for a thread stopped at every call). */
int tw_track(int tid, int tgid, long request)
{
    struct tw_task **slot = task_slot(tid);
    struct tw_task *task = *slot;
    if (task == NULL) {
        if ((task = calloc(1, sizeof(*task))) == NULL)
            return -1;
        task->tid = tid;
        task->mem_fd = -1;
        *slot = task;
    } else if (task->tgid != tgid && task->mem_fd >= 0) {
        close(task->mem_fd);
        task->mem_fd = -1;
    }
    task->tgid = tgid;
    task->request = request;
    return 0;
}

static void drop_task(struct tw_task **slot)
{
    struct tw_task *task = *slot;
    *slot = task->next;
    if (task->mem_fd >= 0)
        close(task->mem_fd);
    free(task);
}

/* Stop serving thread tid (gone, exec'd, or a signal to deliver). */
void tw_untrack(int tid)
{
    struct tw_task **slot = task_slot(tid);
    if (*slot)
        drop_task(slot);
}

/* Process tgid is gone or runs a new program: forget its decisions and threads. */
void tw_forget_process(int tgid)
{
    tw_forget(tgid, 0, UINT64_MAX);
    for (unsigned b = 0; b < TW_BUCKETS; b++) {
        struct tw_task **slot = &tasks[b];
        while (*slot) {
            if ((*slot)->tgid == tgid)
                drop_task(slot);
            else
                slot = &(*slot)->next;
        }
    }
}

/* How many faults were served here since the last tw_reset. */
unsigned long tw_served(void)
{
    return served;
}

/* Forget everything (a new run). */
void tw_reset(void)
{
    for (unsigned b = 0; b < TW_BUCKETS; b++) {
        while (entries[b]) {
            struct tw_entry *entry = entries[b];
            entries[b] = entry->next;
            free(entry);
        }
        while (tasks[b])
            drop_task(&tasks[b]);
    }
    entry_count = 0;
    served = 0;
}

/* Serve one stop if it is a remembered fault; 1 when it was served. */
static int serve(int tid, int status)
{
    if (!WIFSTOPPED(status) || WSTOPSIG(status) != SIGSEGV || status >> 16 != 0)
        return 0;
    struct tw_task *task = *task_slot(tid);
    if (task == NULL)
        return 0;
    struct user_regs_struct regs;
    if (ptrace(PTRACE_GETREGS, tid, NULL, &regs) == -1)
        return 0;
    struct tw_entry *entry = *entry_slot(task->tgid, regs.rip);
    if (entry == NULL || entry->cs != regs.cs)
        return 0;
    if (task->mem_fd < 0) {
        char path[32];
        snprintf(path, sizeof(path), "/proc/%d/mem", tid);
        task->mem_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (task->mem_fd < 0)
            return 0;
    }
    uint8_t code[TW_CODE_MAX];
    if (pread(task->mem_fd, code, entry->len, (off_t)regs.rip) != (ssize_t)entry->len ||
        memcmp(code, entry->code, entry->len) != 0)
        return 0;
    for (uint32_t i = 0; i < entry->nwrites; i++)
        memcpy((char *)&regs + entry->offsets[i], &entry->values[i], sizeof(entry->values[i]));
    if (ptrace(PTRACE_SETREGS, tid, NULL, &regs) == -1)
        return 0;
    /* Failing here means the thread is gone: its end is the next stop. */
    ptrace((enum __ptrace_request)task->request, tid, NULL, NULL);
    served++;
    return 1;
}

/* waitpid(-1, status, __WALL), serving remembered faults on the way.
 * Returns the tid of the first stop not served, or -errno. */
int tw_wait(int *status_out)
{
    for (;;) {
        int status;
        int tid = waitpid(-1, &status, __WALL);
        if (tid < 0)
            return -errno;
        if (!serve(tid, status)) {
            *status_out = status;
            return tid;
        }
    }
}
