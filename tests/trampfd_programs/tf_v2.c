/*
 * v2 trampoline tables: every error case of the specification (STEP lines),
 * then invocations through the table (VAL lines): tf_v2 [INVOCATIONS].
 * tests/test_trampfd_v2.py holds the expected values.
 */
#include "../programs/common.h"

#include <fcntl.h>

#include "trampfd.h"

#define N 4

static void *volatile null_info;
static uint64_t codes[N], datas[N];

static void step(const char *label, const char *call, long rc)
{
	tw_step(label, call, rc, errno);
}

static long map_table(int fd, size_t len, int prot, int flags, off_t offset)
{
	void *p = mmap(NULL, len, prot, flags, fd, offset);

	return p == MAP_FAILED ? -1 : (long)(uintptr_t)p;
}

static long write_code(int fd, uint32_t n, uint32_t reg, uint64_t table, size_t count)
{
	struct trampfd_code code = {n, reg, table};

	return pwrite(fd, &code, count, TRAMPFD_CODE);
}

static long write_data(int fd, uint32_t reg, uint32_t reserved, uint64_t table, size_t count)
{
	struct trampfd_data data = {reg, reserved, table};

	return pwrite(fd, &data, count, TRAMPFD_DATA);
}

/* The target: returns its argument times 1000 plus the data register (r10). */
static long target(long a)
{
	long data;

	__asm__ volatile("mov %%r10, %0" : "=r"(data));
	return a * 1000 + data;
}

static long other(long a)
{
	long data;

	__asm__ volatile("mov %%r10, %0" : "=r"(data));
	return -(a * 1000 + data);
}

int main(int argc, char **argv)
{
	long invocations = argc > 1 ? strtol(argv[1], NULL, 0) : 1000;
	struct trampfd_info info;
	uint64_t table_addr = (uint64_t)(uintptr_t)codes, data_addr = (uint64_t)(uintptr_t)datas;
	void *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char buf[32];
	struct tw_map m;
	long table, sum = 0, i;
	int fd, status;
	pid_t child;

	tw_init();
	step("create_null", "trampfd", trampfd_create_table(null_info));
	step("create_efault", "trampfd", trampfd_create_table(ro));
	memset(&info, 0xff, sizeof(info));
	fd = trampfd_create_table(&info);
	step("create", "trampfd", fd);
	if (fd < 0)
		return 1;
	tw_emit("VAL info %u %u %u %u", info.ntrampolines, info.code_size, info.code_offset, info.reserved);
	tw_emit("VAL cloexec %d", fcntl(fd, F_GETFD) & FD_CLOEXEC);

	step("read", "pread64", pread(fd, buf, 16, TRAMPFD_CODE));
	step("lseek_2", "lseek", lseek(fd, 2, SEEK_SET));
	step("lseek_cur", "lseek", lseek(fd, 0, SEEK_CUR));
	step("lseek_1", "lseek", lseek(fd, 1, SEEK_SET));
	step("map_before", "mmap", map_table(fd, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, info.code_offset));

	step("code_count_15", "pwrite64", write_code(fd, N, TRAMPFD_V2_REG_R11, table_addr, 15));
	step("code_count_17", "pwrite64", pwrite(fd, buf, 17, TRAMPFD_CODE));
	step("code_null", "pwrite64", pwrite(fd, null_info, 16, TRAMPFD_CODE));
	step("code_offset_2", "pwrite64", pwrite(fd, buf, 16, 2));
	step("code_n_0", "pwrite64", write_code(fd, 0, TRAMPFD_V2_REG_R11, table_addr, 16));
	step("code_n_too_many", "pwrite64", write_code(fd, info.ntrampolines + 1, TRAMPFD_V2_REG_R11, table_addr, 16));
	step("code_reg_eax", "pwrite64", write_code(fd, N, TRAMPFD_V2_REG_EAX, table_addr, 16));
	step("code_reg_22", "pwrite64", write_code(fd, N, TRAMPFD_V2_REG_MAX, table_addr, 16));
	step("code_table_null", "pwrite64", write_code(fd, N, TRAMPFD_V2_REG_R11, 0, 16));
	step("code_efault", "pwrite64", pwrite(fd, none, 16, TRAMPFD_CODE));
	step("code_ok", "pwrite64", write_code(fd, N, TRAMPFD_V2_REG_R11, table_addr, 16));
	step("code_again", "pwrite64", write_code(fd, N, TRAMPFD_V2_REG_R11, table_addr, 16));
	step("map_half", "mmap", map_table(fd, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, info.code_offset));
	step("data_reserved", "pwrite64", write_data(fd, TRAMPFD_V2_REG_R10, 1, data_addr, 16));
	step("data_same_reg", "pwrite64", write_data(fd, TRAMPFD_V2_REG_R11, 0, data_addr, 16));
	step("data_count_8", "pwrite64", write_data(fd, TRAMPFD_V2_REG_R10, 0, data_addr, 8));
	step("data_ok", "pwrite64", write_data(fd, TRAMPFD_V2_REG_R10, 0, data_addr, 16));
	step("data_again", "pwrite64", write_data(fd, TRAMPFD_V2_REG_R10, 0, data_addr, 16));

	step("map_rw", "mmap", map_table(fd, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, info.code_offset));
	step("map_rwx", "mmap", map_table(fd, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE, info.code_offset));
	step("map_r", "mmap", map_table(fd, 4096, PROT_READ, MAP_PRIVATE, info.code_offset));
	step("map_len", "mmap", map_table(fd, 8192, PROT_READ | PROT_EXEC, MAP_PRIVATE, info.code_offset));
	step("map_shared", "mmap", map_table(fd, 4096, PROT_READ | PROT_EXEC, MAP_SHARED, info.code_offset));
	step("map_offset_0", "mmap", map_table(fd, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, 0));
	child = fork();
	if (child == 0) {
		long rc = map_table(fd, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, info.code_offset);

		_exit(rc == -1 ? errno : 0);
	}
	waitpid(child, &status, 0);
	tw_emit("VAL map_other_process %s", tw_errname(WIFEXITED(status) ? WEXITSTATUS(status) : 255));

	table = map_table(fd, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, info.code_offset);
	step("map", "mmap", table == -1 ? -1 : 0);
	if (table == -1)
		return 1;
	step("map_again", "mmap", map_table(fd, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, info.code_offset));
	if (tw_find_map((void *)table, &m) == 0)
		tw_emit("VAL table_perms %s", m.perms);

	for (i = 0; i < N; i++) {
		codes[i] = (uint64_t)(uintptr_t)target;
		datas[i] = (uint64_t)(i + 1);
	}
	for (i = 0; i < N; i++)
		tw_emit("VAL entry%ld %ld", i, ((long (*)(long))(table + info.code_size * i))(i + 10));
	/* The program rebinds entries by writing ordinary data. */
	codes[2] = (uint64_t)(uintptr_t)other;
	datas[2] = 77;
	tw_emit("VAL rebound %ld", ((long (*)(long))(table + info.code_size * 2))(3));
	for (i = 0; i < invocations; i++)
		sum += ((long (*)(long))(table + info.code_size * (i & 1)))(i);
	tw_emit("VAL loop n=%ld sum=%ld", invocations, sum);
	/* A fork child inherits the table (an ordinary read+execute page). */
	child = fork();
	if (child == 0)
		_exit(((long (*)(long))(table + info.code_size))(0) == 2 ? 0 : 1);
	waitpid(child, &status, 0);
	tw_emit("CHILD table exit=%d", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	tw_emit("DONE");
	return 0;
}
