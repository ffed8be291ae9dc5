/*
 * interp0_payload: an ELF interpreter with no libc (attack_interp_ino0
 * serves its bytes from a FUSE file): at its entry it prints
 * "RAN interp0_call" and ends the process.
 */
#include <unistd.h>
#include <sys/syscall.h>

void _start(void)
{
	static const char line[] = "RAN interp0_call\n";
	long ret;

	__asm__ volatile("syscall" : "=a"(ret) : "a"((long)SYS_write), "D"(1L), "S"(line), "d"(sizeof(line) - 1)
			 : "rcx", "r11", "memory");
	__asm__ volatile("syscall" : : "a"((long)SYS_exit_group), "D"(0L) : "rcx", "r11", "memory");
	for (;;)
		;
}
