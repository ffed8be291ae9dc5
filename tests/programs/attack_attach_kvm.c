/*
 * attack_attach_kvm dual|fdwrite|guest|guest_closed: code reaches an executable view
 * with no call after the attach.
 *
 * A memfd page is mapped shared read+write and shared read+execute before
 * READY (its descriptor closed). dual: after the line, the code is stored
 * through the RW view and the R-X view called. guest: a KVM VM and vCPU
 * (real mode) are made before READY with the RW view as the guest's memory
 * at guest address 0x1000; after the line, KVM_RUN runs guest code that
 * stores TW_CODE at guest 0x1000 (host: the RW view) and halts; the host
 * calls the R-X view. fdwrite: the memfd's descriptor is kept (open for
 * writing) and the code pwritten after the line. guest_closed: as guest, but the /dev/kvm and VM
 * descriptors are closed before READY (the vCPU's kept: KVM_RUN needs it).
 */
#include "common.h"

#include <linux/kvm.h>
#include <sys/ioctl.h>

/* Real mode at 0: movl $0x00002ab8, (0x1000); movw $0xc300, (0x1004); hlt:
 * b8 2a 00 00 00 c3 = mov $42, %eax; ret. */
static const unsigned char GUEST[] = {
	0x66, 0xc7, 0x06, 0x00, 0x10, 0xb8, 0x2a, 0x00, 0x00, /* movl $0x00002ab8, (0x1000) */
	0xc7, 0x06, 0x04, 0x10, 0x00, 0xc3,                   /* movw $0xc300, (0x1004) */
	0xf4,                                                 /* hlt */
};

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "dual";
	size_t pg = tw_page();
	unsigned char *rw, *rx, *boot;
	int memfd = memfd_create("tw-kvm", MFD_CLOEXEC);
	int kvm = -1, vm = -1, vcpu = -1;
	struct kvm_run *run = NULL;
	char line[64];

	tw_init();
	if (memfd < 0 || ftruncate(memfd, (off_t)pg) != 0)
		return 1;
	rw = tw_mmap("rw_view", NULL, pg, TW_RW, MAP_SHARED, memfd, 0);
	rx = tw_mmap("rx_view", NULL, pg, TW_RX, MAP_SHARED, memfd, 0);
	if (strcmp(mode, "fdwrite") != 0)
		close(memfd);
	if (rw == MAP_FAILED || rx == MAP_FAILED)
		return tw_done();
	if (strcmp(mode, "dual") != 0 && strcmp(mode, "fdwrite") != 0) {
		struct kvm_userspace_memory_region low = {0}, code = {0};
		struct kvm_sregs sregs;
		struct kvm_regs regs = {0};

		boot = tw_mmap("boot_map", NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
		tw_step("kvm_open", "open", kvm < 0 ? -1 : 0, kvm < 0 ? errno : 0);
		if (kvm < 0 || boot == MAP_FAILED)
			return tw_done();
		memcpy(boot, GUEST, sizeof(GUEST));
		vm = ioctl(kvm, KVM_CREATE_VM, 0);
		low = (struct kvm_userspace_memory_region){.slot = 0, .guest_phys_addr = 0, .memory_size = pg,
							   .userspace_addr = (uintptr_t)boot};
		code = (struct kvm_userspace_memory_region){.slot = 1, .guest_phys_addr = 0x1000, .memory_size = pg,
							    .userspace_addr = (uintptr_t)rw};
		if (vm < 0 || ioctl(vm, KVM_SET_USER_MEMORY_REGION, &low) < 0 ||
		    ioctl(vm, KVM_SET_USER_MEMORY_REGION, &code) < 0)
			return tw_step("kvm_vm", "ioctl", -1, errno), tw_done();
		vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
		run = mmap(NULL, (size_t)ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), TW_RW, MAP_SHARED, vcpu, 0);
		if (vcpu < 0 || run == MAP_FAILED || ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
			return tw_step("kvm_vcpu", "ioctl", -1, errno), tw_done();
		sregs.cs.base = 0;
		sregs.cs.selector = 0;
		regs.rip = 0;
		regs.rflags = 2;
		if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0 || ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
			return tw_step("kvm_regs", "ioctl", -1, errno), tw_done();
		if (strcmp(mode, "guest_closed") == 0) {
			close(vm);
			close(kvm);
		}
	}
	tw_emit("READY %d", (int)getpid());
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	if (strcmp(mode, "dual") == 0) {
		tw_put_code(rw);
	} else if (strcmp(mode, "fdwrite") == 0) {
		tw_step("code_pwrite", "pwrite", pwrite(memfd, TW_CODE, sizeof(TW_CODE), 0), errno);
	} else {
		int rc = ioctl(vcpu, KVM_RUN, 0);

		tw_step("kvm_run", "ioctl", rc, rc < 0 ? errno : 0);
		if (rc == 0)
			tw_emit("STEP guest_exit exit_reason rc=%d errno=0", (int)run->exit_reason);
	}
	if (memcmp(rx, TW_CODE, sizeof(TW_CODE)) == 0)
		tw_run("rx_call", rx);
	return tw_done();
}
