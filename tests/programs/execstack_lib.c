/* A shared library linked -z execstack: loading it makes glibc turn the
 * process's stack executable (dlopen_execstack loads it). Not a program. */
int tw_lib_answer(void);

int tw_lib_answer(void)
{
	return 42;
}
