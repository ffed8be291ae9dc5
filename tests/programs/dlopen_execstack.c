/* dlopen a library that needs an executable stack (execstack_lib, built
 * beside this program), then exit at once: glibc makes the stack executable
 * with mprotect(PROT_READ|PROT_WRITE|PROT_EXEC|PROT_GROWSDOWN) on its page. */
#include "common.h"

#include <dlfcn.h>
#include <libgen.h>

int main(void)
{
	char self[4096], lib[4200];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	void *h;
	int err;

	tw_init();
	if (n < 0)
		return 2;
	self[n] = 0;
	snprintf(lib, sizeof(lib), "%s/execstack_lib", dirname(self));
	h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	err = ENOENT;
	if (!h) {
		/* dlopen sets no errno: the refused mprotect's is in its message (under MDWE). */
		const char *why = dlerror();

		if (why && strstr(why, strerror(EACCES)))
			err = EACCES;
		fprintf(stderr, "execstack_lib: %s\n", why ? why : "?");
	}
	tw_step_addr("execstack_dlopen", "dlopen", h, NULL, err);
	if (h) {
		int (*answer)(void) = (int (*)(void))dlsym(h, "tw_lib_answer");

		tw_step("lib_call", "call", answer ? answer() : -1, ENOENT);
	}
	return tw_done();
}
