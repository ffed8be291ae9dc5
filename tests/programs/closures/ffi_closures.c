/* libffi closures used directly, over many signatures: integers and
 * pointers, float/double/long double, structs by value of odd sizes (nested,
 * with alignment holes), mixed arguments that spill to the stack, varargs,
 * small struct returns, closures allocated and freed in a loop, closures
 * from several threads at once. Each check prints "VAL <name> <value>"; the
 * values are computed from what the handler received, so a wrong register
 * or stack slot changes the output. Builds -m32 too. Ends with DONE. */
#include <ffi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *make(ffi_cif *cif, void (*handler)(ffi_cif *, void *, void **, void *), void *data)
{
    void *code;
    ffi_closure *closure = ffi_closure_alloc(sizeof(ffi_closure), &code);
    if (closure == NULL || ffi_prep_closure_loc(closure, cif, handler, data, code) != FFI_OK) {
        printf("VAL make failed\n");
        exit(1);
    }
    return code;
}

/* --- integers and pointers --------------------------------------------------------- */

static void h_ints(ffi_cif *cif, void *ret, void **args, void *data)
{
    (void)cif;
    *(ffi_arg *)ret = *(int *)args[0] * 3 + *(int *)args[1] + (int)strlen(*(char **)args[2]) + *(int *)data;
}

/* --- floating point ------------------------------------------------------------------ */

static void h_floats(ffi_cif *cif, void *ret, void **args, void *data)
{
    (void)cif; (void)data;
    *(double *)ret = *(float *)args[0] * 2.0 + *(double *)args[1] + (double)*(long double *)args[2];
}

static void h_longdouble(ffi_cif *cif, void *ret, void **args, void *data)
{
    (void)cif; (void)data;
    *(long double *)ret = *(long double *)args[0] / 3.0L + *(double *)args[1];
}

/* --- structs by value -------------------------------------------------------------------- */

struct s1 { char a; };
struct s3 { char a, b, c; };
struct s7 { char a; short b; char c; short d; };           /* holes after a and c */
struct s12 { float f; int i; char c; };                     /* tail hole */
struct s24 { char c; double d; short s; };                  /* holes */
struct nested { struct s3 in; double d; char tail; };       /* nested, holes */
struct s64 { double d[8]; };

static ffi_type *s1_el[] = { &ffi_type_schar, NULL };
static ffi_type *s3_el[] = { &ffi_type_schar, &ffi_type_schar, &ffi_type_schar, NULL };
static ffi_type *s7_el[] = { &ffi_type_schar, &ffi_type_sshort, &ffi_type_schar, &ffi_type_sshort, NULL };
static ffi_type *s12_el[] = { &ffi_type_float, &ffi_type_sint, &ffi_type_schar, NULL };
static ffi_type *s24_el[] = { &ffi_type_schar, &ffi_type_double, &ffi_type_sshort, NULL };
static ffi_type t_s1 = { 0, 0, FFI_TYPE_STRUCT, s1_el };
static ffi_type t_s3 = { 0, 0, FFI_TYPE_STRUCT, s3_el };
static ffi_type t_s7 = { 0, 0, FFI_TYPE_STRUCT, s7_el };
static ffi_type t_s12 = { 0, 0, FFI_TYPE_STRUCT, s12_el };
static ffi_type t_s24 = { 0, 0, FFI_TYPE_STRUCT, s24_el };
static ffi_type *nested_el[] = { &t_s3, &ffi_type_double, &ffi_type_schar, NULL };
static ffi_type t_nested = { 0, 0, FFI_TYPE_STRUCT, nested_el };
static ffi_type *s64_el[] = { &ffi_type_double, &ffi_type_double, &ffi_type_double, &ffi_type_double,
                              &ffi_type_double, &ffi_type_double, &ffi_type_double, &ffi_type_double, NULL };
static ffi_type t_s64 = { 0, 0, FFI_TYPE_STRUCT, s64_el };

static void h_structs(ffi_cif *cif, void *ret, void **args, void *data)
{
    (void)cif; (void)data;
    struct s1 *a = args[0]; struct s3 *b = args[1]; struct s7 *c = args[2]; struct s12 *d = args[3];
    struct s24 *e = args[4]; struct nested *f = args[5]; struct s64 *g = args[6];
    double sum = a->a + b->a * 2 + b->b * 3 + b->c * 4 + c->a + c->b * 5 + c->c + c->d * 7 + d->f + d->i + d->c
                 + e->c + e->d + e->s + f->in.a + f->in.b + f->in.c + f->d + f->tail;
    for (int i = 0; i < 8; i++)
        sum += g->d[i] * (i + 1);
    *(double *)ret = sum;
}

/* --- many mixed arguments: past the registers, onto the stack ---------------------------------- */

static void h_spill(ffi_cif *cif, void *ret, void **args, void *data)
{
    (void)data;
    double sum = 0;
    for (unsigned i = 0; i < cif->nargs; i++)
        sum += (i % 2 ? *(double *)args[i] : *(int *)args[i]) * (i + 1);
    *(double *)ret = sum;
}

/* --- varargs ------------------------------------------------------------------------------------ */

static void h_varargs(ffi_cif *cif, void *ret, void **args, void *data)
{
    (void)cif; (void)data;
    *(ffi_arg *)ret = *(int *)args[0] * 100 + *(int *)args[1] * 10 + (int)(*(double *)args[2] * 4);
}

/* --- small struct returns ------------------------------------------------------------------------ */

struct pair { int a, b; };
struct fpair { float x, y; };
static ffi_type *pair_el[] = { &ffi_type_sint, &ffi_type_sint, NULL };
static ffi_type *fpair_el[] = { &ffi_type_float, &ffi_type_float, NULL };
static ffi_type t_pair = { 0, 0, FFI_TYPE_STRUCT, pair_el };
static ffi_type t_fpair = { 0, 0, FFI_TYPE_STRUCT, fpair_el };

static void h_pair(ffi_cif *cif, void *ret, void **args, void *data)
{
    (void)cif; (void)data;
    struct pair p = { *(int *)args[0] + 1, *(int *)args[0] * 2 };
    memcpy(ret, &p, sizeof p);
}

static void h_fpair(ffi_cif *cif, void *ret, void **args, void *data)
{
    (void)cif; (void)data;
    struct fpair p = { *(float *)args[0] / 2, *(float *)args[0] * 4 };
    memcpy(ret, &p, sizeof p);
}

static void h_s3(ffi_cif *cif, void *ret, void **args, void *data)
{
    (void)cif; (void)data;
    struct s3 s = { 1, (char)*(int *)args[0], 3 };
    memcpy(ret, &s, sizeof s);
}

/* --- threads --------------------------------------------------------------------------------------- */

static void h_count(ffi_cif *cif, void *ret, void **args, void *data)
{
    (void)cif;
    *(ffi_arg *)ret = *(int *)args[0] + *(int *)data;
}

static void *worker(void *arg)
{
    int id = (int)(long)arg;
    ffi_cif cif;
    ffi_type *types[] = { &ffi_type_sint };
    ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 1, &ffi_type_sint, types);
    long total = 0;
    for (int round = 0; round < 20; round++) {
        void *code;
        ffi_closure *closure = ffi_closure_alloc(sizeof(ffi_closure), &code);
        int offset = id * 1000 + round;
        if (closure == NULL || ffi_prep_closure_loc(closure, &cif, h_count, &offset, code) != FFI_OK)
            return (void *)-1L;
        for (int i = 0; i < 50; i++)
            total += ((int (*)(int))code)(i);
        ffi_closure_free(closure);
    }
    return (void *)total;
}

int main(void)
{
    ffi_cif cif;
    int seven = 7;

    ffi_type *ints[] = { &ffi_type_sint, &ffi_type_sint, &ffi_type_pointer };
    ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 3, &ffi_type_sint, ints);
    int (*f_ints)(int, int, const char *) = (int (*)(int, int, const char *))make(&cif, h_ints, &seven);
    printf("VAL ints %d %d\n", f_ints(5, -2, "closure"), f_ints(-100, 40, ""));

    ffi_cif cif_f;
    ffi_type *floats[] = { &ffi_type_float, &ffi_type_double, &ffi_type_longdouble };
    ffi_prep_cif(&cif_f, FFI_DEFAULT_ABI, 3, &ffi_type_double, floats);
    double (*f_floats)(float, double, long double) = (double (*)(float, double, long double))make(&cif_f, h_floats, NULL);
    printf("VAL floats %.6f\n", f_floats(1.25f, 3.5, 10.0L));

    ffi_cif cif_ld;
    ffi_type *lds[] = { &ffi_type_longdouble, &ffi_type_double };
    ffi_prep_cif(&cif_ld, FFI_DEFAULT_ABI, 2, &ffi_type_longdouble, lds);
    long double (*f_ld)(long double, double) = (long double (*)(long double, double))make(&cif_ld, h_longdouble, NULL);
    printf("VAL longdouble %.10Lf\n", f_ld(10.0L, 0.5));

    ffi_cif cif_s;
    ffi_type *structs[] = { &t_s1, &t_s3, &t_s7, &t_s12, &t_s24, &t_nested, &t_s64 };
    ffi_prep_cif(&cif_s, FFI_DEFAULT_ABI, 7, &ffi_type_double, structs);
    typedef double (*structs_fn)(struct s1, struct s3, struct s7, struct s12, struct s24, struct nested, struct s64);
    structs_fn f_structs = (structs_fn)make(&cif_s, h_structs, NULL);
    struct s1 a = { 1 }; struct s3 b = { 2, 3, 4 }; struct s7 c = { 5, 6, 7, 8 }; struct s12 d = { 9.5f, 10, 11 };
    struct s24 e = { 12, 13.25, 14 }; struct nested f = { { 15, 16, 17 }, 18.5, 19 };
    struct s64 g; for (int i = 0; i < 8; i++) g.d[i] = i + 0.5;
    printf("VAL structs %.4f sizes=%zu,%zu,%zu,%zu,%zu,%zu,%zu\n", f_structs(a, b, c, d, e, f, g), sizeof a, sizeof b,
           sizeof c, sizeof d, sizeof e, sizeof f, sizeof g);

    ffi_cif cif_spill;
    ffi_type *spill[16];
    for (int i = 0; i < 16; i++)
        spill[i] = i % 2 ? &ffi_type_double : &ffi_type_sint;
    ffi_prep_cif(&cif_spill, FFI_DEFAULT_ABI, 16, &ffi_type_double, spill);
    typedef double (*spill_fn)(int, double, int, double, int, double, int, double, int, double, int, double, int,
                               double, int, double);
    spill_fn f_spill = (spill_fn)make(&cif_spill, h_spill, NULL);
    printf("VAL spill %.4f\n", f_spill(1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7, 7.5, 8, 8.5));

    ffi_cif cif_var;
    ffi_type *vars[] = { &ffi_type_sint, &ffi_type_sint, &ffi_type_double };
    ffi_prep_cif_var(&cif_var, FFI_DEFAULT_ABI, 1, 3, &ffi_type_sint, vars);
    int (*f_var)(int, ...) = (int (*)(int, ...))make(&cif_var, h_varargs, NULL);
    printf("VAL varargs %d\n", f_var(3, 7, 2.5));

    ffi_cif cif_pair, cif_fpair, cif_s3;
    ffi_type *one_int[] = { &ffi_type_sint };
    ffi_type *one_float[] = { &ffi_type_float };
    ffi_prep_cif(&cif_pair, FFI_DEFAULT_ABI, 1, &t_pair, one_int);
    ffi_prep_cif(&cif_fpair, FFI_DEFAULT_ABI, 1, &t_fpair, one_float);
    ffi_prep_cif(&cif_s3, FFI_DEFAULT_ABI, 1, &t_s3, one_int);
    struct pair p = ((struct pair (*)(int))make(&cif_pair, h_pair, NULL))(20);
    struct fpair q = ((struct fpair (*)(float))make(&cif_fpair, h_fpair, NULL))(3.0f);
    struct s3 r = ((struct s3 (*)(int))make(&cif_s3, h_s3, NULL))(42);
    printf("VAL returns %d,%d %.2f,%.2f %d,%d,%d\n", p.a, p.b, q.x, q.y, r.a, r.b, r.c);

    long loop = 0;
    for (int i = 0; i < 300; i++) {
        void *code;
        ffi_closure *closure = ffi_closure_alloc(sizeof(ffi_closure), &code);
        int offset = i;
        if (closure == NULL || ffi_prep_closure_loc(closure, &cif_pair, h_count, &offset, code) != FFI_OK)
            return 1;
        ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 1, &ffi_type_sint, one_int);
        ffi_prep_closure_loc(closure, &cif, h_count, &offset, code);
        loop += ((int (*)(int))code)(i);
        ffi_closure_free(closure);
    }
    printf("VAL alloc-free %ld\n", loop);

    pthread_t threads[4];
    for (long i = 0; i < 4; i++)
        pthread_create(&threads[i], NULL, worker, (void *)i);
    long total = 0;
    for (int i = 0; i < 4; i++) {
        void *result;
        pthread_join(threads[i], &result);
        total += (long)result;
    }
    printf("VAL threads %ld\n", total);
    printf("DONE\n");
    return 0;
}
