/*
 * Every v1 trampfd error case of the specification, and the successful
 * calls beside them, one STEP line each (tests/test_trampfd_v1.py holds the
 * expected errno of every label). VAL lines report values read back.
 */
#include "../programs/common.h"

#include <fcntl.h>
#include <sys/uio.h>

#include "trampfd.h"

/* volatile: the compiler must not see (and warn about) the NULL buffers passed on purpose. */
static void *volatile null_buf;

static long target(long a) { return a + 1; }
static long other_target(long a) { return a + 2; }

/* A raw v1 create with every argument given (unused ones 0). */
static long create_raw(long type, const void *data, long flags)
{
	return syscall(TRAMPFD_NR, type, data, flags, 0L, 0L, 0L);
}

static void step(const char *label, const char *call, long rc)
{
	tw_step(label, call, rc, errno);
}

static void create_cases(void)
{
	struct trampfd_user user = {0, 0};
	struct trampfd_user bad_flags = {1, 0};
	struct trampfd_user bad_reserved = {0, 1};
	void *none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	step("create_type1", "trampfd", create_raw(1, &user, 0));
	step("create_type7", "trampfd", create_raw(7, &user, 0));
	step("create_null", "trampfd", create_raw(TRAMPFD_USER, NULL, 0));
	step("create_flags", "trampfd", create_raw(TRAMPFD_USER, &user, 1));
	step("create_user_flags", "trampfd", create_raw(TRAMPFD_USER, &bad_flags, 0));
	step("create_user_reserved", "trampfd", create_raw(TRAMPFD_USER, &bad_reserved, 0));
	step("create_efault", "trampfd", create_raw(TRAMPFD_USER, none, 0));
	munmap(none, 4096);
}

static void descriptor_cases(int fd)
{
	char link[64], path[128];
	ssize_t n;

	tw_emit("VAL fd %d", fd);
	tw_emit("VAL cloexec %d", fcntl(fd, F_GETFD) & FD_CLOEXEC);
	tw_emit("VAL accmode %d", fcntl(fd, F_GETFL) & O_ACCMODE);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	path[n > 0 ? n : 0] = '\0';
	tw_emit("VAL link %s", strstr(path, "[trampfd]") ? "trampfd" : path);
}

static void seek_cases(int fd)
{
	step("lseek_cur", "lseek", lseek(fd, 0, SEEK_CUR));
	step("lseek_end", "lseek", lseek(fd, 0, SEEK_END));
	step("lseek_4", "lseek", lseek(fd, 4, SEEK_SET));
	step("lseek_neg", "lseek", lseek(fd, -1, SEEK_SET));
	step("lseek_3", "lseek", lseek(fd, 3, SEEK_SET));
	step("lseek_0", "lseek", lseek(fd, 0, SEEK_SET));
}

static void read_cases(int fd)
{
	struct trampfd_map map;
	uint32_t words[12];
	void *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	step("read_null", "pread64", pread(fd, null_buf, sizeof(map), TRAMPFD_MAP_OFFSET));
	step("read_zero", "pread64", pread(fd, &map, 0, TRAMPFD_MAP_OFFSET));
	step("read_map_23", "pread64", pread(fd, &map, 23, TRAMPFD_MAP_OFFSET));
	step("read_map_25", "pread64", pread(fd, words, 25, TRAMPFD_MAP_OFFSET));
	step("read_map", "pread64", pread(fd, &map, sizeof(map), TRAMPFD_MAP_OFFSET));
	tw_emit("VAL map %u %u %u %u %u %u", map.size, map.prot, map.flags, map.offset, map.ioffset,
		map.reserved);
	step("read_map_efault", "pread64", pread(fd, ro, sizeof(map), TRAMPFD_MAP_OFFSET));
	step("read_pcs", "pread64", pread(fd, words, 8, TRAMPFD_ALLOWED_PCS_OFFSET));
	step("read_offset4", "pread64", pread(fd, words, 8, 4));
	step("read_regs_7", "pread64", pread(fd, words, 7, TRAMPFD_REGS_OFFSET));
	memset(words, 0xff, sizeof(words));
	step("read_regs_none", "pread64", pread(fd, words, 8, TRAMPFD_REGS_OFFSET));
	tw_emit("VAL regs_none %u %u", words[0], words[1]);
	step("read_stack_15", "pread64", pread(fd, words, 15, TRAMPFD_STACK_OFFSET));
	/* lseek then read: the position selects the context and stays put. */
	memset(words, 0xff, sizeof(words));
	lseek(fd, TRAMPFD_STACK_OFFSET, SEEK_SET);
	step("read_stack_none", "read", read(fd, words, 16));
	tw_emit("VAL stack_none %u %u %u %u", words[0], words[1], words[2], words[3]);
	lseek(fd, TRAMPFD_MAP_OFFSET, SEEK_SET);
	step("read_map_plain", "read", read(fd, &map, sizeof(map)));
	step("read_map_again", "read", read(fd, &map, sizeof(map)));
	munmap(ro, 4096);
}

struct regs_buf {
	struct trampfd_regs h;
	struct trampfd_reg r[TRAMPFD_MAX_REGS + 2];
};

static long write_regs(int fd, struct regs_buf *b, uint32_t nregs, size_t count)
{
	b->h.nregs = nregs;
	return pwrite(fd, b, count, TRAMPFD_REGS_OFFSET);
}

static void regs_cases(int fd)
{
	struct regs_buf b;
	size_t two = sizeof(b.h) + 2 * sizeof(struct trampfd_reg);
	void *none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint32_t i;

	memset(&b, 0, sizeof(b));
	for (i = 0; i < TRAMPFD_MAX_REGS + 2; i++)
		b.r[i] = (struct trampfd_reg){TRAMPFD_REG_RDI, 0, i};
	b.r[0] = (struct trampfd_reg){TRAMPFD_REG_RIP, 0, (uint64_t)target};
	step("write_map", "pwrite64", pwrite(fd, &b, 24, TRAMPFD_MAP_OFFSET));
	step("write_null", "pwrite64", pwrite(fd, null_buf, two, TRAMPFD_REGS_OFFSET));
	step("write_zero", "pwrite64", pwrite(fd, &b, 0, TRAMPFD_REGS_OFFSET));
	step("write_offset4", "pwrite64", pwrite(fd, &b, two, 4));
	step("regs_count_short", "pwrite64", write_regs(fd, &b, 2, two - 16));
	step("regs_count_long", "pwrite64", write_regs(fd, &b, 2, two + 16));
	step("regs_count_7", "pwrite64", write_regs(fd, &b, 0, 7));
	step("regs_41", "pwrite64", write_regs(fd, &b, 41, sizeof(b.h) + 41 * sizeof(struct trampfd_reg)));
	step("regs_40", "pwrite64", write_regs(fd, &b, 40, sizeof(b.h) + 40 * sizeof(struct trampfd_reg)));
	b.h.reserved = 1;
	step("regs_header_reserved", "pwrite64", write_regs(fd, &b, 2, two));
	b.h.reserved = 0;
	b.r[1].reserved = 1;
	step("regs_entry_reserved", "pwrite64", write_regs(fd, &b, 2, two));
	b.r[1] = (struct trampfd_reg){TRAMPFD_REG_EAX, 0, 1};
	step("regs_name_eax", "pwrite64", write_regs(fd, &b, 2, two));
	b.r[1] = (struct trampfd_reg){TRAMPFD_REG_EBP, 0, 1};
	step("regs_name_ebp", "pwrite64", write_regs(fd, &b, 2, two));
	b.r[1] = (struct trampfd_reg){TRAMPFD_REG_EIP, 0, (uint64_t)target};
	step("regs_name_eip", "pwrite64", write_regs(fd, &b, 2, two));
	b.r[1] = (struct trampfd_reg){TRAMPFD_REG_MAX, 0, 1};
	step("regs_name_24", "pwrite64", write_regs(fd, &b, 2, two));
	b.r[1] = (struct trampfd_reg){TRAMPFD_REG_R15, 0, 0x1515};
	b.r[0] = (struct trampfd_reg){TRAMPFD_REG_RAX, 0, 1};
	step("regs_no_rip", "pwrite64", write_regs(fd, &b, 2, two));
	b.r[0] = (struct trampfd_reg){TRAMPFD_REG_RIP, 0, 0};
	step("regs_rip_0", "pwrite64", write_regs(fd, &b, 2, two));
	/* The last of a repeated rip wins: a non-zero then a zero rip is refused. */
	b.r[0] = (struct trampfd_reg){TRAMPFD_REG_RIP, 0, (uint64_t)target};
	b.r[1] = (struct trampfd_reg){TRAMPFD_REG_RIP, 0, 0};
	step("regs_last_rip_0", "pwrite64", write_regs(fd, &b, 2, two));
	b.r[1] = (struct trampfd_reg){TRAMPFD_REG_R15, 0, 0x1515};
	step("regs_efault", "pwrite64", pwrite(fd, none, two, TRAMPFD_REGS_OFFSET));
	step("regs_ok", "pwrite64", write_regs(fd, &b, 2, two));
	memset(&b, 0xff, sizeof(b));
	step("regs_read", "pread64", pread(fd, &b, two + 16, TRAMPFD_REGS_OFFSET));
	tw_emit("VAL regs_read %u %u %u %u %lu %u %u %lu %u %u %lu", b.h.nregs, b.h.reserved, b.r[0].name,
		b.r[0].reserved, (unsigned long)(b.r[0].value == (uint64_t)target), b.r[1].name, b.r[1].reserved,
		(unsigned long)b.r[1].value, b.r[2].name, b.r[2].reserved, (unsigned long)b.r[2].value);
	memset(&b, 0, sizeof(b));
	step("regs_clear", "pwrite64", write_regs(fd, &b, 0, sizeof(b.h)));
	memset(&b, 0xff, sizeof(b));
	step("regs_read_cleared", "pread64", pread(fd, &b, 24, TRAMPFD_REGS_OFFSET));
	tw_emit("VAL regs_cleared %u %u %u", b.h.nregs, b.h.reserved, b.r[0].name);
	munmap(none, 4096);
}

struct stack_buf {
	struct trampfd_stack h;
	uint8_t data[TRAMPFD_MAX_DATA_SIZE + 8];
};

static long write_stack(int fd, uint32_t flags, uint32_t offset, uint32_t size, uint32_t reserved,
			size_t count)
{
	struct stack_buf b;
	uint32_t i;

	b.h = (struct trampfd_stack){flags, offset, size, reserved};
	for (i = 0; i < sizeof(b.data); i++)
		b.data[i] = (uint8_t)(i + 1);
	return pwrite(fd, &b, count, TRAMPFD_STACK_OFFSET);
}

static void stack_cases(int fd)
{
	struct stack_buf b;
	size_t h = sizeof(struct trampfd_stack);

	step("stack_size_65", "pwrite64", write_stack(fd, 0, 0, 65, 0, h + 65));
	step("stack_offset_257", "pwrite64", write_stack(fd, 0, 257, 8, 0, h + 8));
	step("stack_flags_2", "pwrite64", write_stack(fd, 2, 0, 8, 0, h + 8));
	step("stack_reserved", "pwrite64", write_stack(fd, 0, 0, 8, 1, h + 8));
	step("stack_count_short", "pwrite64", write_stack(fd, 0, 0, 8, 0, h + 7));
	step("stack_count_long", "pwrite64", write_stack(fd, 0, 0, 8, 0, h + 9));
	step("stack_count_15", "pwrite64", write_stack(fd, 0, 0, 0, 0, 15));
	step("stack_max", "pwrite64", write_stack(fd, TRAMPFD_SET_SP, 256, 64, 0, h + 64));
	step("stack_ok", "pwrite64", write_stack(fd, TRAMPFD_SET_SP, 24, 5, 0, h + 5));
	memset(&b, 0xee, sizeof(b));
	step("stack_read", "pread64", pread(fd, &b, h + 8, TRAMPFD_STACK_OFFSET));
	tw_emit("VAL stack_read %u %u %u %u %u %u %u %u %u %u %u %u", b.h.flags, b.h.offset, b.h.size,
		b.h.reserved, b.data[0], b.data[1], b.data[2], b.data[3], b.data[4], b.data[5], b.data[6],
		b.data[7]);
	step("stack_clear", "pwrite64", write_stack(fd, 0, 0, 0, 0, h));
	memset(&b, 0xee, sizeof(b));
	step("stack_read_cleared", "pread64", pread(fd, &b, h, TRAMPFD_STACK_OFFSET));
	tw_emit("VAL stack_cleared %u %u %u %u", b.h.flags, b.h.offset, b.h.size, b.h.reserved);
}

static long write_pcs(int fd, uint32_t n, uint32_t reserved, size_t count, uint64_t first)
{
	struct {
		struct trampfd_values h;
		uint64_t v[TRAMPFD_MAX_PCS + 1];
	} b;
	uint32_t i;

	b.h = (struct trampfd_values){n, reserved};
	for (i = 0; i < TRAMPFD_MAX_PCS + 1; i++)
		b.v[i] = (uint64_t)other_target + i;
	b.v[0] = first;
	return pwrite(fd, &b, count, TRAMPFD_ALLOWED_PCS_OFFSET);
}

static void pcs_cases(int fd)
{
	size_t h = sizeof(struct trampfd_values);
	struct trampfd_reg to_target[] = {{TRAMPFD_REG_RIP, 0, (uint64_t)target}};
	struct trampfd_reg to_other[] = {{TRAMPFD_REG_RIP, 0, (uint64_t)other_target}};

	step("pcs_17", "pwrite64", write_pcs(fd, 17, 0, h + 17 * 8, (uint64_t)target));
	step("pcs_zero", "pwrite64", write_pcs(fd, 2, 0, h + 16, 0));
	step("pcs_reserved", "pwrite64", write_pcs(fd, 2, 1, h + 16, (uint64_t)target));
	step("pcs_count", "pwrite64", write_pcs(fd, 2, 0, h + 8, (uint64_t)target));
	step("pcs_16", "pwrite64", write_pcs(fd, 16, 0, h + 16 * 8, (uint64_t)target));
	step("pcs_ok", "pwrite64", write_pcs(fd, 1, 0, h + 8, (uint64_t)target));
	step("pcs_regs_allowed", "pwrite64", trampfd_set_regs(fd, to_target, 1));
	step("pcs_regs_refused", "pwrite64", trampfd_set_regs(fd, to_other, 1));
	step("pcs_clear", "pwrite64", write_pcs(fd, 0, 0, h, 0));
	step("pcs_regs_after_clear", "pwrite64", trampfd_set_regs(fd, to_other, 1));
}

static void map_cases(int fd)
{
	struct tw_map m;
	void *p;

	p = mmap(NULL, 8192, PROT_NONE, MAP_PRIVATE, fd, 0);
	tw_step_addr("map_len", "mmap", p, MAP_FAILED, errno);
	p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	tw_step_addr("map_read", "mmap", p, MAP_FAILED, errno);
	p = mmap(NULL, 4096, PROT_WRITE, MAP_PRIVATE, fd, 0);
	tw_step_addr("map_write", "mmap", p, MAP_FAILED, errno);
	p = mmap(NULL, 4096, PROT_EXEC, MAP_PRIVATE, fd, 0);
	tw_step_addr("map_exec", "mmap", p, MAP_FAILED, errno);
	p = mmap(NULL, 4096, PROT_NONE, MAP_SHARED, fd, 0);
	tw_step_addr("map_shared", "mmap", p, MAP_FAILED, errno);
	p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	tw_step_addr("map_populate", "mmap", p, MAP_FAILED, errno);
	p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE, fd, 4096);
	tw_step_addr("map_offset", "mmap", p, MAP_FAILED, errno);
	p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE, fd, 0);
	tw_step_addr("map_ok", "mmap", p, MAP_FAILED, errno);
	if (p != MAP_FAILED && tw_find_map(p, &m) == 0)
		tw_emit("VAL map_perms %s", m.perms);
}

static void io_cases(int fd)
{
	char buf[24];
	struct iovec iov = {buf, sizeof(buf)};

	step("readv", "readv", readv(fd, &iov, 1));
	step("writev", "writev", writev(fd, &iov, 1));
	step("preadv", "preadv", preadv(fd, &iov, 1, 0));
}

static void dup_cases(int fd)
{
	struct trampfd_map map;
	char buf[16];
	int copy = dup(fd);
	int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	int low;

	step("dup", "dup", copy);
	tw_emit("VAL dup_floor %d", copy >= 1000);
	tw_emit("VAL dup_cloexec %d", fcntl(copy, F_GETFD) & FD_CLOEXEC);
	step("dup_read", "pread64", pread(copy, &map, sizeof(map), TRAMPFD_MAP_OFFSET));
	step("dupfd", "fcntl", high);
	tw_emit("VAL dupfd_floor %d", high >= 1000);
	tw_emit("VAL dupfd_cloexec %d", fcntl(high, F_GETFD) & FD_CLOEXEC);
	step("dup2_low", "dup2", dup2(fd, 50));
	step("dup3_low", "dup3", dup3(fd, 51, O_CLOEXEC));
	low = dup2(fd, 1500);
	step("dup2_high", "dup2", low);
	step("dup2_high_read", "pread64", pread(low, &map, sizeof(map), TRAMPFD_MAP_OFFSET));
	/* One open file: the position set through one descriptor shows through the others. */
	lseek(fd, TRAMPFD_STACK_OFFSET, SEEK_SET);
	step("dup_shared_position", "read", read(copy, buf, 16));
	step("close_dup", "close", close(copy));
	step("closed_read", "pread64", pread(copy, &map, sizeof(map), TRAMPFD_MAP_OFFSET));
	step("still_read", "pread64", pread(fd, &map, sizeof(map), TRAMPFD_MAP_OFFSET));
}

int main(void)
{
	struct trampfd_user user = {0, 0};
	int fd;

	tw_init();
	create_cases();
	fd = trampfd_create(TRAMPFD_USER, &user, 0);
	step("create", "trampfd", fd);
	if (fd < 0)
		return 1;
	descriptor_cases(fd);
	seek_cases(fd);
	read_cases(fd);
	regs_cases(fd);
	stack_cases(fd);
	pcs_cases(fd);
	map_cases(fd);
	io_cases(fd);
	dup_cases(fd);
	tw_emit("DONE");
	return 0;
}
