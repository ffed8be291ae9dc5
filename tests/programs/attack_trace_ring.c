/*
 * attack_trace_ring [global]: code the kernel copies into a tracing ring
 * buffer the program maps and makes executable.
 *
 * A tracing instance of its own (mkdir under /sys/kernel/tracing/instances,
 * root); the CPU 0 ring buffer of it mapped read-only (trace_pipe_raw,
 * the user-space mapping of ring buffers), which refuses PROT_EXEC at mmap
 * but not at a later mprotect: the mapping is made read+execute. The code
 * is written to the instance's trace_marker (a print event the kernel
 * copies into the ring on the writer's CPU, pinned to 0), the reader page
 * swapped in (TRACE_MMAP_IOCTL_GET_READER) and the code called where the
 * event holds it. With `global` the top-level buffer (its files made at
 * boot) is used instead of a new instance (whose files are new). Exit 3
 * when the instance or the mapping cannot be made.
 */
#include "common.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

struct trace_buffer_meta {
	uint32_t meta_page_size;
	uint32_t meta_struct_len;
	uint32_t subbuf_size;
	uint32_t nr_subbufs;
	struct {
		uint64_t lost_events;
		uint32_t id;
		uint32_t read;
	} reader;
	uint64_t flags, entries, overrun, read, reserved1, reserved2;
};

#define TRACE_MMAP_IOCTL_GET_READER _IO('R', 0x20)
#define TRACING "/sys/kernel/tracing/instances"

static const unsigned char MARK[] = {'t', 'w', 'r', 'b'};

static int write_marker(const char *instance)
{
	unsigned char text[sizeof(MARK) + sizeof(TW_CODE)];
	char path[256];
	int fd, rc;

	memcpy(text, MARK, sizeof(MARK));
	memcpy(text + sizeof(MARK), TW_CODE, sizeof(TW_CODE));
	snprintf(path, sizeof(path), "%s/trace_marker", instance);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	tw_step("marker_open", "openat", fd, errno);
	if (fd < 0)
		return -1;
	rc = (int)write(fd, text, sizeof(text));
	tw_step("marker_write", "write", rc, errno);
	close(fd);
	return rc == (int)sizeof(text) ? 0 : -1;
}

static void find_and_run(unsigned char *ring, const struct trace_buffer_meta *meta)
{
	unsigned char *page = ring + meta->meta_page_size + (size_t)meta->reader.id * meta->subbuf_size;

	for (size_t i = 0; i + sizeof(MARK) + sizeof(TW_CODE) <= meta->subbuf_size; i++) {
		if (memcmp(page + i, MARK, sizeof(MARK)) == 0) {
			tw_run("trace_ring_call", page + i + sizeof(MARK));
			return;
		}
	}
	tw_step("ring_search", "memcmp", -1, ENOENT);
}

int main(int argc, char **argv)
{
	int global = argc == 2 && strcmp(argv[1], "global") == 0;
	char instance[128], path[256];
	struct trace_buffer_meta *meta;
	unsigned char *ring = MAP_FAILED;
	size_t size = 0;
	cpu_set_t cpus;
	int fd, rc;

	tw_init();
	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);
	if (global) {
		snprintf(instance, sizeof(instance), "/sys/kernel/tracing");
	} else {
		snprintf(instance, sizeof(instance), TRACING "/tw_ring_%d", (int)getpid());
		rc = mkdir(instance, 0700);
		tw_step("instance_mkdir", "mkdir", rc, errno);
		if (rc != 0)
			return 3;
	}
	snprintf(path, sizeof(path), "%s/per_cpu/cpu0/trace_pipe_raw", instance);
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	tw_step("ring_open", "openat", fd, errno);
	if (fd < 0)
		goto out;
	meta = mmap(NULL, tw_page(), PROT_READ, MAP_SHARED, fd, 0);
	if (meta == MAP_FAILED) {
		tw_step("meta_mmap", "mmap", -1, errno);
		close(fd);
		goto out;
	}
	size = meta->meta_page_size + (size_t)meta->nr_subbufs * meta->subbuf_size;
	munmap(meta, tw_page());
	ring = tw_mmap("ring_r_mmap", NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (ring != MAP_FAILED && tw_mprotect("ring_rx_mprotect", ring, size, TW_RX) == 0 &&
	    write_marker(instance) == 0) {
		rc = ioctl(fd, TRACE_MMAP_IOCTL_GET_READER);
		tw_step("get_reader", "ioctl", rc, errno);
		if (rc == 0)
			find_and_run(ring, (const struct trace_buffer_meta *)ring);
	}
	if (ring != MAP_FAILED)
		munmap(ring, size);
	close(fd);
out:
	if (!global)
		rmdir(instance);
	return tw_done();
}
