/* SPDX-License-Identifier: Apache-2.0 */
/*
 * probe_send_signal.bpf.c -- `trampwatch doctor`: does bpf_send_signal()
 * from a syscall tracepoint kill the caller before the syscall returns?
 * The kill rules of wx_monitor.bpf.c rely on exactly this.
 *
 * Build-time knob: WX_PROBE_PID, the getpgid() argument that asks for the kill.
 * Run-time knob: target[0], the process allowed to ask.
 */
BPF_ARRAY(target, __u32, 1);

TRACEPOINT_PROBE(syscalls, sys_enter_getpgid)
{
	int zero = 0;
	__u32 *pid = target.lookup(&zero);

	if (!pid || *pid == 0 || (bpf_get_current_pid_tgid() >> 32) != *pid)
		return 0;
	if (args->pid == WX_PROBE_PID)
		bpf_send_signal(9);
	return 0;
}
