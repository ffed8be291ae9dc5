/*
 * attack_attach_uffd: a range registered with a userfaultfd before a tracer
 * attached, served by a process outside the tree.
 *
 * Before READY: an anonymous page mapped R-X (never writable), registered
 * with a userfaultfd for missing pages (`missing`) or minor faults of a
 * shared memfd page (`minor`: the page of a memfd mapped R-X shared);
 * a helper process forked to serve its faults, the program's own copy of
 * the descriptor closed. After a line on stdin the program calls the page:
 * the fault waits for the helper, which fills it with code (UFFDIO_COPY;
 * `minor`: writes the code through its own shared view of the memfd, then
 * UFFDIO_CONTINUE), and the code runs with no call of the program's at all.
 */
#include "common.h"

#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

/* The helper: serve one fault of `page` on `uffd`; `view` (minor) is its own
 * writable view of the page's memfd. */
static void serve(int uffd, unsigned char *page, unsigned char *view)
{
	unsigned char *src = mmap(NULL, tw_page(), TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uffd_msg msg;

	prctl(PR_SET_PDEATHSIG, SIGKILL); /* a program killed at the seize leaves no helper behind */
	if (src == MAP_FAILED || read(uffd, &msg, sizeof(msg)) != (ssize_t)sizeof(msg) ||
	    msg.event != UFFD_EVENT_PAGEFAULT)
		_exit(1);
	if (view) {
		struct uffdio_continue cont = {{(uintptr_t)page, tw_page()}, 0, 0};

		tw_put_code(view);
		ioctl(uffd, UFFDIO_CONTINUE, &cont);
	} else {
		struct uffdio_copy copy = {(uintptr_t)page, (uintptr_t)src, tw_page(), 0, 0};

		tw_put_code(src);
		ioctl(uffd, UFFDIO_COPY, &copy);
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "missing";
	int minor = !strcmp(mode, "minor");
	struct uffdio_api api = {UFFD_API, minor ? UFFD_FEATURE_MINOR_SHMEM : 0, 0};
	struct uffdio_register reg;
	unsigned char *page, *view = NULL;
	char line[64];
	pid_t helper;
	int uffd, fd = -1;

	tw_init();
	if (minor) {
		fd = memfd_create("tw_uffd", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (off_t)tw_page()) != 0)
			return tw_done();
		view = tw_mmap("view_map", NULL, tw_page(), TW_RW, MAP_SHARED, fd, 0);
		page = tw_mmap("rx_map", NULL, tw_page(), TW_RX, MAP_SHARED, fd, 0);
		/* The page cache holds the page: a minor fault, not a missing one. */
		if (view == MAP_FAILED || page == MAP_FAILED)
			return tw_done();
		view[0] = 0;
		close(fd);
	} else {
		page = tw_mmap("rx_map", NULL, tw_page(), TW_RX, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (page == MAP_FAILED)
			return tw_done();
	}
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	tw_step("uffd_create", "userfaultfd", uffd, uffd < 0 ? errno : 0);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0)
		return tw_done();
	reg.range.start = (uintptr_t)page;
	reg.range.len = tw_page();
	reg.mode = minor ? UFFDIO_REGISTER_MODE_MINOR : UFFDIO_REGISTER_MODE_MISSING;
	tw_step("uffd_register", "ioctl", ioctl(uffd, UFFDIO_REGISTER, &reg), errno);
	helper = fork();
	if (helper == 0)
		serve(uffd, page, view);
	close(uffd);
	if (view)
		munmap(view, tw_page());
	tw_emit("READY %d", (int)getpid());
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	tw_run("uffd_call", page);
	tw_wait_child("helper", helper);
	return tw_done();
}
