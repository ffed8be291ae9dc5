/*
 * attach_file_written FILE: code written into a file before a tracer
 * attached, run from a mapping of the file once the tracer is there.
 *
 * Writes the code into FILE (created, a page long) and closes it, maps it
 * private read-only, and maps the first page of /bin/sh read-only too (a
 * clean file, written long before the process started). Says READY with
 * its pid and waits for a line on stdin (a tracer attaches). Then makes
 * the shell's page read+execute (clean_rx), the file's page read+execute
 * (written_rx) and calls it, and maps the file read+execute anew
 * (written_map_rx) and calls that. No call before the attach shows the
 * write to the tracer: only the file's change time, later than the
 * process's start, tells it.
 */
#include "common.h"

int main(int argc, char **argv)
{
	size_t pg = tw_page();
	unsigned char *code = calloc(1, pg);
	char line[64];
	void *written, *clean, *fresh;
	int fd, shell;

	tw_init();
	if (argc != 2 || code == NULL) {
		fprintf(stderr, "usage: attach_file_written FILE\n");
		return 2;
	}
	tw_put_code(code);
	fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, code, pg) != (ssize_t)pg || close(fd) != 0)
		return 1;
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	shell = open("/bin/sh", O_RDONLY | O_CLOEXEC);
	written = tw_mmap("written_map", NULL, pg, PROT_READ, MAP_PRIVATE, fd, 0);
	clean = tw_mmap("clean_map", NULL, pg, PROT_READ, MAP_PRIVATE, shell, 0);
	if (written == MAP_FAILED || clean == MAP_FAILED)
		return tw_done();
	tw_emit("READY %d", (int)getpid());
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	tw_mprotect("clean_rx", clean, pg, TW_RX);
	if (tw_mprotect("written_rx", written, pg, TW_RX) == 0)
		tw_run("written_call", written);
	fresh = tw_mmap("written_map_rx", NULL, pg, TW_RX, MAP_PRIVATE, fd, 0);
	if (fresh != MAP_FAILED)
		tw_run("fresh_call", fresh);
	return tw_done();
}
