// SPDX-License-Identifier: Apache-2.0
/*
 * kernel_probe: asks the running kernel which kinds of BPF program flowstat uses it will
 * load, attach and run, one minimal program at a time (probe.bpf.c). Prints one line per
 * kind: "<kind> ok" or "<kind> refused <errno> <step>". The tests take their expectations
 * of hook variants and snapshot modes from this, never from the kernel they were written on.
 *
 * Like flowstat, it mounts tracefs where classic tracepoints need it, but in a private mount
 * namespace of its own, so the host is left as it was. Usage: kernel_probe probe.bpf.o
 *
 * kernel_probe --retransmits probe.bpf.o attaches the retransmit witness instead, prints
 * "ready", then for each line read on stdin prints the segments counted so far; it detaches
 * at end of input.
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
#include <bpf/btf.h>
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

/* Whether tcp_retransmit_skb passes the attempt's error: its BTF prototype has a third argument. */
static int retransmit_reports_errors(void)
{
	struct btf *vmlinux = btf__load_vmlinux_btf();
	const struct btf_type *type;
	int id, reports = 0;

	if (!vmlinux)
		return 0;
	id = btf__find_by_name_kind(vmlinux, "btf_trace_tcp_retransmit_skb", BTF_KIND_TYPEDEF);
	type = id > 0 ? btf__type_by_id(vmlinux, btf__type_by_id(vmlinux, id)->type) : NULL;
	if (type && btf_is_ptr(type))
		type = btf__type_by_id(vmlinux, type->type);
	/* (void *data, sk, skb, err): the context pointer counts as the first parameter. */
	if (type && btf_is_func_proto(type))
		reports = btf_vlen(type) >= 4;
	btf__free(vmlinux);
	return reports;
}

/* Loads and attaches one witness variant; NULL (errno set) if the kernel refuses it. */
static struct bpf_link *attach_witness(const char *object_path, const char *name, struct bpf_object **out)
{
	struct bpf_object *object = bpf_object__open_file(object_path, NULL);
	struct bpf_program *program;
	struct bpf_link *link;
	/* retransmit_reports_errors is the object's only read-only variable. */
	__u32 reports = retransmit_reports_errors();

	if (!object)
		return NULL;
	bpf_object__for_each_program(program, object)
		bpf_program__set_autoload(program, strcmp(bpf_program__name(program), name) == 0);
	if (bpf_map__set_initial_value(bpf_object__find_map_by_name(object, ".rodata"), &reports,
				       sizeof(reports)) ||
	    bpf_object__load(object) ||
	    !(link = bpf_program__attach(bpf_object__find_program_by_name(object, name)))) {
		int err = errno;

		bpf_object__close(object);
		errno = err;
		return NULL;
	}
	*out = object;
	return link;
}

static int run_retransmit_witness(const char *object_path)
{
	struct bpf_object *object = NULL;
	struct bpf_link *link = attach_witness(object_path, "retransmit_witness", &object);
	char line[64];

	if (!link)
		link = attach_witness(object_path, "retransmit_witness_raw", &object);
	if (!link) {
		fprintf(stderr, "kernel_probe: the retransmit witness did not attach: %s\n", strerror(errno));
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		__u64 segments = 0;
		__u32 zero = 0;

		if (bpf_map__lookup_elem(bpf_object__find_map_by_name(object, ".bss"), &zero, sizeof(zero),
					 &segments, sizeof(segments), 0)) {
			fprintf(stderr, "kernel_probe: read the witness: %s\n", strerror(errno));
			return 1;
		}
		printf("%llu\n", (unsigned long long)segments);
		fflush(stdout);
	}
	bpf_link__destroy(link);
	bpf_object__close(object);
	return 0;
}

int main(int argc, char **argv)
{
	static const char *kinds[] = {
		"rcv_fentry",	"rcv_tp_btf",	    "rcv_raw_tp",   "rcv_tracepoint",	"state_tp_btf",
		"state_raw_tp", "state_tracepoint", "sockops_root", "iter_tcp_storage", "iter_sk_storage_map",
	};

	libbpf_set_print(quiet);
	if (argc == 3 && strcmp(argv[1], "--retransmits") == 0)
		return run_retransmit_witness(argv[2]);
	if (argc != 2) {
		fprintf(stderr, "usage: %s probe.bpf.o | --retransmits probe.bpf.o\n", argv[0]);
		return 2;
	}
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
