# gptrain build. `make` builds what this machine can and prints one line per optional dependency it chose.
# Targets: make (the gptrain binary), make test, make test-gpu, make emu (build/emu: the program on the emulated GPU),
# make test-emu, make test-sanitize (build/sanitize: the CPU program and suites under ASan + UBSan), make bench,
# make fuzz, make clean, make deps.

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

# What every build of the program shares before the CUDA toolkit's part; the emulated GPU's build (below) starts here.
BASE_CFLAGS := $(CFLAGS)
BASE_LDLIBS := $(LDLIBS)

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
    printf '$(HASH)include <cublasLt.h>\n$(HASH)include <cublas_v2.h>\nint main(void){cublasHandle_t h; cublasLtHandle_t l; return (int)cublasCreate(&h) + (int)cublasLtCreate(&l);}\n' \
      > /tmp/gptrain-cuda-probe-$$$$.cu && \
    $(NVCC) -c /tmp/gptrain-cuda-probe-$$$$.cu -o /tmp/gptrain-cuda-probe-$$$$.o >/dev/null 2>&1 && \
    $(CC) /tmp/gptrain-cuda-probe-$$$$.o -o /tmp/gptrain-cuda-probe-$$$$ -L$(CUDA_LIBDIR) -lcublasLt -lcublas -lcudart \
      -lstdc++ >/dev/null 2>&1 && echo yes; rm -f /tmp/gptrain-cuda-probe-$$$$*)
endif
ifeq ($(HAVE_CUDA),yes)
  CFLAGS  += -DGPTRAIN_CUDA
  LDLIBS  += -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcublasLt -lcublas -lcudart -lstdc++
  NVFLAGS := -O3 -std=c++17 $(CUDA_ARCH) -Xcompiler -Wall,-Wextra,-Wno-unused-parameter -I. -Ikernels -Ikernels/cuda \
             -DGPTRAIN_CUDA
  $(info gptrain build: CUDA       yes ($(NVCC), sm_80 + sm_90a; cuBLAS, cuBLASLt))
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
# The emulated GPU (tests/emu/; README "The emulated GPU"): build/emu/ is the same program with its CUDA backend on an
# emulated device. Every C file is compiled again with GPTRAIN_CUDA and GPTRAIN_EMU, every .cu file as host C++
# against tests/emu/include (our headers for the CUDA runtime, cuBLAS, NCCL) with -fsanitize=thread, whose
# instrumentation hands every memory access of kernel code to the emulator's checker (no TSan runtime is linked),
# and the emulator is linked in. It needs no CUDA toolkit and no GPU, so every machine builds and tests it.
EMU          := $(BUILD)/emu
EMU_DEFS     := -DGPTRAIN_CUDA -DGPTRAIN_NCCL -DGPTRAIN_EMU
EMU_CFLAGS   := $(BASE_CFLAGS) $(EMU_DEFS) -Itests/emu/include
EMU_CXXFLAGS := -std=gnu++17 -O2 -march=native -g -Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas -D_POSIX_C_SOURCE=200809L \
                -D_DEFAULT_SOURCE $(EMU_DEFS) -Itests/emu/include -Itests/emu -I. -Ikernels -Ikernels/cuda -Imodel -Idata \
                -Idist -Itrain -Itests
EMU_KERNEL_FLAGS := -fsanitize=thread --param=tsan-instrument-func-entry-exit=0 -Wno-sign-compare
EMU_MPI      := $(if $(filter yes,$(HAVE_MPI)),-DGPTRAIN_MPI -DOMPI_SKIP_MPICXX -DMPICH_SKIP_MPICXX $(shell mpicc --showme:compile))
EMU_LDLIBS   := $(BASE_LDLIBS) -lstdc++ -rdynamic

# The build's identity for gptrain --version (train/version.c): the commit and toolchain versions, rewritten only
# when they change, so a commit recompiles that one file in each build.
BUILD_INFO := $(BUILD)/build_info.h
$(shell sh train/build_info.sh $(BUILD_INFO) '$(NVCC)' '$(CUDA_ARCH)')

# Objects depend on the flags they were built with: a change (MPI or CUDA found since the last build) rebuilds.
FLAGS_STAMP := $(BUILD)/flags.txt
ALL_FLAGS   := $(CFLAGS) | $(LDLIBS) | $(NVFLAGS) | $(EMU_CFLAGS) | $(EMU_CXXFLAGS) $(EMU_KERNEL_FLAGS) $(EMU_MPI)
$(shell mkdir -p $(BUILD); echo '$(ALL_FLAGS)' | cmp -s - $(FLAGS_STAMP) || echo '$(ALL_FLAGS)' > $(FLAGS_STAMP))

LIB_SRC  := kernels/ops.c $(wildcard kernels/cpu/*.c) $(wildcard model/*.c) $(wildcard data/*.c) \
            $(wildcard dist/*.c) $(filter-out train/main.c,$(wildcard train/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
ifeq ($(HAVE_CUDA),yes)
  CU_SRC  := $(wildcard kernels/cuda/*.cu)
  LIB_OBJ += $(CU_SRC:%.cu=$(BUILD)/%.o)
endif
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%) $(BUILD)/tests/test_gpu $(BUILD)/tests/test_nccl
# The GPU flash suite is built by every make test too (so CI compiles it), and says "skipped: no GPU" without one.
ifeq ($(HAVE_CUDA),yes)
TEST_BIN += $(BUILD)/tests/test_flash
endif

.PHONY: all test test-run test-gpu test-emu emu bench clean deps fuzz
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
$(BUILD)/tests/test_gpu $(BUILD)/tests/test_nccl: $(BUILD)/tests/%: tests/gpu/%.c tests/harness.h $(BUILD)/libgptrain.a \
                                                  $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(filter %.c,$(wildcard tests/lib/*.c)) $(BUILD)/libgptrain.a $(LDLIBS)

# ---- the emulated GPU's build ----
EMU_CU_SRC  := $(wildcard kernels/cuda/*.cu)
EMU_RT_SRC  := $(wildcard tests/emu/*.cc)
EMU_HDRS    := $(wildcard tests/emu/*.h tests/emu/include/*.h tests/emu/include/*/*.h)
EMU_LIB_OBJ := $(LIB_SRC:%.c=$(EMU)/%.o) $(EMU_CU_SRC:%.cu=$(EMU)/%.o) $(EMU_RT_SRC:%.cc=$(EMU)/%.o)
EMU_TEST_BIN := $(EMU)/tests/test_emu_checks $(EMU)/tests/test_gpu $(EMU)/tests/test_nccl $(EMU)/tests/test_model_ref \
                $(EMU)/tests/test_flash_emu

$(EMU)/%.o: %.c $(wildcard */*.h) $(wildcard kernels/*/*.h) $(EMU_HDRS) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(EMU_CFLAGS) -c $< -o $@
$(EMU)/kernels/cuda/%.o: kernels/cuda/%.cu $(wildcard kernels/*.h) $(wildcard kernels/cuda/*.h) $(EMU_HDRS) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) $(EMU_KERNEL_FLAGS) -x c++ -c $< -o $@
$(EMU)/tests/emu/%.o: tests/emu/%.cc $(EMU_HDRS) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) $(EMU_MPI) -c $< -o $@
$(EMU)/libgptrain.a: $(EMU_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(EMU)/gptrain: $(EMU)/train/main.o $(EMU)/libgptrain.a
	$(CC) $(EMU_CFLAGS) -o $@ $^ $(EMU_LDLIBS)
$(EMU)/tests/test_gpu $(EMU)/tests/test_nccl: $(EMU)/tests/%: tests/gpu/%.c tests/harness.h $(EMU)/libgptrain.a \
                                              $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(EMU_CFLAGS) -Itests -o $@ $< $(filter %.c,$(wildcard tests/lib/*.c)) $(EMU)/libgptrain.a $(EMU_LDLIBS)
$(EMU)/tests/test_model_ref: tests/test_model_ref.c tests/harness.h $(EMU)/libgptrain.a $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(EMU_CFLAGS) -Itests -o $@ $< $(filter %.c,$(wildcard tests/lib/*.c)) $(EMU)/libgptrain.a $(EMU_LDLIBS)
# The checker's own tests: small kernels with one bug each (and their correct twins), instrumented like the backend.
$(EMU)/tests/test_emu_checks: tests/test_emu_checks.cu tests/harness.h $(EMU)/libgptrain.a $(EMU_HDRS)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) $(EMU_KERNEL_FLAGS) -o $@ -x c++ $< -x none $(EMU)/libgptrain.a $(EMU_LDLIBS)
$(EMU)/tests/test_flash_emu: tests/test_flash_emu.cc tests/harness.h $(EMU)/libgptrain.a $(EMU_HDRS) kernels/cuda/flash.h
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -o $@ $< $(EMU)/libgptrain.a $(EMU_LDLIBS)

# The flash-attention benchmark on the emulated GPU (bench/device_check.sh --dry-run runs it with --tiny).
$(EMU)/bench/attention: bench/attention.cu $(EMU)/libgptrain.a $(EMU_HDRS) $(wildcard kernels/cuda/*.h)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) $(EMU_KERNEL_FLAGS) -o $@ -x c++ $< -x none $(EMU)/libgptrain.a $(EMU_LDLIBS)

emu: $(EMU)/gptrain $(EMU_TEST_BIN) $(EMU)/bench/attention

# For tests/test_emu_bugs.sh: compile a changed copy of one source (SRC, .c or .cu) exactly as the emulated build
# does (into OBJ), and link a test program (TEST, a .c or .cc of tests/) with such objects (OBJS) in front of the
# emulated library, into OUT.
.PHONY: emu-compile emu-link-test
emu-compile:
	@$(if $(filter %.cu,$(SRC)),$(CXX) $(EMU_CXXFLAGS) $(EMU_KERNEL_FLAGS) -x c++,$(CC) $(EMU_CFLAGS)) -c $(SRC) -o $(OBJ)
emu-link-test:
	@$(if $(filter %.c,$(TEST)),$(CC) $(EMU_CFLAGS),$(CXX) $(EMU_CXXFLAGS)) -Itests -o $(OUT) $(TEST) \
	  $(if $(filter %.c,$(TEST)),$(filter %.c,$(wildcard tests/lib/*.c))) $(OBJS) $(EMU)/libgptrain.a $(EMU_LDLIBS)
# The emulated suites alone (each binary and tests/test_emu*.sh); a planted bug makes this exit non-zero.
test-emu: gptrain emu
	@RUN_ALL_SH='tests/test_emu*.sh' RUN_ALL_FIXTURE=0 sh tests/run_all.sh $(EMU_TEST_BIN)

deps:
	@sh tests/deps.sh

# deps may install libraries (OpenBLAS, Open MPI) that this make's detection ran before: a fresh make builds and runs.
test: deps
	@$(MAKE) --no-print-directory test-run
test-run: gptrain $(TEST_BIN) emu $(BUILD)/bench/attention_table
	@sh tests/run_all.sh $(TEST_BIN) $(EMU_TEST_BIN)

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

test-gpu: gptrain $(BUILD)/tests/test_gpu $(BUILD)/tests/test_nccl $(TEST_FLASH)
	@$(BUILD)/tests/test_gpu && $(BUILD)/tests/test_nccl && $(TEST_FLASH_RUN) && sh tests/gpu/test_gpu_train.sh

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

# make bench-attention-table: the course notes' attention table (naive and flash attention alone over head widths x
# sequence lengths: forward and backward ms, memory, OOM rows from the plan); bench/attention_table.sh runs it.
.PHONY: bench-attention-table
$(BUILD)/bench/attention_table: bench/attention_table.c $(BUILD)/libgptrain.a $(wildcard kernels/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libgptrain.a $(LDLIBS)
bench-attention-table: $(BUILD)/bench/attention_table
	@bash bench/attention_table.sh

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
FUZZ_BIN     := $(BUILD)/fuzz/fuzz_shard $(BUILD)/fuzz/fuzz_ckpt $(BUILD)/fuzz/fuzz_tokenizer $(BUILD)/fuzz/fuzz_gpt2
fuzz: gptrain $(FUZZ_BIN)
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS)

# ---- the sanitizer build (make test-sanitize) ----
# build/sanitize/ is the CPU program and the CPU test binaries compiled again under AddressSanitizer and
# UndefinedBehaviorSanitizer (every UB check fatal), with what the normal build found on this machine (OpenBLAS,
# MPI) but never CUDA or NCCL: like the emulated build it starts from BASE_CFLAGS, and it has its own objects and its
# own flags stamp, so neither build rebuilds the other. -O1, as ASan's documentation advises: whole stack traces,
# and fast enough for the suites. OpenBLAS stays in (ASan reports nothing against it): it is not instrumented, so
# its own reads and writes go unchecked, but our code around it is (the row blocks of matmul.c, the strided views of
# the blocked flash attention), which a build without OpenBLAS would not even compile.
SAN          := $(BUILD)/sanitize
SAN_FLAGS    := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SAN_CFLAGS   := $(filter-out -O3,$(BASE_CFLAGS)) -O1 $(SAN_FLAGS)
SAN_LDLIBS   := $(BASE_LDLIBS)
SAN_STAMP    := $(SAN)/flags.txt
SAN_LIB_OBJ  := $(LIB_SRC:%.c=$(SAN)/%.o)
# Every CPU test binary (tests/test_*.c); tests/gpu/ needs a CUDA backend, which this build never has.
SAN_TEST_BIN := $(TEST_SRC:tests/%.c=$(SAN)/tests/%)
# Every shell test that runs the CPU program ($G of tests/lib.sh; GPTRAIN_BIN points it at build/sanitize/gptrain),
# so a new tests/test_*.sh joins by itself, less those that run the emulated or the CUDA build instead:
# test_emu*.sh and test_device_check.sh (build/emu/gptrain, the emulated GPU), test_flash_code.sh (nvcc's PTX),
# test_attention_table.sh (a benchmark binary, not $G).
SAN_SH_EXCLUDE := $(wildcard tests/test_emu*.sh) tests/test_device_check.sh tests/test_flash_code.sh \
                  tests/test_attention_table.sh
SAN_SH       := $(filter-out $(SAN_SH_EXCLUDE),$(wildcard tests/test_*.sh))
# A short bounded run of make fuzz's four libFuzzer targets (clang, ASan + UBSan, their own binaries in build/fuzz),
# seeded by the sanitized program; skipped, with a line saying so, where there is no clang.
SAN_FUZZ_SECONDS ?= 10
SAN_FUZZ     := $(if $(shell command -v $(FUZZ_CC) 2>/dev/null),yes)
# Every report of ASan and LeakSanitizer goes to a file in build/sanitize/reports/ as well as failing its process,
# so one from a command whose exit status a test does not check still fails the target. UBSan prints its report
# (with its stack) on stderr, whatever log_path says (GCC's libubsan beside libasan), and its first report ends the
# process with status 1. Leaks are checked (libgomp reports none): tests/lsan.supp lists the leaks found in gptrain
# and reported, each to go with its fix.
SAN_REPORTS  := $(SAN)/reports
# handle_sigbus=0: SIGBUS stays gptrain's own (the loader's guard names a shard truncated under a run, and passes
# any other SIGBUS to the default action, which tests/test_inputs.sh checks).
SAN_ENV      := ASAN_OPTIONS=detect_leaks=1:handle_sigbus=0:log_path=$(CURDIR)/$(SAN_REPORTS)/asan \
                LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 GPTRAIN_BIN=$(SAN)/gptrain

$(SAN_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(SAN_CFLAGS) | $(SAN_LDLIBS)' | cmp -s - $@ || echo '$(SAN_CFLAGS) | $(SAN_LDLIBS)' > $@
$(SAN)/%.o: %.c $(wildcard */*.h) $(wildcard kernels/*/*.h) $(SAN_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(SAN_CFLAGS) -c $< -o $@
# (build_info.h is under build/, outside the patterns' header lists)
$(BUILD)/train/version.o $(EMU)/train/version.o $(SAN)/train/version.o: $(BUILD_INFO)
$(SAN)/libgptrain.a: $(SAN_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(SAN)/gptrain: $(SAN)/train/main.o $(SAN)/libgptrain.a
	$(CC) $(SAN_CFLAGS) -o $@ $^ $(SAN_LDLIBS)
$(SAN)/tests/%: tests/%.c tests/harness.h $(SAN)/libgptrain.a $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(SAN_CFLAGS) -Itests -o $@ $< $(filter %.c,$(wildcard tests/lib/*.c)) $(SAN)/libgptrain.a $(SAN_LDLIBS)
sanitize: $(SAN)/gptrain $(SAN_TEST_BIN)

# ASan reserves terabytes of address space for its shadow, hence ulimit -v unlimited. The fixture regeneration
# (RUN_ALL_FIXTURE) is left out: it runs the same test_model_ref code on a copy of the same fixture.
test-sanitize: sanitize $(if $(SAN_FUZZ),$(FUZZ_BIN))
	@$(if $(SAN_FUZZ),,echo "test-sanitize: fuzz: skipped ($(FUZZ_CC) not found; make fuzz needs clang with libFuzzer)";) \
	ulimit -v unlimited || { echo "test-sanitize: ulimit -v unlimited refused; ASan needs it"; exit 1; }; \
	rm -rf $(SAN_REPORTS) && mkdir -p $(SAN_REPORTS) && \
	$(SAN_ENV) FUZZ_SECONDS=$(SAN_FUZZ_SECONDS) RUN_ALL_FIXTURE=0 \
	  RUN_ALL_SH='$(SAN_SH)$(if $(SAN_FUZZ), tests/fuzz/run.sh)' sh tests/run_all.sh $(SAN_TEST_BIN); \
	status=$$?; n=$$(find $(SAN_REPORTS) -type f -size +0 | wc -l); \
	if [ "$$n" -gt 0 ]; then \
	  cat $(SAN_REPORTS)/*; echo "test-sanitize: $$n sanitizer report(s) above, in $(SAN_REPORTS)/"; status=1; \
	fi; exit $$status

.PHONY: sanitize test-sanitize FORCE
FORCE:

clean:
	rm -rf $(BUILD) gptrain
