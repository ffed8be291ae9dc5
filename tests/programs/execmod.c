/*
 * execmod: map the program's own file private and writable, modify it
 * (copy-on-write), then make the modified private file mapping executable --
 * what text relocations do.
 */
#include "common.h"

#include <fcntl.h>

int main(void)
{
	size_t pg = tw_page();
	void *p;
	int fd;

	tw_init();
	fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	tw_step("exe_open", "open", fd, errno);
	if (fd < 0)
		return 1;
	p = tw_mmap("file_rw_mmap", NULL, pg, TW_RW, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		return 1;
	tw_put_code(p);
	if (tw_mprotect("file_rx_mprotect", p, pg, TW_RX) == 0)
		tw_run("file_call", p);
	tw_munmap("file_munmap", p, pg);
	close(fd);
	return tw_done();
}
