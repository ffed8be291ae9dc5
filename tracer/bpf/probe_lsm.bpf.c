/* SPDX-License-Identifier: Apache-2.0 */
/*
 * probe_lsm.bpf.c -- `trampwatch doctor`: will the kernel load a BPF LSM
 * program on the hook a W^X policy would use? A kernel can list `bpf` in
 * /sys/kernel/security/lsm and still refuse (EPERM); only loading tells.
 */
struct vm_area_struct;

LSM_PROBE(file_mprotect, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot)
{
	return 0;
}
