#define _GNU_SOURCE
#include "CTempFiles.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

enum { SLOT_COUNT = 64, SLOT_FREE = 0, SLOT_WRITING = 1, SLOT_FILE = 2, SLOT_FOLDER = 3 };

static char slot_paths[SLOT_COUNT][PATH_MAX];
static atomic_int slot_states[SLOT_COUNT];
static atomic_int handlers_installed;
static const int cleanup_signals[] = { SIGINT, SIGTERM, SIGHUP };

/// Only raw system calls here: getdents64 and unlinkat are async-signal-safe where readdir is not.
static void remove_flat_folder(const char *path) {
#if defined(__linux__) && defined(SYS_getdents64)
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        char buffer[4096] __attribute__((aligned(8)));
        for (;;) {
            long n = syscall(SYS_getdents64, fd, buffer, sizeof buffer);
            if (n <= 0) break;
            for (long offset = 0; offset < n;) {
                struct dirent64 *entry = (struct dirent64 *)(buffer + offset);
                if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) unlinkat(fd, entry->d_name, 0);
                offset += entry->d_reclen;
            }
        }
        close(fd);
    }
#endif
    rmdir(path);
}

static void remove_registered_paths(int signal_number) {
    int saved_errno = errno;
    for (int i = 0; i < SLOT_COUNT; i++) {
        int state = atomic_load(&slot_states[i]);
        if (state == SLOT_FILE) unlink(slot_paths[i]);
        else if (state == SLOT_FOLDER) remove_flat_folder(slot_paths[i]);
    }
    errno = saved_errno;
    // The disposition was reset on entry (SA_RESETHAND); the signal stays blocked until the handler returns,
    // then ends the process with the status the parent expects from it.
    raise(signal_number);
}

static void install_handlers(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&handlers_installed, &expected, 1)) return;
    for (size_t i = 0; i < sizeof cleanup_signals / sizeof cleanup_signals[0]; i++) {
        struct sigaction current;
        if (sigaction(cleanup_signals[i], NULL, &current) != 0) continue;
        // Someone else's handler (the server's graceful shutdown) or an ignored signal stays as it is.
        if (current.sa_handler != SIG_DFL || (current.sa_flags & SA_SIGINFO)) continue;
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = remove_registered_paths;
        action.sa_flags = SA_RESETHAND;
        sigfillset(&action.sa_mask);
        sigaction(cleanup_signals[i], &action, NULL);
    }
}

/// A process started from a thread that blocks signals (Dispatch and test-runner threads do) inherits that mask,
/// and SIGTERM would then stay pending until exit; the registering thread takes the signals again.
static void unblock_cleanup_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof cleanup_signals / sizeof cleanup_signals[0]; i++) sigaddset(&set, cleanup_signals[i]);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int moe_temp_register(const char *path, int is_folder) {
    size_t length = strlen(path);
    if (length >= PATH_MAX) return -1;
    install_handlers();
    unblock_cleanup_signals();
    for (int i = 0; i < SLOT_COUNT; i++) {
        int expected = SLOT_FREE;
        if (atomic_compare_exchange_strong(&slot_states[i], &expected, SLOT_WRITING)) {
            memcpy(slot_paths[i], path, length + 1);
            atomic_store(&slot_states[i], is_folder ? SLOT_FOLDER : SLOT_FILE);
            return i;
        }
    }
    return -1;
}

void moe_temp_unregister(int slot) {
    if (slot >= 0 && slot < SLOT_COUNT) atomic_store(&slot_states[slot], SLOT_FREE);
}

int moe_rename_noreplace(const char *from, const char *to) {
#if defined(__linux__) && defined(SYS_renameat2)
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
#else
    errno = ENOSYS;
    return -1;
#endif
}
