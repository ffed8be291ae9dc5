/*
 * attack_attach_thread_table: a descriptor held in a thread's own table,
 * out of the leader's sight at the seize.
 *
 * A second thread unshares its descriptor table (CLONE_FILES) and opens
 * /proc/self/mem O_RDWR there: the descriptor is in its own table only, not
 * in /proc/PID/fd (the leader's). It maps its own program file private
 * R-X, prints READY <pid> and waits for a line on stdin (a tracer
 * attaches); then it pwrites the code over that page through the mem
 * descriptor and calls it: no memory call at all.
 */
#include "common.h"

#include <pthread.h>
#include <sched.h>

static int exe;

static void *second(void *arg)
{
	size_t pg = tw_page();
	unsigned char *page;
	char line[64];
	ssize_t n;
	int fd, rc;

	(void)arg;
	rc = unshare(CLONE_FILES);
	tw_step("unshare", "unshare", rc, errno);
	fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	tw_step("open_mem", "open", fd, errno);
	page = tw_mmap("file_map", NULL, pg, TW_RX, MAP_PRIVATE, exe, 0);
	if (fd < 0 || page == MAP_FAILED)
		exit(tw_done());
	tw_emit("READY %d", (int)getpid());
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	n = pwrite(fd, TW_CODE, sizeof(TW_CODE), (off_t)(uintptr_t)page);
	tw_step("mem_write", "pwrite", n, errno);
	if (n == (ssize_t)sizeof(TW_CODE))
		tw_run("mem_call", page);
	return NULL;
}

int main(void)
{
	pthread_t t;

	tw_init();
	exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	pthread_create(&t, NULL, second, NULL);
	pthread_join(t, NULL);
	return tw_done();
}
