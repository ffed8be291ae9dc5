/*
 * Threads: one thread blocks in read() on a pipe while a second thread makes
 * and runs a read+write+execute mapping; then the main thread unblocks the
 * reader. A tracer must handle the second thread's stop while the first
 * sits in a syscall.
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

static int pipe_fds[2];
static atomic_int reader_tid;

static void *reader(void *arg)
{
	char byte;
	ssize_t n;

	(void)arg;
	atomic_store(&reader_tid, gettid());
	n = read(pipe_fds[0], &byte, 1);
	tw_step("reader_read", "read", n, errno);
	return NULL;
}

static void *wx_thread(void *arg)
{
	size_t pg = tw_page();
	void *p;

	(void)arg;
	p = tw_mmap("wx_mmap", NULL, pg, TW_RWX, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED) {
		tw_put_code(p);
		tw_run("wx_call", p);
		tw_munmap("wx_munmap", p, pg);
	}
	return NULL;
}

/* True once the reader thread sits in read(2) (syscall 0 in its /proc syscall file). */
static int reader_blocked(void)
{
	char path[64], buf[64] = {0};
	ssize_t n;
	int fd, tid = atomic_load(&reader_tid);

	if (tid == 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 2 && buf[0] == '0' && buf[1] == ' ';
}

int main(void)
{
	const struct timespec tick = {0, 1000000};
	pthread_t rd, wx;
	int rc, waited;

	tw_init();
	rc = pipe2(pipe_fds, O_CLOEXEC);
	tw_step("pipe", "pipe2", rc, errno);
	if (rc < 0)
		return 1;
	if (pthread_create(&rd, NULL, reader, NULL) != 0)
		return 1;
	/* The program, not the test, waits: up to 10 s for the reader to block. */
	for (waited = 0; waited < 10000 && !reader_blocked(); waited++)
		nanosleep(&tick, NULL);
	tw_step("reader_blocked", "read", reader_blocked() ? 0 : -1, ETIMEDOUT);
	if (pthread_create(&wx, NULL, wx_thread, NULL) != 0)
		return 1;
	pthread_join(wx, NULL);
	rc = (int)write(pipe_fds[1], "x", 1);
	tw_step("pipe_write", "write", rc, errno);
	pthread_join(rd, NULL);
	return tw_done();
}
