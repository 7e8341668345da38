/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cflowstat_build.h: flowstat's version and commit, taken from git when it was built
 * (scripts/version.sh writes generated/flowstat_version.h; BuildInfo reads these).
 */
#ifndef CFLOWSTAT_BUILD_H
#define CFLOWSTAT_BUILD_H

#ifdef __cplusplus
extern "C" {
#endif

/* `git describe`-based version, e.g. "0.2.0" or "0.2.0-3-g1a2b3c4"; "unknown" if not known. */
const char *fs_build_version(void);

/* The commit built (40 hex digits), or "unknown". */
const char *fs_build_revision(void);

#ifdef __cplusplus
}
#endif

#endif /* CFLOWSTAT_BUILD_H */
