// SPDX-License-Identifier: Apache-2.0
/*
 * kernel_probe: asks the running kernel which kinds of BPF program flowstat uses it will
 * load, attach and run, one minimal program at a time (probe.bpf.c). Prints one line per
 * kind: "<kind> ok" or "<kind> refused <errno> <step>". The tests take their expectations
 * of hook variants and snapshot modes from this, never from the kernel they were written on.
 *
 * Like flowstat, it mounts tracefs where classic tracepoints need it, but in a private mount
 * namespace of its own, so the host is left as it was. Usage: kernel_probe probe.bpf.o
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static int quiet(enum libbpf_print_level level, const char *format, va_list args)
{
	return 0;
}

static int find_cgroup2(char *path, size_t length)
{
	char device[256], type[64];
	FILE *mounts = fopen("/proc/mounts", "re");
	int found = -ENOENT;

	if (!mounts)
		return -errno;
	while (fscanf(mounts, "%255s %4095s %63s %*[^\n]\n", device, path, type) == 3)
		if (strcmp(type, "cgroup2") == 0) {
			found = 0;
			break;
		}
	fclose(mounts);
	(void)length;
	return found;
}

static int run_iterator(struct bpf_link *link)
{
	char sink[4096];
	int fd = bpf_iter_create(bpf_link__fd(link));
	ssize_t got;

	if (fd < 0)
		return -errno;
	while ((got = read(fd, sink, sizeof(sink))) > 0)
		;
	close(fd);
	return got < 0 ? -errno : 0;
}

/* Loads, attaches (and for iterators runs) the one program; 0 or negative errno, *step says where. */
static int probe(const char *object_path, const char *name, const char **step)
{
	struct bpf_object *object = bpf_object__open_file(object_path, NULL);
	struct bpf_program *program, *wanted = NULL;
	struct bpf_link *link = NULL;
	char cgroup[4096];
	int err, cgroup_fd;

	*step = "open";
	if (!object)
		return -errno;
	bpf_object__for_each_program(program, object)
	{
		bool is_wanted = strcmp(bpf_program__name(program), name) == 0;

		bpf_program__set_autoload(program, is_wanted);
		if (is_wanted)
			wanted = program;
	}
	*step = "load";
	err = wanted ? bpf_object__load(object) : -ENOENT;
	if (err)
		goto out;
	*step = "attach";
	if (strcmp(name, "sockops_root") == 0) {
		if ((err = find_cgroup2(cgroup, sizeof(cgroup))))
			goto out;
		cgroup_fd = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (cgroup_fd < 0) {
			err = -errno;
			goto out;
		}
		link = bpf_program__attach_cgroup(wanted, cgroup_fd);
		close(cgroup_fd);
	} else if (strcmp(name, "iter_sk_storage_map") == 0) {
		DECLARE_LIBBPF_OPTS(bpf_iter_attach_opts, options);
		union bpf_iter_link_info info = {};

		info.map.map_fd = bpf_object__find_map_fd_by_name(object, "probe_storage");
		options.link_info = &info;
		options.link_info_len = sizeof(info);
		link = bpf_program__attach_iter(wanted, &options);
	} else {
		link = bpf_program__attach(wanted);
	}
	if (!link) {
		err = -errno;
		goto out;
	}
	if (strncmp(name, "iter_", 5) == 0) {
		*step = "run";
		err = run_iterator(link);
	}
out:
	bpf_link__destroy(link);
	bpf_object__close(object);
	return err;
}

int main(int argc, char **argv)
{
	static const char *kinds[] = {
		"rcv_fentry",	"rcv_tp_btf",	    "rcv_raw_tp",   "rcv_tracepoint",	"state_tp_btf",
		"state_raw_tp", "state_tracepoint", "sockops_root", "iter_tcp_storage", "iter_sk_storage_map",
	};

	if (argc != 2) {
		fprintf(stderr, "usage: %s probe.bpf.o\n", argv[0]);
		return 2;
	}
	libbpf_set_print(quiet);
	/* flowstat mounts tracefs when a classic tracepoint needs it; do the same, privately. */
	if (access("/sys/kernel/tracing/events", F_OK) && access("/sys/kernel/debug/tracing/events", F_OK) &&
	    (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	     mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, NULL)))
		fprintf(stderr, "kernel_probe: could not mount tracefs privately: %s\n", strerror(errno));
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		const char *step;
		int err = probe(argv[1], kinds[i], &step);

		if (err)
			printf("%s refused %d %s\n", kinds[i], -err, step);
		else
			printf("%s ok\n", kinds[i]);
	}
	return 0;
}
