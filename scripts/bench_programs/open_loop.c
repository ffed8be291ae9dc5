/*
 * open_loop MODE N: open and close an ordinary file N times, read-only
 * (MODE r) or for writing (MODE w; O_WRONLY|O_APPEND, nothing written).
 * The cost of trampwatch's exit-time judgement of opens for writing, and of
 * the filter keeping read-only opens out of the tracer entirely.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char path[] = "/tmp/tw-open-loop-XXXXXX";
	long n, i;
	int flags, fd;

	if (argc < 3 || (strcmp(argv[1], "r") && strcmp(argv[1], "w")))
		return 2;
	flags = argv[1][0] == 'w' ? O_WRONLY | O_APPEND : O_RDONLY;
	n = strtol(argv[2], NULL, 10);
	fd = mkstemp(path);
	if (fd < 0)
		return 1;
	close(fd);
	for (i = 0; i < n; i++) {
		fd = open(path, flags | O_CLOEXEC);
		if (fd < 0)
			return 1;
		close(fd);
	}
	unlink(path);
	printf("COUNT %ld\n", n);
	return 0;
}
