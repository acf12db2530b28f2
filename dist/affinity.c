/*
 * affinity.c: bind a rank's threads to the CPU cores nearest its GPU. A GPU's PCI device in sysfs names the cores
 * and the NUMA node the platform's firmware places it next to (/sys/bus/pci/devices/<bus id>/local_cpulist and
 * numa_node: what NVML's nvmlDeviceGetCpuAffinity reads too); the process's allowed set is narrowed to those cores
 * (intersected with what the launcher allowed, so a Slurm or mpirun binding is never widened), before the loader's
 * thread and OpenMP's workers start, so they inherit it. Host-side staging, the loader and the kernel launches then
 * run next to the GPU's PCIe root, and pinned buffers are first touched on its NUMA node.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"

// "0-7,16-23" (sysfs's cpulist format) into set; 0, or -1 on a malformed list.
static int parse_cpulist(const char *s, cpu_set_t *set) {
    CPU_ZERO(set);
    while (*s && *s != '\n') {
        char *end;
        errno = 0;
        const long a = strtol(s, &end, 10);
        if (end == s || errno || a < 0 || a >= CPU_SETSIZE) return -1;
        long b = a;
        s = end;
        if (*s == '-') {
            b = strtol(s + 1, &end, 10);
            if (end == s + 1 || errno || b < a || b >= CPU_SETSIZE) return -1;
            s = end;
        }
        for (long c = a; c <= b; c++) CPU_SET((int)c, set);
        if (*s == ',') s++;
        else if (*s && *s != '\n') return -1;
    }
    return 0;
}

// set as a cpulist ("0-7,16-23") into buf.
static void format_cpulist(const cpu_set_t *set, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = 0;
    for (int c = 0; c < CPU_SETSIZE && len < n; c++) {
        if (!CPU_ISSET(c, set)) continue;
        int e = c;
        while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, set)) e++;
        len += (size_t)snprintf(buf + len, n - len, len ? ",%d" : "%d", c);
        if (e > c && len < n) len += (size_t)snprintf(buf + len, n - len, "-%d", e);
        c = e;
    }
    if (!buf[0]) snprintf(buf, n, "none");
}

// The first line of sysfs_root/bus/pci/devices/<bus id>/<name> into buf; 0, or -1 when it cannot be read.
static int read_pci_file(const char *sysfs_root, const char *bus_id, const char *name, char *buf, size_t n) {
    char path[1024], id[64];
    size_t i = 0;
    for (; bus_id[i] && i + 1 < sizeof id; i++) id[i] = (char)tolower((unsigned char)bus_id[i]);   // sysfs: lowercase
    id[i] = 0;
    snprintf(path, sizeof path, "%s/bus/pci/devices/%s/%s", sysfs_root, id, name);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    const int ok = fgets(buf, (int)n, f) != NULL;
    fclose(f);
    if (!ok) return -1;
    buf[strcspn(buf, "\n")] = 0;
    return 0;
}

int dist_bind_near_gpu(const char *sysfs_root, const char *bus_id, char *msg, size_t n) {
    char list[4096], node[32] = "";
    if (read_pci_file(sysfs_root, bus_id, "local_cpulist", list, sizeof list)) {
        snprintf(msg, n, "affinity: no %s/bus/pci/devices/%s/local_cpulist for this rank's GPU: left to the launcher",
                 sysfs_root, bus_id);
        return 1;
    }
    if (read_pci_file(sysfs_root, bus_id, "numa_node", node, sizeof node) || !strcmp(node, "-1"))
        snprintf(node, sizeof node, "unknown");
    cpu_set_t near, allowed, both;
    if (parse_cpulist(list, &near)) {
        snprintf(msg, n, "affinity: GPU %s: cannot parse its local_cpulist '%s': left to the launcher", bus_id, list);
        return 1;
    }
    if (sched_getaffinity(0, sizeof allowed, &allowed)) {
        snprintf(msg, n, "affinity: sched_getaffinity failed (%s): left to the launcher", strerror(errno));
        return 1;
    }
    CPU_AND(&both, &near, &allowed);
    char near_s[256], allowed_s[256], both_s[256];
    format_cpulist(&near, near_s, sizeof near_s);
    format_cpulist(&allowed, allowed_s, sizeof allowed_s);
    format_cpulist(&both, both_s, sizeof both_s);
    if (!CPU_COUNT(&both)) {
        snprintf(msg, n, "affinity: GPU %s is near CPUs %s (NUMA node %s), none of which this process may use "
                 "(allowed: %s): left as the launcher set it", bus_id, near_s, node, allowed_s);
        return 1;
    }
    if (sched_setaffinity(0, sizeof both, &both)) {
        snprintf(msg, n, "affinity: sched_setaffinity to CPUs %s failed (%s): left to the launcher", both_s,
                 strerror(errno));
        return 1;
    }
    snprintf(msg, n, "affinity: GPU %s is near CPUs %s (NUMA node %s): this rank's threads bound to CPUs %s "
             "(--cpu-affinity off leaves them to the launcher)", bus_id, near_s, node, both_s);
    return 0;
}
