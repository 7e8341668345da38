// SPDX-License-Identifier: Apache-2.0
/*
 * The version the Makefile generated from git (scripts/version.sh), in a file of its own:
 * a new version recompiles only this file. A build without the Makefile (plain
 * `swift build`) has no generated header and says "unknown".
 */
#include "cflowstat_build.h"

#if __has_include("generated/flowstat_version.h")
#include "generated/flowstat_version.h"
#endif
#ifndef FLOWSTAT_VERSION
#define FLOWSTAT_VERSION "unknown"
#endif
#ifndef FLOWSTAT_REVISION
#define FLOWSTAT_REVISION "unknown"
#endif

const char *fs_build_version(void)
{
	return FLOWSTAT_VERSION;
}

const char *fs_build_revision(void)
{
	return FLOWSTAT_REVISION;
}
