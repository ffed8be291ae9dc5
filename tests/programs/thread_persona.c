/*
 * One persona per thread: the kernel keeps READ_IMPLIES_EXEC in each
 * thread's task->personality (personality(2) changes the caller's only, a
 * new thread starts with its creator's). Two threads, one of them with the
 * persona; each maps read+write memory, shows what the kernel made of it and
 * runs code there when it is executable.
 *
 *   thread_persona set-main|set-second [int80]
 *       that thread sets READ_IMPLIES_EXEC on itself (through int 0x80's
 *       i386 personality with `int80`), the other never does
 *   thread_persona clear-second
 *       both threads set it (the second first), then the second clears its
 *       own: the last persona any thread asked for has no READ_IMPLIES_EXEC
 *   thread_persona attach-main|attach-second
 *       that thread sets it, then READY <pid> and a line from stdin (a
 *       tracer attaches meanwhile) before the threads map
 *
 * Labels: <who>_persona_set, second_persona_clear, <who>_persona (rc: the persona before mapping),
 * <who>_rw_mmap, <who>_region, <who>_call with <who> main or second.
 */
#include "common.h"

#include <pthread.h>
#include <semaphore.h>
#include <sys/personality.h>

enum { CMD_SET, CMD_CLEAR, CMD_MAP, CMD_EXIT };

static sem_t to_second, to_main;
static int command;
static int via_int80;

static long persona_call(unsigned long persona)
{
	if (via_int80) {
		long rc;

		/* i386 personality (136) from 64-bit code. */
		__asm__ volatile("int $0x80" : "=a"(rc) : "0"(136L), "b"(persona) : "memory");
		if (rc < 0 && rc > -4096) {
			errno = (int)-rc;
			return -1;
		}
		return rc;
	}
	return personality(persona);
}

static void set_persona(const char *who, int on)
{
	char label[64];
	long old = personality(0xffffffff);
	long rc;

	rc = persona_call(on ? ((unsigned long)old | READ_IMPLIES_EXEC) : ((unsigned long)old & ~READ_IMPLIES_EXEC));
	snprintf(label, sizeof(label), "%s_persona_%s", who, on ? "set" : "clear");
	tw_step(label, "personality", rc < 0 ? -1 : 0, errno);
}

static void map_and_run(const char *who)
{
	char label[64];
	size_t pg = tw_page();
	void *p;

	snprintf(label, sizeof(label), "%s_persona", who);
	tw_step(label, "personality", personality(0xffffffff), errno);
	snprintf(label, sizeof(label), "%s_rw_mmap", who);
	p = tw_mmap(label, NULL, pg, TW_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return;
	snprintf(label, sizeof(label), "%s_region", who);
	if (tw_show_map(label, p) == 1) {
		tw_put_code(p);
		snprintf(label, sizeof(label), "%s_call", who);
		tw_run(label, p);
	}
	munmap(p, pg);
}

static void *second(void *arg)
{
	(void)arg;
	for (;;) {
		sem_wait(&to_second);
		if (command == CMD_EXIT)
			return NULL;
		if (command == CMD_SET || command == CMD_CLEAR)
			set_persona("second", command == CMD_SET);
		else
			map_and_run("second");
		sem_post(&to_main);
	}
}

static void ask_second(int cmd)
{
	command = cmd;
	sem_post(&to_second);
	sem_wait(&to_main);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int setter_is_main = !strcmp(mode, "set-main") || !strcmp(mode, "attach-main");
	int attach = !strncmp(mode, "attach-", 7);
	char line[64];
	pthread_t thread;

	tw_init();
	if (strcmp(mode, "set-main") && strcmp(mode, "set-second") && strcmp(mode, "clear-second") &&
	    strcmp(mode, "attach-main") && strcmp(mode, "attach-second")) {
		fprintf(stderr, "usage: %s set-main|set-second [int80]|clear-second|attach-main|attach-second\n",
			argv[0]);
		return 2;
	}
	via_int80 = argc > 2 && !strcmp(argv[2], "int80");
	sem_init(&to_second, 0, 0);
	sem_init(&to_main, 0, 0);
	if (pthread_create(&thread, NULL, second, NULL) != 0)
		return 1;
	if (!strcmp(mode, "clear-second")) {
		ask_second(CMD_SET);
		set_persona("main", 1);
		ask_second(CMD_CLEAR);
	} else if (setter_is_main)
		set_persona("main", 1);
	else
		ask_second(CMD_SET);
	if (attach) {
		tw_emit("READY %d", (int)getpid());
		if (!fgets(line, sizeof(line), stdin))
			line[0] = 0;
	}
	map_and_run("main");
	ask_second(CMD_MAP);
	command = CMD_EXIT;
	sem_post(&to_second);
	pthread_join(thread, NULL);
	return tw_done();
}
