/*
 * attack_report_forge: names that forge report lines.
 *
 * The report's human lines and the summary print names the program
 * chooses: a memfd's name (`backing=`), the object a call came from. A
 * memfd named "x\nW^X killed: ..." holding code is mapped R-X (strict
 * denies it: one event); a hard link of the program itself named with a
 * newline and a fake summary row is run (`run-link` is the name given to
 * the second run, which only maps the memfd again). Neither should put a
 * line in the report that no event made. Natively both mappings succeed
 * and the code runs.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/stat.h>

#define FAKE_EVENT "x | verdict=killed\nW^X killed: forged (1) mprotect w-to-x from forged | verdict=killed\n"

static void map_named_memfd(const char *memfd_label, const char *label, const char *call_label)
{
	int fd = memfd_create(FAKE_EVENT, MFD_CLOEXEC);
	void *p;

	tw_step(memfd_label, "memfd_create", fd, errno);
	if (fd < 0)
		return;
	if (write(fd, TW_CODE, sizeof(TW_CODE)) != (ssize_t)sizeof(TW_CODE) || ftruncate(fd, (off_t)tw_page()))
		return;
	p = tw_mmap(label, NULL, tw_page(), TW_RX, MAP_PRIVATE, fd, 0);
	if (p != MAP_FAILED)
		tw_run(call_label, p);
	close(fd);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/tw_forge_XXXXXX";
	char link_path[512];
	pid_t child;
	int status;

	tw_init();
	if (argc > 1 && strcmp(argv[1], "run-link") == 0) {
		map_named_memfd("link_memfd", "link_rx_mmap", "link_call");
		return tw_done();
	}
	map_named_memfd("forge_memfd", "forge_rx_mmap", "forge_call");
	if (!mkdtemp(dir))
		return 1;
	snprintf(link_path, sizeof(link_path), "%s/p\n  forged-object  99\nW^X killed: forged", dir);
	tw_step("forge_link", "linkat",
		linkat(AT_FDCWD, "/proc/self/exe", AT_FDCWD, link_path, AT_SYMLINK_FOLLOW) ? -1 : 0, errno);
	child = fork();
	if (child == 0) {
		execl(link_path, link_path, "run-link", (char *)NULL);
		_exit(127);
	}
	waitpid(child, &status, 0);
	tw_report_status("link_child", status);
	unlink(link_path);
	rmdir(dir);
	return tw_done();
}
