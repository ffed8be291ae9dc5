/* Load: T threads, each doing N mprotect flips of its own page. Prints COUNT of all calls made. */
#include "common.h"

#include <pthread.h>

struct job {
	char *page;
	long flips;
	long made;
	int first_errno;
};

static void *flipper(void *arg)
{
	struct job *job = arg;
	size_t pg = tw_page();
	long i;

	for (i = 0; i < job->flips; i++) {
		if (mprotect(job->page, pg, (i & 1) ? TW_RW : PROT_READ) < 0 && !job->first_errno)
			job->first_errno = errno;
		job->made++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	long threads = tw_count_arg(argc, argv, 1, "THREADS N");
	long flips = tw_count_arg(argc, argv, 2, "THREADS N");
	size_t pg = tw_page();
	pthread_t *ids;
	struct job *jobs;
	long i, total = 0;
	char *area;

	tw_init();
	if (threads < 1) {
		fprintf(stderr, "%s: THREADS must be at least 1\n", argv[0]);
		return 2;
	}
	ids = calloc((size_t)threads, sizeof(*ids));
	jobs = calloc((size_t)threads, sizeof(*jobs));
	if (!ids || !jobs)
		return 1;
	area = tw_mmap("flood_mmap", NULL, pg * (size_t)threads, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (area == MAP_FAILED)
		return 1;
	for (i = 0; i < threads; i++) {
		int rc;

		jobs[i].page = area + (size_t)i * pg;
		jobs[i].flips = flips;
		rc = pthread_create(&ids[i], NULL, flipper, &jobs[i]);
		if (rc != 0) {
			tw_step("thread_create", "clone", -1, rc);
			return 1;
		}
	}
	for (i = 0; i < threads; i++) {
		pthread_join(ids[i], NULL);
		total += jobs[i].made;
		if (jobs[i].first_errno) {
			char label[48];

			snprintf(label, sizeof(label), "t%ld_flood_mprotect", i);
			tw_step(label, "mprotect", -1, jobs[i].first_errno);
		}
	}
	tw_emit("COUNT %ld", total);
	tw_munmap("flood_munmap", area, pg * (size_t)threads);
	free(ids);
	free(jobs);
	return tw_done();
}
