/*
 * Death by signal: restore SIG's default action, unblock it and raise it.
 * SIG is a number or a name (SEGV, SIGSEGV). If SIG's default is not fatal
 * the program carries on: STEP kill_self, DONE, exit 0.
 */
#include "common.h"

#include <ctype.h>

static int parse_signal(const char *arg)
{
	const char *name = arg;
	char *end = NULL;
	long n;
	int sig;

	if (isdigit((unsigned char)arg[0])) {
		n = strtol(arg, &end, 10);
		return (*end || n < 1 || n >= NSIG) ? -1 : (int)n;
	}
	if (strncasecmp(name, "SIG", 3) == 0)
		name += 3;
	for (sig = 1; sig < NSIG; sig++) {
		const char *abbrev = sigabbrev_np(sig);

		if (abbrev && strcasecmp(abbrev, name) == 0)
			return sig;
	}
	return -1;
}

int main(int argc, char **argv)
{
	sigset_t one;
	int sig, rc;

	tw_init();
	if (argc < 2) {
		fprintf(stderr, "usage: %s SIGNAL\n", argv[0]);
		return 2;
	}
	sig = parse_signal(argv[1]);
	if (sig < 0) {
		fprintf(stderr, "%s: unknown signal '%s'\n", argv[0], argv[1]);
		return 2;
	}
	signal(sig, SIG_DFL);
	sigemptyset(&one);
	sigaddset(&one, sig);
	sigprocmask(SIG_UNBLOCK, &one, NULL);
	rc = raise(sig);
	tw_step("kill_self", "tgkill", rc, errno);
	return tw_done();
}
