/*
 * emu_runtime.cc: the emulated CUDA device. The product's CUDA code (the .cu files of kernels/cuda, dist/nccl.c) compiled as
 * host code against tests/emu/include runs here: kernels on coroutine threads, device memory in a protected arena,
 * streams and events with CUDA's ordering rules, and an access checker that reports, with the kernel, block, thread
 * and address, what a real GPU would not tell us. Written from the CUDA C++ Programming Guide, the CUDA runtime API
 * reference (including its "API synchronization behavior" page) and the PTX ISA.
 *
 * Execution. A kernel launch, a copy, a memset, a cuBLAS or NCCL call is an op queued on its stream; nothing runs
 * when it is queued. Ops run when the host must wait for them (cudaStreamSynchronize, cudaDeviceSynchronize, a
 * blocking copy to the host, an event synchronize or query, cudaFree), and then only the ops that the wait needs:
 * the stream's earlier ops and, recursively, what they depend on (events waited for; the legacy default stream's
 * implicit ordering with blocking streams). Every op thus runs at the latest moment CUDA allows, and work on another
 * stream that nothing orders before it is still pending: a missing cudaStreamWaitEvent shows up as stale data, and
 * the checker reports it directly (below). Pageable host-to-device cudaMemcpy returns with the copy still queued,
 * as the API reference allows; stream and event queries answer "not ready" once before they wait.
 *
 * Kernels. Blocks run one at a time; each thread of a block is a coroutine with its own stack (an x86-64 stack
 * switch, else ucontext). A thread runs until it must meet others: __syncthreads (every live thread of the block;
 * exited threads count as arrived, as PTX's exit does), a warp collective (the non-exited lanes its mask names), or
 * a warpgroup instruction (all 128). The last to arrive completes it. Threads that reach __syncthreads at different
 * source lines, lanes that meet at different collectives, a lane left out of its own mask, a shuffle that reads a
 * lane that does not take part, and a block in which no thread can move are reports, never hangs.
 *
 * Memory. Each device's memory is a reserved region of the address space, PROT_NONE whenever host code runs and
 * readable only while an op executes, so host code that dereferences a device pointer faults, and the fault handler
 * reports which allocation it touched. Allocations are 256-byte aligned with unmapped-for-the-checker gaps between
 * them and poisoned with 0xFF bytes (NaN as fp32 and bf16). cudaMemGetInfo reports the device size the test sets
 * (GPTRAIN_EMU_MEMORY), and cudaMalloc fails past it as a GPU would.
 *
 * The checker. The .cu files are compiled with -fsanitize=thread, so every load and store of kernel code calls a
 * __tsan_* hook here (no TSan runtime is linked). Per 2-byte cell of device and shared memory the checker keeps the
 * last writer and reader (op, thread, barrier epoch) and reports:
 *   - an access outside every live allocation, or past the end of the one it starts in (an off-by-one in a kernel);
 *   - a read of device memory no op has written since cudaMalloc, or of shared memory no thread of the block wrote;
 *   - a race: two threads of one launch touching one cell, one of them writing, with no __syncthreads (same block)
 *     or __syncwarp/warp collective (same warp) between them, or in different blocks at all (atomics excepted);
 *   - a stream race: an op touching a cell that an op of another stream touched, one of them writing, with no
 *     ordering between them (vector clocks over streams: stream order, event waits, host synchronization);
 *   - a kernel reading or writing host memory (a host pointer in a kernel; launch arguments are checked too).
 * It does not model: timing, real concurrency inside a warp, memory-ordering subtleties (fences are no-ops and
 * every access is sequentially consistent), or anything the hardware does unlike the documentation.
 *
 * Environment: GPTRAIN_EMU_DEVICES (1), GPTRAIN_EMU_MEMORY (per device, e.g. 64M; default 4G), GPTRAIN_EMU_CC
 * (compute capability 80 or 90; default 90), GPTRAIN_EMU_ASYNC (late or eager: when cp.async and TMA copies land;
 * emu_ptx.cc), GPTRAIN_EMU_TRACE=1 (print each op as it runs), GPTRAIN_EMU_STATS=1 (counts at exit).
 */
#include "emu_internal.h"

#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#include "cuda.h"
#include "cudaTypedefs.h"

// Linker-provided bounds of the section every __shared__ variable lives in (weak: a program without kernels).
extern "C" char __start_emu_shared[] __attribute__((weak));
extern "C" char __stop_emu_shared[] __attribute__((weak));
extern "C" char __executable_start[] __attribute__((weak));
extern "C" char _end[] __attribute__((weak));

namespace emu {

// ------------------------------------------------------------------------------------------------------------
// Configuration

static struct Config {
    int devices = 1;
    size_t memory = (size_t)4 << 30;
    int cc = 90;
    int trace = 0, stats = 0;
} cfg;

static size_t parse_size(const char *s, const char *var) {
    char *end;
    double v = strtod(s, &end);
    double m = 1;
    if (*end == 'K' || *end == 'k') m = 1024, end++;
    else if (*end == 'M' || *end == 'm') m = 1048576, end++;
    else if (*end == 'G' || *end == 'g') m = 1073741824.0, end++;
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (end == s || *end || v <= 0) {
        fprintf(stderr, "emu: error: %s=%s: expected a size such as 64M or 2G\n", var, s);
        _exit(EMU_EXIT_STATUS);
    }
    return (size_t)(v * m);
}

// ------------------------------------------------------------------------------------------------------------
// Devices, memory and the arena

struct DevCell {   // the checker's record of one 2-byte cell of device memory
    uint32_t w_op, w_thr, r_op, r_thr, w_ep, r_ep;
    uint16_t w_wep, r_wep;
    uint8_t flags;
};
enum { F_W_ATOMIC = 1, F_R_ATOMIC = 2, F_R_MULTI = 4 };
static const uint32_t OP_THREAD = 0xffffffffu;   // w_thr/r_thr of an access by an op that is not kernel code

struct Alloc {
    uintptr_t base;
    size_t size, span;   // bytes asked for; bytes reserved (rounded, without the gap)
    int device, id;
    DevCell *shadow;
};

struct Stream;
struct Device {
    int index;
    cudaDeviceProp prop;
    uintptr_t lo, hi, top;   // reserved region [lo, hi), allocated up to top
    size_t used;
    std::map<uintptr_t, size_t> free_spans;   // start -> length, below top
    Stream *legacy;
};

static std::vector<Device> devices;
static std::map<uintptr_t, Alloc *> allocs;   // by base
static int alloc_count;
static Alloc *alloc_cache;
static std::map<uintptr_t, size_t> pinned;   // cudaHostAlloc'd host memory: base -> size
static uintptr_t arena_lo, arena_hi;          // all devices' regions
static int arena_open_depth;
static int cur_device;
static cudaError_t last_error = cudaSuccess;
static std::recursive_mutex api_mutex;
static const size_t ALLOC_ALIGN = 256, ALLOC_GAP = 4096;

static const size_t STACK_BYTES = 256 * 1024;
static const int MAX_THREADS = 1024;
static char *stacks;   // MAX_THREADS stacks, each with a PROT_NONE guard page below it

static void signal_handler(int sig, siginfo_t *si, void *ctx);

static void arena_protect(int open) {
    for (auto &d : devices)
        if (d.top > d.lo && mprotect((void *)d.lo, d.top - d.lo, open ? PROT_READ | PROT_WRITE : PROT_NONE)) {
            fprintf(stderr, "emu: error: mprotect of the device arena failed (%s)\n", strerror(errno));
            _exit(EMU_EXIT_STATUS);
        }
}
struct ArenaOpen {   // device memory readable for the lifetime of this object (nests)
    ArenaOpen() {
        if (arena_open_depth++ == 0) arena_protect(1);
    }
    ~ArenaOpen() {
        if (--arena_open_depth == 0) arena_protect(0);
    }
};

static void init_once();
static std::once_flag init_flag;
static void init() { std::call_once(init_flag, init_once); }

static Alloc *find_alloc(uintptr_t a) {
    Alloc *c = alloc_cache;
    if (c && a - c->base < c->size) return c;
    auto it = allocs.upper_bound(a);
    if (it == allocs.begin()) return NULL;
    --it;
    if (a - it->second->base < it->second->size) return alloc_cache = it->second;
    return NULL;
}

// The allocation just before address a (for "past the end of" reports), or NULL.
static Alloc *alloc_before(uintptr_t a) {
    auto it = allocs.upper_bound(a);
    if (it == allocs.begin()) return NULL;
    return (--it)->second;
}

static std::string describe_address(uintptr_t a) {
    char buf[256];
    Alloc *al = find_alloc(a);
    if (al) {
        snprintf(buf, sizeof buf, "allocation #%d (%zu bytes at %p), byte offset %zu", al->id, al->size,
                 (void *)al->base, (size_t)(a - al->base));
        return buf;
    }
    Alloc *b = alloc_before(a);
    auto nx = allocs.upper_bound(a);
    Alloc *n = nx == allocs.end() ? NULL : nx->second;
    const size_t past = b ? (size_t)(a - (b->base + b->size)) : (size_t)-1;
    const size_t before = n ? (size_t)(n->base - a) : (size_t)-1;
    if (b && a >= b->base + b->size && a < b->base + b->span + ALLOC_GAP && past <= before)
        snprintf(buf, sizeof buf, "%zu bytes past the end of allocation #%d (%zu bytes at %p)", past, b->id, b->size,
                 (void *)b->base);
    else if (n && before <= ALLOC_GAP)
        snprintf(buf, sizeof buf, "%zu bytes before the start of allocation #%d (%zu bytes at %p)", before, n->id,
                 n->size, (void *)n->base);
    else
        snprintf(buf, sizeof buf, "no live allocation (freed, or never allocated)");
    return buf;
}

// ------------------------------------------------------------------------------------------------------------
// Ops, streams, events

typedef std::vector<uint32_t> Vc;   // vector clock: stream id -> the last op of that stream ordered before

static void vc_join(Vc &a, const Vc &b) {
    if (a.size() < b.size()) a.resize(b.size(), 0);
    for (size_t i = 0; i < b.size(); i++) a[i] = std::max(a[i], b[i]);
}

struct Op {
    Stream *s;
    uint32_t seq;   // position in its stream, from 1
    Vc vc;
    std::vector<std::shared_ptr<Op>> waits;
    std::function<void()> run;
    const char *kind;
    std::string name;
    bool done = false, queried = false;
    double t_done = 0;   // the device clock when it completed (events)
    uintptr_t wlo = 0, whi = 0;   // device bytes it will write, when known before it runs (copies, memsets, libraries)
};

struct Stream {
    int id, device;
    int nonblocking, legacy;
    std::deque<std::shared_ptr<Op>> pending;
    uint32_t submitted = 0;
    Vc last_vc;
    std::shared_ptr<Op> last;
};

struct Event {
    int device;
    unsigned flags;
    std::shared_ptr<Op> marker;
};

struct OpMeta {   // what the checker keeps of every executed op
    int stream;
    uint32_t seq;
    std::string what;
};

static std::vector<Stream *> streams;   // by id
static std::set<Stream *> live_streams;
static std::set<Event *> live_events;
static std::vector<OpMeta> op_meta(1);   // by execution id; 0 is "none"
static Vc host_vc;
static double device_clock;

// The op executing now.
static uint32_t cur_op;
static const Vc *cur_vc;
static const Stream *cur_stream;
static std::string cur_op_what;

static double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static Stream *new_stream(int device, int nonblocking, int legacy) {
    Stream *s = new Stream();
    s->id = (int)streams.size();
    s->device = device;
    s->nonblocking = nonblocking;
    s->legacy = legacy;
    streams.push_back(s);
    live_streams.insert(s);
    return s;
}

static Stream *resolve_stream(cudaStream_t h) {
    if (devices.empty()) return NULL;
    if (!h || h == cudaStreamLegacy || h == cudaStreamPerThread) return devices[cur_device].legacy;
    Stream *s = (Stream *)h;
    if (!live_streams.count(s)) return NULL;
    return s;
}

static void execute(const std::shared_ptr<Op> &op);

// Run op and everything it needs: its stream's earlier ops, the ops they wait for (recursively).
static void force(const std::shared_ptr<Op> &op) {
    if (!op || op->done) return;
    ArenaOpen open;   // once for the whole run of ops
    Stream *s = op->s;
    while (!op->done) {
        std::shared_ptr<Op> h = s->pending.front();
        for (auto &w : h->waits) force(w);
        execute(h);
        s->pending.pop_front();
    }
}

static void force_device(int device) {
    for (Stream *s : streams)
        if (s->device == device && s->last) force(s->last);
}

static void host_join(const Vc &v) { vc_join(host_vc, v); }

static std::shared_ptr<Op> submit(Stream *s, const char *kind, const std::string &name, std::function<void()> run,
                                  const std::shared_ptr<Op> &wait_for = NULL) {
    auto op = std::make_shared<Op>();
    op->s = s;
    op->seq = ++s->submitted;
    op->kind = kind;
    op->name = name;
    op->run = std::move(run);
    op->vc = s->last_vc;
    vc_join(op->vc, host_vc);
    if (wait_for) {
        op->waits.push_back(wait_for);
        vc_join(op->vc, wait_for->vc);
    }
    // The legacy default stream waits for, and is waited for by, every blocking stream of its device.
    for (Stream *o : streams) {
        if (o == s || o->device != s->device || !o->last) continue;
        const bool implicit = s->legacy ? !o->nonblocking : (!s->nonblocking && o->legacy);
        if (!implicit) continue;
        if (!o->last->done) op->waits.push_back(o->last);
        vc_join(op->vc, o->last_vc);
    }
    if (op->vc.size() <= (size_t)s->id) op->vc.resize(s->id + 1, 0);
    op->vc[s->id] = op->seq;
    s->last_vc = op->vc;
    s->last = op;
    s->pending.push_back(op);
    return op;
}

static std::string op_describe(const Op &op) {
    char buf[64];
    snprintf(buf, sizeof buf, " (stream %d%s, op %u of it)", op.s->id,
             op.s->legacy ? ", the legacy default stream" : op.s->nonblocking ? ", non-blocking" : "", op.seq);
    return std::string(op.kind) + " " + op.name + buf;
}

static void execute(const std::shared_ptr<Op> &op) {
    ArenaOpen open;
    const uint32_t id = (uint32_t)op_meta.size();
    op_meta.push_back(OpMeta{op->s->id, op->seq, op_describe(*op)});
    cur_op = id;
    cur_vc = &op->vc;
    cur_stream = op->s;
    cur_op_what = op_meta.back().what;
    if (cfg.trace) fprintf(stderr, "emu: run #%u %s\n", id, cur_op_what.c_str());
    const int saved_device = cur_device;
    cur_device = op->s->device;
    const double t0 = now_s();
    if (op->run) op->run();
    device_clock += now_s() - t0 + 1e-6;   // every op takes time on the emulated clock
    cur_device = saved_device;
    op->t_done = device_clock;
    op->done = true;
    op->run = nullptr;
    op->waits.clear();
    cur_op = 0;
    cur_vc = NULL;
    cur_stream = NULL;
    cur_op_what.clear();
}

// ------------------------------------------------------------------------------------------------------------
// Reports

struct Thread;
struct BlockState;
static Thread *thread_now();
static std::string where_now();

void note(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "emu: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

void fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "emu: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    std::string w = where_now();
    if (!w.empty()) fprintf(stderr, "emu:   in %s\n", w.c_str());
    fflush(stderr);
    _exit(EMU_EXIT_STATUS);
}

// ------------------------------------------------------------------------------------------------------------
// Kernel execution: threads, blocks, barriers, collectives

enum ThreadState { T_RUN, T_BARRIER, T_COLL, T_SPIN, T_DONE };

struct Thread : ThreadPublic {
    int linear, warp, lane;
    uint32_t gtid;   // block's linear index * threads per block + linear
    ThreadState st;
    const char *wfile;
    int wline;
    void *sp;
    char *stack_lo;
#if !defined(__x86_64__)
    ucontext_t uc;
#endif
    void *slots[4];
};

struct Pending {   // a warp (or warpgroup) collective some lanes have reached
    int active;
    CollKind kind;
    int tag;
    unsigned mask;
    unsigned arrived;
    const char *file;
    int line;
    CollCompute compute;
    Coll *lanes[128];
    uint64_t arrived_hi[4];   // warpgroup: bit per thread of the 128
};

struct Warp {
    Pending p[4];
    uint32_t epoch;   // completed warp-level synchronizations
    unsigned live;    // lanes that exist and have not exited
};

struct Launch {
    LaunchSite site;
    const void *key;
    void (*run)(void *);
    void *call;
    int nthreads;
    uint32_t block_linear;
    unsigned char *dyn;
    size_t dyn_size;
};

static ThreadPublic *const NO_THREAD = NULL;
}  // namespace emu

// The kernel-visible state (emu_kernel.h).
emu::ThreadPublic *emu::g_cur = emu::NO_THREAD;
uint3 emu::g_block_idx;
dim3 emu::g_grid_dim, emu::g_block_dim;

namespace emu {

static Thread threads[MAX_THREADS];
static Warp warps[MAX_THREADS / 32];
static Pending groups[MAX_THREADS / 128];
static int nthreads, live;
static uint32_t block_epoch;   // completed __syncthreads of the running block
static int bar_arrived;
static const char *bar_file;
static int bar_line;
static uint64_t progress_count;
static uint32_t block_gen;   // increments per block: shared-memory cells of an older block are unwritten
static Launch *cur_launch;
static void *sched_sp;
#if !defined(__x86_64__)
static ucontext_t sched_uc;
#endif
static int (*stuck_hook)(void);
// Hooks registered by other files' static constructors: function-local, so they exist before any of those run.
static std::vector<void (*)(void)> &block_hooks() {
    static std::vector<void (*)(void)> v;
    return v;
}
static std::vector<void (*)(void)> &launch_hooks() {
    static std::vector<void (*)(void)> v;
    return v;
}
static long long stat_kernels, stat_blocks, stat_threads, stat_ops;

static Thread *thread_now() { return (Thread *)g_cur; }

static std::string where_now() {
    char buf[512];
    Thread *t = thread_now();
    if (t && cur_launch) {
        const LaunchSite &s = cur_launch->site;
        snprintf(buf, sizeof buf, "kernel %s (launched at %s:%d), block (%u,%u,%u) of (%u,%u,%u), thread (%u,%u,%u) of "
                 "(%u,%u,%u)", s.kernel, s.file, s.line, g_block_idx.x, g_block_idx.y, g_block_idx.z, s.grid.x, s.grid.y,
                 s.grid.z, t->tid.x, t->tid.y, t->tid.z, s.block.x, s.block.y, s.block.z);
        return buf;
    }
    if (cur_launch) {
        const LaunchSite &s = cur_launch->site;
        snprintf(buf, sizeof buf, "kernel %s (launched at %s:%d), block (%u,%u,%u)", s.kernel, s.file, s.line,
                 g_block_idx.x, g_block_idx.y, g_block_idx.z);
        return buf;
    }
    if (cur_op) return "op #" + std::to_string(cur_op) + ": " + cur_op_what;
    return "";
}

static uint3 tid_of(int linear) {
    const dim3 b = cur_launch->site.block;
    return uint3{(unsigned)(linear % b.x), (unsigned)(linear / b.x % b.y), (unsigned)(linear / (b.x * b.y))};
}
static std::string thread_name(uint32_t gtid) {
    char buf[128];
    if (gtid == OP_THREAD) return "an op outside kernel code";
    const int n = cur_launch->nthreads;
    const uint32_t bl = gtid / n;
    const dim3 g = cur_launch->site.grid;
    const uint3 t = tid_of((int)(gtid % n));
    snprintf(buf, sizeof buf, "block (%u,%u,%u) thread (%u,%u,%u)", bl % g.x, bl / g.x % g.y, bl / (g.x * g.y), t.x,
             t.y, t.z);
    return buf;
}

// Context switches.
#if defined(__x86_64__)
extern "C" void emu_ctx_switch(void **save_sp, void *load_sp);
asm(".text\n"
    ".globl emu_ctx_switch\n"
    ".type emu_ctx_switch,@function\n"
    "emu_ctx_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size emu_ctx_switch,.-emu_ctx_switch\n");
#endif

static void thread_finish(Thread *t);

static void thread_entry() {
    Thread *t = thread_now();
    cur_launch->run(cur_launch->call);
    thread_finish(t);
#if defined(__x86_64__)
    emu_ctx_switch(&t->sp, sched_sp);
#else
    swapcontext(&t->uc, &sched_uc);
#endif
    __builtin_unreachable();
}

static void thread_start(Thread *t) {
    char *top = t->stack_lo + STACK_BYTES;
#if defined(__x86_64__)
    uintptr_t *sp = (uintptr_t *)((uintptr_t)top & ~(uintptr_t)15);
    *--sp = 0;                            // the entry's return address slot (never returned through)
    *--sp = (uintptr_t)&thread_entry;     // where emu_ctx_switch's ret goes
    for (int i = 0; i < 6; i++) *--sp = 0;   // rbp rbx r12 r13 r14 r15
    t->sp = sp;
#else
    getcontext(&t->uc);
    t->uc.uc_stack.ss_sp = t->stack_lo;
    t->uc.uc_stack.ss_size = STACK_BYTES;
    t->uc.uc_link = NULL;
    makecontext(&t->uc, (void (*)())thread_entry, 0);
#endif
}

static void resume(Thread *t) {
    g_cur = t;
#if defined(__x86_64__)
    emu_ctx_switch(&sched_sp, t->sp);
#else
    swapcontext(&sched_uc, &t->uc);
#endif
    g_cur = NO_THREAD;
}

static void yield_to_scheduler() {
    Thread *t = thread_now();
#if defined(__x86_64__)
    emu_ctx_switch(&t->sp, sched_sp);
#else
    swapcontext(&t->uc, &sched_uc);
#endif
    g_cur = t;
}

void progress() { progress_count++; }

static void check_unset_reads();

static void complete_barrier() {
    check_unset_reads();
    block_epoch++;
    bar_arrived = 0;
    for (int i = 0; i < nthreads; i++)
        if (threads[i].st == T_BARRIER) threads[i].st = T_RUN;
    progress_count++;
}

static int bar_pred_acc, bar_pred_result;   // __syncthreads_count/and/or: this phase's sum, the last phase's
static void barrier_arrive(const char *file, int line, int pred) {
    Thread *t = thread_now();
    if (!t) fatal("__syncthreads called outside a kernel (%s:%d)", file, line);
    if (bar_arrived == 0) {
        bar_file = file;
        bar_line = line;
    } else if (bar_line != line || (bar_file != file && strcmp(bar_file, file))) {
        fatal("threads of one block reached __syncthreads at different places: %s:%d and %s:%d (a barrier inside "
              "divergent code)", bar_file, bar_line, file, line);
    }
    bar_arrived++;
    bar_pred_acc += pred != 0;
    progress_count++;
    if (bar_arrived == live) {
        bar_pred_result = bar_pred_acc;
        bar_pred_acc = 0;
        complete_barrier();
        return;
    }
    t->st = T_BARRIER;
    t->wfile = file;
    t->wline = line;
    yield_to_scheduler();
}
void syncthreads(const char *file, int line) { barrier_arrive(file, line, 0); }
int syncthreads_op(const char *file, int line, int pred, int op) {
    barrier_arrive(file, line, pred);
    // Every waiting thread reads the result before any can reach the next barrier.
    return op == 0 ? bar_pred_result : op == 1 ? bar_pred_result == live : bar_pred_result != 0;
}

static const char *coll_name(CollKind k, int tag) {
    switch (k) {
    case COLL_SYNCWARP: return "__syncwarp";
    case COLL_SHFL_IDX: return "__shfl_sync";
    case COLL_SHFL_UP: return "__shfl_up_sync";
    case COLL_SHFL_DOWN: return "__shfl_down_sync";
    case COLL_SHFL_XOR: return "__shfl_xor_sync";
    case COLL_BALLOT: return "__ballot_sync";
    case COLL_ANY: return "__any_sync";
    case COLL_ALL: return "__all_sync";
    case COLL_MATCH_ANY: return "__match_any_sync";
    case COLL_MATCH_ALL: return "__match_all_sync";
    case COLL_EXTERNAL: return tag == 1 ? "ldmatrix" : tag == 2 ? "ldmatrix.trans" : tag == 3 ? "mma.sync" : tag == 4 ? "wgmma" : "a warp instruction";
    default: return "__reduce_*_sync";
    }
}

static unsigned live_lanes(int warp) { return warps[warp].live; }

static void compute_builtin(Pending *p, int warp) {
    const unsigned part = p->arrived;
    for (int l = 0; l < 32; l++) {
        if (!(part >> l & 1)) continue;
        Coll *c = p->lanes[l];
        switch (p->kind) {
        case COLL_SHFL_IDX:
        case COLL_SHFL_UP:
        case COLL_SHFL_DOWN:
        case COLL_SHFL_XOR: {
            const int w = c->width;
            if (w < 1 || w > 32 || (w & (w - 1)))
                fatal("%s with width %d (expected a power of two up to 32) at %s:%d", coll_name(p->kind, 0), w,
                      p->file, p->line);
            const int seg = l & ~(w - 1);
            int src;
            bool own = false;
            if (p->kind == COLL_SHFL_IDX) src = seg + (c->arg & (w - 1));
            else if (p->kind == COLL_SHFL_UP) { src = l - c->arg; own = src < seg; }
            else if (p->kind == COLL_SHFL_DOWN) { src = l + c->arg; own = src >= seg + w; }
            else { src = l ^ c->arg; own = src >= seg + w; }
            if (own || src == l) { c->out = c->in; break; }
            if (src < 0 || src > 31 || !(part >> src & 1))
                fatal("lane %d of warp %d reads lane %d's value in %s at %s:%d, but lane %d does not take part (it is "
                      "not in the mask %08x, has exited, or does not exist): the value is undefined", l, warp, src,
                      coll_name(p->kind, 0), p->file, p->line, src, p->mask);
            c->out = p->lanes[src]->in;
            break;
        }
        case COLL_BALLOT:
        case COLL_ANY:
        case COLL_ALL: {
            unsigned b = 0;
            for (int j = 0; j < 32; j++)
                if ((part >> j & 1) && p->lanes[j]->in) b |= 1u << j;
            c->out = p->kind == COLL_BALLOT ? b : p->kind == COLL_ANY ? b != 0 : b == part;
            break;
        }
        case COLL_MATCH_ANY: {
            unsigned b = 0;
            for (int j = 0; j < 32; j++)
                if ((part >> j & 1) && p->lanes[j]->in == c->in) b |= 1u << j;
            c->out = b;
            break;
        }
        case COLL_MATCH_ALL: {
            bool all = true;
            for (int j = 0; j < 32; j++)
                if ((part >> j & 1) && p->lanes[j]->in != c->in) all = false;
            c->out = all ? part : 0;
            c->pred_out = all;
            break;
        }
        case COLL_SYNCWARP: break;
        default: {   // reductions
            uint64_t r = 0;
            bool first = true;
            for (int j = 0; j < 32; j++) {
                if (!(part >> j & 1)) continue;
                const uint32_t u = (uint32_t)p->lanes[j]->in;
                const int32_t s = (int32_t)u;
                if (first) { r = u; first = false; continue; }
                switch (p->kind) {
                case COLL_REDUCE_ADD_U: case COLL_REDUCE_ADD_I: r = (uint32_t)((uint32_t)r + u); break;
                case COLL_REDUCE_MIN_U: r = std::min((uint32_t)r, u); break;
                case COLL_REDUCE_MAX_U: r = std::max((uint32_t)r, u); break;
                case COLL_REDUCE_MIN_I: r = (uint32_t)std::min((int32_t)r, s); break;
                case COLL_REDUCE_MAX_I: r = (uint32_t)std::max((int32_t)r, s); break;
                case COLL_REDUCE_AND: r &= u; break;
                case COLL_REDUCE_OR: r |= u; break;
                case COLL_REDUCE_XOR: r ^= u; break;
                default: fatal("internal: collective kind %d", (int)p->kind);
                }
            }
            c->out = r;
        }
        }
    }
}

// Complete p if every lane it waits for has arrived: compute, release the lanes, count a warp synchronization.
static bool try_complete(Pending *p, int warp) {
    const unsigned need = p->mask & live_lanes(warp);
    if ((p->arrived & need) != need) return false;
    if (p->kind == COLL_EXTERNAL) {
        if (p->arrived != 0xffffffffu)
            fatal("%s at %s:%d needs all 32 lanes of warp %d, but lanes %08x have exited (a .sync.aligned warp "
                  "instruction in divergent code)", coll_name(p->kind, p->tag), p->file, p->line, warp, ~p->arrived);
        p->compute(p->lanes, 32, NULL);
    } else {
        compute_builtin(p, warp);
    }
    for (unsigned m = p->arrived; m; m &= m - 1) {
        Thread *o = &threads[warp * 32 + __builtin_ctz(m)];
        if (o->st == T_COLL) o->st = T_RUN;
    }
    p->active = 0;
    warps[warp].epoch++;
    progress_count++;
    return true;
}

static void arrive(const char *file, int line, CollKind kind, int tag, unsigned mask, Coll *c, CollCompute compute) {
    Thread *t = thread_now();
    if (!t) fatal("%s called outside a kernel (%s:%d)", coll_name(kind, tag), file, line);
    const int lane = t->lane, w = t->warp;
    if (!(mask >> lane & 1))
        fatal("lane %d calls %s at %s:%d with mask %08x, which leaves the lane itself out", lane,
              coll_name(kind, tag), file, line, mask);
    Warp *wp = &warps[w];
    Pending *p = NULL;
    for (auto &q : wp->p) {
        if (!q.active || !(q.mask & mask)) continue;
        if (q.mask != mask || q.kind != kind || q.tag != tag)
            fatal("lanes of warp %d met at different warp collectives: %s (mask %08x) at %s:%d and %s (mask %08x) "
                  "at %s:%d", w, coll_name(q.kind, q.tag), q.mask, q.file, q.line, coll_name(kind, tag), mask, file,
                  line);
        p = &q;
    }
    if (!p) {
        for (auto &q : wp->p)
            if (!q.active) { p = &q; break; }
        if (!p) fatal("more than 4 disjoint warp collectives pending in warp %d", w);
        p->active = 1;
        p->kind = kind;
        p->tag = tag;
        p->mask = mask;
        p->arrived = 0;
        p->file = file;
        p->line = line;
        p->compute = compute;
    }
    p->lanes[lane] = c;
    p->arrived |= 1u << lane;
    progress_count++;
    if (try_complete(p, w)) return;
    t->st = T_COLL;
    t->wfile = file;
    t->wline = line;
    yield_to_scheduler();
}

void collective(const char *file, int line, CollKind kind, unsigned mask, Coll *lane) {
    arrive(file, line, kind, 0, mask, lane, NULL);
}
void warp_external(const char *file, int line, int tag, Coll *lane, CollCompute compute) {
    arrive(file, line, COLL_EXTERNAL, tag, 0xffffffffu, lane, compute);
}

void group_collective(const char *file, int line, int width, int tag, Coll *lane, CollCompute compute) {
    Thread *t = thread_now();
    if (!t || width != 128) fatal("warpgroup collective of width %d at %s:%d", width, file, line);
    const int g = t->linear / 128, r = t->linear % 128;
    Pending *p = &groups[g];
    if (!p->active) {
        p->active = 1;
        p->tag = tag;
        p->file = file;
        p->line = line;
        p->compute = compute;
        memset(p->arrived_hi, 0, sizeof p->arrived_hi);
        p->arrived = 0;
    } else if (p->tag != tag) {
        fatal("threads of warpgroup %d met at different warpgroup instructions (%s:%d and %s:%d)", g, p->file, p->line,
              file, line);
    }
    p->lanes[r] = lane;
    p->arrived_hi[r / 64] |= 1ull << (r % 64);
    p->arrived++;
    progress_count++;
    if ((int)p->arrived == 128) {
        p->compute(p->lanes, 128, NULL);
        p->active = 0;
        for (int i = 0; i < 128; i++) {
            Thread *o = &threads[g * 128 + i];
            if (o->st == T_COLL) o->st = T_RUN;
        }
        return;
    }
    t->st = T_COLL;
    t->wfile = file;
    t->wline = line;
    yield_to_scheduler();
}

unsigned active_mask() {
    Thread *t = thread_now();
    if (!t) fatal("__activemask called outside a kernel");
    return live_lanes(t->warp);
}

void spin_yield() {
    Thread *t = thread_now();
    if (!t) return;
    t->st = T_SPIN;
    yield_to_scheduler();
    t->st = T_RUN;
}

void trap(const char *file, int line) { fatal("the kernel executed __trap() at %s:%d", file, line); }

long long clock_ticks() { return (long long)(now_s() * 1e9); }

static void thread_finish(Thread *t) {
    t->st = T_DONE;
    warps[t->warp].live &= ~(1u << t->lane);
    live--;
    progress_count++;
    if (bar_arrived > 0 && bar_arrived == live) {
        bar_pred_result = bar_pred_acc;
        bar_pred_acc = 0;
        complete_barrier();
    }
    for (auto &q : warps[t->warp].p)
        if (q.active) try_complete(&q, t->warp);
    Pending *g = &groups[t->linear / 128];
    if (g->active)
        fatal("thread %d exited while its warpgroup waits at a warpgroup instruction (%s:%d)", t->linear, g->file,
              g->line);
}

// ---- shared memory ----

struct SmCell {
    uint32_t gen, w_ep, r_ep;
    uint16_t w_thr, r_thr, w_wep, r_wep;
    uint8_t flags;
};
static const uint16_t ASYNC_THREAD = 0xffff;   // written by the async proxy (TMA): ordered through its mbarrier
enum { F_UNSET_READ = 8 };   // shared cell read before any thread of the block wrote it (decided at the barrier)
struct UnsetRead {
    uintptr_t a;
    size_t n;
    int thread;
    bool dynamic;
};
static std::vector<UnsetRead> unset_reads;
static SmCell *sm_static_cells, *sm_dyn_cells;
static size_t sm_dyn_cells_n;
static uintptr_t sm_static_lo, sm_static_hi, sm_dyn_lo, sm_dyn_hi;
static uintptr_t exe_lo, exe_hi;

static void check_unset_reads() {
    if (unset_reads.empty()) return;
    const UnsetRead r = unset_reads[0];
    const uint3 tid = tid_of(r.thread);
    fatal("read of shared memory that no thread of this block had written: thread (%u,%u,%u) read %zu bytes at %s "
          "shared memory offset %zu, and no thread wrote them before the next barrier", tid.x, tid.y, tid.z, r.n,
          r.dynamic ? "dynamic" : "static", (size_t)(r.a - (r.dynamic ? sm_dyn_lo : sm_static_lo)));
}

void *dynamic_smem(int align) {
    if (!cur_launch) fatal("dynamic shared memory used outside a kernel");
    if (align > 1024 || ((uintptr_t)cur_launch->dyn % (uintptr_t)align))
        fatal("dynamic shared memory aligned to %d bytes requested (the emulator gives 1024)", align);
    return cur_launch->dyn;
}

size_t cvta_shared(const void *p) {
    const uintptr_t a = (uintptr_t)p;
    if (a >= sm_dyn_lo && a <= sm_dyn_hi) return a - sm_dyn_lo;
    if (a >= sm_static_lo && a < sm_static_hi) return 0x1000000 + (a - sm_static_lo);
    fatal("__cvta_generic_to_shared of %p, which is not shared memory", p);
}

unsigned char *shared_at(uint32_t addr, size_t n) {
    if (addr >= 0x1000000) {
        const uintptr_t a = sm_static_lo + (addr - 0x1000000);
        if (a + n > sm_static_hi) fatal("shared address 0x%x + %zu is past the static shared memory", addr, n);
        return (unsigned char *)a;
    }
    if ((size_t)addr + n > (size_t)(sm_dyn_hi - sm_dyn_lo))
        fatal("shared address 0x%x + %zu bytes is past the launch's %zu bytes of dynamic shared memory", addr, n,
              (size_t)(sm_dyn_hi - sm_dyn_lo));
    return (unsigned char *)(sm_dyn_lo + addr);
}

static bool ordered_in_block(uint16_t u, uint32_t ep, uint16_t wep, const Thread *t) {
    if (u == t->linear || u == ASYNC_THREAD) return true;
    if (block_epoch > ep) return true;
    return u / 32 == t->warp && warps[t->warp].epoch > wep;
}

static void shared_cells(uintptr_t a, size_t n, SmCell **c0, size_t *count) {
    SmCell *base;
    uintptr_t lo;
    if (a >= sm_dyn_lo && a < sm_dyn_hi) {
        base = sm_dyn_cells;
        lo = sm_dyn_lo;
        if (a + n > sm_dyn_hi)
            fatal("shared-memory access of %zu bytes at offset %zu runs past the %zu bytes of dynamic shared memory",
                  n, (size_t)(a - lo), (size_t)(sm_dyn_hi - sm_dyn_lo));
    } else {
        base = sm_static_cells;
        lo = sm_static_lo;
        if (a + n > sm_static_hi) fatal("shared-memory access of %zu bytes at %p runs past static shared memory", n, (void *)a);
    }
    const size_t first = (a - lo) / 2, last = (a + n - 1 - lo) / 2;
    *c0 = base + first;
    *count = last - first + 1;
}

static void shared_access(const Thread *t, uintptr_t a, size_t n, bool write, bool atomic) {
    SmCell *c;
    size_t k;
    shared_cells(a, n, &c, &k);
    const uint16_t me = (uint16_t)t->linear;
    const uint16_t wep = (uint16_t)warps[t->warp].epoch;
    for (size_t i = 0; i < k; i++, c++) {
        if (c->gen != block_gen) {
            memset(c, 0, sizeof *c);
            c->gen = block_gen;
            c->w_thr = c->r_thr = ASYNC_THREAD;
            if (!write) {
                // Read before any write: a race if another thread writes it before the next barrier, else a read of
                // memory never written; which one is known at the barrier (check_unset_reads).
                c->flags = F_UNSET_READ;
                c->r_thr = me;
                c->r_ep = block_epoch;
                c->r_wep = wep;
                unset_reads.push_back(UnsetRead{a, n, t->linear, a >= sm_dyn_lo && a < sm_dyn_hi});
                continue;
            }
        }
        if (write && (c->flags & F_UNSET_READ) && c->r_thr != me && !ordered_in_block(c->r_thr, c->r_ep, c->r_wep, t))
            fatal("shared-memory race: thread %u writes %zu bytes at shared offset 0x%zx that thread %u read before "
                  "they were written, with no __syncthreads (or, in one warp, __syncwarp) between them", t->linear, n,
                  (size_t)cvta_shared((void *)a), c->r_thr);
        const bool w_atomic_ok = atomic && (c->flags & F_W_ATOMIC);
        if (!w_atomic_ok && !ordered_in_block(c->w_thr, c->w_ep, c->w_wep, t))
            fatal("shared-memory race: thread %u %s %zu bytes at shared offset 0x%zx that thread %u wrote with no "
                  "__syncthreads (or, in one warp, __syncwarp) between them", t->linear, write ? "writes" : "reads",
                  n, (size_t)cvta_shared((void *)a), c->w_thr);
        if (write) {
            if (c->r_thr != ASYNC_THREAD) {
                const bool r_atomic_ok = atomic && (c->flags & F_R_ATOMIC);
                const bool multi = (c->flags & F_R_MULTI) && block_epoch <= c->r_ep;
                if (!r_atomic_ok && (multi || !ordered_in_block(c->r_thr, c->r_ep, c->r_wep, t)))
                    fatal("shared-memory race: thread %u writes %zu bytes at shared offset 0x%zx that thread %u%s "
                          "read with no __syncthreads (or, in one warp, __syncwarp) between them", t->linear, n,
                          (size_t)cvta_shared((void *)a), c->r_thr, multi ? " and other threads" : "");
            }
            c->w_thr = me;
            c->w_ep = block_epoch;
            c->w_wep = wep;
            c->r_thr = ASYNC_THREAD;
            c->flags = atomic ? F_W_ATOMIC : 0;
        } else {
            if (c->r_thr != ASYNC_THREAD && c->r_thr != me && !ordered_in_block(c->r_thr, c->r_ep, c->r_wep, t)) {
                c->flags |= F_R_MULTI;
                c->r_ep = block_epoch;
            } else {
                c->r_thr = me;
                c->r_ep = block_epoch;
                c->r_wep = wep;
                c->flags &= ~(F_R_MULTI | F_R_ATOMIC);
            }
            if (atomic) c->flags |= F_R_ATOMIC;
        }
    }
}

void shared_access_as(int linear, const void *p, size_t n, bool write) {
    shared_access(&threads[linear], (uintptr_t)p, n, write, false);
}

void shared_async_write(const void *p, size_t n) {
    SmCell *c;
    size_t k;
    shared_cells((uintptr_t)p, n, &c, &k);
    for (size_t i = 0; i < k; i++, c++) {
        memset(c, 0, sizeof *c);
        c->gen = block_gen;
        c->w_thr = c->r_thr = ASYNC_THREAD;
    }
}

// ---- device memory seen by kernel threads and by ops ----

static bool hb(uint32_t op) {   // op (executed earlier) is ordered before the op executing now
    static uint32_t memo_op, memo_cur;
    static bool memo;
    if (op == cur_op) return true;
    if (op == memo_op && cur_op == memo_cur) return memo;
    const OpMeta &m = op_meta[op];
    memo_op = op;
    memo_cur = cur_op;
    return memo = cur_vc && (size_t)m.stream < cur_vc->size() && (*cur_vc)[m.stream] >= m.seq;
}

static bool same_op_ordered(uint32_t u, uint32_t ep, uint16_t wep, const Thread *t) {
    if (!t) return u == OP_THREAD;
    if (u == t->gtid) return true;
    if (u == OP_THREAD) return false;
    const int n = cur_launch->nthreads;
    if (u / n != cur_launch->block_linear) return false;
    return block_epoch > ep || ((int)(u % n) / 32 == t->warp && warps[t->warp].epoch > wep);
}

[[noreturn]] static void report_global_race(const Thread *t, const char *op_what, bool write, uintptr_t a, size_t n,
                                            uint32_t other_op, uint32_t other_thr, bool other_wrote) {
    char what[400];
    if (t) snprintf(what, sizeof what, "%s", write ? "writes" : "reads");
    else snprintf(what, sizeof what, "%s %s", op_what, write ? "writes" : "reads");
    if (t && other_op != cur_op) {   // the subject of a stream race in kernel code: the thread
        std::string who = "the kernel's " + thread_name(t->gtid);
        snprintf(what, sizeof what, "%s %s", who.c_str(), write ? "writes" : "reads");
    }
    if (other_op == cur_op) {
        fatal("device-memory race: %s %s %zu bytes at %s, which %s %s in the same launch with no ordering between "
              "them (different blocks are never ordered; threads of one block need a __syncthreads)",
              t ? thread_name(t->gtid).c_str() : "the op", what, n, describe_address(a).c_str(),
              thread_name(other_thr).c_str(), other_wrote ? "wrote" : "read");
    }
    fatal("stream race: %s %zu bytes at %s, which %s of op #%u %s, and nothing orders the two (no event wait, stream "
          "order or host synchronization between them)", what, n, describe_address(a).c_str(),
          other_wrote ? "a write" : "a read", other_op, op_meta[other_op].what.c_str());
}

// A read found bytes no op has written. If an op still queued on some stream is going to write them, the read ran
// first because nothing orders the two: report that stream race; else the memory was never written at all.
[[noreturn]] static void report_unwritten(const Thread *t, const char *what, uintptr_t a, size_t n) {
    const char *who = t ? "the kernel" : what;
    for (Stream *s : streams)   // the reader's own stream runs its later ops after it: they are not candidates
        for (auto &op : s->pending)
            if (s != cur_stream && !op->done && a < op->whi && a + n > op->wlo)
                fatal("stream race: %s reads %zu bytes at %s before %s writes them: it is still queued, and nothing "
                      "orders the read after it (no event wait, stream order or host synchronization)", who, n,
                      describe_address(a).c_str(), op_describe(*op).c_str());
    std::string hint;
    for (Stream *s : streams)
        for (auto &op : s->pending)
            if (s != cur_stream && !op->done && op->kind && !strcmp(op->kind, "kernel")) {
                hint = "; still queued on another stream and not ordered before this read: " + op_describe(*op) +
                       " (a missing event wait?)";
                break;
            }
    fatal("%s reads device memory never written: %zu bytes at %s (cudaMalloc leaves memory unset; the emulator "
          "poisons it)%s", who, n, describe_address(a).c_str(), hint.c_str());
}

static void global_access(const Thread *t, uintptr_t a, size_t n, bool write, bool atomic, const char *what) {
    Alloc *al = find_alloc(a);
    if (!al || a + n > al->base + al->size) {
        const uintptr_t bad = al ? al->base + al->size : a;
        if (t)
            fatal("out-of-bounds %s of %zu bytes at %p: %s", write ? "write" : "read", n, (void *)a,
                  describe_address(bad).c_str());
        fatal("%s: out-of-bounds %s of %zu bytes at %p: %s", what, write ? "write" : "read", n, (void *)a,
              describe_address(bad).c_str());
    }
    if (al->device != cur_device)
        fatal("%s touches allocation #%d of device %d from device %d (peer access is not enabled)", what ? what : "a kernel",
              al->id, al->device, cur_device);
    const size_t first = (a - al->base) / 2, last = (a + n - 1 - al->base) / 2;
    const uint32_t me = t ? t->gtid : OP_THREAD;
    const uint32_t ep = t ? block_epoch : 0;
    const uint16_t wep = t ? (uint16_t)warps[t->warp].epoch : 0;
    for (size_t i = first; i <= last; i++) {
        DevCell *c = &al->shadow[i];
        if (!write && c->w_op == 0) report_unwritten(t, what, a, n);
        if (c->w_op) {
            if (c->w_op == cur_op) {
                if (!(atomic && (c->flags & F_W_ATOMIC)) && !same_op_ordered(c->w_thr, c->w_ep, c->w_wep, t))
                    report_global_race(t, what, write, a, n, c->w_op, c->w_thr, true);
            } else if (!hb(c->w_op)) {
                report_global_race(t, what, write, a, n, c->w_op, c->w_thr, true);
            }
        }
        if (write) {
            if (c->r_op == cur_op) {
                const bool multi = (c->flags & F_R_MULTI) && block_epoch <= c->r_ep;
                if (!(atomic && (c->flags & F_R_ATOMIC)) && (multi || !same_op_ordered(c->r_thr, c->r_ep, c->r_wep, t)))
                    report_global_race(t, what, write, a, n, c->r_op, c->r_thr, false);
            } else if (c->r_op && !hb(c->r_op)) {
                report_global_race(t, what, write, a, n, c->r_op, c->r_thr, false);
            }
            c->w_op = cur_op;
            c->w_thr = me;
            c->w_ep = ep;
            c->w_wep = wep;
            c->r_op = 0;
            c->flags = atomic ? F_W_ATOMIC : 0;
        } else {
            if (c->r_op == cur_op && c->r_thr != me && !same_op_ordered(c->r_thr, c->r_ep, c->r_wep, t)) {
                c->flags |= F_R_MULTI;
                c->r_ep = ep;
            } else if (c->r_op != cur_op || !(c->flags & F_R_MULTI)) {
                c->r_op = cur_op;
                c->r_thr = me;
                c->r_ep = ep;
                c->r_wep = wep;
                c->flags &= ~(F_R_MULTI | F_R_ATOMIC);
            }
            if (atomic) c->flags |= F_R_ATOMIC;
        }
    }
}

void op_read(const void *p, size_t n, const char *what) {
    if (n) global_access(NULL, (uintptr_t)p, n, false, false, what);
}
void op_write(void *p, size_t n, const char *what) {
    if (n) global_access(NULL, (uintptr_t)p, n, true, false, what);
}
void global_read_as_thread(const void *p, size_t n) {
    global_access(thread_now(), (uintptr_t)p, n, false, false, "a kernel");
}

// Every access of instrumented kernel code.
static inline void kernel_access(const void *p, size_t n, bool write, bool atomic) {
    const Thread *t = thread_now();
    const uintptr_t a = (uintptr_t)p;
    if (a - (uintptr_t)t->stack_lo < STACK_BYTES) return;   // the thread's own stack: registers and locals
    if (a >= sm_dyn_lo && a < sm_dyn_hi) return shared_access(t, a, n, write, atomic);
    if (a >= sm_static_lo && a < sm_static_hi) return shared_access(t, a, n, write, atomic);
    if (a >= arena_lo && a < arena_hi) return global_access(t, a, n, write, atomic, "a kernel");
    if (a >= exe_lo && a < exe_hi) return;   // the program's own static data (constant tables)
    if (is_pinned(p))
        fatal("kernel %s %zu bytes of pinned host memory at %p (legal over PCIe, but never intended here: a host "
              "pointer passed to a kernel?)", write ? "writes" : "reads", n, p);
    fatal("kernel %s %zu bytes of host memory at %p, which is not device memory: a host pointer passed to a kernel?",
          write ? "writes" : "reads", n, p);
}

void check_kernel_pointer(const LaunchSite &site, int index, const void *p) {
    init();
    std::lock_guard<std::recursive_mutex> lock(api_mutex);
    if (!p) return;
    const uintptr_t a = (uintptr_t)p;
    if (a >= arena_lo && a < arena_hi) {
        Alloc *al = find_alloc(a);
        if (al) return;
        Alloc *b = alloc_before(a);
        if (b && a == b->base + b->size) return;   // an end pointer of an allocation is a valid argument
        fatal("kernel %s launched at %s:%d with argument %d = %p, which is in no live allocation (%s)", site.kernel,
              site.file, site.line, index, p, describe_address(a).c_str());
    }
    fatal("kernel %s launched at %s:%d with argument %d = %p, which is %s, not device memory", site.kernel, site.file,
          site.line, index, p, is_pinned(p) ? "pinned host memory" : "host memory");
}

// ---- the block scheduler ----

void **thread_slot(int linear, int slot) { return &threads[linear].slots[slot]; }
int thread_linear() { return thread_now() ? thread_now()->linear : -1; }
int block_threads() { return nthreads; }
void set_stuck_hook(int (*hook)(void)) { stuck_hook = hook; }
void add_block_start_hook(void (*hook)(void)) { block_hooks().push_back(hook); }
void add_launch_start_hook(void (*hook)(void)) { launch_hooks().push_back(hook); }

[[noreturn]] static void report_deadlock() {
    std::string msg;
    char buf[256];
    std::map<std::string, int> where;
    for (int i = 0; i < nthreads; i++) {
        Thread *t = &threads[i];
        if (t->st == T_DONE) continue;
        if (t->st == T_BARRIER) snprintf(buf, sizeof buf, "at __syncthreads %s:%d", t->wfile, t->wline);
        else if (t->st == T_COLL) snprintf(buf, sizeof buf, "at a warp collective %s:%d", t->wfile, t->wline);
        else snprintf(buf, sizeof buf, "polling (an mbarrier wait or a spin loop)");
        where[buf]++;
    }
    for (auto &w : where) {
        snprintf(buf, sizeof buf, "%s%d thread%s %s", msg.empty() ? "" : "; ", w.second, w.second == 1 ? "" : "s",
                 w.first.c_str());
        msg += buf;
    }
    snprintf(buf, sizeof buf, "; %d of %d threads have exited", nthreads - live, nthreads);
    msg += buf;
    fatal("no thread of the block can make progress (a barrier or collective that not every thread reaches): %s",
          msg.c_str());
}

static void run_block(Launch *L) {
    stat_blocks++;
    block_gen++;
    unset_reads.clear();
    block_epoch = 0;
    bar_arrived = 0;
    live = nthreads;
    for (int w = 0; w < (nthreads + 31) / 32; w++) {
        for (auto &q : warps[w].p) q.active = 0;
        warps[w].epoch = 0;
        const int n = std::min(32, nthreads - 32 * w);
        warps[w].live = n == 32 ? 0xffffffffu : (1u << n) - 1;
    }
    for (int g = 0; g < (nthreads + 127) / 128; g++) groups[g].active = 0;
    if (sm_static_hi > sm_static_lo) memset((void *)sm_static_lo, 0xff, sm_static_hi - sm_static_lo);
    if (L->dyn_size) memset(L->dyn, 0xff, L->dyn_size);
    for (auto h : block_hooks()) h();
    for (int i = 0; i < nthreads; i++) {
        Thread *t = &threads[i];
        t->tid = tid_of(i);
        t->linear = i;
        t->warp = i / 32;
        t->lane = i % 32;
        t->gtid = L->block_linear * (uint32_t)nthreads + (uint32_t)i;
        t->st = T_RUN;
        t->stack_lo = stacks + (size_t)i * (STACK_BYTES + 4096) + 4096;
        memset(t->slots, 0, sizeof t->slots);
        thread_start(t);
    }
    stat_threads += nthreads;
    while (live > 0) {
        const uint64_t before = progress_count;
        for (int i = 0; i < nthreads; i++) {
            Thread *t = &threads[i];
            if (t->st == T_RUN || t->st == T_SPIN) resume(t);
        }
        if (progress_count == before) {
            if (stuck_hook && stuck_hook()) continue;
            report_deadlock();
        }
    }
    check_unset_reads();
}

struct FuncAttr {
    int max_dyn_smem = 48 * 1024;
};
static std::map<const void *, FuncAttr> func_attrs;

static void run_kernel(Launch *L) {
    stat_kernels++;
    cur_launch = L;
    const dim3 g = L->site.grid, b = L->site.block;
    nthreads = (int)(b.x * b.y * b.z);
    L->nthreads = nthreads;
    g_grid_dim = g;
    g_block_dim = b;
    std::vector<unsigned char> dyn_buf;
    L->dyn_size = L->site.smem;
    unsigned char *dyn = (unsigned char *)aligned_alloc(1024, (L->dyn_size + 1023) / 1024 * 1024 + 1024);
    L->dyn = dyn;
    sm_dyn_lo = (uintptr_t)dyn;
    sm_dyn_hi = sm_dyn_lo + L->dyn_size;
    const size_t cells = (L->dyn_size + 1) / 2 + 1;
    if (cells > sm_dyn_cells_n) {
        free(sm_dyn_cells);
        sm_dyn_cells = (SmCell *)calloc(cells, sizeof(SmCell));
        sm_dyn_cells_n = cells;
    }
    for (auto h : launch_hooks()) h();
    for (unsigned z = 0; z < g.z; z++)
        for (unsigned y = 0; y < g.y; y++)
            for (unsigned x = 0; x < g.x; x++) {
                g_block_idx = uint3{x, y, z};
                L->block_linear = x + g.x * (y + g.y * z);
                run_block(L);
            }
    free(dyn);
    sm_dyn_lo = sm_dyn_hi = 0;
    cur_launch = NULL;
}

void launch_kernel(const LaunchSite &site, const void *key, void (*run)(void *), void *call, void (*destroy)(void *)) {
    init();
    std::lock_guard<std::recursive_mutex> lock(api_mutex);
    if (devices.empty()) {   // GPTRAIN_EMU_DEVICES=0: as a launch with no GPU, an error and nothing queued
        destroy(call);
        last_error = cudaErrorNoDevice;
        return;
    }
    const dim3 g = site.grid, b = site.block;
    const unsigned long long nt = (unsigned long long)b.x * b.y * b.z;
    cudaError_t err = cudaSuccess;
    if (nt == 0 || nt > 1024 || b.x > 1024 || b.y > 1024 || b.z > 64 || g.x == 0 || g.y == 0 || g.z == 0 ||
        g.x > 2147483647u || g.y > 65535 || g.z > 65535)
        err = cudaErrorInvalidConfiguration;
    const Device &d = devices[cur_device];
    const int allowed = func_attrs.count(key) ? func_attrs[key].max_dyn_smem : 48 * 1024;
    if (!err && (site.smem > (size_t)allowed || site.smem > d.prop.sharedMemPerBlockOptin)) err = cudaErrorInvalidValue;
    Stream *s = resolve_stream(site.stream);
    if (!err && (!s || s->device != cur_device)) err = cudaErrorInvalidResourceHandle;
    if (err) {
        note("kernel %s launched at %s:%d with grid (%u,%u,%u), block (%u,%u,%u), %zu bytes of dynamic shared memory "
             "(%d allowed for it): %s", site.kernel, site.file, site.line, g.x, g.y, g.z, b.x, b.y, b.z, site.smem,
             allowed, cudaGetErrorString(err));
        destroy(call);
        last_error = err;
        return;
    }
    Launch *L = new Launch();
    L->site = site;
    L->key = key;
    L->run = run;
    L->call = call;
    char name[512];
    snprintf(name, sizeof name, "%s (%s:%d)", site.kernel, site.file, site.line);
    submit(s, "kernel", name, [L, destroy]() {
        run_kernel(L);
        destroy(L->call);
        delete L;
    });
    stat_ops++;
}

// ------------------------------------------------------------------------------------------------------------
// Fault handling: host code touching device memory, a kernel thread's stack overflowing

static void signal_handler(int sig, siginfo_t *si, void *ctx) {
    (void)ctx;
    const uintptr_t a = (uintptr_t)si->si_addr;
    char buf[1024];
    int n = 0;
    if (a >= arena_lo && a < arena_hi && arena_open_depth == 0) {
        std::string d = describe_address(a);
        n = snprintf(buf, sizeof buf,
                     "emu: error: host code dereferenced device memory at %p (%s): device memory is only reachable "
                     "through kernels and copies. Host backtrace:\n", (void *)a, d.c_str());
    } else if (stacks && a >= (uintptr_t)stacks && a < (uintptr_t)stacks + (size_t)MAX_THREADS * (STACK_BYTES + 4096)) {
        n = snprintf(buf, sizeof buf, "emu: error: a kernel thread overflowed its %zu-KB emulated stack (%s)\n",
                     STACK_BYTES / 1024, where_now().c_str());
    } else {
        signal(sig, SIG_DFL);   // not ours: let the fault happen again, with the default action
        return;
    }
    if (write(2, buf, (size_t)n) < 0) _exit(EMU_EXIT_STATUS);
    void *frames[32];
    const int nf = backtrace(frames, 32);
    backtrace_symbols_fd(frames, nf, 2);
    _exit(EMU_EXIT_STATUS);
}

// At exit, what is still queued runs (a GPU would finish it), so an op nothing ever waited for is still checked.
static void drain_at_exit() {
    std::lock_guard<std::recursive_mutex> lock(api_mutex);
    for (auto &d : devices) force_device(d.index);
}

static void stats_at_exit() {
    if (cfg.stats)
        fprintf(stderr, "emu: stats: %lld ops, %lld kernels, %lld blocks, %lld threads, %zu allocations live\n",
                (long long)op_meta.size() - 1, stat_kernels, stat_blocks, stat_threads, allocs.size());
}

static void init_once() {
    const char *v;
    if ((v = getenv("GPTRAIN_EMU_DEVICES"))) {
        cfg.devices = atoi(v);
        if (cfg.devices < 0 || cfg.devices > 16) {
            fprintf(stderr, "emu: error: GPTRAIN_EMU_DEVICES=%s: expected 0 to 16\n", v);
            _exit(EMU_EXIT_STATUS);
        }
    }
    if ((v = getenv("GPTRAIN_EMU_MEMORY"))) cfg.memory = parse_size(v, "GPTRAIN_EMU_MEMORY");
    if ((v = getenv("GPTRAIN_EMU_CC"))) {
        cfg.cc = atoi(v);
        if (cfg.cc != 80 && cfg.cc != 86 && cfg.cc != 89 && cfg.cc != 90) {
            fprintf(stderr, "emu: error: GPTRAIN_EMU_CC=%s: expected 80, 86, 89 or 90\n", v);
            _exit(EMU_EXIT_STATUS);
        }
    }
    cfg.trace = getenv("GPTRAIN_EMU_TRACE") && atoi(getenv("GPTRAIN_EMU_TRACE"));
    cfg.stats = getenv("GPTRAIN_EMU_STATS") && atoi(getenv("GPTRAIN_EMU_STATS"));
    // Each device: a region of twice its size (room for the gaps between allocations), reserved, never committed
    // beyond what is allocated.
    const size_t region = (cfg.memory * 2 + ((size_t)1 << 21) - 1) & ~(((size_t)1 << 21) - 1);
    if (cfg.devices) {
        void *p = mmap(NULL, region * cfg.devices, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            fprintf(stderr, "emu: error: cannot reserve %zu bytes of address space for the emulated devices\n",
                    region * cfg.devices);
            _exit(EMU_EXIT_STATUS);
        }
        arena_lo = (uintptr_t)p;
        arena_hi = arena_lo + region * cfg.devices;
    }
    for (int i = 0; i < cfg.devices; i++) {
        Device d;
        memset(&d.prop, 0, sizeof d.prop);
        d.index = i;
        snprintf(d.prop.name, sizeof d.prop.name, "gptrain emulated GPU");   // the compute capability is in prop.major/minor
        d.prop.totalGlobalMem = cfg.memory;
        d.prop.sharedMemPerBlock = 48 * 1024;
        d.prop.regsPerBlock = 65536;
        d.prop.warpSize = 32;
        d.prop.maxThreadsPerBlock = 1024;
        d.prop.maxThreadsDim[0] = d.prop.maxThreadsDim[1] = 1024;
        d.prop.maxThreadsDim[2] = 64;
        d.prop.maxGridSize[0] = 2147483647;
        d.prop.maxGridSize[1] = d.prop.maxGridSize[2] = 65535;
        d.prop.totalConstMem = 65536;
        d.prop.major = cfg.cc / 10;
        d.prop.minor = cfg.cc % 10;
        d.prop.multiProcessorCount = 4;
        d.prop.l2CacheSize = 4 << 20;
        d.prop.maxThreadsPerMultiProcessor = 2048;
        d.prop.sharedMemPerBlockOptin = cfg.cc >= 90 ? 232448 : cfg.cc == 80 ? 166912 : 101376;
        d.prop.sharedMemPerMultiprocessor = d.prop.sharedMemPerBlockOptin + 1024;
        d.prop.memoryBusWidth = 5120;
        d.prop.pciBusID = i + 1;
        d.prop.pciDomainID = 0xeeee;   // a PCI domain no real machine's sysfs has: the affinity tests make their own
        d.lo = d.top = arena_lo + region * i;
        d.hi = d.lo + region;
        d.used = 0;
        devices.push_back(d);
    }
    for (auto &d : devices) d.legacy = new_stream(d.index, 0, 1);
    // Kernel thread stacks, each with a guard page below it.
    stacks = (char *)mmap(NULL, (size_t)MAX_THREADS * (STACK_BYTES + 4096), PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (stacks == MAP_FAILED) {
        fprintf(stderr, "emu: error: cannot map the kernel threads' stacks\n");
        _exit(EMU_EXIT_STATUS);
    }
    for (int i = 0; i < MAX_THREADS; i++) mprotect(stacks + (size_t)i * (STACK_BYTES + 4096), 4096, PROT_NONE);
    if ((uintptr_t)__start_emu_shared && (uintptr_t)__stop_emu_shared > (uintptr_t)__start_emu_shared) {
        sm_static_lo = (uintptr_t)__start_emu_shared;
        sm_static_hi = (uintptr_t)__stop_emu_shared;
        sm_static_cells = (SmCell *)calloc((sm_static_hi - sm_static_lo + 1) / 2 + 1, sizeof(SmCell));
    }
    exe_lo = (uintptr_t)__executable_start;
    exe_hi = (uintptr_t)_end;
    // Faults: host code on device memory, kernel stack overflow. An alternate stack, so the overflow can be reported.
    static char altstack[64 * 1024];
    stack_t ss;
    ss.ss_sp = altstack;
    ss.ss_size = sizeof altstack;
    ss.ss_flags = 0;
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = signal_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    atexit(stats_at_exit);
    atexit(drain_at_exit);
}

// ------------------------------------------------------------------------------------------------------------
// The rest of the internal interface

int device_of(const void *p) {
    Alloc *a = find_alloc((uintptr_t)p);
    return a ? a->device : -1;
}
bool is_pinned(const void *p) {
    auto it = pinned.upper_bound((uintptr_t)p);
    if (it == pinned.begin()) return false;
    --it;
    return (uintptr_t)p - it->first < it->second;
}
int current_device() { return cur_device; }

cudaError_t submit_op(cudaStream_t h, const char *kind, const std::string &name, std::function<void()> run,
                      const void *writes, size_t write_bytes) {
    init();
    std::lock_guard<std::recursive_mutex> lock(api_mutex);
    if (devices.empty()) return cudaErrorNoDevice;
    Stream *s = resolve_stream(h);
    if (!s) return cudaErrorInvalidResourceHandle;
    auto op = submit(s, kind, name, std::move(run));
    op->wlo = (uintptr_t)writes;
    op->whi = op->wlo + write_bytes;
    stat_ops++;
    return cudaSuccess;
}
void host_wait(cudaStream_t h) {
    std::lock_guard<std::recursive_mutex> lock(api_mutex);
    if (devices.empty()) return;
    Stream *s = resolve_stream(h);
    if (!s) return;
    force(s->last);
    host_join(s->last_vc);
}
bool stream_ok(cudaStream_t h) {
    init();
    return !devices.empty() && resolve_stream(h) != NULL;
}

}  // namespace emu

// ------------------------------------------------------------------------------------------------------------
// The instrumentation hooks (GCC's -fsanitize=thread calls these; no TSan runtime is linked)

#define EMU_HOOK(name, n, w)                                                              \
    extern "C" void name(void *p) {                                                       \
        if (emu::g_cur) emu::kernel_access(p, n, w, false);                              \
    }
EMU_HOOK(__tsan_read1, 1, false)
EMU_HOOK(__tsan_read2, 2, false)
EMU_HOOK(__tsan_read4, 4, false)
EMU_HOOK(__tsan_read8, 8, false)
EMU_HOOK(__tsan_read16, 16, false)
EMU_HOOK(__tsan_write1, 1, true)
EMU_HOOK(__tsan_write2, 2, true)
EMU_HOOK(__tsan_write4, 4, true)
EMU_HOOK(__tsan_write8, 8, true)
EMU_HOOK(__tsan_write16, 16, true)
EMU_HOOK(__tsan_unaligned_read2, 2, false)
EMU_HOOK(__tsan_unaligned_read4, 4, false)
EMU_HOOK(__tsan_unaligned_read8, 8, false)
EMU_HOOK(__tsan_unaligned_read16, 16, false)
EMU_HOOK(__tsan_unaligned_write2, 2, true)
EMU_HOOK(__tsan_unaligned_write4, 4, true)
EMU_HOOK(__tsan_unaligned_write8, 8, true)
EMU_HOOK(__tsan_unaligned_write16, 16, true)
EMU_HOOK(__tsan_volatile_read1, 1, false)
EMU_HOOK(__tsan_volatile_read2, 2, false)
EMU_HOOK(__tsan_volatile_read4, 4, false)
EMU_HOOK(__tsan_volatile_read8, 8, false)
EMU_HOOK(__tsan_volatile_read16, 16, false)
EMU_HOOK(__tsan_volatile_write1, 1, true)
EMU_HOOK(__tsan_volatile_write2, 2, true)
EMU_HOOK(__tsan_volatile_write4, 4, true)
EMU_HOOK(__tsan_volatile_write8, 8, true)
EMU_HOOK(__tsan_volatile_write16, 16, true)
extern "C" void __tsan_read_range(void *p, unsigned long n) {
    if (emu::g_cur && n) emu::kernel_access(p, n, false, false);
}
extern "C" void __tsan_write_range(void *p, unsigned long n) {
    if (emu::g_cur && n) emu::kernel_access(p, n, true, false);
}
extern "C" void __tsan_init(void) {}
extern "C" void __tsan_func_entry(void *) {}
extern "C" void __tsan_func_exit(void) {}
extern "C" void __tsan_vptr_read(void **) {}
extern "C" void __tsan_vptr_update(void **, void *) {}

// ------------------------------------------------------------------------------------------------------------
// Atomics: an atomic access for the checker, then the read-modify-write (the threads take turns)

namespace emu {
template <class T, class F>
static T atomic_rmw(T *p, F f) {
    if (!g_cur) fatal("an atomic function called outside a kernel");
    kernel_access(p, sizeof(T), true, true);
    const T old = *p;
    *p = f(old);
    return old;
}
}  // namespace emu
#define EMU_ATOMIC(ret, name, T, expr) \
    ret name(T *p, T v) { return emu::atomic_rmw(p, [&](T o) { return (T)(expr); }); }
EMU_ATOMIC(int, atomicAdd, int, o + v)
EMU_ATOMIC(unsigned, atomicAdd, unsigned, o + v)
EMU_ATOMIC(unsigned long long, atomicAdd, unsigned long long, o + v)
EMU_ATOMIC(float, atomicAdd, float, o + v)
EMU_ATOMIC(double, atomicAdd, double, o + v)
EMU_ATOMIC(int, atomicSub, int, o - v)
EMU_ATOMIC(unsigned, atomicSub, unsigned, o - v)
EMU_ATOMIC(int, atomicExch, int, v)
EMU_ATOMIC(unsigned, atomicExch, unsigned, v)
EMU_ATOMIC(unsigned long long, atomicExch, unsigned long long, v)
EMU_ATOMIC(float, atomicExch, float, v)
EMU_ATOMIC(int, atomicMin, int, o < v ? o : v)
EMU_ATOMIC(unsigned, atomicMin, unsigned, o < v ? o : v)
EMU_ATOMIC(int, atomicMax, int, o > v ? o : v)
EMU_ATOMIC(unsigned, atomicMax, unsigned, o > v ? o : v)
EMU_ATOMIC(unsigned, atomicInc, unsigned, o >= v ? 0 : o + 1)
EMU_ATOMIC(unsigned, atomicDec, unsigned, (o == 0 || o > v) ? v : o - 1)
EMU_ATOMIC(int, atomicAnd, int, o &v)
EMU_ATOMIC(unsigned, atomicAnd, unsigned, o &v)
EMU_ATOMIC(int, atomicOr, int, o | v)
EMU_ATOMIC(unsigned, atomicOr, unsigned, o | v)
EMU_ATOMIC(int, atomicXor, int, o ^ v)
EMU_ATOMIC(unsigned, atomicXor, unsigned, o ^ v)
int atomicCAS(int *p, int cmp, int v) { return emu::atomic_rmw(p, [&](int o) { return o == cmp ? v : o; }); }
unsigned atomicCAS(unsigned *p, unsigned cmp, unsigned v) {
    return emu::atomic_rmw(p, [&](unsigned o) { return o == cmp ? v : o; });
}
unsigned long long atomicCAS(unsigned long long *p, unsigned long long cmp, unsigned long long v) {
    return emu::atomic_rmw(p, [&](unsigned long long o) { return o == cmp ? v : o; });
}

// ------------------------------------------------------------------------------------------------------------
// The runtime API

using namespace emu;

#define API_ENTER()                                      \
    init();                                              \
    std::lock_guard<std::recursive_mutex> lock_(api_mutex)
static cudaError_t ret(cudaError_t e) {
    if (e != cudaSuccess) last_error = e;
    return e;
}
static bool have_device() { return !devices.empty(); }

extern "C" {

cudaError_t cudaGetDeviceCount(int *count) {
    API_ENTER();
    *count = (int)devices.size();
    return devices.empty() ? ret(cudaErrorNoDevice) : cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    API_ENTER();
    if (device < 0 || device >= (int)devices.size()) return ret(cudaErrorInvalidDevice);
    cur_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
    API_ENTER();
    if (!have_device()) return ret(cudaErrorNoDevice);
    *device = cur_device;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device) {
    API_ENTER();
    if (device < 0 || device >= (int)devices.size()) return ret(cudaErrorInvalidDevice);
    *prop = devices[device].prop;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device) {
    API_ENTER();
    if (device < 0 || device >= (int)devices.size()) return ret(cudaErrorInvalidDevice);
    const cudaDeviceProp &p = devices[device].prop;
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: *value = p.maxThreadsDim[0]; break;
    case cudaDevAttrMaxBlockDimY: *value = p.maxThreadsDim[1]; break;
    case cudaDevAttrMaxBlockDimZ: *value = p.maxThreadsDim[2]; break;
    case cudaDevAttrMaxGridDimX: *value = p.maxGridSize[0]; break;
    case cudaDevAttrMaxGridDimY: *value = p.maxGridSize[1]; break;
    case cudaDevAttrMaxGridDimZ: *value = p.maxGridSize[2]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMaxRegistersPerBlock: *value = p.regsPerBlock; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrL2CacheSize: *value = p.l2CacheSize; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = p.maxThreadsPerMultiProcessor; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = (int)p.sharedMemPerMultiprocessor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)p.sharedMemPerBlockOptin; break;
    default: fatal("cudaDeviceGetAttribute: attribute %d is not emulated", (int)attr);
    }
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
    API_ENTER();
    if (!have_device()) return ret(cudaErrorNoDevice);
    force_device(cur_device);
    for (Stream *s : streams)
        if (s->device == cur_device) host_join(s->last_vc);
    return cudaSuccess;
}

cudaError_t cudaDeviceReset(void) {
    API_ENTER();
    force_device(cur_device);
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *version) {
    *version = CUDART_VERSION;
    return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int *version) {
    *version = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
    API_ENTER();
    const cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) {
    API_ENTER();
    return last_error;
}

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    default: return "cudaErrorUnknown";
    }
}
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorNotSupported: return "operation not supported";
    default: return "unknown error";
    }
}

cudaError_t cudaMalloc(void **devPtr, size_t size) {
    API_ENTER();
    if (!have_device()) return ret(cudaErrorNoDevice);
    if (!devPtr) return ret(cudaErrorInvalidValue);
    *devPtr = NULL;
    if (size == 0) return cudaSuccess;
    Device &d = devices[cur_device];
    const size_t span = (size + ALLOC_ALIGN - 1) / ALLOC_ALIGN * ALLOC_ALIGN;
    if (d.used + span > d.prop.totalGlobalMem) return ret(cudaErrorMemoryAllocation);
    // First fit among the freed spans, else at the top.
    uintptr_t base = 0;
    for (auto it = d.free_spans.begin(); it != d.free_spans.end(); ++it)
        if (it->second >= span + ALLOC_GAP) {
            base = it->first;
            const size_t len = it->second;
            d.free_spans.erase(it);
            if (len > span + ALLOC_GAP) d.free_spans[base + span + ALLOC_GAP] = len - span - ALLOC_GAP;
            break;
        }
    if (!base) {
        if (d.top + span + ALLOC_GAP > d.hi) return ret(cudaErrorMemoryAllocation);
        base = d.top;
        d.top += span + ALLOC_GAP;
    }
    Alloc *a = new Alloc();
    a->base = base;
    a->size = size;
    a->span = span;
    a->device = cur_device;
    a->id = ++alloc_count;
    a->shadow = (DevCell *)calloc((size + 1) / 2, sizeof(DevCell));
    if (!a->shadow) fatal("out of host memory for the checker's record of a %zu-byte allocation", size);
    allocs[base] = a;
    d.used += span;
    {
        ArenaOpen open;   // the pages of a fresh allocation hold 0xFF bytes: NaN to anyone who reads them unset
        memset((void *)base, 0xff, span);
    }
    *devPtr = (void *)base;
    return cudaSuccess;
}

cudaError_t cudaFree(void *devPtr) {
    API_ENTER();
    if (!devPtr) return cudaSuccess;
    auto it = allocs.find((uintptr_t)devPtr);
    if (it == allocs.end()) {
        note("cudaFree(%p): not the start of a live allocation (%s)", devPtr, describe_address((uintptr_t)devPtr).c_str());
        return ret(cudaErrorInvalidValue);
    }
    Alloc *a = it->second;
    force_device(a->device);   // cudaFree synchronizes the device
    for (Stream *s : streams)
        if (s->device == a->device) host_join(s->last_vc);
    Device &d = devices[a->device];
    d.used -= a->span;
    d.free_spans[a->base] = a->span + ALLOC_GAP;
    // Coalesce with the neighbours.
    auto f = d.free_spans.find(a->base);
    auto nx = std::next(f);
    if (nx != d.free_spans.end() && f->first + f->second == nx->first) {
        f->second += nx->second;
        d.free_spans.erase(nx);
    }
    if (f != d.free_spans.begin()) {
        auto pv = std::prev(f);
        if (pv->first + pv->second == f->first) {
            pv->second += f->second;
            d.free_spans.erase(f);
        }
    }
    {
        ArenaOpen open;
        memset((void *)a->base, 0xff, a->span);
    }
    if (alloc_cache == a) alloc_cache = NULL;
    free(a->shadow);
    allocs.erase(it);
    delete a;
    return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **pHost, size_t size, unsigned int flags) {
    API_ENTER();
    (void)flags;
    const size_t n = (size ? size : 1) + 4095;
    void *p = aligned_alloc(4096, n / 4096 * 4096);
    if (!p) return ret(cudaErrorMemoryAllocation);
    memset(p, 0xff, n / 4096 * 4096);   // pinned memory comes uninitialized: poison, as device memory
    pinned[(uintptr_t)p] = size ? size : 1;
    *pHost = p;
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **ptr, size_t size) { return cudaHostAlloc(ptr, size, 0); }

cudaError_t cudaFreeHost(void *ptr) {
    API_ENTER();
    if (!ptr) return cudaSuccess;
    auto it = pinned.find((uintptr_t)ptr);
    if (it == pinned.end()) {
        note("cudaFreeHost(%p): not pinned memory from cudaHostAlloc", ptr);
        return ret(cudaErrorInvalidValue);
    }
    for (auto &d : devices) force_device(d.index);   // pending copies may still read it
    pinned.erase(it);
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    API_ENTER();
    if (!have_device()) return ret(cudaErrorNoDevice);
    const Device &d = devices[cur_device];
    *total_b = d.prop.totalGlobalMem;
    *free_b = d.prop.totalGlobalMem - d.used;
    return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *attr, const void *ptr) {
    API_ENTER();
    memset(attr, 0, sizeof *attr);
    const int dev = device_of(ptr);
    if (dev >= 0) {
        attr->type = cudaMemoryTypeDevice;
        attr->device = dev;
        attr->devicePointer = (void *)ptr;
    } else if (is_pinned(ptr)) {
        attr->type = cudaMemoryTypeHost;
        attr->hostPointer = attr->devicePointer = (void *)ptr;
    } else {
        attr->type = cudaMemoryTypeUnregistered;
        attr->hostPointer = (void *)ptr;
    }
    return cudaSuccess;
}

// One copy: classify both sides, check the direction, queue it; the caller decides how synchronous it is.
enum Side { SIDE_DEVICE, SIDE_PINNED, SIDE_PAGEABLE };
static Side side_of(const void *p) {
    const uintptr_t a = (uintptr_t)p;
    if (a >= arena_lo && a < arena_hi) return SIDE_DEVICE;
    return is_pinned(p) ? SIDE_PINNED : SIDE_PAGEABLE;
}
static const char *kind_name(cudaMemcpyKind k) {
    return k == cudaMemcpyHostToDevice ? "HostToDevice" : k == cudaMemcpyDeviceToHost ? "DeviceToHost"
         : k == cudaMemcpyDeviceToDevice ? "DeviceToDevice" : k == cudaMemcpyHostToHost ? "HostToHost" : "Default";
}

static cudaError_t memcpy_op(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t h, bool async) {
    Stream *s = resolve_stream(h);
    if (!s) return ret(cudaErrorInvalidResourceHandle);
    const Side ds = side_of(dst), ss = side_of(src);
    if ((int)kind < 0 || (int)kind > 4) return ret(cudaErrorInvalidMemcpyDirection);
    const bool dd = ds == SIDE_DEVICE, sd = ss == SIDE_DEVICE;
    if (kind != cudaMemcpyDefault && (dd != (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice) ||
                                      sd != (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice)))
        fatal("%s(dst %p, src %p, %zu bytes, cudaMemcpy%s): the destination is %s and the source %s", async ? "cudaMemcpyAsync" : "cudaMemcpy",
              dst, src, n, kind_name(kind), dd ? "device memory" : "host memory", sd ? "device memory" : "host memory");
    if (n == 0) return cudaSuccess;
    const char *fn = async ? "cudaMemcpyAsync" : "cudaMemcpy";
    char name[128];
    snprintf(name, sizeof name, "%s %s %zu bytes", fn, dd && sd ? "device to device" : dd ? "host to device" : sd ? "device to host" : "host to host", n);
    if (!dd && !sd) {   // host to host: fully synchronous
        force(s->last);
        memcpy(dst, src, n);
        return cudaSuccess;
    }
    std::shared_ptr<std::vector<unsigned char>> staged;
    if (dd && !sd && ss == SIDE_PAGEABLE) {
        // Pageable source: the API stages it before returning (after the stream's earlier work), and the DMA from
        // the staging buffer may still be pending when the call returns.
        if (!async) {
            force(s->last);
            host_join(s->last_vc);
        }
        staged = std::make_shared<std::vector<unsigned char>>((const unsigned char *)src, (const unsigned char *)src + n);
    }
    std::shared_ptr<Op> op = submit(s, "copy", name, [=]() {
        const char *what = dd && sd ? "cudaMemcpy (device to device)" : dd ? "cudaMemcpy destination" : "cudaMemcpy source";
        if (sd) op_read(src, n, what);
        if (dd) op_write(dst, n, what);
        memmove(dst, staged ? staged->data() : (const unsigned char *)src, n);
    });
    if (dd) {
        op->wlo = (uintptr_t)dst;
        op->whi = op->wlo + n;
    }
    stat_ops++;
    // Synchronous for the host: device to host always (async too when the destination is pageable), host to device
    // from pinned memory for the blocking call.
    const bool wait = sd && !dd ? (!async || ds == SIDE_PAGEABLE) : (dd && !sd && !async && ss == SIDE_PINNED);
    if (wait) {
        force(op);
        host_join(op->vc);
    }
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind) {
    API_ENTER();
    if (!have_device()) return ret(cudaErrorNoDevice);
    return memcpy_op(dst, src, count, kind, NULL, false);
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind, cudaStream_t stream) {
    API_ENTER();
    if (!have_device()) return ret(cudaErrorNoDevice);
    return memcpy_op(dst, src, count, kind, stream, true);
}

static cudaError_t memset_op(void *p, int value, size_t n, cudaStream_t h, const char *fn) {
    Stream *s = resolve_stream(h);
    if (!s) return ret(cudaErrorInvalidResourceHandle);
    if (side_of(p) != SIDE_DEVICE) fatal("%s(%p, %d, %zu): not device memory", fn, p, value, n);
    if (!n) return cudaSuccess;
    char name[96];
    snprintf(name, sizeof name, "%s %zu bytes to %d", fn, n, value);
    auto op = submit(s, "memset", name, [=]() {
        op_write(p, n, fn);
        memset(p, value, n);
    });
    op->wlo = (uintptr_t)p;
    op->whi = op->wlo + n;
    stat_ops++;
    return cudaSuccess;
}
cudaError_t cudaMemset(void *devPtr, int value, size_t count) {
    API_ENTER();
    return memset_op(devPtr, value, count, NULL, "cudaMemset");
}
cudaError_t cudaMemsetAsync(void *devPtr, int value, size_t count, cudaStream_t stream) {
    API_ENTER();
    return memset_op(devPtr, value, count, stream, "cudaMemsetAsync");
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *pStream, unsigned int flags) {
    API_ENTER();
    if (!have_device()) return ret(cudaErrorNoDevice);
    *pStream = (cudaStream_t)new_stream(cur_device, (flags & cudaStreamNonBlocking) != 0, 0);
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *pStream) { return cudaStreamCreateWithFlags(pStream, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t h) {
    API_ENTER();
    Stream *s = resolve_stream(h);
    if (!s || s->legacy) return ret(cudaErrorInvalidResourceHandle);
    // Work already queued still completes (CUDA finishes it after the call returns); the handle dies now.
    live_streams.erase(s);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t h) {
    API_ENTER();
    Stream *s = resolve_stream(h);
    if (!s) return ret(cudaErrorInvalidResourceHandle);
    force(s->last);
    host_join(s->last_vc);
    return cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t h) {
    API_ENTER();
    Stream *s = resolve_stream(h);
    if (!s) return ret(cudaErrorInvalidResourceHandle);
    if (s->last && !s->last->done) {
        if (!s->last->queried) {   // not ready the first time it is asked
            s->last->queried = true;
            return cudaErrorNotReady;
        }
        force(s->last);
    }
    host_join(s->last_vc);
    return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t h, cudaEvent_t event, unsigned int flags) {
    API_ENTER();
    (void)flags;
    Stream *s = resolve_stream(h);
    Event *e = (Event *)event;
    if (!s || !live_events.count(e)) return ret(cudaErrorInvalidResourceHandle);
    if (!e->marker) return cudaSuccess;   // never recorded: nothing to wait for
    submit(s, "wait", "cudaStreamWaitEvent", nullptr, e->marker);
    return cudaSuccess;
}

cudaError_t cudaLaunchHostFunc(cudaStream_t h, cudaHostFn_t fn, void *userData) {
    API_ENTER();
    Stream *s = resolve_stream(h);
    if (!s) return ret(cudaErrorInvalidResourceHandle);
    submit(s, "host function", "cudaLaunchHostFunc", [=]() {
        // Host code: device memory closed while it runs.
        const int depth = arena_open_depth;
        arena_open_depth = 0;
        arena_protect(0);
        fn(userData);
        arena_open_depth = depth;
        if (depth) arena_protect(1);
    });
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags) {
    API_ENTER();
    if (!have_device()) return ret(cudaErrorNoDevice);
    Event *e = new Event();
    e->device = cur_device;
    e->flags = flags;
    live_events.insert(e);
    *event = (cudaEvent_t)e;
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventDestroy(cudaEvent_t event) {
    API_ENTER();
    Event *e = (Event *)event;
    if (!live_events.count(e)) return ret(cudaErrorInvalidResourceHandle);
    live_events.erase(e);
    delete e;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t h) {
    API_ENTER();
    Stream *s = resolve_stream(h);
    Event *e = (Event *)event;
    if (!s || !live_events.count(e)) return ret(cudaErrorInvalidResourceHandle);
    if (s->device != e->device) return ret(cudaErrorInvalidResourceHandle);
    e->marker = submit(s, "event", "cudaEventRecord", nullptr);
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    API_ENTER();
    Event *e = (Event *)event;
    if (!live_events.count(e)) return ret(cudaErrorInvalidResourceHandle);
    if (!e->marker) return cudaSuccess;
    force(e->marker);
    host_join(e->marker->vc);
    return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
    API_ENTER();
    Event *e = (Event *)event;
    if (!live_events.count(e)) return ret(cudaErrorInvalidResourceHandle);
    if (!e->marker) return cudaSuccess;
    if (!e->marker->done) {
        if (!e->marker->queried) {
            e->marker->queried = true;
            return cudaErrorNotReady;
        }
        force(e->marker);
    }
    host_join(e->marker->vc);
    return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    API_ENTER();
    Event *a = (Event *)start, *b = (Event *)end;
    if (!live_events.count(a) || !live_events.count(b)) return ret(cudaErrorInvalidResourceHandle);
    if ((a->flags | b->flags) & cudaEventDisableTiming) return ret(cudaErrorInvalidResourceHandle);
    if (!a->marker || !b->marker) return ret(cudaErrorInvalidResourceHandle);
    if (!a->marker->done || !b->marker->done) return ret(cudaErrorNotReady);
    *ms = (float)((b->marker->t_done - a->marker->t_done) * 1e3);
    return cudaSuccess;
}

cudaError_t emu_func_set_attribute(const void *func, enum cudaFuncAttribute attr, int value) {
    API_ENTER();
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (value < 0 || (size_t)value > devices[cur_device].prop.sharedMemPerBlockOptin) return ret(cudaErrorInvalidValue);
        func_attrs[func].max_dyn_smem = value;
        return cudaSuccess;
    }
    if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
    return ret(cudaErrorInvalidValue);
}

CUresult emu_tensor_map_encode_tiled(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                     const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                                     CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill)
    __attribute__((weak));

cudaError_t cudaGetDriverEntryPointByVersion(const char *symbol, void **funcPtr, unsigned int cudaVersion,
                                             unsigned long long flags, enum cudaDriverEntryPointQueryResult *status) {
    API_ENTER();
    (void)cudaVersion;
    (void)flags;
    *funcPtr = NULL;
    if (!strcmp(symbol, "cuTensorMapEncodeTiled") && emu_tensor_map_encode_tiled) {
        *funcPtr = (void *)&emu_tensor_map_encode_tiled;
        if (status) *status = cudaDriverEntryPointSuccess;
        return cudaSuccess;
    }
    if (status) *status = cudaDriverEntryPointSymbolNotFound;
    return cudaSuccess;
}
cudaError_t cudaGetDriverEntryPoint(const char *symbol, void **funcPtr, unsigned long long flags,
                                    enum cudaDriverEntryPointQueryResult *status) {
    return cudaGetDriverEntryPointByVersion(symbol, funcPtr, CUDART_VERSION, flags, status);
}

}  // extern "C"
