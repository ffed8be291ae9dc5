/*
 * Attack: code the program wrote run by the CPU with no executable mapping
 * at all: a KVM guest. The guest's memory is ordinary read-write anonymous
 * memory of the program; code written there (real mode: mov $42, %ax; hlt)
 * runs at KVM_RUN, and the program reads the result from the guest's
 * registers. Prints RAN kvm_call when the guest returned 42.
 * `STEP kvm_open open rc=-1 errno=...` where /dev/kvm cannot be opened.
 * With argument "m32" the VM is created through int $0x80 (i386 ioctl).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include "common.h"

/* mov $42, %ax ; hlt (16-bit real mode) */
static const unsigned char GUEST[] = {0xb8, 0x2a, 0x00, 0xf4};

static long i386_ioctl(long fd, long request)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(54L), "b"(fd), "c"(request), "d"(0L) : "memory");
	return ret;
}

int main(int argc, char **argv)
{
	struct kvm_userspace_memory_region region;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_run *run;
	int kvm, vm, vcpu, size;
	void *mem;
	long rc;

	tw_init();
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	tw_step("kvm_open", "open", kvm, errno);
	if (kvm < 0)
		return tw_done();
	if (argc > 1 && strcmp(argv[1], "m32") == 0)
		vm = (int)tw_step_raw("kvm_create_vm", "ioctl", i386_ioctl(kvm, KVM_CREATE_VM));
	else {
		vm = ioctl(kvm, KVM_CREATE_VM, 0);
		tw_step("kvm_create_vm", "ioctl", vm, errno);
	}
	if (vm < 0)
		return tw_done();
	mem = mmap(NULL, 0x1000, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return 1;
	memcpy(mem, GUEST, sizeof(GUEST));
	region = (struct kvm_userspace_memory_region){.slot = 0, .guest_phys_addr = 0x1000,
						      .memory_size = 0x1000, .userspace_addr = (uintptr_t)mem};
	rc = ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region);
	tw_step("kvm_memory", "ioctl", rc, errno);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	tw_step("kvm_create_vcpu", "ioctl", vcpu, errno);
	size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (rc < 0 || vcpu < 0 || size <= 0)
		return tw_done();
	run = mmap(NULL, (size_t)size, TW_RW, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		return 1;
	ioctl(vcpu, KVM_GET_SREGS, &sregs);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	ioctl(vcpu, KVM_SET_SREGS, &sregs);
	regs = (struct kvm_regs){.rip = 0x1000, .rflags = 0x2};
	ioctl(vcpu, KVM_SET_REGS, &regs);
	rc = ioctl(vcpu, KVM_RUN, 0);
	tw_step("kvm_run", "ioctl", rc, errno);
	if (rc < 0 || run->exit_reason != KVM_EXIT_HLT || ioctl(vcpu, KVM_GET_REGS, &regs) < 0)
		return tw_done();
	if ((regs.rax & 0xffff) == TW_CODE_RESULT)
		tw_emit("RAN kvm_call");
	return tw_done();
}
