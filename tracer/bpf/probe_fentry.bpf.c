/* SPDX-License-Identifier: Apache-2.0 */
/*
 * probe_fentry.bpf.c -- `trampwatch doctor`: will the kernel load an fentry
 * (BPF trampoline) program? Only loading tells.
 */
KFUNC_PROBE(security_file_mprotect)
{
	return 0;
}
