/* trampwatch's closure library (trampfd mode of `trampwatch run --closures`,
 * docs/closures.md), preloaded into the traced tree.
 *
 * It interposes libffi's closure API. A closure's data lives in ordinary
 * read-write memory (malloc); its executable part is a slot of a trampfd v2
 * trampoline table, served by trampwatch's emulator: the slot loads the
 * closure's address into r10 and jumps to the handler libffi itself would
 * have used. That handler is read from the trampoline libffi's own
 * ffi_prep_closure_loc writes (into the closure's data, where it is never
 * executed). No page is ever writable and executable, and nothing
 * executable has a writable alias.
 *
 * Built for x86-64. Built -m32 it interposes nothing (trampfd is served to
 * x86-64 programs only): 32-bit programs keep their libffi, which emulate
 * mode serves. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __x86_64__
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "trampfd.h"

/* The call that tells trampwatch a closure was served (a syscall number no
 * kernel has: without the tracer it fails with ENOSYS and nothing happens). */
#ifndef TW_CLOSURE_NR
#define TW_CLOSURE_NR 1021
#endif

typedef int ffi_status_t;          /* ffi_status: FFI_OK is 0 */
#define TW_FFI_OK 0
#define TW_FFI_BAD_ABI 2
typedef void handler_fn(void *cif, void *ret, void **args, void *user_data);
typedef void *alloc_fn(size_t size, void **code);
typedef void free_fn(void *closure);
typedef ffi_status_t prep_loc_fn(void *closure, void *cif, handler_fn *fun, void *user_data, void *codeloc);
typedef ffi_status_t prep_fn(void *closure, void *cif, handler_fn *fun, void *user_data);

#define SLOTS 128                  /* a v2 table's trampolines (trampfd_info.ntrampolines) */

struct table {
	struct table *next;
	char *code;                    /* the read+execute table page */
	uint32_t code_size;
	uint64_t code_table[SLOTS];    /* where each slot jumps */
	uint64_t data_table[SLOTS];    /* what each slot loads into r10 */
	uint32_t free[SLOTS];
	uint32_t nfree;
};

/* Sits before the closure libffi sees, in the same allocation. */
struct header {
	struct table *table;
	uint32_t slot;
	uint32_t announced;            /* trampwatch was told of it (once per allocation) */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct table *tables;
static int unavailable;            /* trampfd is not served here: libffi's own allocator */

/* The closures this library allocated (an open-addressing set of addresses;
 * 1 marks a deleted entry), so a closure from anywhere else is never read
 * outside its bounds. Guarded by `lock`. */
static uintptr_t *known;
static size_t known_size, known_used;
#define DELETED ((uintptr_t)1)

static size_t slot_of(uintptr_t key, size_t size)
{
	return (size_t)((key >> 4) * 0x9E3779B97F4A7C15ULL) & (size - 1);
}

static int remember(uintptr_t key)
{
	if ((known_used + 1) * 2 > known_size) {
		size_t size = known_size ? known_size * 2 : 256;
		uintptr_t *grown = calloc(size, sizeof(*grown));
		if (grown == NULL)
			return 0;
		for (size_t i = 0; i < known_size; i++) {
			if (known[i] > DELETED) {
				size_t at = slot_of(known[i], size);
				while (grown[at])
					at = (at + 1) & (size - 1);
				grown[at] = known[i];
			}
		}
		free(known);
		known = grown;
		known_size = size;
		known_used = 0;
		for (size_t i = 0; i < size; i++)
			known_used += known[i] != 0;
	}
	size_t at = slot_of(key, known_size);
	while (known[at] > DELETED)
		at = (at + 1) & (known_size - 1);
	if (known[at] == 0)
		known_used++;
	known[at] = key;
	return 1;
}

static uintptr_t *find(uintptr_t key)
{
	if (known_size == 0)
		return NULL;
	for (size_t at = slot_of(key, known_size); known[at]; at = (at + 1) & (known_size - 1))
		if (known[at] == key)
			return &known[at];
	return NULL;
}

/* --- the real libffi ------------------------------------------------------------------- */

struct find {
	const char *path;
};

static int find_libffi(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	if (info->dlpi_name && strstr(info->dlpi_name, "/libffi.so")) {
		((struct find *)data)->path = info->dlpi_name;
		return 1;
	}
	return 0;
}

/* libffi's own function `name`: the next definition after ours, or the one
 * in a libffi loaded RTLD_LOCAL (as Python extension modules load it). */
static void *real(const char *name)
{
	void *fn = dlsym(RTLD_NEXT, name);
	if (fn == NULL) {
		struct find found = {NULL};
		dl_iterate_phdr(find_libffi, &found);
		if (found.path != NULL) {
			void *handle = dlopen(found.path, RTLD_LAZY | RTLD_NOLOAD);
			if (handle != NULL)
				fn = dlsym(handle, name);
		}
	}
	if (fn == NULL) {
		fprintf(stderr, "trampwatch closures: %s not found in any loaded libffi\n", name);
		abort();
	}
	return fn;
}

#define REAL(type, name) \
	static type *name##_real; \
	if (name##_real == NULL) \
		name##_real = (type *)real(#name)

/* --- tables ---------------------------------------------------------------------------- */

static void unprepared(void)
{
	fprintf(stderr, "trampwatch closures: a closure was called before ffi_prep_closure_loc\n");
	abort();
}

static struct table *new_table(void)
{
	struct trampfd_info info;
	int fd = trampfd_create_table(&info);
	if (fd < 0)
		return NULL;
	struct table *table = calloc(1, sizeof(*table));
	if (table == NULL || info.ntrampolines < SLOTS) {
		free(table);
		close(fd);
		return NULL;
	}
	struct trampfd_code code = {SLOTS, TRAMPFD_V2_REG_R11, (uint64_t)(uintptr_t)table->code_table};
	struct trampfd_data data = {TRAMPFD_V2_REG_R10, 0, (uint64_t)(uintptr_t)table->data_table};
	table->code = trampfd_map_table(fd, &info, &code, &data);
	close(fd); /* the mapping stays */
	if (table->code == NULL) {
		free(table);
		return NULL;
	}
	table->code_size = info.code_size;
	for (uint32_t i = 0; i < SLOTS; i++) {
		table->free[i] = SLOTS - 1 - i;
		table->code_table[i] = (uint64_t)(uintptr_t)unprepared;
	}
	table->nfree = SLOTS;
	table->next = tables;
	tables = table;
	return table;
}

static struct header *ours(void *closure)
{
	pthread_mutex_lock(&lock);
	int mine = closure != NULL && find((uintptr_t)closure) != NULL;
	pthread_mutex_unlock(&lock);
	return mine ? (struct header *)closure - 1 : NULL;
}

void *ffi_closure_alloc(size_t size, void **code)
{
	REAL(alloc_fn, ffi_closure_alloc);
	pthread_mutex_lock(&lock);
	struct table *table = NULL;
	if (!unavailable) {
		for (table = tables; table != NULL && table->nfree == 0; table = table->next)
			;
		/* No trampfd at all (not under trampwatch): libffi's own allocator. */
		if (table == NULL && (table = new_table()) == NULL && tables == NULL)
			unavailable = 1;
	}
	if (unavailable) {
		pthread_mutex_unlock(&lock);
		return ffi_closure_alloc_real(size, code);
	}
	struct header *header = table ? calloc(1, sizeof(*header) + size) : NULL;
	if (header == NULL || !remember((uintptr_t)(header + 1))) {
		pthread_mutex_unlock(&lock);
		free(header);
		errno = ENOMEM;
		return NULL;
	}
	uint32_t slot = table->free[--table->nfree];
	header->table = table;
	header->slot = slot;
	table->data_table[slot] = (uint64_t)(uintptr_t)(header + 1);
	table->code_table[slot] = (uint64_t)(uintptr_t)unprepared;
	pthread_mutex_unlock(&lock);
	*code = table->code + (size_t)table->code_size * slot;
	return header + 1;
}

void ffi_closure_free(void *closure)
{
	REAL(free_fn, ffi_closure_free);
	struct header *header = ours(closure);
	if (header == NULL) {
		ffi_closure_free_real(closure);
		return;
	}
	pthread_mutex_lock(&lock);
	*find((uintptr_t)closure) = DELETED;
	struct table *table = header->table;
	table->code_table[header->slot] = (uint64_t)(uintptr_t)unprepared;
	table->data_table[header->slot] = 0;
	table->free[table->nfree++] = header->slot;
	pthread_mutex_unlock(&lock);
	free(header);
}

/* Read what libffi's trampoline (written into the closure) would do:
 * [endbr64] lea disp(%rip),%r10; jmp *disp(%rip) (libffi 3.3 and later).
 * Returns the handler and sets *data to what r10 would hold, or 0 when the
 * bytes are not that trampoline. */
static uint64_t handler_of(const unsigned char *tramp, uint64_t *data)
{
	static const unsigned char endbr64[4] = {0xf3, 0x0f, 0x1e, 0xfa};
	size_t at = memcmp(tramp, endbr64, 4) == 0 ? 4 : 0;
	int32_t lea, jmp;
	uint64_t target;
	if (tramp[at] != 0x4c || tramp[at + 1] != 0x8d || tramp[at + 2] != 0x15 || tramp[at + 7] != 0xff ||
	    tramp[at + 8] != 0x25)
		return 0;
	memcpy(&lea, tramp + at + 3, 4);
	memcpy(&jmp, tramp + at + 9, 4);
	*data = (uint64_t)(uintptr_t)(tramp + at + 7) + (int64_t)lea;
	memcpy(&target, tramp + at + 13 + jmp, 8);
	return target;
}

/* After libffi prepared `closure` (with codeloc = closure), point its slot at
 * libffi's handler; tell trampwatch. */
static ffi_status_t serve(struct header *header, ffi_status_t status, void *caller)
{
	if (status != TW_FFI_OK)
		return status;
	void *closure = header + 1;
	uint64_t data = 0, target = handler_of(closure, &data);
	if (target == 0 || data != (uint64_t)(uintptr_t)closure) {
		fprintf(stderr, "trampwatch closures: this libffi writes a trampoline trampfd mode does not know "
				"(docs/closures.md); use --closures=emulate\n");
		return TW_FFI_BAD_ABI;
	}
	pthread_mutex_lock(&lock);
	header->table->data_table[header->slot] = data;
	header->table->code_table[header->slot] = target;
	char *code = header->table->code + (size_t)header->table->code_size * header->slot;
	/* A closure prepared again (another signature) keeps its slot: it was
	 * announced already. */
	int announce = !header->announced;
	header->announced = 1;
	pthread_mutex_unlock(&lock);
	if (announce) {
		int saved = errno;
		syscall(TW_CLOSURE_NR, code, target, closure, caller);
		errno = saved;
	}
	return status;
}

/* libffi's own prep functions call each other through its PLT, so into
 * this library again: ffi_prep_closure calls ffi_prep_closure_loc, the raw
 * ones call ffi_prep_closure_loc with their own handler. Only the outermost
 * call on a thread serves (and announces) the closure, once; the calls
 * inside it go to libffi as they came. */
static __thread int preparing;

/* Prepare one of our closures with libffi's `real` (its codeloc is the
 * closure itself: libffi writes its trampoline there, where serve reads
 * it), then serve it. */
#define PREPARE(real_call) \
	do { \
		preparing++; \
		ffi_status_t status = (real_call); \
		preparing--; \
		return serve(header, status, __builtin_return_address(0)); \
	} while (0)

ffi_status_t ffi_prep_closure_loc(void *closure, void *cif, handler_fn *fun, void *user_data, void *codeloc)
{
	REAL(prep_loc_fn, ffi_prep_closure_loc);
	struct header *header = preparing ? NULL : ours(closure);
	if (header == NULL)
		return ffi_prep_closure_loc_real(closure, cif, fun, user_data, codeloc);
	PREPARE(ffi_prep_closure_loc_real(closure, cif, fun, user_data, closure));
}

ffi_status_t ffi_prep_closure(void *closure, void *cif, handler_fn *fun, void *user_data)
{
	REAL(prep_fn, ffi_prep_closure);
	struct header *header = preparing ? NULL : ours(closure);
	if (header == NULL)
		return ffi_prep_closure_real(closure, cif, fun, user_data);
	PREPARE(ffi_prep_closure_real(closure, cif, fun, user_data));
}

/* The raw and Java raw closures prepare through ffi_prep_closure_loc with
 * codeloc as their data pointer: prepare them at the closure itself. */
#define RAW(name)                                                                                             \
	ffi_status_t name##_loc(void *closure, void *cif, handler_fn *fun, void *user_data, void *codeloc)   \
	{                                                                                                     \
		REAL(prep_loc_fn, name##_loc);                                                                \
		struct header *header = preparing ? NULL : ours(closure);                                     \
		if (header == NULL)                                                                           \
			return name##_loc_real(closure, cif, fun, user_data, codeloc);                        \
		PREPARE(name##_loc_real(closure, cif, fun, user_data, closure));                              \
	}                                                                                                     \
	ffi_status_t name(void *closure, void *cif, handler_fn *fun, void *user_data)                         \
	{                                                                                                     \
		REAL(prep_fn, name);                                                                          \
		struct header *header = preparing ? NULL : ours(closure);                                     \
		if (header == NULL)                                                                           \
			return name##_real(closure, cif, fun, user_data);                                     \
		PREPARE(name##_real(closure, cif, fun, user_data));                                           \
	}

RAW(ffi_prep_raw_closure)
RAW(ffi_prep_java_raw_closure)

#endif /* __x86_64__ */
