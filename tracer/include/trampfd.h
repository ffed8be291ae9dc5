/*
 * trampfd.h -- the trampfd API (RFC v1 and v2), for programs.
 *
 * No released kernel has trampfd; `trampwatch run --emulate-trampfd -- PROG`
 * serves it to PROG (docs/trampfd.md). Struct layouts and constants are
 * bit-exact with the RFC, so a program built against the RFC's header runs
 * unchanged, and one built against this header would run on an RFC kernel.
 * Every struct has the same layout on 32 and 64 bit.
 *
 * Register name enums are per version and differ: use TRAMPFD_REG_* in v1
 * register contexts and TRAMPFD_V2_REG_* in v2 code/data descriptors.
 *
 * The wrappers use syscall(), pread() and pwrite(): compile with the GNU
 * dialect (gcc's default) or define _DEFAULT_SOURCE.
 *
 * Define TRAMPFD_NR before including to use another syscall number (match
 * it with `trampwatch run --emulate-trampfd --trampfd-nr N`).
 */
#ifndef TRAMPWATCH_TRAMPFD_H
#define TRAMPWATCH_TRAMPFD_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef TRAMPFD_NR
#define TRAMPFD_NR 440 /* the RFC's number; process_madvise on current kernels */
#endif

#define TRAMPFD_PAGE_SIZE 4096

/* ---- v1: fault-based ("secure") trampolines ------------------------------ */

#define TRAMPFD_USER 0      /* the only type */
#define TRAMPFD_NUM_TYPES 1

/* Symbolic file offsets of the contexts (pread/pwrite, or lseek then read/write). */
#define TRAMPFD_MAP_OFFSET 0         /* read:  struct trampfd_map */
#define TRAMPFD_REGS_OFFSET 1        /* read/write: struct trampfd_regs */
#define TRAMPFD_STACK_OFFSET 2       /* read/write: struct trampfd_stack */
#define TRAMPFD_ALLOWED_PCS_OFFSET 3 /* write: struct trampfd_values */

#define TRAMPFD_MAX_REGS 40
#define TRAMPFD_MAX_DATA_SIZE 64
#define TRAMPFD_MAX_STACK_OFFSET 256
#define TRAMPFD_MAX_PCS 16

#define TRAMPFD_SET_SP 0x1 /* struct trampfd_stack.flags */

struct trampfd_user {
	uint32_t flags;    /* must be 0 */
	uint32_t reserved; /* must be 0 */
};

struct trampfd_map {
	uint32_t size;    /* one page */
	uint32_t prot;    /* PROT_NONE */
	uint32_t flags;   /* MAP_PRIVATE */
	uint32_t offset;  /* 0 */
	uint32_t ioffset; /* the trampoline is at mapping + ioffset */
	uint32_t reserved;
};

struct trampfd_reg {
	uint32_t name; /* enum trampfd_reg_name */
	uint32_t reserved;
	uint64_t value;
};

struct trampfd_regs {
	uint32_t nregs; /* 0 removes the context */
	uint32_t reserved;
	struct trampfd_reg regs[];
};

struct trampfd_stack {
	uint32_t flags;  /* TRAMPFD_SET_SP */
	uint32_t offset; /* bytes below the stack pointer, at most TRAMPFD_MAX_STACK_OFFSET */
	uint32_t size;   /* at most TRAMPFD_MAX_DATA_SIZE; 0 removes the context */
	uint32_t reserved;
	uint8_t data[];
};

struct trampfd_values {
	uint32_t nvalues; /* 0 removes the list */
	uint32_t reserved;
	uint64_t values[];
};

/* v1 register names (x86-64): 32-bit names first; contexts use 64-bit names only. */
enum trampfd_reg_name {
	TRAMPFD_REG_EAX = 0,
	TRAMPFD_REG_EBX,
	TRAMPFD_REG_ECX,
	TRAMPFD_REG_EDX,
	TRAMPFD_REG_ESI,
	TRAMPFD_REG_EDI,
	TRAMPFD_REG_EBP,
	TRAMPFD_REG_EIP,
	TRAMPFD_REG_RAX = 8,
	TRAMPFD_REG_RBX,
	TRAMPFD_REG_RCX,
	TRAMPFD_REG_RDX,
	TRAMPFD_REG_RSI,
	TRAMPFD_REG_RDI,
	TRAMPFD_REG_RBP,
	TRAMPFD_REG_R8,
	TRAMPFD_REG_R9,
	TRAMPFD_REG_R10,
	TRAMPFD_REG_R11,
	TRAMPFD_REG_R12,
	TRAMPFD_REG_R13,
	TRAMPFD_REG_R14,
	TRAMPFD_REG_R15,
	TRAMPFD_REG_RIP = 23,
	TRAMPFD_REG_MAX = 24 /* end marker */
};

/* ---- v2: trampoline tables ("performant") --------------------------------- */

#define TRAMPFD_CODE 0 /* write: struct trampfd_code */
#define TRAMPFD_DATA 1 /* write: struct trampfd_data */

struct trampfd_info {
	uint32_t ntrampolines; /* how many fit in the table page */
	uint32_t code_size;    /* bytes per trampoline */
	uint32_t code_offset;  /* the mmap offset of the table */
	uint32_t reserved;
};

struct trampfd_code {
	uint32_t ntrampolines; /* at most info.ntrampolines */
	uint32_t reg;          /* enum trampfd_v2_reg_name: gets code_table[X], jumped to */
	uint64_t table;        /* address of the code-address array */
};

struct trampfd_data {
	uint32_t reg;          /* enum trampfd_v2_reg_name: gets data_table[X] */
	uint32_t reserved;
	uint64_t table;        /* address of the data-address array */
};

/* v2 register names (x86-64): no PC names. */
enum trampfd_v2_reg_name {
	TRAMPFD_V2_REG_EAX = 0,
	TRAMPFD_V2_REG_EBX,
	TRAMPFD_V2_REG_ECX,
	TRAMPFD_V2_REG_EDX,
	TRAMPFD_V2_REG_ESI,
	TRAMPFD_V2_REG_EDI,
	TRAMPFD_V2_REG_EBP,
	TRAMPFD_V2_REG_RAX = 7,
	TRAMPFD_V2_REG_RBX,
	TRAMPFD_V2_REG_RCX,
	TRAMPFD_V2_REG_RDX,
	TRAMPFD_V2_REG_RSI,
	TRAMPFD_V2_REG_RDI,
	TRAMPFD_V2_REG_RBP,
	TRAMPFD_V2_REG_R8,
	TRAMPFD_V2_REG_R9,
	TRAMPFD_V2_REG_R10,
	TRAMPFD_V2_REG_R11,
	TRAMPFD_V2_REG_R12,
	TRAMPFD_V2_REG_R13,
	TRAMPFD_V2_REG_R14,
	TRAMPFD_V2_REG_R15,
	TRAMPFD_V2_REG_MAX = 22 /* end marker */
};

#ifdef __cplusplus
#define TRAMPFD_STATIC_ASSERT static_assert
#else
#define TRAMPFD_STATIC_ASSERT _Static_assert
#endif
TRAMPFD_STATIC_ASSERT(sizeof(struct trampfd_user) == 8, "trampfd_user layout");
TRAMPFD_STATIC_ASSERT(sizeof(struct trampfd_map) == 24, "trampfd_map layout");
TRAMPFD_STATIC_ASSERT(sizeof(struct trampfd_reg) == 16, "trampfd_reg layout");
TRAMPFD_STATIC_ASSERT(sizeof(struct trampfd_regs) == 8, "trampfd_regs layout");
TRAMPFD_STATIC_ASSERT(sizeof(struct trampfd_stack) == 16, "trampfd_stack layout");
TRAMPFD_STATIC_ASSERT(sizeof(struct trampfd_values) == 8, "trampfd_values layout");
TRAMPFD_STATIC_ASSERT(sizeof(struct trampfd_info) == 16, "trampfd_info layout");
TRAMPFD_STATIC_ASSERT(sizeof(struct trampfd_code) == 16, "trampfd_code layout");
TRAMPFD_STATIC_ASSERT(sizeof(struct trampfd_data) == 16, "trampfd_data layout");

/* ---- wrappers: -1 and errno on failure, like libc ------------------------- */

/*
 * The unused syscall arguments are passed as 0: the emulator reads only the
 * ones each version defines, but zeros keep a v2 call with a NULL info and a
 * v1 call with a NULL data pointer alike (both EINVAL).
 */

/* v1: create a trampoline descriptor (close-on-exec). */
static inline int trampfd_create(uint32_t type, const struct trampfd_user *user, uint32_t flags)
{
	return (int)syscall(TRAMPFD_NR, (long)type, user, (long)flags, 0L, 0L, 0L);
}

/* v1: set the register context from `nregs` entries (nregs == 0 removes it). */
static inline int trampfd_set_regs(int fd, const struct trampfd_reg *regs, uint32_t nregs)
{
	uint64_t buf[(sizeof(struct trampfd_regs) + TRAMPFD_MAX_REGS * sizeof(struct trampfd_reg)) / 8];
	struct trampfd_regs header = {nregs, 0};

	if (nregs > TRAMPFD_MAX_REGS) {
		errno = EINVAL;
		return -1;
	}
	memcpy(buf, &header, sizeof(header));
	memcpy((char *)buf + sizeof(header), regs, nregs * sizeof(*regs));
	return pwrite(fd, buf, sizeof(header) + nregs * sizeof(*regs), TRAMPFD_REGS_OFFSET) < 0 ? -1 : 0;
}

/* v1: set the stack context: `size` bytes pushed `offset` bytes below the
 * stack pointer, which TRAMPFD_SET_SP then moves to them (size == 0 removes it). */
static inline int trampfd_set_stack(int fd, uint32_t flags, uint32_t offset, const void *data, uint32_t size)
{
	uint64_t buf[(sizeof(struct trampfd_stack) + TRAMPFD_MAX_DATA_SIZE) / 8];
	struct trampfd_stack header = {flags, offset, size, 0};

	if (size > TRAMPFD_MAX_DATA_SIZE) {
		errno = EINVAL;
		return -1;
	}
	memcpy(buf, &header, sizeof(header));
	memcpy((char *)buf + sizeof(header), data, size);
	return pwrite(fd, buf, sizeof(header) + size, TRAMPFD_STACK_OFFSET) < 0 ? -1 : 0;
}

/* v1: set the allowed target PCs (npcs == 0 removes the list). */
static inline int trampfd_set_allowed_pcs(int fd, const uint64_t *pcs, uint32_t npcs)
{
	uint64_t buf[(sizeof(struct trampfd_values) + TRAMPFD_MAX_PCS * sizeof(uint64_t)) / 8];
	struct trampfd_values header = {npcs, 0};

	if (npcs > TRAMPFD_MAX_PCS) {
		errno = EINVAL;
		return -1;
	}
	memcpy(buf, &header, sizeof(header));
	memcpy((char *)buf + sizeof(header), pcs, npcs * sizeof(*pcs));
	return pwrite(fd, buf, sizeof(header) + npcs * sizeof(*pcs), TRAMPFD_ALLOWED_PCS_OFFSET) < 0 ? -1 : 0;
}

/* v1: map the trampoline as struct trampfd_map says; return its address
 * (mapping + ioffset), or NULL with errno set. */
static inline void *trampfd_map(int fd)
{
	struct trampfd_map map;
	void *base;

	if (pread(fd, &map, sizeof(map), TRAMPFD_MAP_OFFSET) != (ssize_t)sizeof(map))
		return NULL;
	base = mmap(NULL, map.size, (int)map.prot, (int)map.flags, fd, (off_t)map.offset);
	return base == MAP_FAILED ? NULL : (char *)base + map.ioffset;
}

/* v2: create a table descriptor; fills *info. */
static inline int trampfd_create_table(struct trampfd_info *info)
{
	return (int)syscall(TRAMPFD_NR, info, 0L, 0L, 0L, 0L, 0L);
}

/* v2: write the code and data descriptors, then map the table (read+execute);
 * return the table's address, or NULL with errno set. Trampoline X is at
 * table + info->code_size * X. */
static inline void *trampfd_map_table(int fd, const struct trampfd_info *info,
				      const struct trampfd_code *code, const struct trampfd_data *data)
{
	void *table;

	if (pwrite(fd, code, sizeof(*code), TRAMPFD_CODE) != (ssize_t)sizeof(*code) ||
	    pwrite(fd, data, sizeof(*data), TRAMPFD_DATA) != (ssize_t)sizeof(*data))
		return NULL;
	table = mmap(NULL, TRAMPFD_PAGE_SIZE, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, (off_t)info->code_offset);
	return table == MAP_FAILED ? NULL : table;
}

#endif /* TRAMPWATCH_TRAMPFD_H */
