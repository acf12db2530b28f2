/*
 * test_bootstrap.c: the TCP rendezvous that carries the NCCL unique id for torchrun-style launches (dist/bootstrap.c):
 * 4 processes (fork) on localhost, rank 0's random 128-byte blob reaches ranks 1..3 byte for byte, whichever starts
 * first; a launch where rank 2 never comes ends rank 0 within its timeout with a message naming rank 2; bad
 * RANK / WORLD_SIZE / MASTER_PORT values are refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dist.h"
#include "harness.h"

int main(void) {
    char err[512];
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    const int port = 20000 + rand() % 30000;
    unsigned char blob[128];
    for (int i = 0; i < 128; i++) blob[i] = (unsigned char)rand();
    // Ranks 1..3 start before rank 0 listens (they retry): each exits 0 when it received exactly rank 0's blob.
    pid_t kids[3];
    for (int r = 1; r <= 3; r++) {
        if ((kids[r - 1] = fork()) == 0) {
            unsigned char got[128] = {0};
            int rc = dist_tcp_broadcast(r, 4, "127.0.0.1", port, got, sizeof got, 20.0, err, sizeof err);
            _exit(rc == 0 && !memcmp(got, blob, sizeof got) ? 0 : 1);
        }
    }
    usleep(200000);
    int rc0 = dist_tcp_broadcast(0, 4, "127.0.0.1", port, blob, sizeof blob, 20.0, err, sizeof err);
    int kids_ok = 1;
    for (int i = 0; i < 3; i++) {
        int st;
        waitpid(kids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) kids_ok = 0;
    }
    harness_case(rc0 == 0 && kids_ok, "4 ranks on localhost: rank 0's 128-byte blob reaches ranks 1..3 exactly",
                 "port %d%s%s", port, rc0 ? ": " : "", rc0 ? err : "");

    // Rank 2 of 3 never comes: rank 0 gives up after its timeout and names it.
    const int port2 = port + 1;
    pid_t k = fork();
    if (k == 0) {
        unsigned char got[16];
        _exit(dist_tcp_broadcast(1, 3, "127.0.0.1", port2, got, sizeof got, 5.0, err, sizeof err) ? 1 : 0);
    }
    unsigned char small[16] = {1};
    time_t t0 = time(NULL);
    int rc = dist_tcp_broadcast(0, 3, "127.0.0.1", port2, small, sizeof small, 1.0, err, sizeof err);
    int st;
    waitpid(k, &st, 0);
    harness_case(rc == -1 && strstr(err, "rank 2 of 3 did not connect") && time(NULL) - t0 <= 3,
                 "a missing rank ends rank 0 within its timeout, named", "%s", err);
    harness_case(dist_tcp_broadcast(3, 2, "127.0.0.1", port, blob, 8, 1.0, err, sizeof err) == -1 &&
                     strstr(err, "RANK=3 WORLD_SIZE=2"),
                 "RANK outside WORLD_SIZE refused", "%s", err);
    harness_case(dist_tcp_broadcast(1, 2, "127.0.0.1", 70000, blob, 8, 1.0, err, sizeof err) == -1 &&
                     strstr(err, "MASTER_PORT=70000"),
                 "a bad MASTER_PORT refused", "%s", err);
    return harness_finish();
}
