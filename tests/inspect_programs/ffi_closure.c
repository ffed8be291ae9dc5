/*
 * A live libffi closure: ffi_closure_alloc + ffi_prep_closure_loc, called once,
 * then the program pauses (reading stdin) so inspect can find it. libffi puts
 * the closure in an RWX page, or, when W+X is refused (MDWE), in a memfd mapped
 * twice (writable and executable).
 *
 * Prints: ADDR closure_write|closure_exec|cif|user_data|handler 0x..., READY.
 */
#include "common.h"

#include <ffi.h>

static int bias = 41;

void tw_closure_handler(ffi_cif *cif, void *ret, void **args, void *user_data)
{
	(void)cif;
	*(ffi_arg *)ret = (ffi_arg)(*(int *)args[0] + *(int *)user_data);
}

int main(void)
{
	ffi_type *arg_types[1] = {&ffi_type_sint};
	ffi_closure *closure;
	void *code = NULL;
	ffi_cif cif;
	int (*fn)(int);
	char c;

	tw_init();
	closure = ffi_closure_alloc(sizeof(ffi_closure), &code);
	if (!closure) {
		tw_emit("FAIL ffi_closure_alloc");
		return 1;
	}
	if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 1, &ffi_type_sint, arg_types) != FFI_OK ||
	    ffi_prep_closure_loc(closure, &cif, tw_closure_handler, &bias, code) != FFI_OK) {
		tw_emit("FAIL ffi_prep");
		return 1;
	}
	fn = (int (*)(int))(uintptr_t)code;
	if (fn(1) != 42) {
		tw_emit("FAIL call");
		return 1;
	}
	tw_emit("ADDR closure_write %#lx", (unsigned long)(uintptr_t)closure);
	tw_emit("ADDR closure_exec %#lx", (unsigned long)(uintptr_t)code);
	tw_emit("ADDR cif %#lx", (unsigned long)(uintptr_t)&cif);
	tw_emit("ADDR user_data %#lx", (unsigned long)(uintptr_t)&bias);
	tw_emit("ADDR handler %#lx", (unsigned long)(uintptr_t)tw_closure_handler);
	tw_emit("READY");
	if (read(STDIN_FILENO, &c, 1) < 0)
		return 1;
	ffi_closure_free(closure);
	return 0;
}
