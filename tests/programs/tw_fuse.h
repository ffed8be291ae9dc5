/*
 * A FUSE filesystem a test program serves itself (attack_fuse,
 * attack_slow_open, attack_asleep_sibling, attack_blocked_orphan,
 * attack_fuse_stat, attack_fuse_exec): mounted through /dev/fuse (in a
 * private mount namespace unless asked otherwise), answered by the
 * program's own thread or child process.
 */
#ifndef TW_FUSE_H
#define TW_FUSE_H

#include <fcntl.h>
#include <linux/fuse.h>
#include <sched.h>
#include <sys/mount.h>

#include "common.h"

static int tw_fuse_fd = -1;

/* Mount a FUSE filesystem served through tw_fuse_fd at dir, in a mount
 * namespace of the program's own when own_namespace, with the mount options
 * extra (empty, or starting with a comma) added; reported as STEP fuse_mount. */
static inline int tw_fuse_mount_with(const char *dir, int own_namespace, const char *extra)
{
	char opts[192];
	int rc = own_namespace ? unshare(CLONE_NEWNS) : 0;

	if (rc == 0 && own_namespace)
		rc = mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	if (rc == 0) {
		tw_fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
		rc = tw_fuse_fd < 0 ? -1 : 0;
	}
	if (rc == 0) {
		snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=0,group_id=0%s", tw_fuse_fd, extra);
		rc = mount("tw", dir, "fuse", MS_NOSUID | MS_NODEV, opts);
	}
	tw_step("fuse_mount", "mount", rc, errno);
	return rc;
}

/* tw_fuse_mount_with in a mount namespace of the program's own. */
static inline int tw_fuse_mount(const char *dir)
{
	return tw_fuse_mount_with(dir, 1, "");
}

/* Answer request `unique` with error (0 or -errno) and up to a page of body. */
static inline void tw_fuse_reply(uint64_t unique, int error, const void *body, size_t size)
{
	char out[sizeof(struct fuse_out_header) + 4096];
	struct fuse_out_header *hdr = (struct fuse_out_header *)out;

	hdr->len = (uint32_t)(sizeof(*hdr) + size);
	hdr->error = error;
	hdr->unique = unique;
	if (size)
		memcpy(out + sizeof(*hdr), body, size);
	if (write(tw_fuse_fd, out, hdr->len) < 0 && errno != ENOENT)
		_exit(4);
}

/* How a program describes its node (each has one: fill_attr). */
typedef void (*tw_fuse_filler)(struct fuse_attr *attr, uint64_t node);

/* Answer the GETATTR `in` with fill's attributes of its node, valid `valid` s. */
static inline void tw_fuse_reply_attr(const struct fuse_in_header *in, tw_fuse_filler fill, uint64_t valid)
{
	struct fuse_attr_out out = {.attr_valid = valid};

	fill(&out.attr, in->nodeid);
	tw_fuse_reply(in->unique, 0, &out, sizeof(out));
}

/* Answer an OPEN or OPENDIR with file handle fh and open_flags flags. */
static inline void tw_fuse_reply_open(uint64_t unique, uint64_t fh, uint32_t flags)
{
	struct fuse_open_out out = {.fh = fh, .open_flags = flags};

	tw_fuse_reply(unique, 0, &out, sizeof(out));
}

/* A program's part of the server: answer (or keep) the request `in`, whose
 * body is `arg`, and return 1; or return 0 to leave it to tw_fuse_serve. */
typedef int (*tw_fuse_handler)(struct fuse_in_header *in, void *arg);

/*
 * Serve tw_fuse_fd until the filesystem is unmounted (or aborted): each
 * request goes to `handle` first; what it leaves is answered here: INIT with
 * a minimal fuse_init_out, FORGET, BATCH_FORGET and INTERRUPT not at all,
 * anything else with ENOSYS.
 */
static inline void tw_fuse_serve(tw_fuse_handler handle)
{
	static char buf[1 << 18];
	struct fuse_in_header *in = (struct fuse_in_header *)buf;

	for (;;) {
		if (read(tw_fuse_fd, buf, sizeof(buf)) < 0) {
			if (errno == EINTR || errno == ENOENT || errno == EAGAIN)
				continue;
			return; /* ENODEV: unmounted or aborted */
		}
		if (handle(in, buf + sizeof(*in)))
			continue;
		switch (in->opcode) {
		case FUSE_INIT: {
			struct fuse_init_out init = {.major = FUSE_KERNEL_VERSION,
						     .minor = FUSE_KERNEL_MINOR_VERSION,
						     .max_write = 4096};

			tw_fuse_reply(in->unique, 0, &init, sizeof(init));
			break;
		}
		case FUSE_FORGET:
		case FUSE_BATCH_FORGET:
		case FUSE_INTERRUPT:
			break; /* no reply */
		default:
			tw_fuse_reply(in->unique, -ENOSYS, NULL, 0);
		}
	}
}

#endif
