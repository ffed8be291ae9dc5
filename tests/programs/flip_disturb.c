/* Load: repeated flips (a JIT's) with, between them, what the shadow model
 * must notice and a replay of remembered judgements might miss. N rounds;
 * page a (written once) goes R -> RX -> R -> RW; page c (never writable)
 * goes R -> RX -> R, then R again (no change). Between flips: every 7th round a write to c through
 * /proc/self/mem (FOLL_FORCE: it lands on a read-only page), every 8th a
 * process_vm_writev to a, every 9th a fork whose child flips c and exits,
 * every 10th another read+write page moved onto b (a's neighbour) by
 * mremap(MREMAP_FIXED), every 17th that same R -> R call on c made
 * under personality(READ_IMPLIES_EXEC) (the kernel makes it R -> RX),
 * and every 13th that call made while another thread (gone by then) set
 * READ_IMPLIES_EXEC for itself (the kernel's persona is per thread). Prints COUNT of rounds made; the first
 * failed call as a STEP. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <pthread.h>
#include <sys/personality.h>
#include <sys/uio.h>
#include <sys/wait.h>

static int failed;

static void *persona_thread(void *arg)
{
	personality((unsigned long)(uintptr_t)arg);
	return NULL;
}

/* personality() made by another thread (the kernel's persona is per thread). */
static void set_persona(unsigned long persona)
{
	pthread_t thread;
	if (pthread_create(&thread, NULL, persona_thread, (void *)(uintptr_t)persona) != 0 ||
	    pthread_join(thread, NULL) != 0)
		_exit(1);
}

static void protect(void *p, size_t len, int prot)
{
	if (mprotect(p, len, prot) < 0 && !failed) {
		failed = 1;
		tw_step("disturb_mprotect", "mprotect", -1, errno);
	}
}

int main(int argc, char **argv)
{
	long n = tw_count_arg(argc, argv, 1, "N");
	size_t pg = tw_page();
	char *a, *b, *c;
	long i;
	int mem = open("/proc/self/mem", O_RDWR);

	tw_init();
	a = tw_mmap("disturb_mmap", NULL, 4 * pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || mem < 0)
		return 1;
	b = a + pg;
	c = a + 3 * pg;
	protect(c, pg, PROT_READ);
	tw_put_code(a);
	for (i = 0; i < n; i++) {
		protect(a, pg, PROT_READ);
		protect(a, pg, TW_RX);
		protect(a, pg, PROT_READ);
		protect(a, pg, TW_RW);
		protect(c, pg, TW_RX);
		protect(c, pg, PROT_READ);
		protect(c, pg, PROT_READ);
		if (i % 7 == 3 && pwrite(mem, "\xc3", 1, (off_t)(uintptr_t)c) != 1)
			return 1;
		if (i % 8 == 5) {
			char byte = (char)0xc3;
			struct iovec local = {&byte, 1}, remote = {a + 8, 1};
			if (process_vm_writev(getpid(), &local, 1, &remote, 1, 0) != 1)
				return 1;
		}
		if (i % 9 == 4) {
			pid_t child = fork();
			if (child == 0) {
				protect(c, pg, TW_RX);
				protect(c, pg, PROT_READ);
				_exit(0);
			}
			if (child < 0 || waitpid(child, NULL, 0) != child)
				return 1;
		}
		if (i % 10 == 6) {
			char *other = mmap(NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (other == MAP_FAILED ||
			    mremap(other, pg, pg, MREMAP_MAYMOVE | MREMAP_FIXED, b) != b)
				return 1;
		}
		if (i % 17 == 2) {
			personality(READ_IMPLIES_EXEC);
			protect(c, pg, PROT_READ);
			personality(0);
			protect(c, pg, PROT_READ);
		}
		if (i % 13 == 7) {
			set_persona(READ_IMPLIES_EXEC);
			protect(c, pg, PROT_READ);
			set_persona(0);
		}
	}
	tw_emit("COUNT %ld", n);
	return tw_done();
}
