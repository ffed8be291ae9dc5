/*
 * An i386 program's threads (issue 10, route 6): glibc's pthread_create in a
 * `gcc -m32` program makes them with i386 clone3/clone. The thread writes
 * code into a page and makes it read+execute; so does the main thread with a
 * page the thread wrote. READY prints the process id, which every event of
 * either thread must carry (one process, one address space).
 */
#include "common.h"

#include <pthread.h>

static unsigned char *thread_page;

static void *writer(void *arg)
{
	size_t pg = tw_page();
	unsigned char *own;

	(void)arg;
	own = tw_mmap("thread_rw_mmap", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (own != MAP_FAILED) {
		tw_put_code(own);
		if (tw_mprotect("thread_rx_mprotect", own, pg, TW_RX) == 0)
			tw_run("thread_call", own);
	}
	thread_page = tw_mmap("shared_rw_mmap", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (thread_page != MAP_FAILED)
		tw_put_code(thread_page);
	return NULL;
}

int main(void)
{
	pthread_t thread;

	tw_init();
	tw_emit("READY %d", (int)getpid());
	if (pthread_create(&thread, NULL, writer, NULL) != 0)
		return 1;
	pthread_join(thread, NULL);
	if (thread_page != MAP_FAILED && tw_mprotect("main_rx_mprotect", thread_page, tw_page(), TW_RX) == 0)
		tw_run("main_call", thread_page);
	return tw_done();
}
