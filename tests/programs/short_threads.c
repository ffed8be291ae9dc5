/* Benign control: 300 threads that end at once, each joined before the next
 * starts (the thread may be gone before its creator's clone3 returns). */
#include "common.h"

#include <pthread.h>

static void *nothing(void *arg)
{
	return arg;
}

int main(void)
{
	pthread_t thread;
	int made = 0;

	tw_init();
	for (int i = 0; i < 300; i++)
		if (pthread_create(&thread, NULL, nothing, NULL) == 0 && pthread_join(thread, NULL) == 0)
			made++;
	tw_emit("COUNT %d", made);
	return tw_done();
}
