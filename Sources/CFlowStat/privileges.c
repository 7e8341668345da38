// SPDX-License-Identifier: Apache-2.0
/*
 * privileges.c: switching a running agent from root to an unprivileged user
 * (`flowstat serve --run-as`), with raw prctl/capget/capset (no libcap).
 *
 * The agent keeps no capability: on Linux 6.5 and later every bpf() command it
 * still makes (map lookups, ring buffer reads, bpf_iter_create) works on the
 * file descriptors it opened while privileged. Keeping some would not work
 * across threads anyway: PR_SET_KEEPCAPS and capset() act on the calling thread
 * only, while the setuid() below reaches every thread (glibc's setxid broadcast).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "cflowstat.h"

static int drop_fail(fs_error *error, int code, const char *step)
{
	error->code = -code;
	snprintf(error->step, sizeof(error->step), "%s", step);
	snprintf(error->message, sizeof(error->message), "%s", strerror(code));
	return -code;
}

int fs_capabilities(uint64_t *effective, uint64_t *permitted)
{
	struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &header, data))
		return -errno;
	*effective = (uint64_t)data[1].effective << 32 | data[0].effective;
	*permitted = (uint64_t)data[1].permitted << 32 | data[0].permitted;
	return 0;
}

int fs_drop_privileges(uint32_t uid, uint32_t gid, fs_error *error)
{
	struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3];
	gid_t group = gid;

	/* Groups first: changing them needs CAP_SETGID, gone once the uid is not 0. */
	if (setgroups(1, &group))
		return drop_fail(error, errno, "setgroups");
	if (setresgid(gid, gid, gid))
		return drop_fail(error, errno, "setresgid");
	/*
	 * All three uids non-zero: the kernel clears the permitted, effective and
	 * ambient capabilities of each thread as glibc applies this to it.
	 */
	if (setresuid(uid, uid, uid))
		return drop_fail(error, errno, "setresuid");
	/* Inheritable capabilities survive setuid; clear them too (this thread). */
	memset(none, 0, sizeof(none));
	if (syscall(SYS_capset, &header, none))
		return drop_fail(error, errno, "capset");
	/*
	 * No execve from here may gain privileges (setuid binaries, file capabilities).
	 * The flag is per thread: an allow-everything seccomp filter installed with
	 * TSYNC carries it to every other thread (the kernel sets no_new_privs on each
	 * thread it synchronizes). With the kernel's action cache the filter costs
	 * nothing per syscall.
	 */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return drop_fail(error, errno, "prctl(PR_SET_NO_NEW_PRIVS)");
	struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog program = {.len = 1, .filter = &allow};
	long synced = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &program);
	if (synced < 0)
		return drop_fail(error, errno, "seccomp(TSYNC) to set no_new_privs on every thread");
	if (synced > 0) /* the id of a thread that could not be synchronized */
		return drop_fail(error, EAGAIN, "seccomp(TSYNC) to set no_new_privs on every thread");
	/* The classic check: root must be out of reach now. */
	if (uid != 0 && (setuid(0) == 0 || errno != EPERM))
		return drop_fail(error, EPERM, "check that uid 0 cannot be regained");
	return 0;
}
