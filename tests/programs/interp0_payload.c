/*
 * interp0_payload [LABEL]: a static program with no libc (attack_fuse_exec with a VICTIM
 * serves its bytes from a FUSE file as an interpreter; attack_exec_drain
 * writes a copy and execs it): at its entry it prints "RAN LABEL" (with no
 * LABEL, as an interpreter: "RAN interp0_call") with no call a tracer
 * traps, and ends the process.
 */
#include <sys/syscall.h>

/* The entry: the stack pointer (argc, then argv) to payload_main, aligned. */
__asm__(".globl _start\n"
	"_start:\n\t"
	"mov %rsp, %rdi\n\t"
	"and $-16, %rsp\n\t"
	"call payload_main\n\t"
	"hlt\n");

static long raw(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return ret;
}

void payload_main(long *sp);

void payload_main(long *sp)
{
	const char *label = sp[0] > 1 ? (const char *)sp[2] : "interp0_call";
	char line[128] = "RAN ";
	unsigned long n = 4;

	while (*label && n < sizeof(line) - 1)
		line[n++] = *label++;
	line[n++] = '\n';
	raw(SYS_write, 1, (long)line, (long)n);
	raw(SYS_exit_group, 0, 0, 0);
}
