/*
 * attack_attach_shared: shared memory written before a tracer attached,
 * read-only when it attaches, made executable after it.
 *
 *   shm_ro        a System V segment attached read-write, code written,
 *                 the attach made read-only (mprotect)
 *   shm_reattach  the same segment detached and attached SHM_RDONLY
 *   shm_older     shm_reattach in a child forked over a second after its
 *                 parent made the segment (older than the process: no
 *                 change time of its own says it is fresh)
 *   shm_detached  shm_older with the segment detached before READY and
 *                 attached SHM_RDONLY only after the line on stdin
 *   file_ro       a file (argv[2], default /tmp/tw_attach_shared) mapped
 *                 shared read-write, code written, mapping made read-only
 * READY, a line on stdin (a tracer attaches), then the view is made R-X
 * and the code called. In the shm_older and shm_detached modes the parent
 * prints nothing, waits for the child (the one READY names) and exits
 * with its status.
 */
#include "common.h"

#include <sys/ipc.h>
#include <sys/shm.h>
#include <time.h>

/* Fork once the wall clock is well into the second after the one the
 * segment was made in; in the parent wait for the child, remove the segment
 * and exit with the child's status; return in the child. */
static void fork_a_second_later(int id)
{
	struct timespec made, now;
	int status = 0;
	pid_t child;

	clock_gettime(CLOCK_REALTIME, &made);
	do {
		usleep(10000);
		clock_gettime(CLOCK_REALTIME, &now);
	} while (now.tv_sec <= made.tv_sec || now.tv_nsec < 100000000);
	child = fork();
	if (child == 0)
		return;
	if (child > 0)
		waitpid(child, &status, 0);
	shmctl(id, IPC_RMID, NULL);
	if (WIFSIGNALED(status))
		raise(WTERMSIG(status));
	exit(child > 0 ? WEXITSTATUS(status) : 1);
}

/* Write the code into a System V segment through a read-write attach and
 * leave the view `mode` says (NULL when detached); the segment's id in *id. */
static unsigned char *shm_written(const char *mode, int *id)
{
	int older = !strcmp(mode, "shm_older") || !strcmp(mode, "shm_detached");
	unsigned char *p;

	*id = shmget(IPC_PRIVATE, tw_page(), IPC_CREAT | 0600);
	tw_step("shmget", "shmget", *id, *id < 0 ? errno : 0);
	if (*id < 0)
		return MAP_FAILED;
	if (older)
		fork_a_second_later(*id);
	p = shmat(*id, NULL, 0);
	tw_step_addr("shmat_rw", "shmat", p, (void *)-1, errno);
	if (p == (void *)-1)
		return MAP_FAILED;
	tw_put_code(p);
	if (!strcmp(mode, "shm_ro")) {
		tw_mprotect("make_ro", p, tw_page(), PROT_READ);
	} else {
		shmdt(p);
		p = NULL;
		if (strcmp(mode, "shm_detached")) {
			p = shmat(*id, NULL, SHM_RDONLY);
			tw_step_addr("shmat_ro", "shmat", p, (void *)-1, errno);
		}
	}
	if (!older)
		shmctl(*id, IPC_RMID, NULL);
	return p == (void *)-1 ? MAP_FAILED : p;
}

/* Write the code into file `path` through a shared read-write mapping made
 * read-only after. */
static unsigned char *file_written(const char *path)
{
	unsigned char *p;
	int fd;

	unlink(path);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)tw_page()) != 0)
		return MAP_FAILED;
	p = tw_mmap("file_map", NULL, tw_page(), TW_RW, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return MAP_FAILED;
	tw_put_code(p);
	tw_mprotect("make_ro", p, tw_page(), PROT_READ);
	return p;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "shm_ro";
	const char *path = argc > 2 ? argv[2] : "/tmp/tw_attach_shared";
	char line[64];
	unsigned char *p;
	int id = -1;

	tw_init();
	p = !strncmp(mode, "shm", 3) ? shm_written(mode, &id) : file_written(path);
	if (p == MAP_FAILED)
		return tw_done();
	tw_emit("READY %d", (int)getpid());
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	if (p == NULL) {
		p = shmat(id, NULL, SHM_RDONLY);
		tw_step_addr("shmat_ro", "shmat", p, (void *)-1, errno);
		if (p == (void *)-1)
			return tw_done();
	}
	if (tw_mprotect("make_rx", p, tw_page(), TW_RX) == 0)
		tw_run("rx_call", p);
	if (id < 0)
		unlink(path);
	tw_wait_if_asked(argc, argv);
	return tw_done();
}
