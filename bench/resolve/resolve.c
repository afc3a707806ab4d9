/* Name lookups through the C library, as an application in a container does them.
 *
 *   resolve bench NAME COUNT      COUNT getaddrinfo(NAME) calls; prints "COUNT NANOSECONDS ADDRESS"
 *   resolve watch NAME ADDRESS S  getaddrinfo(NAME) until ADDRESS is among the answers (at most S
 *                                 seconds); prints "SEEN_AT_MONOTONIC_NS TRIES" (exit 1 on timeout)
 *
 * Built static (glibc: its files and dns lookups are inside libc), so it runs in a busybox image.
 * Part of bench/name_resolution.py.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* 1 if ADDRESS (or any address when ADDRESS is NULL) answers NAME; FIRST gets the first answer. */
static int lookup(const char *name, const char *address, char *first, size_t size) {
    struct addrinfo hints, *res = NULL, *ai;
    int found = 0;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(name, NULL, &hints, &res) != 0)
        return 0;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        char text[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, text, sizeof text);
        if (ai == res && first != NULL)
            snprintf(first, size, "%s", text);
        if (address == NULL || strcmp(text, address) == 0)
            found = 1;
    }
    freeaddrinfo(res);
    return found;
}

int main(int argc, char **argv) {
    char first[INET_ADDRSTRLEN] = "-";
    if (argc == 4 && strcmp(argv[1], "bench") == 0) {
        long count = atol(argv[3]), ok = 0;
        long long start = now_ns();
        for (long i = 0; i < count; i++)
            ok += lookup(argv[2], NULL, first, sizeof first);
        long long took = now_ns() - start;
        printf("%ld %lld %s %ld\n", count, took, first, ok);
        return ok == count ? 0 : 1;
    }
    if (argc == 5 && strcmp(argv[1], "watch") == 0) {
        long long deadline = now_ns() + atoll(argv[4]) * 1000000000LL;
        long tries = 0;
        while (now_ns() < deadline) {
            tries++;
            if (lookup(argv[2], argv[3], NULL, 0)) {
                printf("%lld %ld\n", now_ns(), tries);
                return 0;
            }
        }
        return 1;
    }
    fprintf(stderr, "usage: resolve bench NAME COUNT | resolve watch NAME ADDRESS SECONDS\n");
    return 2;
}
