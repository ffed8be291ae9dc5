/* Print the trampolines real code writes, for the pattern tests:
 *   NESTED <address> <32 bytes hex>      GCC's nested-function trampoline
 *   FFI <abi> <closure> <code> <bytes>   libffi's closure trampoline, per ABI
 * then call each natively to show the bytes work. */
#include <ffi.h>
#include <stdio.h>
#include <stdlib.h>

static void dump(const unsigned char *p, int n)
{
    for (int i = 0; i < n; i++)
        printf("%02x", p[i]);
    printf("\n");
}

static void handler(ffi_cif *cif, void *ret, void **args, void *data)
{
    (void)cif; (void)data;
    *(ffi_arg *)ret = *(int *)args[0] + 1;
}

static int __attribute__((noinline)) apply(int (*f)(int), int x) { return f(x); }

static void closure_for(const char *name, ffi_abi abi, ffi_type *arg)
{
    ffi_cif *cif = malloc(sizeof *cif);
    ffi_type **types = malloc(sizeof *types);
    void *code;
    types[0] = arg;
    ffi_closure *closure = ffi_closure_alloc(sizeof(ffi_closure), &code);
    if (ffi_prep_cif(cif, abi, 1, &ffi_type_sint, types) != FFI_OK
        || ffi_prep_closure_loc(closure, cif, handler, NULL, code) != FFI_OK)
        return;
    printf("FFI %s %#lx %#lx ", name, (unsigned long)closure, (unsigned long)code);
    dump((const unsigned char *)closure, FFI_TRAMPOLINE_SIZE);
    if (abi == FFI_DEFAULT_ABI && arg == &ffi_type_sint && apply((int (*)(int))code, 41) != 42)
        printf("FFI call failed\n");
}

int main(void)
{
    int base = 1;
    int add(int v) { return v + base; }
    int (*nested)(int) = add;
    printf("NESTED %#lx ", (unsigned long)nested);
    dump((const unsigned char *)nested, 32);
    if (apply(nested, 41) != 42)
        printf("NESTED call failed\n");
    closure_for("default-int", FFI_DEFAULT_ABI, &ffi_type_sint);
    closure_for("default-double", FFI_DEFAULT_ABI, &ffi_type_double);
#ifdef __i386__
    closure_for("thiscall", FFI_THISCALL, &ffi_type_sint);
    closure_for("fastcall", FFI_FASTCALL, &ffi_type_sint);
    closure_for("stdcall", FFI_STDCALL, &ffi_type_sint);
    closure_for("register", FFI_REGISTER, &ffi_type_sint);
#endif
    return 0;
}
