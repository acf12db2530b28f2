/*
 * bootstrap.c: a TCP rendezvous for launches without MPI (torchrun-style RANK / WORLD_SIZE / MASTER_ADDR /
 * MASTER_PORT): rank 0 listens on MASTER_PORT, every other rank connects (retrying while rank 0 starts), sends its
 * rank, and receives rank 0's blob. It carries one thing: the NCCL unique id, from which NCCL builds its own rings.
 * Every wait is bounded by a timeout, so a rank that never arrives ends the others with a message naming it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dist.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// Send or receive exactly n bytes before the deadline.
static int xfer(int fd, void *buf, size_t n, int sending, double deadline) {
    uint8_t *p = buf;
    while (n) {
        struct pollfd pfd = {fd, (short)(sending ? POLLOUT : POLLIN), 0};
        int ms = (int)((deadline - now_s()) * 1e3);
        if (ms <= 0 || poll(&pfd, 1, ms) <= 0) return -1;
        ssize_t k = sending ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int dist_tcp_broadcast(int rank, int world, const char *addr, int port, void *blob, size_t n, double timeout_s,
                       char *err, size_t errlen) {
    if (world < 1 || rank < 0 || rank >= world) {
        snprintf(err, errlen, "RANK=%d WORLD_SIZE=%d: expected 0 <= RANK < WORLD_SIZE", rank, world);
        return -1;
    }
    if (world == 1) return 0;
    if (port <= 0 || port > 65535) {
        snprintf(err, errlen, "MASTER_PORT=%d: expected a TCP port", port);
        return -1;
    }
    const double deadline = now_s() + timeout_s;
    if (rank == 0) {
        int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_ANY);
        sa.sin_port = htons((uint16_t)port);
        if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) || listen(ls, world)) {
            snprintf(err, errlen, "MASTER_PORT=%d: rank 0 cannot listen (%s)", port, strerror(errno));
            if (ls >= 0) close(ls);
            return -1;
        }
        int *seen = calloc((size_t)world, sizeof(int));
        int arrived = 1, rc = 0;
        while (arrived < world) {
            struct pollfd pfd = {ls, POLLIN, 0};
            int ms = (int)((deadline - now_s()) * 1e3);
            if (ms <= 0 || poll(&pfd, 1, ms) <= 0) break;
            int fd = accept(ls, NULL, NULL);
            if (fd < 0) continue;
            int32_t r = -1;
            if (!xfer(fd, &r, sizeof r, 0, deadline) && r > 0 && r < world && !seen[r] &&
                !xfer(fd, blob, n, 1, deadline)) {
                seen[r] = 1;
                arrived++;
            }
            close(fd);
        }
        close(ls);
        if (arrived < world) {
            int missing = -1;
            for (int r = 1; r < world && missing < 0; r++)
                if (!seen[r]) missing = r;
            snprintf(err, errlen, "bootstrap: rank %d of %d did not connect to %s:%d within %.0f s", missing, world,
                     addr, port, timeout_s);
            rc = -1;
        }
        free(seen);
        return rc;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    if (getaddrinfo(addr, portstr, &hints, &res) || !res) {
        snprintf(err, errlen, "MASTER_ADDR=%s: cannot resolve", addr);
        return -1;
    }
    int rc = -1;
    while (now_s() < deadline) {   // rank 0 may not be listening yet: retry until the deadline
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd >= 0 && !connect(fd, res->ai_addr, res->ai_addrlen)) {
            int32_t r = rank;
            rc = xfer(fd, &r, sizeof r, 1, deadline) || xfer(fd, blob, n, 0, deadline) ? -1 : 0;
            close(fd);
            if (!rc) break;
        } else if (fd >= 0) close(fd);
        usleep(50000);
    }
    freeaddrinfo(res);
    if (rc) snprintf(err, errlen, "bootstrap: rank %d could not reach rank 0 at %s:%d within %.0f s", rank, addr, port,
                     timeout_s);
    return rc;
}
