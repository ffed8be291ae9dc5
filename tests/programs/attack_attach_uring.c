/*
 * attack_attach_uring sqpoll|registered|nommap|enter: an io_uring made
 * before a tracer attached writes code after it, with no descriptor left.
 *
 * Before READY: /proc/self/mem opened for writing and registered as the
 * ring's fixed file 0, then closed; the ring registered by index
 * (IORING_REGISTER_RING_FDS) and its descriptor closed. `sqpoll`: a kernel
 * thread polls the ring's submissions (IORING_SETUP_SQPOLL): submitting
 * needs no call (one by index wakes the thread if it went to sleep);
 * `registered`: the ring is entered by its index; `nommap`: polled, its
 * rings in two anonymous pages of the program (IORING_SETUP_NO_MMAP, Linux
 * 6.5), so no mapping names the ring either: only its polling thread shows
 * it; `enter`: the same rings, not polled, entered by the ring's index:
 * nothing shows the ring but that call. After a line on stdin (a tracer
 * attaches): one write of the code through fixed file 0 at
 * tw_patch_target, in the program's read+execute text, then a call of it.
 */
#include <linux/io_uring.h>
#include <sys/syscall.h>

#include "common.h"

TW_DEFINE_PATCH_TARGET;

/* Linux 6.5's names, newer than some distributions' headers. */
#define TW_SETUP_NO_MMAP (1U << 14)
#define tw_user_addr resv2

static long uring_register(int fd, unsigned int op, void *arg, unsigned int n)
{
	return syscall(__NR_io_uring_register, fd, op, arg, n);
}

int main(int argc, char **argv)
{
	struct io_uring_params p = {0};
	struct io_uring_rsrc_update ring_index = {.offset = -1U};
	struct io_uring_sqe *sqes;
	unsigned char *sq, *cq;
	unsigned int *tail, *cq_head, *cq_tail;
	struct io_uring_cqe *cqes;
	char line[64];
	int sqpoll, nommap, ring, mem;
	long rc = -1;

	tw_init();
	if (argc != 2 || (strcmp(argv[1], "sqpoll") != 0 && strcmp(argv[1], "registered") != 0 &&
			  strcmp(argv[1], "nommap") != 0 && strcmp(argv[1], "enter") != 0)) {
		fprintf(stderr, "usage: attack_attach_uring sqpoll|registered|nommap|enter\n");
		return 2;
	}
	nommap = strcmp(argv[1], "nommap") == 0 || strcmp(argv[1], "enter") == 0;
	sqpoll = strcmp(argv[1], "nommap") == 0 || strcmp(argv[1], "sqpoll") == 0;
	if (sqpoll) {
		p.flags = IORING_SETUP_SQPOLL;
		p.sq_thread_idle = 30000; /* ms: it stays awake across the attach */
	}
	if (nommap) {
		sq = mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		sqes = mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		p.flags |= TW_SETUP_NO_MMAP;
		p.cq_off.tw_user_addr = (unsigned long)sq;
		p.sq_off.tw_user_addr = (unsigned long)sqes;
	}
	ring = (int)syscall(__NR_io_uring_setup, 4, &p);
	tw_step("setup", "io_uring_setup", ring, errno);
	mem = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	if (ring < 0 || mem < 0)
		return tw_done();
	if (nommap) {
		cq = sq; /* one region holds both rings */
	} else {
		sq = mmap(NULL, p.sq_off.array + p.sq_entries * sizeof(unsigned int), TW_RW,
			  MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQ_RING);
		cq = mmap(NULL, p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe), TW_RW,
			  MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_CQ_RING);
		sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), TW_RW, MAP_SHARED | MAP_POPULATE,
			    ring, IORING_OFF_SQES);
	}
	if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED)
		return tw_done();
	rc = uring_register(ring, IORING_REGISTER_FILES, &mem, 1);
	tw_step("register_mem", "io_uring_register", rc, errno);
	{
		/* Registered, the ring lives on with its descriptor closed (nommap: no mapping holds it),
		 * and its polling thread can be woken by the ring's index. */
		ring_index.data = (unsigned long long)ring;
		rc = uring_register(ring, IORING_REGISTER_RING_FDS, &ring_index, 1);
		tw_step("register_ring", "io_uring_register", rc == 1 ? 0 : -1, errno);
	}
	close(mem);
	close(ring);
	tw_emit("READY %d", (int)getpid());
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;

	tail = (unsigned int *)(sq + p.sq_off.tail);
	sqes[0] = (struct io_uring_sqe){.opcode = IORING_OP_WRITE, .flags = IOSQE_FIXED_FILE, .fd = 0,
					 .addr = (unsigned long)TW_CODE, .len = sizeof(TW_CODE),
					 .off = (unsigned long)(uintptr_t)tw_patch_target};
	((unsigned int *)(sq + p.sq_off.array))[*tail & *(unsigned int *)(sq + p.sq_off.ring_mask)] = 0;
	__atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
	if (!sqpoll) {
		rc = syscall(__NR_io_uring_enter, ring_index.offset, 1, 1,
			     IORING_ENTER_GETEVENTS | IORING_ENTER_REGISTERED_RING, NULL, 0);
		tw_step("enter", "io_uring_enter", rc, errno);
	} else if (__atomic_load_n((unsigned int *)(sq + p.sq_off.flags), __ATOMIC_ACQUIRE) &
		   IORING_SQ_NEED_WAKEUP) {
		/* The polling thread went to sleep: one call wakes it. */
		rc = syscall(__NR_io_uring_enter, ring_index.offset, 0, 0,
			     IORING_ENTER_SQ_WAKEUP | IORING_ENTER_REGISTERED_RING, NULL, 0);
		tw_step("wake", "io_uring_enter", rc, errno);
	}
	cq_head = (unsigned int *)(cq + p.cq_off.head);
	cq_tail = (unsigned int *)(cq + p.cq_off.tail);
	cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	for (int i = 0; i < 5000 && __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE) == *cq_head; i++)
		usleep(1000);
	if (__atomic_load_n(cq_tail, __ATOMIC_ACQUIRE) != *cq_head)
		tw_step("uring_write", "write", cqes[*cq_head & *(unsigned int *)(cq + p.cq_off.ring_mask)].res, 0);
	if (tw_patch_target() == TW_CODE_RESULT)
		tw_run("uring_call", (const void *)tw_patch_target);
	return tw_done();
}
