# gptrain build. `make` builds what this machine can and prints one line per optional dependency it chose.
# Targets: make (the gptrain binary), make test, make test-gpu, make bench, make fuzz, make clean, make deps.

CC      ?= cc
BUILD   := build
# -fno-trapping-math changes no computed value (no FP exception is ever inspected); it lets branch-free clamps and
# selects vectorize. No -ffast-math: results keep IEEE semantics and the reference stays a reference.
CFLAGS  := -std=c11 -O3 -march=native -fno-trapping-math -fopenmp -Wall -Wextra -Wno-unused-parameter -g \
           -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I. -Ikernels -Imodel -Idata -Idist -Itrain \
           -DGPTRAIN_GPT2_DIR=\"$(CURDIR)/data/gpt2\"
LDLIBS  := -fopenmp -lm -lpthread

# --- optional dependencies (each detection runs here, at parse time, and is printed) ---
HASH := \#
HAVE_OPENBLAS := $(shell printf '$(HASH)include <cblas.h>\nint main(void){cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.f,0,1,0,1,0.f,0,1);return 0;}\n' | $(CC) -x c - -o /dev/null -lopenblas >/dev/null 2>&1 && echo yes)
ifeq ($(HAVE_OPENBLAS),yes)
  CFLAGS += -DGPTRAIN_OPENBLAS
  LDLIBS += -lopenblas
  $(info gptrain build: OpenBLAS   yes (CPU matmuls through CBLAS))
else
  $(info gptrain build: OpenBLAS   no  (CPU matmuls use the reference loops; apt-get install libopenblas-dev))
endif
# MPI (data parallelism on CPU buffers): mpicc's own compile and link flags, used with our compiler.
HAVE_MPI := $(shell command -v mpicc >/dev/null 2>&1 && mpicc --showme:compile >/dev/null 2>&1 && echo yes)
ifeq ($(HAVE_MPI),yes)
  CFLAGS += -DGPTRAIN_MPI $(shell mpicc --showme:compile)
  LDLIBS += $(shell mpicc --showme:link)
  $(info gptrain build: MPI        yes ($(shell mpirun --version 2>/dev/null | head -1)))
else
  $(info gptrain build: MPI        no  (mpicc not found; one process only; apt-get install libopenmpi-dev openmpi-bin))
endif

# CUDA: nvcc on PATH (or in CUDA_HOME/bin) that compiles a cuBLAS call, and a C link against cuBLAS exactly as the
# final link does it. The toolkit's own directories come from nvcc itself (its _HERE_), so a wrapper script on PATH
# such as /usr/local/bin/nvcc still finds the real lib64. Device code for sm_80 (Ampere, mma.sync) and sm_90a
# (Hopper, wgmma/TMA); the binary runs on either and picks at run time.
CUDA_HOME ?= /usr/local/cuda
NVCC      := $(shell command -v nvcc 2>/dev/null || { [ -x $(CUDA_HOME)/bin/nvcc ] && echo $(CUDA_HOME)/bin/nvcc; })
CUDA_ARCH := -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a
ifneq ($(NVCC),)
  CUDA_ROOT   := $(shell d=$$($(NVCC) -dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^.. _HERE_=//p' | head -1); \
                   [ -n "$$d" ] && cd "$$d/.." 2>/dev/null && pwd -P)
  CUDA_LIBDIR := $(firstword $(foreach d,$(CUDA_ROOT)/lib64 $(CUDA_ROOT)/targets/x86_64-linux/lib \
                   $(CUDA_ROOT)/targets/sbsa-linux/lib,$(if $(wildcard $(d)/libcudart.so),$(d))))
  CUDA_INC    := $(firstword $(foreach d,$(CUDA_ROOT)/include $(CUDA_ROOT)/targets/x86_64-linux/include \
                   $(CUDA_ROOT)/targets/sbsa-linux/include,$(if $(wildcard $(d)/cuda_runtime_api.h),$(d))))
  HAVE_CUDA := $(shell [ -n "$(CUDA_LIBDIR)" ] && [ -n "$(CUDA_INC)" ] && \
    printf '$(HASH)include <cublas_v2.h>\nint main(void){cublasHandle_t h; return (int)cublasCreate(&h);}\n' \
      > /tmp/gptrain-cuda-probe-$$$$.cu && \
    $(NVCC) -c /tmp/gptrain-cuda-probe-$$$$.cu -o /tmp/gptrain-cuda-probe-$$$$.o >/dev/null 2>&1 && \
    $(CC) /tmp/gptrain-cuda-probe-$$$$.o -o /tmp/gptrain-cuda-probe-$$$$ -L$(CUDA_LIBDIR) -lcublas -lcudart -lstdc++ \
      >/dev/null 2>&1 && echo yes; rm -f /tmp/gptrain-cuda-probe-$$$$*)
endif
ifeq ($(HAVE_CUDA),yes)
  CFLAGS  += -DGPTRAIN_CUDA
  LDLIBS  += -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcublas -lcudart -lstdc++
  NVFLAGS := -O3 -std=c++17 $(CUDA_ARCH) -Xcompiler -Wall,-Wextra,-Wno-unused-parameter -I. -Ikernels -Ikernels/cuda \
             -DGPTRAIN_CUDA
  $(info gptrain build: CUDA       yes ($(NVCC), sm_80 + sm_90a; cuBLAS))
  HAVE_NCCL := $(shell printf '$(HASH)include <nccl.h>\nint main(void){int v; return (int)ncclGetVersion(&v);}\n' | $(CC) -x c - -I$(CUDA_INC) -o /dev/null -L$(CUDA_LIBDIR) -lnccl >/dev/null 2>&1 && echo yes)
  ifeq ($(HAVE_NCCL),yes)
    CFLAGS += -DGPTRAIN_NCCL -I$(CUDA_INC)
    LDLIBS += -lnccl
    $(info gptrain build: NCCL       yes (GPU all-reduce; bootstrap over MPI or TCP))
  else
    $(info gptrain build: NCCL       no  (nccl.h/libnccl not found; GPU gradients go through host memory for MPI))
  endif
else ifneq ($(NVCC),)
  $(info gptrain build: CUDA       no  ($(NVCC) found (toolkit '$(CUDA_ROOT)') but a cuBLAS program does not build and link; CPU only))
else
  $(info gptrain build: CUDA       no  (nvcc not found; CPU only; install the CUDA toolkit for the GPU backend))
endif

# Objects depend on the flags they were built with: a change (MPI or CUDA found since the last build) rebuilds.
FLAGS_STAMP := $(BUILD)/flags.txt
$(shell mkdir -p $(BUILD); echo '$(CFLAGS) | $(LDLIBS) | $(NVFLAGS)' | cmp -s - $(FLAGS_STAMP) || \
        echo '$(CFLAGS) | $(LDLIBS) | $(NVFLAGS)' > $(FLAGS_STAMP))

LIB_SRC  := kernels/ops.c $(wildcard kernels/cpu/*.c) $(wildcard model/*.c) $(wildcard data/*.c) \
            $(wildcard dist/*.c) $(filter-out train/main.c,$(wildcard train/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
ifeq ($(HAVE_CUDA),yes)
  CU_SRC  := $(wildcard kernels/cuda/*.cu)
  LIB_OBJ += $(CU_SRC:%.cu=$(BUILD)/%.o)
endif
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%) $(BUILD)/tests/test_gpu
# The flash kernels (sm80 forward and backward, sm90 forward) run on the CPU in an emulated thread block
# (tests/test_flash_emu.cc): host C++ that needs only the toolkit's headers, so it runs wherever the CUDA backend is
# built, GPU or not.
# The GPU flash suite is built by every make test too (so CI compiles it), and says "skipped: no GPU" without one.
ifeq ($(HAVE_CUDA),yes)
TEST_BIN += $(BUILD)/tests/test_flash_emu $(BUILD)/tests/test_flash
endif

.PHONY: all test test-run test-gpu bench clean deps fuzz
all: gptrain

$(BUILD)/%.o: %.c $(wildcard */*.h) $(wildcard kernels/*/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu $(wildcard kernels/*.h) $(wildcard kernels/cuda/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

$(BUILD)/libgptrain.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

gptrain: $(BUILD)/train/main.o $(BUILD)/libgptrain.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/harness.h $(BUILD)/libgptrain.a $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(filter %.c,$(wildcard tests/lib/*.c)) $(BUILD)/libgptrain.a $(LDLIBS)

# The GPU suite: every CUDA op and the whole model against the references (tests/gpu/test_gpu.c). Built by every
# `make test` (it prints "skipped: no GPU" on a machine without one); `make test-gpu` runs it alone.
$(BUILD)/tests/test_gpu: tests/gpu/test_gpu.c tests/harness.h $(BUILD)/libgptrain.a $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(filter %.c,$(wildcard tests/lib/*.c)) $(BUILD)/libgptrain.a $(LDLIBS)

$(BUILD)/tests/test_flash_emu: tests/test_flash_emu.cc $(wildcard tests/emu/*.h) tests/harness.h kernels/cuda/flash_sm80.cu \
                              kernels/cuda/flash_sm90.cu kernels/cuda/flash.h $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -O2 -g -Wall -Wextra -Wno-unknown-pragmas -Wno-unused-parameter -Wno-psabi -I. -Ikernels \
	  -Ikernels/cuda -Itests -Itests/emu -I$(CUDA_INC) $< -o $@

deps:
	@sh tests/deps.sh

# deps may install libraries (OpenBLAS, Open MPI) that this make's detection ran before: a fresh make builds and runs.
test: deps
	@$(MAKE) --no-print-directory test-run
test-run: gptrain $(TEST_BIN)
	@sh tests/run_all.sh $(TEST_BIN)

# The flash-attention suite (tests/gpu/test_flash.cu): the raw kernels on each path against a float64 reference, the
# seam ops against ref64 and the naive CUDA attention, and a T = 32768 forward in O(T) memory. CUDA builds only:
# nvcc compiles it (OpenMP for its CPU reference), cc links it like the other tests.
ifeq ($(HAVE_CUDA),yes)
TEST_FLASH     := $(BUILD)/tests/test_flash
TEST_FLASH_RUN := $(TEST_FLASH)
TEST_LIB_OBJ   := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/lib/*.c))
$(BUILD)/tests/gpu/test_flash.o: tests/gpu/test_flash.cu tests/harness.h $(wildcard tests/*.h) $(wildcard kernels/*.h) \
                                 $(wildcard kernels/cuda/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -Xcompiler -fopenmp -Itests -Imodel -Idata -Idist -Itrain -c $< -o $@
$(TEST_LIB_OBJ): $(BUILD)/tests/lib/%.o: tests/lib/%.c $(wildcard tests/*.h) $(wildcard kernels/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -c $< -o $@
$(TEST_FLASH): $(BUILD)/tests/gpu/test_flash.o $(TEST_LIB_OBJ) $(BUILD)/libgptrain.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
else
TEST_FLASH_RUN := { echo "skipped: no GPU (test_flash: this build has no CUDA backend)"; echo "0 passed, 0 failed"; }
endif

test-gpu: gptrain $(BUILD)/tests/test_gpu $(TEST_FLASH)
	@$(BUILD)/tests/test_gpu && $(TEST_FLASH_RUN) && sh tests/gpu/test_gpu_train.sh

bench: gptrain
	@sh bench/vs_pytorch.sh

# make bench-shapes: forward-GEMM TFLOPS over widths near d_ff = 8/3*d and the vocab (tile and wave quantization,
# the best SwiGLU width), on the CPU and on a GPU when there is one (bench/shapes.sh; --save there keeps the table).
.PHONY: bench-shapes
$(BUILD)/bench/matmul_shapes: bench/matmul_shapes.c $(BUILD)/libgptrain.a $(wildcard kernels/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libgptrain.a $(LDLIBS)
bench-shapes: $(BUILD)/bench/matmul_shapes
	@bash bench/shapes.sh

# make bench-attention: our flash-attention kernels (each path) and the naive CUDA attention beside PyTorch's SDPA
# (flash and cuDNN backends): forward/backward TFLOPS over causal x d x T and peak memory up to T = 32768, with the
# kernels' ptxas resource report (registers, spills), rebuilt with -Xptxas -v into a log (bench/attention.sh; --save
# there keeps the report). CUDA builds only: nvcc compiles the benchmark, cc links it like tests/gpu/test_flash.cu.
.PHONY: bench-attention
ifeq ($(HAVE_CUDA),yes)
$(BUILD)/bench/attention.o: bench/attention.cu $(wildcard kernels/*.h) $(wildcard kernels/cuda/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@
$(BUILD)/bench/attention: $(BUILD)/bench/attention.o $(BUILD)/libgptrain.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bench/attention-ptxas.log: kernels/cuda/flash_sm80.cu kernels/cuda/flash_sm90.cu $(wildcard kernels/*.h) \
                                    $(wildcard kernels/cuda/*.h) $(FLAGS_STAMP)
	@mkdir -p $(BUILD)/bench/ptxas
	@rm -f $@.tmp; for f in flash_sm80 flash_sm90; do echo "== kernels/cuda/$$f.cu" >>$@.tmp; \
	  $(NVCC) $(NVFLAGS) -Xptxas -v -c kernels/cuda/$$f.cu -o $(BUILD)/bench/ptxas/$$f.o >>$@.tmp 2>&1 || exit 1; \
	done; mv $@.tmp $@
bench-attention: $(BUILD)/bench/attention $(BUILD)/bench/attention-ptxas.log
	@bash bench/attention.sh
else
bench-attention:
	@echo "bench-attention: skipped: this build has no CUDA backend"
endif

# The flash kernels as compiled (tests/test_flash_code.sh, part of make test): the PTX of each device pass (sm_80,
# sm_90a) and ptxas's resource report (build/bench/attention-ptxas.log, shared with bench-attention). A GPU-less
# machine can still check that the tensor-core, ldmatrix, cp.async, wgmma and TMA instructions we wrote survive into
# the right pass and that no kernel spills.
.PHONY: flash-code
ifeq ($(HAVE_CUDA),yes)
FLASH_PTX := $(foreach f,flash_sm80 flash_sm90,$(foreach a,sm_80 sm_90a,$(BUILD)/flash-code/$(f).$(a).ptx))
$(BUILD)/flash-code/%.ptx: $(wildcard kernels/cuda/flash*.cu) $(wildcard kernels/*.h) $(wildcard kernels/cuda/*.h) \
                           $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(filter-out -gencode arch=%,$(NVFLAGS)) -arch=$(lastword $(subst ., ,$*)) -ptx \
	  kernels/cuda/$(firstword $(subst ., ,$*)).cu -o $@
flash-code: $(FLASH_PTX) $(BUILD)/bench/attention-ptxas.log
else
flash-code:
	@echo "flash-code: skipped: this build has no CUDA backend"
endif

# make fuzz: libFuzzer targets (clang, ASan + UBSan) for the shard, checkpoint, tokenizer-file and GPT-2 BPE file
# parsers, FUZZ_SECONDS
# each (tests/fuzz/run.sh seeds the corpora with valid files first).
FUZZ_SECONDS ?= 20
FUZZ_CC      ?= clang
FUZZ_SRC     := $(wildcard data/*.c) train/checkpoint.c
FUZZ_FLAGS   := -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I. -Ikernels -Imodel -Idata -Itrain \
                -DGPTRAIN_GPT2_DIR=\"$(CURDIR)/data/gpt2\"
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_parsers.c $(FUZZ_SRC) $(wildcard data/*.h) train/checkpoint.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -DFUZZ_$(shell echo $* | tr a-z A-Z) -o $@ tests/fuzz/fuzz_parsers.c $(FUZZ_SRC) -lm -lpthread
fuzz: gptrain $(BUILD)/fuzz/fuzz_shard $(BUILD)/fuzz/fuzz_ckpt $(BUILD)/fuzz/fuzz_tokenizer $(BUILD)/fuzz/fuzz_gpt2
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) gptrain
