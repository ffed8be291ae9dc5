/*
 * What trampfd v2 gives a program, built by hand: a read+execute page of
 * trampolines, each loading its code address and data value from the
 * program's two tables (addresses baked into the code) and jumping:
 *   movabs r11, &code_table[X]; mov r11, [r11];
 *   movabs r10, &data_table[X]; mov r10, [r10]; jmp r11
 * Slots 0 and 2 are in use; the rest of the page is int3. A second page
 * holds the same trampolines and, in its second half, other code (TW_CODE).
 * Also maps a trampfd v1-style page: PROT_NONE, private, of an anonymous file
 * named "trampfd".
 *
 * Prints: ADDR page|tramp0|tramp2|mixed_page|code_table|data_table|target|v1_page
 * 0x..., READY.
 */
#include "common.h"

#define TW_SLOT 32
#define TW_SLOTS 4

__asm__(".text\n"
	/* Returns the data value the trampoline loaded into r10. */
	".globl tw_v2_target\n"
	".type tw_v2_target, @function\n"
	"tw_v2_target:\n"
	"	movq %r10, %rax\n"
	"	ret\n"
	".size tw_v2_target, .-tw_v2_target\n");

long tw_v2_target(void);

static unsigned long code_table[TW_SLOTS];
static unsigned long data_table[TW_SLOTS];

static unsigned char *put_movabs(unsigned char *p, unsigned char opcode, unsigned long imm)
{
	*p++ = 0x49; /* REX.W + REX.B: r8-r15 */
	*p++ = opcode;
	memcpy(p, &imm, 8);
	return p + 8;
}

int main(void)
{
	unsigned char *page, *mixed, *p;
	long (*tramp)(void);
	void *v1;
	char c;
	int x, fd;

	tw_init();
	/* Two pages with an inaccessible one between, so they stay two regions. */
	page = mmap(NULL, 3 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mixed = page + 2 * 4096;
	if (page == MAP_FAILED || mprotect(page, 4096, TW_RW) < 0 || mprotect(mixed, 4096, TW_RW) < 0) {
		tw_emit("FAIL mmap");
		return 1;
	}
	memset(page, 0xcc, 4096);
	for (x = 0; x < TW_SLOTS; x++) {
		p = put_movabs(page + x * TW_SLOT, 0xbb, (unsigned long)(uintptr_t)&code_table[x]);
		memcpy(p, "\x4d\x8b\x1b", 3); /* mov r11, [r11] */
		p = put_movabs(p + 3, 0xba, (unsigned long)(uintptr_t)&data_table[x]);
		memcpy(p, "\x4d\x8b\x12\x41\xff\xe3", 6); /* mov r10, [r10]; jmp r11 */
	}
	memcpy(mixed, page, 4096);
	tw_put_code(mixed + 2048);
	if (mprotect(page, 4096, TW_RX) < 0 || mprotect(mixed, 4096, TW_RX) < 0) {
		tw_emit("FAIL mprotect");
		return 1;
	}
	code_table[0] = code_table[2] = (unsigned long)(uintptr_t)tw_v2_target;
	data_table[0] = 0x1234;
	data_table[2] = 0x5678;
	tramp = (long (*)(void))(uintptr_t)(page + 2 * TW_SLOT);
	if (tramp() != 0x5678) {
		tw_emit("FAIL call");
		return 1;
	}
	fd = memfd_create("trampfd", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, 4096) < 0) {
		tw_emit("FAIL memfd");
		return 1;
	}
	v1 = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE, fd, 0);
	if (v1 == MAP_FAILED) {
		tw_emit("FAIL v1 mmap");
		return 1;
	}
	tw_emit("ADDR page %#lx", (unsigned long)(uintptr_t)page);
	tw_emit("ADDR tramp0 %#lx", (unsigned long)(uintptr_t)page);
	tw_emit("ADDR tramp2 %#lx", (unsigned long)(uintptr_t)(page + 2 * TW_SLOT));
	tw_emit("ADDR mixed_page %#lx", (unsigned long)(uintptr_t)mixed);
	tw_emit("ADDR code_table %#lx", (unsigned long)(uintptr_t)code_table);
	tw_emit("ADDR data_table %#lx", (unsigned long)(uintptr_t)data_table);
	tw_emit("ADDR target %#lx", (unsigned long)(uintptr_t)tw_v2_target);
	tw_emit("ADDR v1_page %#lx", (unsigned long)(uintptr_t)v1);
	tw_emit("READY");
	if (read(STDIN_FILENO, &c, 1) < 0)
		return 1;
	return 0;
}
