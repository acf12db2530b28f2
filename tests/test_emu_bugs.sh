#!/bin/sh
# test_emu_bugs.sh: proof that the emulated GPU catches the bugs it is for. Each case copies one source of the CUDA
# backend, plants one bug in the copy (the change must apply exactly once), compiles the copy as the emulated build
# compiles that file, links the test program that exercises it with the changed object in front of build/emu's
# library, runs it, and asserts that it fails (non-zero exit) with the report the bug must produce. Six bugs from
# the issue (a missing __syncthreads in a block reduction, an off-by-one row index, a swapped transpose in a GEMM
# call, a missing event wait between two streams, a host read of a device pointer, a kernel writing one element past
# its buffer), one in a flash kernel (a stage refilled before every warp finished reading it), one in the encoder
# backward's sort (its merge passes across shared-memory tiles left out), two in the batch upload (the copy not
# ordered after the reads of its token set, the forward not waiting for the copy), four in the cuBLASLt matmuls (the
# bias epilogue left out, the DGELU epilogue left out, the BGRADB epilogue's bias gradient never added, the weight
# gradient overwritten instead of accumulated), six in the bf16 data path (the AdamW step's bf16 weight copy left
# stale, its stochastic rounding biased, the weight gradients' GEMM and their cuBLASLt product writing bf16 into the
# fp32 gradients, cuBLASLt's heuristic not told the operands' real alignment, the fused residual + LayerNorm
# normalising the sum before it is rounded, so it differs from the LayerNorm a recompute computes), two with bf16
# gradients (fp32 written into them by the weight gradients' GEMM, and by the column sums), the overlapped NCCL
# all-reduce not ordered after the backward that wrote its bucket, the old GPU index
# of train/common.c (every rank on GPU 0 when the launcher names no local rank), the buckets' all-reduce queued on
# the compute stream (ordered, so nothing overlaps: test_nccl's race probe no longer races), the GPU's dropout mask
# one element off the CPU's, and three in ZeRO-1 (the weights'
# all-gather not ordered after the AdamW step, AdamW indexing the moments' shard as a whole buffer, a shard's bf16
# copy rounded by its index in the shard: no longer byte-identical to plain data parallelism), and a GELU that runs
# clean but computes wrong, which only the run's self-check catches (it must refuse to train and write nothing).
# The unchanged sources pass the same programs in the rest of make test.
. tests/lib.sh
if [ ! -f build/emu/libgptrain.a ]; then
    bad "build/emu/libgptrain.a" "missing (make emu builds it)"
    finish
    exit 1
fi

# plant NAME SOURCE TEST PATTERN OLD NEW [RUN]: the case described above; PATTERN is an extended regular expression.
# RUN, when given, is how to run the program instead of running it alone (the program is "$BIN" in it).
plant() {
    name=$1 src=$2 test=$3 pattern=$4 old=$5 new=$6 run=${7:-}
    dir="$T/$(echo "$name" | tr -c 'a-z0-9' _)"
    mkdir -p "$dir"
    copy="$dir/$(basename "$src")"
    if ! /usr/bin/python3 - "$src" "$copy" "$old" "$new" <<'PY'
import sys
s = open(sys.argv[1]).read()
n = s.count(sys.argv[3])
if n != 1:
    sys.exit("the planted change applies %d times in %s (expected once)" % (n, sys.argv[1]))
open(sys.argv[2], "w").write(s.replace(sys.argv[3], sys.argv[4]))
PY
    then
        bad "$name" "the bug could not be planted in $src"
        return
    fi
    if ! make -s emu-compile SRC="$copy" OBJ="$dir/planted.o" >"$dir/build" 2>&1 ||
       ! make -s emu-link-test TEST="$test" OBJS="$dir/planted.o" OUT="$dir/test" >>"$dir/build" 2>&1; then
        bad "$name" "build failed: $(tail -3 "$dir/build")"
        return
    fi
    BIN="$dir/test"
    if [ -n "$run" ]; then eval "$run" >"$dir/out" 2>&1; else "$BIN" >"$dir/out" 2>&1; fi
    status=$?
    if [ "$status" -eq 0 ]; then
        bad "$name" "the test passed with the bug in it: $(tail -1 "$dir/out")"
    elif ! grep -Eq -e "$pattern" "$dir/out"; then
        bad "$name" "exit $status without '$pattern': $(grep -E 'error|FAIL' "$dir/out" | head -2)"
    else
        ok "$name: exit $status: $(grep -E -m1 -e "$pattern" "$dir/out" | cut -c1-240)"
    fi
}

K=kernels/cuda
# test_gpu runs each precision mode in turn; the bugs below show in the fp32 pass, the bf16 ones in the bf16 pass
# (TEST_GPU_ONLY picks the passes: the test program is the same).
export TEST_GPU_ONLY=fp32
plant "missing __syncthreads in a block reduction (the classifier's softmax statistics)" $K/classifier.cu \
tests/gpu/test_gpu.c "shared-memory race" \
'    if (lane == 0) { sm[warp] = m; ss[warp] = s; }
    __syncthreads();' \
'    if (lane == 0) { sm[warp] = m; ss[warp] = s; }'
plant "off-by-one row index (LayerNorm forward writes row + 1)" $K/layernorm.cu tests/gpu/test_gpu.c "out-of-bounds write" \
'    T *o = out + (size_t)row * C;' \
'    T *o = out + (size_t)(row + 1) * C;'
plant "swapped transpose in a GEMM call (matmul forward, op(w) = w)" $K/matmul.cu tests/gpu/test_gpu.c \
"cuBLAS error|FAIL matmul_forward|out-of-bounds" \
'    cuda_gemm(be, CUBLAS_OP_T, CUBLAS_OP_N, M, N, K, 1.0f, w, K, inp, K, 0.0f, out, M, 0);' \
'    cuda_gemm(be, CUBLAS_OP_N, CUBLAS_OP_N, M, N, K, 1.0f, w, K, inp, K, 0.0f, out, M, 0);'
plant "missing event wait between two streams (gradients -> NCCL stream)" dist/nccl.c tests/gpu/test_nccl.c "stream race" \
'    CUDA_OK(cudaStreamWaitEvent(stream, grads_ready, 0));
    NCCL_CHECK(ncclAllReduce(dev_buf,' '    NCCL_CHECK(ncclAllReduce(dev_buf,'
plant "the overlapped all-reduce queued on the compute stream (nothing overlaps the backward)" dist/nccl.c \
tests/gpu/test_nccl.c "FAIL the bucket's all-reduce runs on a stream of its own" \
'        NCCL_CHECK(ncclAllReduce(bufs[i], bufs[i], ns[i], bf16 ? ncclBfloat16 : ncclFloat, ncclAvg, comm, stream));' \
'        NCCL_CHECK(ncclAllReduce(bufs[i], bufs[i], ns[i], bf16 ? ncclBfloat16 : ncclFloat, ncclAvg, comm, 0));'
plant "dropout: the GPU's mask one element off the CPU's" $K/dropout.cu tests/gpu/test_gpu.c \
"FAIL dropout" \
'    if (i < n) st(&out[i], dropout_keep(key, i, thr) ? f32(inp[i]) * scale : 0.0f);' \
'    if (i < n) st(&out[i], dropout_keep(key, i + 1, thr) ? f32(inp[i]) * scale : 0.0f);'
plant "host read of a device pointer (sum of squares reads the device total)" $K/reductions.cu tests/gpu/test_gpu.c \
"host code dereferenced device memory" \
'    CUDA_CHECK(cudaMemcpy(&total, cs->partials + CUDA_SUMSQ_BLOCKS, sizeof total, cudaMemcpyDeviceToHost));' \
'    CUDA_CHECK(cudaDeviceSynchronize());
    total = cs->partials[CUDA_SUMSQ_BLOCKS];'
plant "kernel writing one element past its buffer (residual, i <= n)" $K/gelu.cu tests/gpu/test_gpu.c \
"out-of-bounds (read|write) of 4 bytes .*past the end of allocation" \
'    if (i < n) st(&out[i], f32(a[i]) + f32(b[i]));' \
'    if (i <= n) st(&out[i], f32(a[i]) + f32(b[i]));'
plant "encoder backward: the sort's merge passes across tiles left out (runs of equal tokens split)" $K/encoder.cu \
tests/gpu/test_gpu.c "FAIL encoder_backward|device-memory race|race" \
'            CUDA_LAUNCH(blocks_for(P / 2, ENC_THREADS), ENC_THREADS, 0, 0, bitonic_global_kernel)(keys, j, k, P);' ''
# The training step (3 micro-steps, nothing waited for in between) on the emulated GPU: the third upload reuses the
# token set the first micro-step's backward may still read.
./gptrain prepare --input data/tinyshakespeare/input.txt --out "$T/data" >/dev/null
plant "batch upload: the copy not ordered after the work that still reads its token set" $K/backend_cuda.cu \
train/main.c "stream race" \
'    if (cs->have_prev_upload) CUDA_CHECK(cudaStreamWaitEvent(cs->copy_stream, cs->prev_upload, 0));' '' \
'"$BIN" train --data "$T/data" --preset micro --seq-len 32 --steps 2 --batch 2 --grad-accum 3 --eval-steps 1 --device cuda --out "$T/upload"'
# A kernel that runs clean but computes wrong (GELU's cubic coefficient 0.05, not 0.044715): the emulator has
# nothing to report, the run's self-check must refuse before the first step and write nothing.
plant "a wrong GELU forward: the run's self-check refuses to train (gptrain)" $K/gelu.cu train/main.c \
"self-check: gelu_forward \(out\) on this GPU differs from the CPU reference" \
'tanhf(GELU_SCALE * (x + 0.044715f * x * x * x))));' 'tanhf(GELU_SCALE * (x + 0.05f * x * x * x))));' \
'"$BIN" train --data "$T/data" --preset micro --seq-len 32 --steps 1 --batch 2 --eval-steps 1 --device cuda --precision fp32 --out "$T/selfcheck"; rc=$?; if [ -e "$T/selfcheck" ]; then echo "the refused run wrote $T/selfcheck"; true; else [ $rc -eq 0 ]; fi'
plant "batch upload: the forward not waiting for its copy" $K/backend_cuda.cu tests/gpu/test_gpu.c "stream race" \
'    CUDA_CHECK(cudaStreamWaitEvent(0, cs->stage_done[k], 0));' ''
plant "matmul forward on cuBLASLt without its bias epilogue" $K/matmul.cu tests/gpu/test_gpu.c "FAIL matmul_forward" \
'0, CUBLASLT_EPILOGUE_BIAS, bias, NULL,' '0, CUBLASLT_EPILOGUE_DEFAULT, bias, NULL,'
plant "the MLP's down projection backward on cuBLASLt without its DGELU epilogue" $K/matmul.cu tests/gpu/test_gpu.c \
"FAIL matmul_backward_gelu dinp" '0, CUBLASLT_EPILOGUE_DGELU,' '0, CUBLASLT_EPILOGUE_DEFAULT,'
plant "the BGRADB epilogue's bias gradient never added into the gradient" $K/matmul.cu tests/gpu/test_gpu.c \
"FAIL matmul_backward dbias" '        CUDA_BY_GRAD(be, add_grad, dbias, cs->scratch, M);' ''
plant "the weight gradients' cuBLASLt product overwriting instead of accumulating (beta 0)" $K/matmul.cu \
tests/gpu/test_gpu.c "FAIL matmul_backward dw" \
'        const float one = 1.0f, beta = dw ? 1.0f : 0.0f;' '        const float one = 1.0f, beta = 0.0f;'
# The bf16 data path: the AdamW step not writing the weights' bf16 copy, its stochastic rounding biased (15 random
# bits instead of 16: rounds up too rarely), the weight gradients' GEMM writing bf16 into the fp32 gradient buffer.
export TEST_GPU_ONLY=bf16
plant "bf16: AdamW leaves the weights' bf16 copy stale" $K/adamw.cu tests/gpu/test_gpu.c "FAIL adamw_step" \
'        if (pc) store_copy(pc, i, pi, h.seed);' ''
plant "bf16: stochastic rounding of the weights' copy biased (15 random bits)" $K/adamw.cu tests/gpu/test_gpu.c \
"FAIL adamw_step: stochastic rounding" \
'    c[i] = __ushort_as_bfloat16((unsigned short)((u + (r & 0xffffu)) >> 16));' \
'    c[i] = __ushort_as_bfloat16((unsigned short)((u + (r & 0x7fffu)) >> 16));'
plant "bf16: the weight gradients' GEMM writes bf16 into the fp32 gradients" $K/matmul.cu tests/gpu/test_gpu.c \
"FAIL matmul_backward dw" \
'                              c_grad ? tg : t, ldc, compute_type(be), CUBLAS_GEMM_DEFAULT));' \
'                              t, ldc, compute_type(be), CUBLAS_GEMM_DEFAULT));'
plant "bf16: the weight gradients' cuBLASLt product writes bf16 into the fp32 gradients" $K/matmul.cu \
tests/gpu/test_gpu.c "FAIL matmul_backward dw|out-of-bounds|cublasLtMatmul" \
'    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->Ld, key->dw ? grad_type(be) : t, m, n, key->ldd));' \
'    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->Ld, t, m, n, key->ldd));'
plant "cuBLASLt told nothing of its operands' alignment (the default 256 bytes assumed for a layer's slice)" \
$K/matmul.cu tests/gpu/test_gpu.c "the heuristic chose the algorithm for 256-byte alignment" \
'    const uint32_t al[4] = {key->align[0], key->align[1], key->align[2], key->align[2]};' \
'    const uint32_t al[4] = {256, 256, 256, 256};'
plant "bf16: the fused residual + LayerNorm normalises the unrounded sum" $K/layernorm.cu tests/gpu/test_gpu.c \
"FAIL residual_layernorm_forward = residual_forward" \
'            st(&x[c], f32(xa[c]) + f32(xb[c]));
            s += f32(x[c]);' \
'            st(&x[c], f32(xa[c]) + f32(xb[c]));
            s += f32(xa[c]) + f32(xb[c]);'
# bf16 gradients (--grad-dtype bf16): the weight gradients' GEMM writing fp32 into them, the column sums that finish
# the LayerNorm and bias gradients adding into them as if they were fp32.
export TEST_GPU_ONLY=bf16-grads
plant "bf16 gradients: the weight gradients' GEMM writes fp32 into them" $K/matmul.cu tests/gpu/test_gpu.c \
"FAIL matmul_backward dw|out-of-bounds" \
'                              c_grad ? tg : t, ldc, compute_type(be), CUBLAS_GEMM_DEFAULT));' \
'                              c_grad ? CUDA_R_32F : t, ldc, compute_type(be), CUBLAS_GEMM_DEFAULT));'
plant "bf16 gradients: the column sums add into them as fp32" $K/reductions.cu tests/gpu/test_gpu.c \
"FAIL layernorm_backward dw|out-of-bounds" \
'    if (M) CUDA_BY_GRAD(be, column_sums, out, partials, P, M, ld);' \
'    if (M) column_sums<float>(out, partials, P, M, ld);'
unset TEST_GPU_ONLY
plant "flash forward: a K/V stage refilled before every warp read it (barrier removed)" kernels/cuda/flash_sm80.cu \
tests/test_flash_emu.cc "shared-memory race" \
'        __syncthreads();   // every warp is done with this stage before iteration j + 1 refills it' ''
# The GPU index taken from the launcher's variables alone (the old train/common.c): with none set, as under MPICH,
# both ranks drive GPU 0, which NCCL refuses.
if command -v mpirun >/dev/null 2>&1 && ldd build/emu/gptrain 2>/dev/null | grep -q libmpi; then
    export OMPI_MCA_btl_vader_single_copy_mechanism=none
    plant "the overlapped all-reduce not ordered after the backward that wrote its bucket (gptrain, 2 ranks)" \
    dist/nccl.c train/main.c "stream race" \
'    CUDA_OK(cudaStreamWaitEvent(stream, bucket_ready[b], 0));' '' \
'mpirun --allow-run-as-root --oversubscribe -np 2 -x GPTRAIN_EMU_DEVICES=2 "$BIN" train --data "$T/data" --preset micro --seq-len 32 --steps 2 --batch 2 --eval-steps 1 --device cuda --out "$T/ov"'
    plant "every rank on GPU 0 when the launcher names no local rank (gptrain, 2 ranks)" train/common.c train/main.c \
    "Duplicate GPU detected" \
'        const int device = gpu, count = backend_cuda_device_count();' \
'        const int device = 0, count = backend_cuda_device_count();' \
'mpirun --allow-run-as-root --oversubscribe -np 2 -x GPTRAIN_EMU_DEVICES=2 sh -c "unset OMPI_COMM_WORLD_LOCAL_RANK OMPI_COMM_WORLD_NODE_RANK; exec \"\$@\"" sh "$BIN" train --data "$T/data" --preset micro --seq-len 32 --steps 2 --batch 2 --eval-steps 1 --device cuda --out "$T/o"'
    # ZeRO-1 (--zero 1, 2 ranks): the weights' all-gather not ordered after the AdamW step that wrote them (the
    # reduce-scatter's own wait is backed by the host's wait for the backward's end mark); the AdamW step indexing the
    # moments' shard as if it were the whole buffer; a shard's bf16 copy rounded by its index in the shard instead of
    # in the whole buffer (the straight plain run, made by the unchanged build, is what it must equal).
    Z='mpirun --allow-run-as-root --oversubscribe -np 2 -x GPTRAIN_EMU_DEVICES=2'
    ZA="--data $T/data --preset micro --seq-len 32 --steps 2 --batch 2 --eval-steps 1 --device cuda --zero 1"
    plant "ZeRO-1: the weights' all-gather not ordered after the AdamW step (gptrain, 2 ranks)" dist/nccl.c \
    train/main.c "stream race" \
'    CUDA_OK(cudaStreamWaitEvent(stream, grads_ready, 0));
    NCCL_CHECK(ncclAllGather(' '    NCCL_CHECK(ncclAllGather(' \
"$Z \"\$BIN\" train $ZA --out \"\$T/zr\""
    plant "ZeRO-1: AdamW indexes the moments' shard as the whole buffer (gptrain, 2 ranks)" $K/adamw.cu train/main.c \
    "out-of-bounds" \
'        const size_t ip = i - tens.master_base, im = i - tens.moment_base;' \
'        const size_t ip = i - tens.master_base, im = i;' \
"$Z \"\$BIN\" train $ZA --out \"\$T/zm\""
    $Z build/emu/gptrain train $ZA --precision bf16 --zero 0 --out "$T/zplain" >"$T/zplain.out" 2>&1 \
        || bad "ZeRO-1 plants: the plain 2-rank bf16 run" "$(tail -2 "$T/zplain.out")"
    plant "ZeRO-1: a shard's bf16 copy rounded by its index in the shard (gptrain, 2 ranks vs plain)" $K/adamw.cu \
    train/main.c "FAIL ZeRO-1 differs from plain" \
'    if (i < n) store_copy(dst - first, first + i, src[i], seed);' '    if (i < n) store_copy(dst, i, src[i], seed);' \
"$Z \"\$BIN\" train $ZA --precision bf16 --out \"\$T/zs\" && cmp -s \"\$T/zs/model.bin\" \"\$T/zplain/model.bin\" || { echo 'FAIL ZeRO-1 differs from plain'; false; }"
else
    echo "skip every rank on GPU 0 when the launcher names no local rank: no MPI"
fi
finish
