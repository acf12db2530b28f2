/*
 * info.c: `gptrain info`, the model's size, FLOPs and memory anatomy from the planner, before anything runs.
 * These are the numbers the trainer allocates (gpt_create uses the same plan). With --gpus N it adds data parallelism
 * on paper: memory per rank with and without ZeRO-1, and the ring all-reduce's cost per step,
 *   t = 2 (N - 1) / N * gradient bytes / link bandwidth
 * (each rank sends and receives that much; ZeRO-1's reduce-scatter + all-gather move the same volume), against the
 * backward time it can hide behind, giving the scaling efficiency with and without overlap. The overlapped figure
 * follows the trainer's buckets (--bucket-mb): the backward's time split over the LM head and the layers by their
 * FLOPs, each bucket sent when its last layer is done and the link free, the embeddings' bucket (wte, wpe, lnf) only
 * once the backward ends, so at least its transfer is always exposed.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gptrain.h"
#include "ops.h"

static void mib_line(const char *what, size_t bytes, size_t params) {
    printf("  %-34s %12.2f MiB  %6.2f bytes/param\n", what, bytes / 1048576.0, (double)bytes / (double)params);
}

// Per-rank all-reduce bandwidth (bytes/s, one direction) of each --link, the figure a ring all-reduce runs at.
typedef struct Link { const char *name, *what; double bytes_per_s; } Link;
static const Link LINKS[] = {
    {"nvlink", "NVLink 4 (H100 SXM: 900 GB/s bidirectional per GPU)", 450e9},
    {"ib", "InfiniBand NDR (400 Gb/s per GPU, one NIC per GPU)", 50e9},
    {"pcie", "PCIe Gen5 x16 (64 GB/s per direction)", 64e9},
    {"eth", "Ethernet 100 GbE per node", 12.5e9},
};

// The forward FLOPs of one layer and of the LM head, from the planner's walk.
typedef struct LayerFlops { double layer0, head; } LayerFlops;
static void layer_flops_visit(const GPTOp *op, void *ctx) {
    LayerFlops *f = ctx;
    if (op->layer == 0) f->layer0 += op->flops;
    else if (op->layer < 0) f->head += op->flops;
}

// The exposed all-reduce time of the bucketed overlap: returns it, and the number of buckets and the last one's
// transfer time in *nb and *last_s.
static double bucket_timeline(const GPTConfig *cfg, const GPTMemory *mem, int B, int T, double bucket_bytes,
                              double bwd_s, double per_byte_s, int *nb, double *last_s) {
    ParamInfo pi[NUM_PARAM_TENSORS];
    gpt_plan_params(cfg, pi);
    const double es = (double)dtype_bytes(mem->grad_dtype);
    double layer_bytes = 0, rest_bytes = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        if (pi[i].per_layer) layer_bytes += (double)pi[i].rows * pi[i].cols * es;
        else rest_bytes += (double)pi[i].numel * es;
    }
    LayerFlops lf = {0, 0};
    gpt_forward_ops(cfg, B, T, layer_flops_visit, &lf);
    const int L = cfg->n_layer;
    const double total = lf.head + L * lf.layer0;
    const double t_head = total > 0 ? bwd_s * lf.head / total : 0, t_layer = total > 0 ? bwd_s * lf.layer0 / total : 0;
    double t = t_head, link_free = 0, open = 0;   // the backward's clock, the link's, the open bucket's bytes
    int n = 0;
    for (int l = L - 1; l >= 0; l--) {
        t += t_layer;
        open += layer_bytes;
        if (open >= bucket_bytes) {
            link_free = fmax(link_free, t) + open * per_byte_s;
            open = 0;
            n++;
        }
    }
    open += rest_bytes;   // with layer -1, once the encoder's backward is done: the end of the backward
    *last_s = open * per_byte_s;
    link_free = fmax(link_free, bwd_s) + *last_s;
    *nb = n + 1;
    return link_free - bwd_s;
}

static void data_parallel_on_paper(const Options *o, const GPTConfig *cfg, int B, int T, const GPTMemory *mem,
                                   const GPTFlops *fl) {
    const int n = o->gpus;
    const Link *link = &LINKS[0];
    for (size_t i = 0; i < sizeof LINKS / sizeof LINKS[0]; i++)
        if (!strcmp(o->link, LINKS[i].name)) link = &LINKS[i];
    const double grad_bytes = (double)mem->grad_bytes;
    const double comm_s = n > 1 ? 2.0 * (n - 1) / n * grad_bytes / link->bytes_per_s : 0.0;
    const double peak = o->peak_tflops > 0 ? o->peak_tflops : 989.4;
    // Backward = 2/3 of a step's model FLOPs (twice the forward).
    const double est_bwd_s = (fl->model - fl->forward) / (0.4 * peak * 1e12), est_step_s = fl->model / (0.4 * peak * 1e12);
    const double bwd_s = o->backward_ms > 0 ? o->backward_ms / 1e3 : est_bwd_s;
    const double step_s = o->backward_ms > 0 ? bwd_s * 1.5 : est_step_s;   // forward ~ half the backward
    printf("data parallelism on paper: %d ranks over %s, %.0f GB/s per rank\n", n, link->what,
           link->bytes_per_s / 1e9);
    GPTMemory z = *mem;   // one rank's plan with --zero 1
    gpt_memory_shard(&z, n);
    const double w = (double)(mem->param_bytes + mem->param_copy_bytes), opt = (double)mem->optim_bytes;
    const double zw = (double)(z.param_bytes + z.param_copy_bytes + z.grad_bytes + z.optim_bytes);
    printf("  memory per rank: weights %.2f MiB + gradients %.2f MiB + AdamW %.2f MiB = %.2f MiB; with --zero 1 "
           "%.2f MiB (the moments%s in %d shards)\n", w / 1048576.0, grad_bytes / 1048576.0, opt / 1048576.0,
           (w + grad_bytes + opt) / 1048576.0, zw / 1048576.0, mem->param_copy_bytes ? " and the fp32 master" : "", n);
    printf("  all-reduce of %.2f MiB of %s gradients, ring 2(N-1)/N x bytes / bandwidth: %.3f ms per optimizer step\n",
           grad_bytes / 1048576.0, dtype_name(mem->grad_dtype), comm_s * 1e3);
    printf("  backward %.3f ms, step %.3f ms per rank (%s)\n", bwd_s * 1e3, step_s * 1e3,
           o->backward_ms > 0 ? "--backward-ms as measured; forward taken as half of it"
                              : "estimated: model FLOPs at 40% of the peak");
    int nb = 1;
    double last_s = 0;
    const double per_byte_s = n > 1 ? 2.0 * (n - 1) / n / link->bytes_per_s : 0.0;
    const double exposed = bucket_timeline(cfg, mem, B, T, o->bucket_mb * 1048576.0, bwd_s, per_byte_s, &nb, &last_s);
    printf("  overlapped (--bucket-mb %g: %d bucket%s): %.3f ms exposed past the backward, %.3f ms of it the "
           "embeddings' bucket (sent when the backward ends)\n", o->bucket_mb, nb, nb == 1 ? "" : "s", exposed * 1e3,
           last_s * 1e3);
    printf("  scaling efficiency: %.1f%% with the all-reduce after the backward, %.1f%% overlapped with it\n",
           100 * step_s / (step_s + comm_s), 100 * step_s / (step_s + exposed));
    // ZeRO-1: a reduce-scatter of the gradients and an all-gather of the weights the ops read, each (N-1)/N of its
    // bytes per rank, both after the backward (the trainer does not overlap them).
    const double wbytes = (double)(mem->param_copy_bytes ? mem->param_copy_bytes : mem->param_bytes);
    const double zcomm_s = n > 1 ? (n - 1.0) / n * (grad_bytes + wbytes) / link->bytes_per_s : 0.0;
    printf("  --zero 1: reduce-scatter of the gradients + all-gather of the %s weights after the backward (not "
           "overlapped): %.3f ms per optimizer step, scaling efficiency %.1f%%\n", mem->param_copy_bytes ? "bf16" : "fp32",
           zcomm_s * 1e3, 100 * step_s / (step_s + zcomm_s));
}

// Dimensions that break the alignment matmul tiles and tensor cores like: each costs a partial tile (wasted work) or
// a slower kernel. The vocabulary is always padded (Vp); the others are the user's to choose.
static void shape_warnings(const GPTConfig *c) {
    const int hs = c->d_model / c->n_head;
    if (c->vocab_size % 128)
        printf("alignment: vocabulary V=%d is padded to Vp=%d rows (a multiple of 128) for the LM head's matmuls\n",
               c->vocab_size, c->padded_vocab);
    if (c->d_model % 64)
        printf("warning: alignment: d_model %d is not a multiple of 64: every matmul ends in a partial tile\n",
               c->d_model);
    if (c->d_ff % 64)
        printf("warning: alignment: d_ff %d is not a multiple of 64: the MLP's matmuls end in a partial tile "
               "(bench/shapes.sh shows the cost)\n", c->d_ff);
    if (hs % 8)
        printf("warning: alignment: head size %d (d_model / n_head) is not a multiple of 8: attention's tensor-core "
               "products need 8 (16 for bf16 tiles)\n", hs);
    else if (!FLASH_GPU_HEAD_SIZE_OK(hs))
        printf("warning: alignment: head size %d is not one the GPU flash kernels take (32, 64, 80, 96, 128): "
               "--attention auto uses naive attention on a GPU\n", hs);
}

int cmd_info(Options *o) {
    GPTConfig cfg;
    int T;
    resolve_model(o, &cfg, &T, 50257);
    if (o->batch < 1 && o->batch != CLI_AUTO) die_user("--batch %d: expected at least 1 (or auto)", o->batch);
    const AttentionKind attn = resolve_attention(o, NULL, &cfg);
    RecomputeMode rc;
    gpt_recompute_parse(o->recompute, &rc);
    if (o->batch == CLI_AUTO) resolve_batch_auto(o, NULL, &cfg, T, rc, attn, o->zero == 1 && o->gpus > 1 ? o->gpus : 1);
    const int B = o->batch;
    const DType dt = resolve_dtype(o), gdt = resolve_grad_dtype(o);
    char err[512];
    if (gpt_plan_check(&cfg, B, T, ATTN_NAIVE, dt, err, sizeof err) ||
        gpt_plan_check(&cfg, B, T, ATTN_FLASH, dt, err, sizeof err))
        die_user("%s", err);
    GPTMemory mem, other, whole;
    gpt_memory_plan(&cfg, B, T, attn, dt, gdt, &mem);
    whole = mem;
    if (o->zero != 0 && o->zero != 1) die_user("--zero %d: expected 0 (off) or 1 (sharded optimizer state)", o->zero);
    if (o->gpus < 1) die_user("--gpus %d: expected at least 1", o->gpus);
    if (o->zero) gpt_memory_shard(&mem, o->gpus);   // one rank's plan: what a --zero 1 run of --gpus ranks allocates
    gpt_memory_plan(&cfg, B, T, attn == ATTN_FLASH ? ATTN_NAIVE : ATTN_FLASH, dt, gdt, &other);
    GPTFlops fl;
    gpt_flops(&cfg, B, T, attn, &fl);
    const double L = cfg.n_layer, C = cfg.d_model, N = mem.num_params_real;
    const double wpe = (double)cfg.max_seq_len * cfg.d_model, tokens = (double)B * T;
    printf("model: L=%d NH=%d C=%d F=%d V=%d (Vp=%d) maxT=%d; B=%d T=%d\n", cfg.n_layer, cfg.n_head, cfg.d_model,
           cfg.d_ff, cfg.vocab_size, cfg.padded_vocab, cfg.max_seq_len, B, T);
    printf("parameters: %zu (%zu with the %d padded vocabulary rows); 12*L*C^2 = %.0f\n", mem.num_params_real,
           mem.num_params, cfg.padded_vocab - cfg.vocab_size, 12 * L * C * C);
    shape_warnings(&cfg);
    printf("flops per token: training %.4g (forward %.4g = inference), per step of B*T tokens: %.4g\n",
           fl.model / tokens, fl.forward / tokens, fl.model);
    printf("  rule of thumb 6*N' + 6*L*C*T = %.4g (N' = parameters without wpe; attention causal half)\n",
           6 * (N - wpe) + 6 * L * C * T);
    printf("  hardware flops per step: none %.4g, selective %.4g, full %.4g (HFU counts recomputed work%s)\n",
           fl.hardware[0], fl.hardware[1], fl.hardware[2],
           attn == ATTN_FLASH ? ", incl. flash attention's recompute of QK^T in the backward" : "");
    char per[96] = "per process";
    if (mem.shards > 1)
        snprintf(per, sizeof per, "per rank of %d with --zero 1: optimizer state in shards of %zu", mem.shards,
                 mem.shard);
    if (dt == DTYPE_F32)
        printf("memory (--precision %s: fp32 weights, gradients, AdamW and activations; %s; --attention "
               "%s):\n", o->precision, per, gpt_attention_name(attn));
    else
        printf("memory (--precision %s: fp32 master weights, their %s copy, %s gradients, fp32 AdamW, %s activations; "
               "%s; --attention %s):\n", o->precision, dtype_name(dt), dtype_name(gdt), dtype_name(dt), per,
               gpt_attention_name(attn));
    mib_line(mem.shards > 1 && dt != DTYPE_F32 ? "weights (fp32 master, shard)" : "weights (fp32 master)",
             mem.param_bytes, mem.num_params);
    if (mem.param_copy_bytes) mib_line("weights' bf16 copy (the ops read)", mem.param_copy_bytes, mem.num_params);
    mib_line(gdt == DTYPE_BF16 ? "gradients (bf16)" : "gradients (fp32)", mem.grad_bytes, mem.num_params);
    mib_line(mem.shards > 1 ? "AdamW state (m, v; shard)" : "AdamW state (m, v)", mem.optim_bytes,
             mem.num_params);
    const char *names[3] = {"none", "selective", "full"};
    for (int m = 0; m < 3; m++) {
        char what[64];
        snprintf(what, sizeof what, "activations, --recompute %s", names[m]);
        mib_line(what, mem.act_bytes[m], mem.num_params);
    }
    mib_line("backward scratch (one layer)", mem.grad_act_bytes, mem.num_params);
    for (int m = 0; m < 3; m++) {
        const size_t total = gpt_memory_total(&mem, (RecomputeMode)m);
        char what[64];
        snprintf(what, sizeof what, "total, --recompute %s", names[m]);
        mib_line(what, total, mem.num_params);
    }
    printf("bytes per parameter for weights, gradients and optimizer: %.3g here (--precision %s); fp32 16 (weights "
           "4, gradients 4, AdamW 8), mixed bf16 18 (+ the bf16 copy 2), with bf16 gradients 16\n",
           (double)(mem.param_bytes + mem.param_copy_bytes + mem.grad_bytes + mem.optim_bytes) / mem.num_params,
           o->precision);
    printf("inference KV cache: 2*L*C = %.0f values per token = %.1f KiB (fp32), %.1f KiB (bf16); %.1f MiB (bf16) "
           "for one sequence of T=%d\n", 2.0 * cfg.n_layer * cfg.d_model, 8.0 * cfg.n_layer * cfg.d_model / 1024,
           4.0 * cfg.n_layer * cfg.d_model / 1024, 4.0 * cfg.n_layer * cfg.d_model * T / 1048576, T);
    {
        const double peak = o->peak_tflops > 0 ? o->peak_tflops : 989, bw = o->bandwidth_gbs > 0 ? o->bandwidth_gbs : 3350;
        double tc, tm;
        const double t = gpt_roofline_step_s(&cfg, B, T, dt, peak, bw, &tc, &tm);
        printf("roofline lower bound per micro-step (B=%d, T=%d): %.3f ms at %.4g TFLOPS and %.4g GB/s (%.3f ms in "
               "compute-bound ops, %.3f ms in memory-bound ops); %.0f tokens/s at best\n", B, T, t * 1e3, peak, bw,
               tc * 1e3, tm * 1e3, tokens / t);
    }
    {
        const char *what;
        const double cap = memory_cap_bytes(o, NULL, &what);
        printf("largest micro-batch at T=%d within %.2f GiB (%s):", T, cap / 1073741824.0, what);
        for (int m = 0; m < 3; m++) {
            const int bmax = gpt_max_batch(&cfg, T, (RecomputeMode)m, attn, dt, gdt, cap, 0, 1 << 16, NULL);
            printf(" %s %d%s", names[m], bmax, m < 2 ? "," : "\n");
        }
    }
    printf("  with --attention %s instead: activations none %.2f MiB, selective %.2f MiB, full %.2f MiB; scratch "
           "%.2f MiB\n", gpt_attention_name(attn == ATTN_FLASH ? ATTN_NAIVE : ATTN_FLASH), other.act_bytes[0] / 1048576.0,
           other.act_bytes[1] / 1048576.0, other.act_bytes[2] / 1048576.0, other.grad_act_bytes / 1048576.0);
    if (o->gpus > 1 || cli_given(o, "link")) data_parallel_on_paper(o, &cfg, B, T, &whole, &fl);
    return 0;
}
