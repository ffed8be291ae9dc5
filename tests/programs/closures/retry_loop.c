/* Retries a refused closure allocation forever: each ffi_closure_alloc
 * makes libffi try an RWX page, a memfd and each temporary directory, all
 * refused under a strict policy; the program then tries again. */
#include <ffi.h>
#include <stdio.h>

int main(void)
{
    void *code;
    while (ffi_closure_alloc(sizeof(ffi_closure), &code) == NULL)
        ;
    printf("allocated\n");
    return 0;
}
