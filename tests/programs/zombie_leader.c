/*
 * zombie_leader: the main thread exits (pthread_exit) while a second
 * thread lives on, waiting for a line on stdin (EOF counts) before the
 * process ends. Says READY with its pid first.
 */
#include "common.h"

#include <pthread.h>

static void *second(void *unused)
{
	char line[64];

	(void)unused;
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	tw_done();
	return NULL;
}

int main(void)
{
	pthread_t thread;

	tw_init();
	if (pthread_create(&thread, NULL, second, NULL) != 0)
		return 1;
	tw_emit("READY %d", (int)getpid());
	pthread_exit(NULL);
}
