/* Retries a refused W+X mmap forever, as libffi retries temporary
 * directories when every executable mapping is refused. */
#include <stdio.h>
#include <sys/mman.h>

int main(void)
{
    for (;;) {
        void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page != MAP_FAILED) {
            printf("mapped\n");
            return 0;
        }
    }
}
