// SPDX-License-Identifier: Apache-2.0
/* process.c: settings of the agent's own process that Swift cannot reach (malloc.h). */
#include <malloc.h>

#include "cflowstat.h"

int fs_set_mmap_threshold(int bytes)
{
	return mallopt(M_MMAP_THRESHOLD, bytes);
}
