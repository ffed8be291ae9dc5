/*
 * A program written against the trampfd v2 API (docs/trampfd-api.md): it
 * asks for a table (syscall 440 with a struct trampfd_info), writes its code
 * and data descriptors (r11 and r10, two-slot tables), maps the table
 * read+execute and calls trampoline 1. Run it under
 * `trampwatch run --emulate-trampfd`: no kernel has trampfd.
 *
 * It also creates a v1 (fault-based) trampoline and maps its page.
 *
 * Prints: ADDR table|tramp1|code_table|data_table|target|v1_page 0x..., READY;
 * FAIL <what> errno=<n> when a step is refused.
 */
#include "common.h"

#define TW_TRAMPFD_NR 440
#define TW_V2_R10 16
#define TW_V2_R11 17

struct tw_trampfd_info {
	uint32_t ntrampolines, code_size, code_offset, reserved;
};

struct tw_trampfd_desc {
	uint32_t count_or_reg, reg_or_reserved;
	uint64_t table;
};

__asm__(".text\n"
	/* Returns the data value the trampoline loaded into r10. */
	".globl tw_emulated_target\n"
	".type tw_emulated_target, @function\n"
	"tw_emulated_target:\n"
	"	movq %r10, %rax\n"
	"	ret\n"
	".size tw_emulated_target, .-tw_emulated_target\n");

long tw_emulated_target(void);

static unsigned long code_table[2];
static unsigned long data_table[2];

int main(void)
{
	struct tw_trampfd_info info = {0};
	struct tw_trampfd_desc code = {2, TW_V2_R11, (uint64_t)(uintptr_t)code_table};
	struct tw_trampfd_desc data = {TW_V2_R10, 0, (uint64_t)(uintptr_t)data_table};
	long (*tramp)(void);
	unsigned char *table;
	long fd;
	char c;

	tw_init();
	fd = syscall(TW_TRAMPFD_NR, &info);
	if (fd < 0) {
		tw_emit("FAIL trampfd errno=%d", errno);
		return 1;
	}
	if (pwrite((int)fd, &code, sizeof(code), 0) != sizeof(code) ||
	    pwrite((int)fd, &data, sizeof(data), 1) != sizeof(data)) {
		tw_emit("FAIL descriptors errno=%d", errno);
		return 1;
	}
	table = mmap(NULL, 4096, TW_RX, MAP_PRIVATE, (int)fd, info.code_offset);
	if (table == MAP_FAILED) {
		tw_emit("FAIL mmap errno=%d", errno);
		return 1;
	}
	code_table[1] = (unsigned long)(uintptr_t)tw_emulated_target;
	data_table[1] = 0x4242;
	tramp = (long (*)(void))(uintptr_t)(table + info.code_size);
	if (tramp() != 0x4242) {
		tw_emit("FAIL call");
		return 1;
	}
	tw_emit("ADDR table %#lx", (unsigned long)(uintptr_t)table);
	tw_emit("ADDR tramp1 %#lx", (unsigned long)(uintptr_t)(table + info.code_size));
	tw_emit("ADDR code_table %#lx", (unsigned long)(uintptr_t)code_table);
	tw_emit("ADDR data_table %#lx", (unsigned long)(uintptr_t)data_table);
	tw_emit("ADDR target %#lx", (unsigned long)(uintptr_t)tw_emulated_target);
	{
		/* v1: trampfd_create(TRAMPFD_USER, &user, 0), then map one PROT_NONE page. */
		uint32_t user[2] = {0, 0};
		long v1 = syscall(TW_TRAMPFD_NR, 0, user, 0);
		void *page;

		if (v1 < 0) {
			tw_emit("FAIL v1 errno=%d", errno);
			return 1;
		}
		page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE, (int)v1, 0);
		if (page == MAP_FAILED) {
			tw_emit("FAIL v1 mmap errno=%d", errno);
			return 1;
		}
		tw_emit("ADDR v1_page %#lx", (unsigned long)(uintptr_t)page);
	}
	tw_emit("READY");
	if (read(STDIN_FILENO, &c, 1) < 0)
		return 1;
	return 0;
}
