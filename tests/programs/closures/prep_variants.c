/* One closure prepared by each of libffi's prep functions: ffi_prep_closure_loc,
 * ffi_prep_closure (which calls ffi_prep_closure_loc inside libffi), and the
 * raw and Java raw ones, with and without _loc (which call
 * ffi_prep_closure_loc with a handler of libffi's own). Each is called once
 * and freed. Then one closure prepared twice, for an int and then for a
 * double argument (libffi's other handler), called as the second. Seven
 * closures, eight preparations. Prints "VAL <prep> <value>" per call, then
 * DONE. */
#define _GNU_SOURCE
#include <ffi.h>
#include <stdio.h>
#include <stdlib.h>

static void plain(ffi_cif *cif, void *ret, void **args, void *data)
{
    (void)cif;
    *(ffi_arg *)ret = *(int *)args[0] * 10 + *(int *)data;
}

static void raw(ffi_cif *cif, void *ret, ffi_raw *args, void *data)
{
    (void)cif;
    *(ffi_arg *)ret = args[0].sint * 100 + *(int *)data;
}

static void twice(ffi_cif *cif, void *ret, void **args, void *data)
{
    (void)cif;
    *(double *)ret = *(double *)args[0] * 2 + *(int *)data;
}

static void java_raw(ffi_cif *cif, void *ret, ffi_java_raw *args, void *data)
{
    (void)cif;
    *(ffi_arg *)ret = args[0].sint * 1000 + *(int *)data;
}

enum prep { LOC, LEGACY, RAW_LOC, RAW, JAVA_LOC, JAVA };
static const char *const names[] = {"ffi_prep_closure_loc", "ffi_prep_closure", "ffi_prep_raw_closure_loc",
                                    "ffi_prep_raw_closure", "ffi_prep_java_raw_closure_loc",
                                    "ffi_prep_java_raw_closure"};

int main(void)
{
    ffi_cif cif;
    ffi_type *types[] = { &ffi_type_sint };
    int data = 7;

    if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 1, &ffi_type_sint, types) != FFI_OK)
        return 1;
    for (int prep = LOC; prep <= JAVA; prep++) {
        void *code;
        void *closure = ffi_closure_alloc(sizeof(ffi_java_raw_closure) > sizeof(ffi_raw_closure)
                                          ? sizeof(ffi_java_raw_closure) : sizeof(ffi_raw_closure), &code);
        ffi_status status = FFI_BAD_ABI;
        if (closure == NULL)
            return 1;
        switch (prep) {
        case LOC: status = ffi_prep_closure_loc(closure, &cif, plain, &data, code); break;
        case LEGACY: status = ffi_prep_closure(closure, &cif, plain, &data); break;
        case RAW_LOC: status = ffi_prep_raw_closure_loc(closure, &cif, raw, &data, code); break;
        case RAW: status = ffi_prep_raw_closure(closure, &cif, raw, &data); break;
        case JAVA_LOC: status = ffi_prep_java_raw_closure_loc(closure, &cif, java_raw, &data, code); break;
        case JAVA: status = ffi_prep_java_raw_closure(closure, &cif, java_raw, &data); break;
        }
        if (status != FFI_OK) {
            printf("VAL %s failed %d\n", names[prep], (int)status);
            return 1;
        }
        /* Called at its code address: the legacy forms prepare the closure to
         * run at its own address, which is the same one where libffi's
         * allocator maps no separate code page (Debian's); under
         * --closures=trampfd the code address is the closure's slot. */
        int (*fn)(int) = (int (*)(int))code;
        printf("VAL %s %d\n", names[prep], fn(prep + 1));
        ffi_closure_free(closure);
    }
    ffi_cif cif_double;
    ffi_type *doubles[] = { &ffi_type_double };
    void *code;
    ffi_closure *closure = ffi_closure_alloc(sizeof(ffi_closure), &code);
    if (closure == NULL || ffi_prep_cif(&cif_double, FFI_DEFAULT_ABI, 1, &ffi_type_double, doubles) != FFI_OK
        || ffi_prep_closure_loc(closure, &cif, plain, &data, code) != FFI_OK
        || ffi_prep_closure_loc(closure, &cif_double, twice, &data, code) != FFI_OK)
        return 1;
    printf("VAL prepared-twice %.1f\n", ((double (*)(double))code)(1.25));
    ffi_closure_free(closure);
    printf("DONE\n");
    return 0;
}
