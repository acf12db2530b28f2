/*
 * emu_internal.h: what the emulated device's runtime files share (emu_runtime.cc: device, memory, streams, kernels
 * and the access checker; emu_blas.cc: cuBLAS; emu_nccl.cc: NCCL; emu_ptx.cc: the flash kernels' PTX). Not seen by
 * the product: kernels see emu_kernel.h, host code the API headers in include/.
 */
#ifndef GPTRAIN_EMU_INTERNAL_H
#define GPTRAIN_EMU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <functional>
#include <string>

#include "cuda_runtime.h"

#define EMU_EXIT_STATUS 86   // every report of the emulator ends the process with this status

namespace emu {

// A report: "emu: error: <message>", then where (the kernel, block and thread running, or the op executing), then
// the process exits with EMU_EXIT_STATUS. Never returns.
[[noreturn]] void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));   // "emu: ..." on stderr, continues

// ---- device memory seen by an op other than kernel code (copies, cuBLAS, NCCL, TMA) ----
// Each checks that [p, p + n) lies inside one live allocation of the op's device, that a read finds bytes written
// before (never-written device memory is a report), and that the access is ordered against every access by ops of
// other streams (an event, a stream order or a host synchronization between them), then records it. `what` names
// the operand in a report ("cublasGemmEx A").
void op_read(const void *p, size_t n, const char *what);
void op_write(void *p, size_t n, const char *what);
// The device a pointer's allocation belongs to, or -1 when p is not in live device memory.
int device_of(const void *p);
bool is_pinned(const void *p);
int current_device();

// Queue an op that is not a kernel on a stream (NULL: the current device's legacy stream). run() executes with
// device memory open; it may call op_read/op_write. The name appears in reports.
// writes/write_bytes: the device bytes it will write, if known (a read of them before it runs is a stream race).
cudaError_t submit_op(cudaStream_t s, const char *kind, const std::string &name, std::function<void()> run,
                      const void *writes = NULL, size_t write_bytes = 0);
// Make the host wait for the stream (as cudaStreamSynchronize).
void host_wait(cudaStream_t s);
// A handle from the API that is not a live stream of the current device: cudaErrorInvalidResourceHandle.
bool stream_ok(cudaStream_t s);

// ---- kernel threads, for emulated instructions (emu_ptx.cc) ----
int thread_linear();                 // the running thread's index in its block
int block_threads();
// Shared memory: the address the shared-window offset `addr` names (bounds-checked against the launch's dynamic
// shared memory), and accesses on behalf of a thread of the block (linear index) for the race checker.
unsigned char *shared_at(uint32_t addr, size_t n);
void shared_access_as(int linear, const void *p, size_t n, bool write);
void shared_async_write(const void *p, size_t n);   // written by the async proxy (TMA): ordered by its mbarrier
void global_read_as_thread(const void *p, size_t n);
// Per-thread slots for the instructions' own state (cp.async queues), cleared at each block start.
void **thread_slot(int linear, int slot);
// Called when no thread of the block can make progress; returns 1 if it made some (landed a copy).
void set_stuck_hook(int (*hook)(void));
void add_block_start_hook(void (*hook)(void));
void add_launch_start_hook(void (*hook)(void));
void progress();                      // something changed that a spinning thread may be waiting for

}  // namespace emu

#endif
