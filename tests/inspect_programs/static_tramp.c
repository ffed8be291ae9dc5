/*
 * A trampoline table laid out the way libffi 3.4's static trampolines are
 * (x86-64, no endbr64): one page of code in the program's own text, mapped a
 * second time from the file, read+execute, right below an anonymous
 * read+write parameter page. Trampoline X saves r10, pushes the data word of
 * parameter block X and jumps to its target word. The system libffi is built
 * without static trampolines, so this program sets up the table itself, with
 * a closure filled in as libffi's ffi_prep_closure_loc would (cif, fun,
 * user_data after the trampoline area).
 *
 * Prints: ADDR table|params|closure|target|handler|user_data|cif 0x...,
 * SLOTS <used> <total>, READY.
 */
#include "common.h"

#include <fcntl.h>
#include <ffi.h>

#define TW_TRAMP_SIZE 32
#define TW_TRAMP_COUNT (4096 / TW_TRAMP_SIZE)

__asm__(".text\n"
	".balign 4096\n"
	".globl tw_tramp_table\n"
	"tw_tramp_table:\n"
	".rept 128\n"
	"1:	subq $16, %rsp\n"
	"	movq %r10, (%rsp)\n"
	"	movq 1b+4096(%rip), %r10\n"
	"	movq %r10, 8(%rsp)\n"
	"	movq 1b+4104(%rip), %r10\n"
	"	jmp *%r10\n"
	"	.balign 32, 0xcc\n"
	".endr\n"
	".balign 4096, 0xcc\n"
	/* Returns the data word the trampoline pushed, restoring r10 and the stack. */
	".globl tw_static_target\n"
	".type tw_static_target, @function\n"
	"tw_static_target:\n"
	"	movq 8(%rsp), %rax\n"
	"	movq (%rsp), %r10\n"
	"	addq $16, %rsp\n"
	"	ret\n"
	".size tw_static_target, .-tw_static_target\n");

extern const char tw_tramp_table[];
void *tw_static_target(void);

struct tw_parm {
	void *data;
	void *target;
};

static int bias = 41;

void tw_closure_handler(ffi_cif *cif, void *ret, void **args, void *user_data)
{
	(void)cif;
	*(ffi_arg *)ret = (ffi_arg)(*(int *)args[0] + *(int *)user_data);
}

int main(void)
{
	static ffi_type *arg_types[1] = {&ffi_type_sint};
	static ffi_cif cif;
	struct tw_map self;
	struct tw_parm *params;
	ffi_closure *closure;
	void *(*tramp)(void);
	char *area, *code;
	long offset;
	char c;
	int fd;

	tw_init();
	if (tw_find_map(tw_tramp_table, &self) < 0 || ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 1,
								     &ffi_type_sint, arg_types) != FFI_OK) {
		tw_emit("FAIL setup");
		return 1;
	}
	/* The file offset of the table, from the mapping that holds it. */
	fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	{
		FILE *maps = fopen("/proc/self/maps", "re");
		char line[512];
		unsigned long start, end, off;

		offset = -1;
		while (maps && fgets(line, sizeof(line), maps))
			if (sscanf(line, "%lx-%lx %*s %lx", &start, &end, &off) == 3 &&
			    start == self.start)
				offset = (long)(off + ((uintptr_t)tw_tramp_table - start));
		if (maps)
			fclose(maps);
	}
	area = mmap(NULL, 8192, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fd < 0 || offset < 0 || area == MAP_FAILED) {
		tw_emit("FAIL map");
		return 1;
	}
	code = mmap(area, 4096, TW_RX, MAP_PRIVATE | MAP_FIXED, fd, offset);
	if (code == MAP_FAILED) {
		tw_emit("FAIL remap");
		return 1;
	}
	params = (struct tw_parm *)(code + 4096);

	closure = calloc(1, sizeof(*closure));
	closure->cif = &cif;
	closure->fun = tw_closure_handler;
	closure->user_data = &bias;
	/* Slots 0 and 5 in use, as a table with two live closures would be. */
	params[0].data = closure;
	params[0].target = (void *)tw_static_target;
	params[5 * TW_TRAMP_SIZE / sizeof(*params)].data = closure;
	params[5 * TW_TRAMP_SIZE / sizeof(*params)].target = (void *)tw_static_target;

	tramp = (void *(*)(void))(uintptr_t)code;
	if (tramp() != closure) {
		tw_emit("FAIL call");
		return 1;
	}
	tw_emit("ADDR table %#lx", (unsigned long)(uintptr_t)code);
	tw_emit("ADDR params %#lx", (unsigned long)(uintptr_t)params);
	tw_emit("ADDR closure %#lx", (unsigned long)(uintptr_t)closure);
	tw_emit("ADDR target %#lx", (unsigned long)(uintptr_t)tw_static_target);
	tw_emit("ADDR handler %#lx", (unsigned long)(uintptr_t)tw_closure_handler);
	tw_emit("ADDR user_data %#lx", (unsigned long)(uintptr_t)&bias);
	tw_emit("ADDR cif %#lx", (unsigned long)(uintptr_t)&cif);
	tw_emit("SLOTS 2 %d", TW_TRAMP_COUNT);
	tw_emit("READY");
	if (read(STDIN_FILENO, &c, 1) < 0)
		return 1;
	return 0;
}
