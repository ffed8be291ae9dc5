/*
 * Benign control: an ordinary program linked with full RELRO (-z relro -z now),
 * so the loader's only protection change is making the relocated data read-only.
 */
#include "common.h"

int main(void)
{
	char *copy;

	tw_init();
	copy = strdup("relro");
	tw_step("heap_strdup", "malloc", copy ? 0 : -1, ENOMEM);
	free(copy);
	return tw_done();
}
