/*
 * emu_kernel.h: the CUDA device language for the .cu files of kernels/cuda compiled as host C++ on the emulated device
 * (included by this folder's cuda_runtime.h under C++). Written from the CUDA C++ Programming Guide and the PTX ISA.
 *
 *   - __global__, __device__, __host__, __forceinline__, __launch_bounds__, __align__, __grid_constant__ become
 *     nothing or their host equivalents; a kernel is an ordinary function run once per emulated thread.
 *   - threadIdx, blockIdx, blockDim, gridDim read the emulator's state for the thread now running; warpSize is 32.
 *   - __shared__ variables are static objects in the section "emu_shared" (the emulator poisons and race-checks that
 *     range per block); dynamic shared memory (CUDA_DYNAMIC_SMEM in kernels/cuda/cuda_common.h) is the launch's
 *     buffer. Blocks run one at a time, so one copy serves every block.
 *   - __syncthreads, __syncwarp, shuffles, votes, __reduce_*_sync and __match_*_sync are meeting points of the
 *     coroutine threads (emu_runtime.cc); atomics and fences run on cooperative threads, so they are atomic and
 *     ordered by construction, and they tell the access checker that the access is atomic.
 *   - CUDA_LAUNCH(grid, block, smem, stream, kernel)(args...) converts the arguments to the kernel's parameter types
 *     at the call, as a launch does, checks that pointer arguments are device memory, and queues the kernel on the
 *     stream (emu::launch_kernel).
 * Every memory access of the kernel code itself reaches the checker through the compiler's ThreadSanitizer
 * instrumentation (the .cu files are compiled with -fsanitize=thread and the emulator provides the __tsan_* hooks
 * instead of the TSan runtime); code here that the checker must not see as a thread's access is EMU_NOINSTR.
 */
#ifndef GPTRAIN_EMU_KERNEL_H
#define GPTRAIN_EMU_KERNEL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

#define EMU_NOINSTR __attribute__((no_sanitize_thread, __noinline__))

// ---- vector types (vector_types.h) ----
struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) int2 { int x, y; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned int x, y; };
struct __attribute__((aligned(16))) uint4 { unsigned int x, y, z, w; };
struct __attribute__((aligned(16))) double2 { double x, y; };
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return int2{x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

// ---- function and variable qualifiers ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __grid_constant__
#define __constant__ static
#define __shared__ static __attribute__((section("emu_shared"), aligned(16)))
static constexpr int warpSize = 32;

typedef struct CUstream_st *cudaStream_t;

namespace emu {

// What a kernel sees of the running thread (the emulator's thread record starts with this).
struct ThreadPublic {
    uint3 tid;
};
extern ThreadPublic *g_cur;   // the thread now running, or null outside kernels
extern uint3 g_block_idx;
extern dim3 g_grid_dim, g_block_dim;

// Barriers and collectives. `kind` names the instruction; lanes meeting at one collective must give the same kind
// and mask (the emulator reports a mismatch, a lane outside its own mask, and a collective that can never complete).
enum CollKind {
    COLL_SYNCWARP = 1,
    COLL_SHFL_IDX,
    COLL_SHFL_UP,
    COLL_SHFL_DOWN,
    COLL_SHFL_XOR,
    COLL_BALLOT,
    COLL_ANY,
    COLL_ALL,
    COLL_REDUCE_ADD_U,
    COLL_REDUCE_ADD_I,
    COLL_REDUCE_MIN_U,
    COLL_REDUCE_MIN_I,
    COLL_REDUCE_MAX_U,
    COLL_REDUCE_MAX_I,
    COLL_REDUCE_AND,
    COLL_REDUCE_OR,
    COLL_REDUCE_XOR,
    COLL_MATCH_ANY,
    COLL_MATCH_ALL,
    COLL_EXTERNAL   // an instruction emulated outside the runtime (tests/emu/emu_flash_*.h): compute callback
};
// One lane's part of a collective: its input (up to 8 bytes), the shuffle's lane argument and width, its output.
struct Coll {
    uint64_t in;
    int arg, width;
    uint64_t out;
    int pred_out;
    void *ext;   // COLL_EXTERNAL: the instruction's own per-lane record
};
// Called once, by the last lane to arrive, with every participating lane's record (NULL for lanes that exited).
typedef void (*CollCompute)(Coll **lanes, int nlanes, void *shared_arg);

void syncthreads(const char *file, int line);
int syncthreads_op(const char *file, int line, int pred, int op);   // op 0 count, 1 and, 2 or
void collective(const char *file, int line, CollKind kind, unsigned mask, Coll *lane);
// A collective over a warpgroup (128 consecutive threads, all of which must take part: wgmma's .sync.aligned).
void group_collective(const char *file, int line, int width, int tag, Coll *lane, CollCompute compute);
// A warp collective computed outside the runtime (full warp, .sync.aligned instructions such as ldmatrix, mma).
void warp_external(const char *file, int line, int tag, Coll *lane, CollCompute compute);
unsigned active_mask();
void spin_yield();   // the thread polls for something another thread or the emulator will do (mbarrier, sleep)
[[noreturn]] void trap(const char *file, int line);
void *dynamic_smem(int align);
size_t cvta_shared(const void *p);
long long clock_ticks();

template <class T>
static inline uint64_t coll_bits(T v) {
    static_assert(sizeof(T) <= 8, "a shuffled value is at most 8 bytes");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    return u;
}
template <class T>
static inline T coll_value(uint64_t u) {
    T v;
    memcpy(&v, &u, sizeof v);
    return v;
}
template <class T>
static inline T shfl(const char *file, int line, CollKind kind, unsigned mask, T var, int arg, int width = 32) {
    Coll c;
    memset(&c, 0, sizeof c);
    c.in = coll_bits(var);
    c.arg = arg;
    c.width = width;
    collective(file, line, kind, mask, &c);
    return coll_value<T>(c.out);
}
static inline unsigned vote(const char *file, int line, CollKind kind, unsigned mask, int pred) {
    Coll c;
    memset(&c, 0, sizeof c);
    c.in = pred != 0;
    collective(file, line, kind, mask, &c);
    return (unsigned)c.out;
}
template <class T>
static inline T reduce(const char *file, int line, CollKind kind, unsigned mask, T value) {
    Coll c;
    memset(&c, 0, sizeof c);
    c.in = coll_bits(value);
    collective(file, line, kind, mask, &c);
    return coll_value<T>(c.out);
}
template <class T>
static inline unsigned match_any(const char *file, int line, unsigned mask, T value) {
    Coll c;
    memset(&c, 0, sizeof c);
    c.in = coll_bits(value);
    collective(file, line, COLL_MATCH_ANY, mask, &c);
    return (unsigned)c.out;
}
template <class T>
static inline unsigned match_all(const char *file, int line, unsigned mask, T value, int *pred) {
    Coll c;
    memset(&c, 0, sizeof c);
    c.in = coll_bits(value);
    collective(file, line, COLL_MATCH_ALL, mask, &c);
    *pred = c.pred_out;
    return (unsigned)c.out;
}
static inline void syncwarp(const char *file, int line, unsigned mask = 0xffffffffu) {
    Coll c;
    memset(&c, 0, sizeof c);
    collective(file, line, COLL_SYNCWARP, mask, &c);
}

// ---- the kernel launch ----
struct LaunchSite {
    const char *kernel, *file;
    int line;
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
};
// Queue run(call) for every thread of the grid on the stream; destroy(call) once the kernel has run.
void launch_kernel(const LaunchSite &site, const void *key, void (*run)(void *), void *call, void (*destroy)(void *));
// A pointer argument (index i) that is neither null nor device memory is reported at the launch.
void check_kernel_pointer(const LaunchSite &site, int index, const void *p);

template <class T>
static inline void check_arg(const LaunchSite &site, int i, const T &v) {
    if constexpr (std::is_pointer<T>::value) check_kernel_pointer(site, i, (const void *)v);
    (void)site;
    (void)i;
    (void)v;
}

template <class... P>
struct KernelCall {
    void (*kernel)(P...);
    std::tuple<typename std::decay<P>::type...> args;
    template <class... A>
    KernelCall(void (*k)(P...), A &&...a) : kernel(k), args(std::forward<A>(a)...) {}
    template <size_t... I>
    EMU_NOINSTR void invoke(std::index_sequence<I...>) {
        kernel(std::get<I>(args)...);
    }
    EMU_NOINSTR static void run(void *self) { ((KernelCall *)self)->invoke(std::index_sequence_for<P...>{}); }
    static void destroy(void *self) { delete (KernelCall *)self; }
    template <size_t... I>
    void check(const LaunchSite &site, std::index_sequence<I...>) const {
        (check_arg(site, (int)I, std::get<I>(args)), ...);
    }
};

template <class... P>
struct Launcher {
    LaunchSite site;
    void (*kernel)(P...);
    template <class... A>
    void operator()(A &&...a) const {
        static_assert(sizeof...(A) == sizeof...(P), "CUDA_LAUNCH: the kernel takes another number of arguments");
        auto *call = new KernelCall<P...>(kernel, std::forward<A>(a)...);
        call->check(site, std::index_sequence_for<P...>{});
        launch_kernel(site, (const void *)kernel, &KernelCall<P...>::run, call, &KernelCall<P...>::destroy);
    }
};
template <class... P>
static inline Launcher<P...> launcher(const char *name, const char *file, int line, dim3 grid, dim3 block,
                                      size_t smem, cudaStream_t stream, void (*kernel)(P...)) {
    Launcher<P...> l;
    l.site = LaunchSite{name, file, line, grid, block, smem, stream};
    l.kernel = kernel;
    return l;
}

}  // namespace emu

#define EMU_LAUNCH(grid, block, smem, stream, ...) \
    ::emu::launcher(#__VA_ARGS__, __FILE__, __LINE__, (grid), (block), (smem), (stream), __VA_ARGS__)
#define EMU_DYNAMIC_SMEM(type, name, align) type *const name = (type *)::emu::dynamic_smem(align)

// ---- built-in variables ----
#define threadIdx (::emu::g_cur->tid)
#define blockIdx (::emu::g_block_idx)
#define blockDim (::emu::g_block_dim)
#define gridDim (::emu::g_grid_dim)

// ---- synchronization and warp collectives ----
#define __syncthreads() ::emu::syncthreads(__FILE__, __LINE__)
#define __syncthreads_count(p) ::emu::syncthreads_op(__FILE__, __LINE__, (p), 0)
#define __syncthreads_and(p) ::emu::syncthreads_op(__FILE__, __LINE__, (p), 1)
#define __syncthreads_or(p) ::emu::syncthreads_op(__FILE__, __LINE__, (p), 2)
#define __syncwarp(...) ::emu::syncwarp(__FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_sync(...) ::emu::shfl(__FILE__, __LINE__, ::emu::COLL_SHFL_IDX, __VA_ARGS__)
#define __shfl_up_sync(...) ::emu::shfl(__FILE__, __LINE__, ::emu::COLL_SHFL_UP, __VA_ARGS__)
#define __shfl_down_sync(...) ::emu::shfl(__FILE__, __LINE__, ::emu::COLL_SHFL_DOWN, __VA_ARGS__)
#define __shfl_xor_sync(...) ::emu::shfl(__FILE__, __LINE__, ::emu::COLL_SHFL_XOR, __VA_ARGS__)
#define __ballot_sync(mask, pred) ::emu::vote(__FILE__, __LINE__, ::emu::COLL_BALLOT, (mask), (pred))
#define __any_sync(mask, pred) ((int)::emu::vote(__FILE__, __LINE__, ::emu::COLL_ANY, (mask), (pred)))
#define __all_sync(mask, pred) ((int)::emu::vote(__FILE__, __LINE__, ::emu::COLL_ALL, (mask), (pred)))
#define __activemask() ::emu::active_mask()
#define __match_any_sync(mask, v) ::emu::match_any(__FILE__, __LINE__, (mask), (v))
#define __match_all_sync(mask, v, pred) ::emu::match_all(__FILE__, __LINE__, (mask), (v), (pred))
static inline unsigned emu_reduce_u(const char *f, int l, ::emu::CollKind k, unsigned m, unsigned v) {
    return ::emu::reduce<unsigned>(f, l, k, m, v);
}
static inline int emu_reduce_i(const char *f, int l, ::emu::CollKind k, unsigned m, int v) {
    return ::emu::reduce<int>(f, l, k, m, v);
}
#define __reduce_add_sync(mask, v)                                                                             \
    (std::is_signed<std::decay<decltype(v)>::type>::value                                                                        \
         ? (std::decay<decltype(v)>::type)emu_reduce_i(__FILE__, __LINE__, ::emu::COLL_REDUCE_ADD_I, (mask), (int)(v))           \
         : (std::decay<decltype(v)>::type)emu_reduce_u(__FILE__, __LINE__, ::emu::COLL_REDUCE_ADD_U, (mask), (unsigned)(v)))
#define __reduce_min_sync(mask, v)                                                                             \
    (std::is_signed<std::decay<decltype(v)>::type>::value                                                                        \
         ? (std::decay<decltype(v)>::type)emu_reduce_i(__FILE__, __LINE__, ::emu::COLL_REDUCE_MIN_I, (mask), (int)(v))           \
         : (std::decay<decltype(v)>::type)emu_reduce_u(__FILE__, __LINE__, ::emu::COLL_REDUCE_MIN_U, (mask), (unsigned)(v)))
#define __reduce_max_sync(mask, v)                                                                             \
    (std::is_signed<std::decay<decltype(v)>::type>::value                                                                        \
         ? (std::decay<decltype(v)>::type)emu_reduce_i(__FILE__, __LINE__, ::emu::COLL_REDUCE_MAX_I, (mask), (int)(v))           \
         : (std::decay<decltype(v)>::type)emu_reduce_u(__FILE__, __LINE__, ::emu::COLL_REDUCE_MAX_U, (mask), (unsigned)(v)))
#define __reduce_and_sync(mask, v) emu_reduce_u(__FILE__, __LINE__, ::emu::COLL_REDUCE_AND, (mask), (v))
#define __reduce_or_sync(mask, v) emu_reduce_u(__FILE__, __LINE__, ::emu::COLL_REDUCE_OR, (mask), (v))
#define __reduce_xor_sync(mask, v) emu_reduce_u(__FILE__, __LINE__, ::emu::COLL_REDUCE_XOR, (mask), (v))

// Fences: the emulated threads take turns, so every access is already visible to the next thread to run.
static inline void __threadfence() {}
static inline void __threadfence_block() {}
static inline void __threadfence_system() {}
#define __trap() ::emu::trap(__FILE__, __LINE__)
static inline void __nanosleep(unsigned) { ::emu::spin_yield(); }
static inline long long clock64() { return ::emu::clock_ticks(); }
#define __cvta_generic_to_shared(p) ::emu::cvta_shared(p)
static inline size_t __cvta_generic_to_global(const void *p) { return (size_t)p; }
template <class T>
static inline T __ldg(const T *p) {
    return *p;
}

// ---- atomics (emu_runtime.cc: checked as atomic accesses, then performed) ----
int atomicAdd(int *p, int v);
unsigned atomicAdd(unsigned *p, unsigned v);
unsigned long long atomicAdd(unsigned long long *p, unsigned long long v);
float atomicAdd(float *p, float v);
double atomicAdd(double *p, double v);
int atomicSub(int *p, int v);
unsigned atomicSub(unsigned *p, unsigned v);
int atomicExch(int *p, int v);
unsigned atomicExch(unsigned *p, unsigned v);
unsigned long long atomicExch(unsigned long long *p, unsigned long long v);
float atomicExch(float *p, float v);
int atomicMin(int *p, int v);
unsigned atomicMin(unsigned *p, unsigned v);
int atomicMax(int *p, int v);
unsigned atomicMax(unsigned *p, unsigned v);
unsigned atomicInc(unsigned *p, unsigned v);
unsigned atomicDec(unsigned *p, unsigned v);
int atomicCAS(int *p, int cmp, int v);
unsigned atomicCAS(unsigned *p, unsigned cmp, unsigned v);
unsigned long long atomicCAS(unsigned long long *p, unsigned long long cmp, unsigned long long v);
int atomicAnd(int *p, int v);
unsigned atomicAnd(unsigned *p, unsigned v);
int atomicOr(int *p, int v);
unsigned atomicOr(unsigned *p, unsigned v);
int atomicXor(int *p, int v);
unsigned atomicXor(unsigned *p, unsigned v);
#define atomicAdd_block atomicAdd
#define atomicAdd_system atomicAdd

// ---- device math and bit intrinsics (the host's libm computes the standard functions) ----
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float cospif(float x) { return (float)cos(M_PI * (double)x); }
static inline float sinpif(float x) { return (float)sin(M_PI * (double)x); }
static inline void sincospif(float x, float *s, float *c) { *s = sinpif(x); *c = cospif(x); }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline int __float2int_rn(float x) { return (int)lrintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline float __int2float_rn(int x) { return (float)x; }
static inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
static inline unsigned __float_as_uint(float x) { unsigned i; memcpy(&i, &x, 4); return i; }
static inline float __int_as_float(int i) { float x; memcpy(&x, &i, 4); return x; }
static inline float __uint_as_float(unsigned i) { float x; memcpy(&x, &i, 4); return x; }
static inline long long __double_as_longlong(double x) { long long i; memcpy(&i, &x, 8); return i; }
static inline double __longlong_as_double(long long i) { double x; memcpy(&x, &i, 8); return x; }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; i++) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
// CUDA's min/max overloads, for any pair of arithmetic types (the usual arithmetic conversions decide the type).
template <class A, class B>
static inline typename std::common_type<A, B>::type min(A a, B b) {
    typedef typename std::common_type<A, B>::type R;
    return (R)a < (R)b ? (R)a : (R)b;
}
template <class A, class B>
static inline typename std::common_type<A, B>::type max(A a, B b) {
    typedef typename std::common_type<A, B>::type R;
    return (R)a < (R)b ? (R)b : (R)a;
}

#endif
