#!/usr/bin/python3
"""attention_torch.py: the PyTorch peer of bench/attention.cu, run by bench/attention.sh (a benchmark tool; training
never needs Python).

torch.nn.functional.scaled_dot_product_attention in bf16 on CUDA, pinned to one backend at a time with
torch.nn.attention.sdpa_kernel: SDPBackend.FLASH_ATTENTION (row "sdpa-flash") and SDPBackend.CUDNN_ATTENTION
("sdpa-cudnn"). The grid, FLOP formula and columns are bench/attention.cu's:
  causal and non-causal x d in {64, 128} x T in {512 .. 16384}, B*T = 16384 tokens, H*d = 2048 (H = 32 at d = 64,
  16 at d = 128); forward FLOPs 4 B H T^2 d (half when causal), backward 2.5 x forward; 3 warm-up calls, then the
  median of 10, each call bracketed by its own pair of CUDA events.
Forward: one sdpa call with autograd recording (as in training). Backward: torch.autograd.grad of the output with a
fixed dO, retain_graph=True, so every timed call is one backward of the same graph (no accumulation into .grad).
q, k, v and dO are N(0, 1) in bf16, layout (B, H, T, d). Outputs are checked finite after the first call
("FAIL: non-finite output", exit 1 otherwise).
mem_MiB: torch.cuda.max_memory_allocated over the case (inputs, outputs, logsumexp, gradients, the backends'
workspaces taken from PyTorch's allocator) minus what was allocated before it; like bench/attention.cu's count it
leaves out the CUDA context and library handles.
Second section: B = 1, H = 16, d = 128, causal, T = 1024 .. 32768: one checked forward + backward per backend, the
peak memory or "OOM".
A backend this torch lacks, or one that refuses a shape, prints "unavailable: <reason>" on its row; no row is dropped.
Without a CUDA GPU it prints "bench/attention_torch: skipped: no CUDA GPU" and exits 0.

  attention_torch.py [--quick | --tiny] [--csv FILE]     --quick: T in {1024, 4096} only; --tiny: a small check
"""
import argparse
import sys
import warnings

TOKENS = 16384   # B*T of every grid row
WIDTH = 2048     # H*d of every grid row
WARMUP = 3
ITERS = 10
GRID_T = [512, 1024, 2048, 4096, 8192, 16384]
QUICK_T = [1024, 4096]
MEMORY_T = [1024, 2048, 4096, 8192, 16384, 32768]
CSV_HEADER = "section,impl,causal,d,T,B,H,fwd_ms,fwd_tflops,bwd_ms,bwd_tflops,mem_mib,status"


class Unavailable(Exception):
    """The backend cannot run this case (missing from this torch, or it refused the shape)."""


class NonFinite(Exception):
    """An output held a NaN or an infinity."""


def one_line(text, limit=240):
    """A reason fit for one table cell and one CSV field: one line, no commas, bounded length."""
    s = " ".join(str(text).split()).replace(",", ";")
    return s if len(s) <= limit else s[: limit - 3] + "..."


def fwd_flops(B, H, T, d, causal):
    f = 4.0 * B * H * T * T * d
    return 0.5 * f if causal else f


class Row:
    def __init__(self, section, impl, causal, d, T, B, H):
        self.section, self.impl, self.causal, self.d, self.T, self.B, self.H = section, impl, causal, d, T, B, H
        self.fwd_ms = self.fwd_tflops = self.bwd_ms = self.bwd_tflops = self.mem_mib = None
        self.status = "ok"


def header():
    print("%-11s %6s %4s %6s %4s %4s %9s %10s %9s %10s %9s  %s" % (
        "impl", "causal", "d", "T", "B", "H", "fwd_ms", "fwd_TFLOPS", "bwd_ms", "bwd_TFLOPS", "mem_MiB", "status"))


def emit(row, csv):
    def cell(v, fmt):
        return "-" if v is None else fmt % v
    print("%-11s %6d %4d %6d %4d %4d %9s %10s %9s %10s %9s  %s" % (
        row.impl, row.causal, row.d, row.T, row.B, row.H, cell(row.fwd_ms, "%.3f"), cell(row.fwd_tflops, "%.1f"),
        cell(row.bwd_ms, "%.3f"), cell(row.bwd_tflops, "%.1f"), cell(row.mem_mib, "%.1f"), row.status), flush=True)
    if csv:
        def field(v, fmt):
            return "" if v is None else fmt % v
        csv.write("%s,%s,%d,%d,%d,%d,%d,%s,%s,%s,%s,%s,%s\n" % (
            row.section, row.impl, row.causal, row.d, row.T, row.B, row.H, field(row.fwd_ms, "%.4f"),
            field(row.fwd_tflops, "%.4f"), field(row.bwd_ms, "%.4f"), field(row.bwd_tflops, "%.4f"),
            field(row.mem_mib, "%.1f"), one_line(row.status)))
        csv.flush()


def backends(torch):
    """[(impl, context factory or None, reason when None)] for the two SDPA backends this torch may have."""
    F = torch.nn.functional
    if not hasattr(F, "scaled_dot_product_attention"):
        why = "torch %s has no scaled_dot_product_attention" % torch.__version__
        return [("sdpa-flash", None, why), ("sdpa-cudnn", None, why)]
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        why = "torch %s has no torch.nn.attention.sdpa_kernel" % torch.__version__
        return [("sdpa-flash", None, why), ("sdpa-cudnn", None, why)]
    out = []
    for impl, name in (("sdpa-flash", "FLASH_ATTENTION"), ("sdpa-cudnn", "CUDNN_ATTENTION")):
        b = getattr(SDPBackend, name, None)
        if b is None:
            out.append((impl, None, "torch %s has no SDPBackend.%s" % (torch.__version__, name)))
        else:
            out.append((impl, (lambda b=b: sdpa_kernel(b)), None))
    return out


def require_finite(torch, what, *tensors):
    for t in tensors:
        if not bool(torch.isfinite(t).all()):
            raise NonFinite(what)


def call(fn, what):
    """Run fn, turning a refusal by the pinned backend (RuntimeError, with the warnings that say why) into
    Unavailable; an out-of-memory error passes through."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return fn()
        except RuntimeError as e:
            if "out of memory" in str(e).lower():
                raise
            reasons = [str(w.message) for w in caught]
            raise Unavailable(one_line("%s: %s%s" % (what, str(e).splitlines()[0] if str(e) else type(e).__name__,
                                                     (" (" + " ".join(reasons) + ")") if reasons else "")))


def median_ms(torch, fn):
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(ITERS)]
    for a, b in ev:
        a.record()
        fn()
        b.record()
    torch.cuda.synchronize()
    ms = sorted(a.elapsed_time(b) for a, b in ev)
    return 0.5 * (ms[ITERS // 2 - 1] + ms[ITERS // 2])


def run_case(torch, row, ctx, timed):
    """Fill row for one (backend, causal, d, T): timed forward and backward (timed=True) or one checked forward +
    backward (the memory section), and the peak memory."""
    F = torch.nn.functional
    B, H, T, d, causal = row.B, row.H, row.T, row.d, bool(row.causal)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    state = {}
    try:
        g = torch.Generator(device="cuda")
        g.manual_seed(1234)
        shape = (B, H, T, d)
        q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
                   for _ in range(3))
        dout = torch.randn(shape, device="cuda", dtype=torch.bfloat16, generator=g)
        with ctx():
            def forward():
                state["out"] = None   # free the previous graph first: one output alive at a time
                state["out"] = F.scaled_dot_product_attention(q, k, v, is_causal=causal)

            def backward():
                state["grads"] = None
                state["grads"] = torch.autograd.grad(state["out"], (q, k, v), dout, retain_graph=True)

            call(forward, "forward")
            torch.cuda.synchronize()
            require_finite(torch, "out", state["out"])
            if timed:
                for _ in range(WARMUP - 1):
                    forward()
                row.fwd_ms = median_ms(torch, forward)
                row.fwd_tflops = fwd_flops(B, H, T, d, causal) / (row.fwd_ms * 1e-3) / 1e12
            try:
                call(backward, "backward")
            except Unavailable as e:
                row.status = "backward unavailable: %s" % e
            else:
                torch.cuda.synchronize()
                require_finite(torch, "dq dk dv", *state["grads"])
                if timed:
                    for _ in range(WARMUP - 1):
                        backward()
                    row.bwd_ms = median_ms(torch, backward)
                    row.bwd_tflops = 2.5 * fwd_flops(B, H, T, d, causal) / (row.bwd_ms * 1e-3) / 1e12
        torch.cuda.synchronize()
        row.mem_mib = (torch.cuda.max_memory_allocated() - base) / 1048576.0
    except RuntimeError as e:   # torch.cuda.OutOfMemoryError is one (torch >= 1.13); anything else is a bug here
        if "out of memory" not in str(e).lower():
            raise
        row.fwd_ms = row.fwd_tflops = row.bwd_ms = row.bwd_tflops = row.mem_mib = None
        row.status = "OOM"
    except Unavailable as e:
        row.status = "unavailable: %s" % e
    finally:
        state.clear()
        q = k = v = dout = None
        torch.cuda.empty_cache()


def bench(torch, impl, factory, why, row, csv, timed):
    if factory is None:
        row.status = "unavailable: %s" % why
    else:
        try:
            run_case(torch, row, factory, timed)
        except NonFinite as e:
            print("FAIL: non-finite output: %s causal=%d d=%d T=%d: %s" % (impl, row.causal, row.d, row.T, e),
                  flush=True)
            sys.exit(1)
    emit(row, csv)


def main():
    ap = argparse.ArgumentParser(description="PyTorch SDPA (flash, cuDNN) peer of bench/attention.cu")
    ap.add_argument("--quick", action="store_true", help="the grid at T = 1024 and 4096 only")
    ap.add_argument("--tiny", action="store_true", help="a check of the program: T = 64, B*T = H*d = 128")
    ap.add_argument("--csv", metavar="FILE", help="also write every row to FILE as CSV")
    args = ap.parse_args()
    global TOKENS, WIDTH, MEMORY_T
    grid_t = QUICK_T if args.quick else GRID_T
    if args.tiny:
        TOKENS, WIDTH, grid_t, MEMORY_T = 128, 128, (64,), (64, 128)
    try:
        import torch
    except ImportError as e:
        print("bench/attention_torch: skipped: torch is not importable (%s)" % e)
        return 0
    if not torch.cuda.is_available():
        print("bench/attention_torch: skipped: no CUDA GPU")
        return 0
    csv = None
    if args.csv:
        try:
            csv = open(args.csv, "w")
        except OSError as e:
            print("bench/attention_torch: --csv %s: cannot open for writing (%s)" % (args.csv, e.strerror),
                  file=sys.stderr)
            return 2
        csv.write(CSV_HEADER + "\n")

    cc = torch.cuda.get_device_capability()
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    print("bench/attention_torch: scaled_dot_product_attention forward and backward, bf16 N(0,1), layout (B,H,T,d)")
    print("device: %s, compute capability %d.%d; torch %s, CUDA %s, cuDNN %s" % (
        torch.cuda.get_device_name(), cc[0], cc[1], torch.__version__, torch.version.cuda, cudnn))
    print("grid: B*T = %d tokens, H*d = %d (H = %d at d = 64, %d at d = 128); warm-up %d, median of %d (CUDA events)"
          % (TOKENS, WIDTH, WIDTH // 64, WIDTH // 128, WARMUP, ITERS))
    print("FLOPs: fwd 4*B*H*T^2*d (x0.5 causal), bwd 2.5 x fwd; mem_MiB: torch.cuda.max_memory_allocated over the case")
    print()
    impls = backends(torch)
    header()
    for causal in (1, 0):
        for d in (64, 128):
            for T in grid_t:
                for impl, factory, why in impls:
                    bench(torch, impl, factory, why, Row("grid", impl, causal, d, T, TOKENS // T, WIDTH // d), csv,
                          True)
    print()
    print("memory: B = 1, H = 16, d = 128, causal; one checked forward + backward per T")
    header()
    for T in MEMORY_T:
        for impl, factory, why in impls:
            bench(torch, impl, factory, why, Row("memory", impl, 1, 128, T, 1, 16), csv, False)
    if csv:
        csv.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
