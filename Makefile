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
HAVE_NVCC := $(shell command -v nvcc >/dev/null 2>&1 && echo yes)
ifeq ($(HAVE_NVCC),yes)
  $(info gptrain build: CUDA       nvcc found, but the CUDA backend arrives in a later issue; building CPU only)
else
  $(info gptrain build: CUDA       no  (nvcc not found; CPU only))
endif

LIB_SRC  := kernels/ops.c $(wildcard kernels/cpu/*.c) $(wildcard model/*.c) $(wildcard data/*.c) \
            $(wildcard dist/*.c) $(filter-out train/main.c,$(wildcard train/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all test test-gpu bench clean deps fuzz
all: gptrain

$(BUILD)/%.o: %.c $(wildcard */*.h) $(wildcard kernels/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libgptrain.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

gptrain: $(BUILD)/train/main.o $(BUILD)/libgptrain.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/harness.h $(BUILD)/libgptrain.a $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(filter %.c,$(wildcard tests/lib/*.c)) $(BUILD)/libgptrain.a $(LDLIBS)

deps:
	@sh tests/deps.sh

test: deps gptrain $(TEST_BIN)
	@sh tests/run_all.sh $(TEST_BIN)

test-gpu:
	@echo "skipped: no GPU (the CUDA backend arrives in a later issue)"

bench: gptrain
	@sh bench/vs_pytorch.sh

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
