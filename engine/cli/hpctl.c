/*
 * `hpctl`, as `make install` installs it: the operator daemon's thin client, in C.
 *
 * A Python process costs about 11 ms before it runs a line on a 2-core host, more than the
 * whole answer of the operator daemon (`hpctl docker serve`) to `ps`, `logs` or `inspect`.
 * This program sends the command line to the daemon's POST /hostpanel/cli, exactly as
 * engine/cli/remote.py does (that module documents the protocol: a NUL-separated body of the
 * working directory, HOSTPANEL_ROOT/HOSTPANEL_INSTANCE, an empty field and the command line;
 * a chunked answer of Docker-style multiplexed frames: 1 stdout, 2 stderr, 3 control
 * "container <id>" and, last, "exit <code>"), and streams the answer.
 *
 * It decides nothing about verbs: the daemon parses the command line with hpctl's own parser
 * and answers 409 for whatever it does not run (a verb outside REMOTE_VERBS, a `run -it`,
 * another engine root); then, and whenever no daemon answers or HOSTPANEL_CLI_DAEMON=0, this
 * program replaces itself (execv, same pid) with the Python `hpctl` (scripts/hpctl-py,
 * HPCTL_PYTHON and HPCTL_SCRIPT below, set by the Makefile), which runs the verb as it always
 * did. Once the daemon has accepted a verb its answer is final: a failure is reported, never
 * retried. A foreground `run` forwards SIGINT, SIGTERM and SIGHUP to its container (a second
 * request: `kill -s SIG <id>`), as the Python client does.
 *
 * The answer comes from a root-only socket; it is still read with bounds: no length from it
 * sizes a buffer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef HPCTL_PYTHON
#error "HPCTL_PYTHON (the venv's python) must be defined: see the Makefile's hpctl target"
#endif
#ifndef HPCTL_SCRIPT
#error "HPCTL_SCRIPT (scripts/hpctl-py as installed) must be defined: see the Makefile's hpctl target"
#endif

#define DEFAULT_SOCKET "/run/hostpanel/docker.sock"
#define ENDPOINT "/hostpanel/cli"
#define CONTENT_TYPE "application/x-hpctl-command"
#define NOT_SERVED 409
#define CONTROL_MAX 256

static char **program_argv;

/* Run the verb in Python instead (nothing ran here). */
static void run_in_python(void) {
    int argc = 0;
    while (program_argv[argc] != NULL) argc++;
    char **args = calloc((size_t)argc + 2, sizeof(char *));
    if (args == NULL) _exit(125);
    args[0] = HPCTL_PYTHON;
    args[1] = HPCTL_SCRIPT;
    for (int i = 1; i < argc; i++) args[i + 1] = program_argv[i];
    execv(HPCTL_PYTHON, args);
    fprintf(stderr, "hpctl: cannot run %s: %s (run `make install`)\n", HPCTL_PYTHON, strerror(errno));
    _exit(125);
}

/* ---- the request ------------------------------------------------------------------------ */
struct buffer {
    char *data;
    size_t len, cap;
};

static void append(struct buffer *b, const void *data, size_t len) {
    if (b->len + len + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 4096);
        while (cap < b->len + len + 1) cap *= 2;
        char *grown = realloc(b->data, cap);
        if (grown == NULL) run_in_python();
        b->data = grown, b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

static void append_text(struct buffer *b, const char *text) { append(b, text, strlen(text)); }

static void append_field(struct buffer *b, const char *field, int first) {
    if (!first) append(b, "\0", 1);
    append_text(b, field);
}

/* engine/cli/remote.py request_body: cwd, the engine settings, "", the command line. */
static void request_body(struct buffer *body, char **args) {
    char *cwd = getcwd(NULL, 0);
    if (cwd == NULL) run_in_python(); /* no working directory: the daemon could not resolve paths */
    append_field(body, cwd, 1);
    free(cwd);
    static const char *const settings[] = {"HOSTPANEL_ROOT", "HOSTPANEL_INSTANCE"};
    for (size_t i = 0; i < 2; i++) {
        const char *value = getenv(settings[i]);
        if (value != NULL && *value != '\0') {
            append_field(body, settings[i], 0);
            append_text(body, "=");
            append_text(body, value);
        }
    }
    append_field(body, "", 0);
    for (char **arg = args; *arg != NULL; arg++) append_field(body, *arg, 0);
}

static int connect_daemon(void) {
    const char *path = getenv("HOSTPANEL_DOCKER_SOCKET");
    if (path == NULL || *path == '\0') path = DEFAULT_SOCKET;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) return -1;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct timeval timeout = {.tv_sec = 0, .tv_usec = 500000}; /* remote.py CONNECT_TIMEOUT */
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return -1; /* no daemon, a stale socket file, or one we may not talk to */
    }
    struct timeval forever = {0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &forever, sizeof(forever));
    return fd;
}

static int send_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        data += n, len -= (size_t)n;
    }
    return 0;
}

static int post(int fd, char **args) {
    struct buffer body = {0}, head = {0};
    request_body(&body, args);
    char line[128];
    snprintf(line, sizeof(line), "Content-Length: %zu\r\n", body.len);
    append_text(&head, "POST " ENDPOINT " HTTP/1.1\r\nHost: hostpanel\r\n");
    append_text(&head, line);
    append_text(&head, "Connection: close\r\nContent-Type: " CONTENT_TYPE "\r\n\r\n");
    int failed = send_all(fd, head.data, head.len) || send_all(fd, body.data, body.len);
    free(body.data), free(head.data);
    return failed ? -1 : 0;
}

/* ---- the answer ------------------------------------------------------------------------- */
struct reader {
    int fd;
    char data[65536];
    size_t start, end;
    int failed; /* errno of a failed read */
};

static volatile sig_atomic_t pending_signal;
static int forwarding;

static void forward_pending(void);

/* More bytes into the buffer; 0 at the end of the stream or on an error. */
static int fill(struct reader *r) {
    if (r->start > 0 && r->start == r->end) r->start = r->end = 0;
    if (r->end == sizeof(r->data)) {
        memmove(r->data, r->data + r->start, r->end - r->start);
        r->end -= r->start, r->start = 0;
    }
    for (;;) {
        forward_pending(); /* a signal that came while the last one was being forwarded */
        ssize_t n = read(r->fd, r->data + r->end, sizeof(r->data) - r->end);
        if (n > 0) {
            r->end += (size_t)n;
            return 1;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) r->failed = errno;
        return 0;
    }
}

/* One line up to LF (kept) into line (at most size - 1 bytes; the rest of a longer one is dropped). */
static size_t read_line(struct reader *r, char *line, size_t size) {
    size_t len = 0;
    for (;;) {
        if (r->start == r->end && !fill(r)) break;
        char c = r->data[r->start++];
        if (len + 1 < size) line[len++] = c;
        if (c == '\n') break;
    }
    line[len] = '\0';
    return len;
}

struct frames {
    unsigned char header[8];
    size_t have;          /* header bytes read */
    unsigned long left;   /* payload bytes still to come */
    char control[CONTROL_MAX];
    size_t control_len;
    int exit_code; /* -1 until "exit <code>" */
    char container[CONTROL_MAX];
};

static void write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return; /* a closed pipe: the rest is not wanted */
        data += n, len -= (size_t)n;
    }
}

static void install_forwarding(void);

static void control_message(struct frames *f) {
    f->control[f->control_len] = '\0';
    if (strncmp(f->control, "exit ", 5) == 0) {
        f->exit_code = atoi(f->control + 5);
    } else if (strncmp(f->control, "container ", 10) == 0 && f->container[0] == '\0') {
        snprintf(f->container, sizeof(f->container), "%s", f->control + 10);
        install_forwarding();
    }
}

/* Feed body bytes to the frame parser: payloads of streams 1 and 2 go out as they arrive. */
static void feed(struct frames *f, const char *data, size_t len) {
    while (len > 0 && f->exit_code < 0) {
        if (f->have < 8) {
            size_t take = 8 - f->have < len ? 8 - f->have : len;
            memcpy(f->header + f->have, data, take);
            f->have += take, data += take, len -= take;
            if (f->have == 8) {
                f->left = (unsigned long)f->header[4] << 24 | (unsigned long)f->header[5] << 16 |
                          (unsigned long)f->header[6] << 8 | f->header[7];
                f->control_len = 0;
                if (f->left == 0) {
                    if (f->header[0] == 3) control_message(f);
                    f->have = 0;
                }
            }
            continue;
        }
        size_t take = f->left < len ? f->left : len;
        if (f->header[0] == 1 || f->header[0] == 2) {
            write_all(f->header[0], data, take);
        } else if (f->header[0] == 3) {
            size_t room = CONTROL_MAX - 1 - f->control_len;
            size_t keep = take < room ? take : room;
            memcpy(f->control + f->control_len, data, keep);
            f->control_len += keep;
        }
        f->left -= take, data += take, len -= take;
        if (f->left == 0) {
            if (f->header[0] == 3) control_message(f);
            f->have = 0;
        }
    }
}

/* Pass ``size`` bytes of the body (all of it: SIZE_MAX) to ``f``; 0 when the stream ended first. */
static int pass_body(struct reader *r, struct frames *f, size_t size) {
    while (size > 0 && f->exit_code < 0) {
        if (r->start == r->end && !fill(r)) return size == SIZE_MAX;
        size_t have = r->end - r->start;
        size_t take = have < size ? have : size;
        feed(f, r->data + r->start, take);
        r->start += take;
        if (size != SIZE_MAX) size -= take;
    }
    return 1;
}

struct answer {
    int status;
    int chunked;
    long long length; /* Content-Length, -1 without */
};

static struct answer read_head(struct reader *r) {
    struct answer a = {.status = 0, .chunked = 0, .length = -1};
    char line[8192];
    if (read_line(r, line, sizeof(line)) == 0) return a;
    char *space = strchr(line, ' ');
    if (strncmp(line, "HTTP/1.", 7) == 0 && space != NULL) a.status = atoi(space + 1);
    while (read_line(r, line, sizeof(line)) > 0 && strcmp(line, "\r\n") != 0 && strcmp(line, "\n") != 0) {
        if (strncasecmp(line, "transfer-encoding:", 18) == 0 && strcasestr(line + 18, "chunked") != NULL)
            a.chunked = 1;
        else if (strncasecmp(line, "content-length:", 15) == 0)
            a.length = atoll(line + 15);
    }
    return a;
}

/* The body through ``f``: chunked or by length. 0 when the stream ended before the exit frame. */
static int read_body(struct reader *r, struct answer *a, struct frames *f) {
    if (!a->chunked) {
        pass_body(r, f, a->length >= 0 ? (size_t)a->length : SIZE_MAX);
        return f->exit_code >= 0;
    }
    char line[128];
    while (f->exit_code < 0) {
        if (read_line(r, line, sizeof(line)) == 0) return 0;
        unsigned long long size = strtoull(line, NULL, 16);
        if (size == 0) break;
        if (!pass_body(r, f, (size_t)size)) return 0;
        read_line(r, line, sizeof(line)); /* the CRLF after the chunk */
    }
    return f->exit_code >= 0;
}

/* ---- signals of a foreground run ---------------------------------------------------------- */
static const char *forwarded_container;

static void note_signal(int signum) { pending_signal = signum; }

static void interrupted(int signum) {
    (void)signum;
    _exit(130); /* before the daemon named a container: what the Python client's KeyboardInterrupt gives */
}

static void install_forwarding(void) {
    struct sigaction action = {0};
    action.sa_handler = note_signal; /* no SA_RESTART: the blocked read returns EINTR */
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGHUP, &action, NULL);
    forwarding = 1;
}

/* engine/cli/remote.py _global_options: --root/--instance before the verb. */
static size_t global_options(char **args, char **options, size_t max) {
    size_t n = 0;
    for (size_t i = 0; args[i] != NULL && n + 2 <= max; i++) {
        if (strcmp(args[i], "--root") == 0 || strcmp(args[i], "--instance") == 0) {
            options[n++] = args[i];
            options[n++] = args[i + 1] != NULL ? args[i + 1] : "";
            if (args[i + 1] == NULL) break;
            i++;
        } else if (strncmp(args[i], "--root=", 7) == 0 || strncmp(args[i], "--instance=", 11) == 0) {
            options[n++] = args[i];
        } else {
            break;
        }
    }
    return n;
}

static void forward_pending(void) {
    int signum = pending_signal;
    if (!forwarding || signum == 0 || forwarded_container == NULL) return;
    pending_signal = 0;
    const char *name = signum == SIGINT ? "SIGINT" : signum == SIGTERM ? "SIGTERM" : "SIGHUP";
    char *args[16];
    size_t n = global_options(program_argv + 1, args, 10);
    args[n++] = "kill", args[n++] = "-s", args[n++] = (char *)name;
    args[n++] = (char *)forwarded_container, args[n] = NULL;
    int fd = connect_daemon();
    if (fd < 0) return;
    if (post(fd, args) == 0) {
        char sink[4096];
        while (read(fd, sink, sizeof(sink)) > 0) {
        } /* the answer ("<id>" or an error) is not shown */
    }
    close(fd);
}

int main(int argc, char **argv) {
    (void)argc;
    program_argv = argv;
    const char *wanted = getenv("HOSTPANEL_CLI_DAEMON");
    if (wanted != NULL && strcmp(wanted, "0") == 0) run_in_python();
    int fd = connect_daemon();
    if (fd < 0) run_in_python();
    signal(SIGINT, interrupted);
    if (post(fd, argv + 1) != 0) {
        close(fd);
        run_in_python(); /* the request did not reach it: nothing ran */
    }
    static struct reader r;
    r.fd = fd;
    struct answer a = read_head(&r);
    if (a.status == 0 || a.status == 404 || a.status == NOT_SERVED) {
        close(fd);
        signal(SIGINT, SIG_DFL);
        run_in_python();
    }
    static struct frames f;
    f.exit_code = -1;
    forwarded_container = f.container;
    if (a.status != 200) {
        char text[4096];
        size_t len = 0;
        size_t want = a.length >= 0 && (size_t)a.length < sizeof(text) ? (size_t)a.length : sizeof(text) - 1;
        while (len < want && (r.start < r.end || fill(&r))) text[len++] = r.data[r.start++];
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ')) len--;
        text[len] = '\0';
        fprintf(stderr, "hpctl: the operator daemon failed (%d): %s\n", a.status, text);
        return 1;
    }
    if (read_body(&r, &a, &f)) return f.exit_code;
    if (r.failed) {
        fprintf(stderr, "hpctl: lost the operator daemon (%s); see `hpctl ps -a` for what was done\n",
                strerror(r.failed));
        return 1;
    }
    fprintf(stderr, "hpctl: the operator daemon closed the connection before the command ended\n");
    return 1;
}
