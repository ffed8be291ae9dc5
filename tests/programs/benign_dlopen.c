/* Benign control: load real shared libraries at run time, call into them, unload. */
#include "common.h"

#include <dlfcn.h>

/* dlopen does not promise errno; report ENOENT and put dlerror() on stderr. */
static void *open_lib(const char *label, const char *soname)
{
	void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);

	if (!h)
		fprintf(stderr, "%s: %s\n", label, dlerror());
	tw_step_addr(label, "dlopen", h, NULL, ENOENT);
	return h;
}

static void close_lib(const char *label, void *h)
{
	int rc = dlclose(h);

	tw_step(label, "dlclose", rc == 0 ? 0 : -1, EINVAL);
}

int main(void)
{
	void *libm, *libz;

	tw_init();
	libm = open_lib("libm_dlopen", "libm.so.6");
	if (libm) {
		double (*cosine)(double) = (double (*)(double))dlsym(libm, "cos");

		tw_step("libm_cos_call", "call", cosine ? (long)cosine(0.0) : -1, ENOENT);
		close_lib("libm_dlclose", libm);
	}
	libz = open_lib("libz_dlopen", "libz.so.1");
	if (libz) {
		const char *(*version)(void) = (const char *(*)(void))dlsym(libz, "zlibVersion");

		tw_step("libz_version_call", "call", version && version()[0] == '1' ? 1 : -1, ENOENT);
		close_lib("libz_dlclose", libz);
	}
	return tw_done();
}
