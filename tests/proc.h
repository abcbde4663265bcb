/* proc.h - run a program and capture its output, for the CLI tests (header-only). */
#ifndef CNN_PROC_H
#define CNN_PROC_H

#include <dirent.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Start exe with the NULL-terminated args, its stdout and stderr on pipes whose read
 * ends land in *out_fd and *err_fd. @return the child's pid, or -1. */
static inline pid_t spawn_cmd(const char *exe, const char *const *args, int *out_fd, int *err_fd)
{
    int po[2], pe[2];
    if (pipe(po) || pipe(pe))
        return -1;
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]), close(pe[0]), close(po[1]), close(pe[1]);
        char *argv[64];
        int n = 0;
        argv[n++] = (char *)exe;
        for (; args[n - 1] && n < 63; n++)
            argv[n] = (char *)args[n - 1];
        argv[n] = NULL;
        execv(exe, argv);
        _exit(127);
    }
    close(po[1]), close(pe[1]);
    *out_fd = po[0], *err_fd = pe[0];
    return pid;
}

/* Wait for pid; @return its exit status, or -1 if it did not exit normally. */
static inline int wait_cmd(pid_t pid)
{
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Run exe with the NULL-terminated args; capture stdout and stderr (up to cap - 1
 * bytes each, NUL-terminated). @return the exit status, or -1 if the program did not
 * exit normally (a crash). */
static inline int run_cmd(const char *exe, const char *const *args, char *out, char *err,
                          size_t cap)
{
    int ofd, efd;
    const pid_t pid = spawn_cmd(exe, args, &ofd, &efd);
    if (pid < 0)
        return -2;
    size_t no = 0, ne = 0;
    struct pollfd fds[2] = {{ofd, POLLIN, 0}, {efd, POLLIN, 0}};
    while (fds[0].fd >= 0 || fds[1].fd >= 0) { /* drain both pipes as data comes */
        if (poll(fds, 2, -1) < 0)
            break;
        for (int k = 0; k < 2; k++) {
            if (fds[k].fd < 0 || !fds[k].revents)
                continue;
            char *buf = k ? err : out;
            size_t *len = k ? &ne : &no;
            char sink[4096];
            const size_t room = cap - 1 - *len;
            const ssize_t got = room ? read(fds[k].fd, buf + *len, room)
                                     : read(fds[k].fd, sink, sizeof sink);
            if (got <= 0)
                fds[k].fd = -1;
            else if (room)
                *len += (size_t)got;
        }
    }
    out[no] = err[ne] = '\0';
    close(ofd), close(efd);
    return wait_cmd(pid);
}

/* 1 if the files at a and b hold the same bytes. */
static inline int same_file(const char *a, const char *b)
{
    FILE *f = fopen(a, "rb"), *g = fopen(b, "rb");
    int same = f && g;
    while (same) {
        const int x = fgetc(f), y = fgetc(g);
        same = x == y;
        if (x == EOF || y == EOF)
            break;
    }
    if (f)
        fclose(f);
    if (g)
        fclose(g);
    return same;
}

/* The number printed after `key` in text, or -1. */
static inline double out_field(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    double v = -1;
    if (!p || sscanf(p + strlen(key), "%lf", &v) != 1)
        return -1;
    return v;
}

/* The parent of process pid (from /proc/pid/stat), or -1. */
static inline pid_t parent_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    const size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')'); /* the name may hold spaces and ')' */
    int ppid = -1;
    if (!close_paren || sscanf(close_paren + 1, " %*c %d", &ppid) != 1)
        return -1;
    return (pid_t)ppid;
}

/* 1 if pid descends from root (its child, grandchild...). */
static inline int descends_from(pid_t pid, pid_t root)
{
    for (int depth = 0; pid > 1 && depth < 64; depth++) {
        pid = parent_of(pid);
        if (pid == root)
            return 1;
    }
    return 0;
}

/* 1 if process pid's environment holds the entry kv ("NAME=value"). */
static inline int has_env(pid_t pid, const char *kv)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    static char env[1 << 16];
    const size_t n = fread(env, 1, sizeof env - 1, f);
    fclose(f);
    env[n] = '\0';
    for (size_t at = 0; at < n; at += strlen(env + at) + 1)
        if (strcmp(env + at, kv) == 0)
            return 1;
    return 0;
}

/* A process among root's own descendants whose environment holds kv (e.g. the MPI
 * rank "OMPI_COMM_WORLD_RANK=1" of a test's own mpirun), or -1: found through the
 * test's children, never by a name search across the machine. */
static inline pid_t descendant_with_env(pid_t root, const char *kv)
{
    DIR *d = opendir("/proc");
    pid_t found = -1;
    for (struct dirent *e; d && found < 0 && (e = readdir(d));) {
        const pid_t pid = (pid_t)atoi(e->d_name);
        if (pid > 0 && descends_from(pid, root) && has_env(pid, kv))
            found = pid;
    }
    if (d)
        closedir(d);
    return found;
}

/* The number of lines of s. */
static inline int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

#endif
