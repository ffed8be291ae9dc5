/* Benign control: eight threads doing read+write mmap/munmap, then fork+exec /bin/true. */
#include "common.h"

#include <pthread.h>

#define THREADS 8

static void *worker(void *arg)
{
	int id = (int)(intptr_t)arg;
	size_t pg = tw_page();
	char label[32];
	char *p;

	snprintf(label, sizeof(label), "t%d_mmap", id);
	p = tw_mmap(label, NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED) {
		memset(p, id, pg);
		snprintf(label, sizeof(label), "t%d_munmap", id);
		tw_munmap(label, p, pg);
	}
	return NULL;
}

int main(void)
{
	pthread_t threads[THREADS];
	pid_t pid;
	int i;

	tw_init();
	for (i = 0; i < THREADS; i++) {
		int rc = pthread_create(&threads[i], NULL, worker, (void *)(intptr_t)i);

		if (rc != 0) {
			tw_step("thread_create", "clone", -1, rc);
			return 1;
		}
	}
	for (i = 0; i < THREADS; i++)
		pthread_join(threads[i], NULL);

	pid = fork();
	if (pid == 0) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	tw_step("true_fork", "fork", pid, errno);
	if (pid > 0)
		tw_wait_child("true_child", pid);
	return tw_done();
}
