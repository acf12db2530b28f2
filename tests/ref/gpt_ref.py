#!/usr/bin/python3
"""gpt_ref.py: the PyTorch oracle for gptrain (a test and benchmark tool only; training never needs Python).

The same GPT-2 as model/gpt.h, written independently in PyTorch: token + position embeddings; pre-LayerNorm blocks
(LN, fused QKV projection, causal softmax attention with scale 1/sqrt(HS), output projection, residual; LN, MLP with
tanh-GELU, residual); final LN; LM head tied to the (Vp, C) token embedding whose rows V..Vp-1 are zero; cross-entropy
over the first V logits. Parameters are kept under gptrain's names (GPT_PARAMS), stacked over layers.
The optimizer is torch.optim.AdamW with weight decay only on wte, wpe, qkvw, attprojw, fcw, fcprojw; gradients are
clipped to a global norm `clip` by multiplying them with clip/norm when norm > clip (gptrain's rule, not
clip_grad_norm_'s clip/(norm+1e-6)); the learning rate follows train/schedule.h's formula, implemented below.

  --fixture OUT   write the model-test fixture, computed in float64 (see FIXTURE FORMAT)
  --dropout-ref IN OUT   the loss and gradients with gptrain's dropout masks (test_dropout_ref; see dropout_ref)
  --bench ...     train in float32 on gptrain shards and print one JSON line with tokens/s (bench/vs_pytorch.sh)

FIXTURE FORMAT (little-endian): the 8 bytes b"GPTFIX01", a uint32 record count, then per record: uint32 name length,
the name (ASCII), uint32 dtype (0 float32, 1 float64, 2 int32), uint32 ndim, ndim int64 dims, the raw data (C order).
Records: config (int32: L, NH, C, F, V, Vp, maxT, B, T, steps), hyper (float64: lr, min_lr, warmup, beta1, beta2,
eps, weight_decay, clip), inputs, targets (int32, B*T), param.<name> (float32, the initial weights), logits (float64,
(B, T, V)), loss (float64), grad.<name> (float64), step_loss, step_lr, step_grad_norm (float64, one per AdamW step,
the loss and norm before that step's update), final.<name> (float64, the weights after the last step).
"""
import argparse
import json
import math
import struct
import sys
import time

import numpy as np
import torch

PARAM_NAMES = ["wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w", "ln2b", "fcw", "fcb",
               "fcprojw", "fcprojb", "lnfw", "lnfb"]
DECAY = {"wte", "wpe", "qkvw", "attprojw", "fcw", "fcprojw"}


def param_shapes(L, C, F, Vp, maxT):
    return {"wte": (Vp, C), "wpe": (maxT, C), "ln1w": (L, C), "ln1b": (L, C), "qkvw": (L, 3 * C, C),
            "qkvb": (L, 3 * C), "attprojw": (L, C, C), "attprojb": (L, C), "ln2w": (L, C), "ln2b": (L, C),
            "fcw": (L, F, C), "fcb": (L, F), "fcprojw": (L, C, F), "fcprojb": (L, C), "lnfw": (C,), "lnfb": (C,)}


EXACT_GELU = False  # --gelu exact (bench only): nanoGPT's nn.GELU() instead of GPT-2's tanh approximation


def gelu_tanh(x):
    if EXACT_GELU:
        return torch.nn.functional.gelu(x)
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def layernorm(x, w, b):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * w + b


def forward(p, idx, L, NH, V, drop=None):
    """idx (B,T) int64 -> logits (B,T,V) over the real vocabulary. drop: dropout's scaled masks (0 or 1/(1-p)) at
    nanoGPT's sites, {"embed": (B,T,C), "attn": (L,B,NH,T,T), "attproj": (L,B,T,C), "mlp": (L,B,T,C)}, or None."""
    B, T = idx.shape
    C = p["wte"].shape[1]
    HS = C // NH
    x = p["wte"][idx] + p["wpe"][:T]
    if drop is not None:
        x = x * drop["embed"]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(L):
        h = layernorm(x, p["ln1w"][l], p["ln1b"][l])
        qkv = h @ p["qkvw"][l].T + p["qkvb"][l]
        q, k, v = qkv.split(C, dim=-1)
        q = q.view(B, T, NH, HS).transpose(1, 2)
        k = k.view(B, T, NH, HS).transpose(1, 2)
        v = v.view(B, T, NH, HS).transpose(1, 2)
        s = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
        s = s.masked_fill(~mask, float("-inf"))
        att = torch.softmax(s, dim=-1)
        if drop is not None:
            att = att * drop["attn"][l]
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        if drop is None:
            x = x + y @ p["attprojw"][l].T + p["attprojb"][l]
        else:
            x = x + (y @ p["attprojw"][l].T + p["attprojb"][l]) * drop["attproj"][l]
        h = layernorm(x, p["ln2w"][l], p["ln2b"][l])
        if drop is None:
            x = x + gelu_tanh(h @ p["fcw"][l].T + p["fcb"][l]) @ p["fcprojw"][l].T + p["fcprojb"][l]
        else:
            x = x + (gelu_tanh(h @ p["fcw"][l].T + p["fcb"][l]) @ p["fcprojw"][l].T + p["fcprojb"][l]) * drop["mlp"][l]
    x = layernorm(x, p["lnfw"], p["lnfb"])
    return (x @ p["wte"].T)[:, :, :V]


def lr_at(step, lr, min_lr, warmup, total, kind="cosine"):
    """train/schedule.h, written again: linear warmup, then cosine/linear decay to min_lr at the last step."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if kind == "constant":
        return lr
    span = total - warmup - 1
    prog = min(1.0, (step - warmup) / span) if span > 0 else 1.0
    if kind == "linear":
        return min_lr + (lr - min_lr) * (1.0 - prog)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * prog))


def init_params(gen, L, C, F, V, Vp, maxT, dtype, perturb_ln):
    """GPT-2 init: normal(0, 0.02), residual projections 0.02/sqrt(2L), LN weight 1, biases 0; padded rows zero.
    With perturb_ln, LayerNorm weights and all biases get small random values so their gradients are exercised."""
    shapes = param_shapes(L, C, F, Vp, maxT)
    p = {}
    for name in PARAM_NAMES:
        shape = shapes[name]
        if name in ("attprojw", "fcprojw"):
            t = torch.randn(shape, generator=gen) * (0.02 / math.sqrt(2 * L))
        elif name in DECAY:
            t = torch.randn(shape, generator=gen) * 0.02
        elif name.startswith("ln") and name.endswith("w"):
            t = torch.ones(shape) + (0.1 * torch.randn(shape, generator=gen) if perturb_ln else 0)
        else:
            t = 0.02 * torch.randn(shape, generator=gen) if perturb_ln else torch.zeros(shape)
        if name == "wte":
            t[V:] = 0
        p[name] = t.to(dtype)
    return p


def make_optimizer(p, lr, beta1, beta2, eps, wd):
    decay = [p[n] for n in PARAM_NAMES if n in DECAY]
    no_decay = [p[n] for n in PARAM_NAMES if n not in DECAY and p[n].requires_grad]
    return torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(beta1, beta2), eps=eps)


def clip_(p, clip):
    names = [n for n in PARAM_NAMES if p[n].grad is not None]
    norm = math.sqrt(sum(float((p[n].grad.double() ** 2).sum()) for n in names))
    if clip > 0 and norm > clip:
        for n in names:
            p[n].grad.mul_(clip / norm)
    return norm


class FixtureWriter:
    DTYPES = {np.float32: 0, np.float64: 1, np.int32: 2}

    def __init__(self):
        self.records = []

    def add(self, name, array, dtype):
        self.records.append((name, np.ascontiguousarray(np.asarray(array, dtype=dtype))))

    def write(self, path):
        with open(path, "wb") as f:
            f.write(b"GPTFIX01")
            f.write(struct.pack("<I", len(self.records)))
            for name, a in self.records:
                nb = name.encode("ascii")
                f.write(struct.pack("<I", len(nb)) + nb)
                f.write(struct.pack("<II", self.DTYPES[a.dtype.type], a.ndim))
                f.write(struct.pack("<%dq" % a.ndim, *a.shape))
                f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())


def write_fixture(path):
    L, NH, C, F, V, maxT, B, T, steps = 2, 4, 32, 128, 65, 16, 3, 13, 10
    Vp = (V + 127) // 128 * 128
    hp = dict(lr=1e-2, min_lr=1e-3, warmup=2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, clip=1.5)
    gen = torch.Generator().manual_seed(20241122)
    p32 = init_params(gen, L, C, F, V, Vp, maxT, torch.float32, perturb_ln=True)
    idx = torch.randint(0, V, (B, T), generator=gen)
    tgt = torch.randint(0, V, (B, T), generator=gen)

    w = FixtureWriter()
    w.add("config", [L, NH, C, F, V, Vp, maxT, B, T, steps], np.int32)
    w.add("hyper", [hp["lr"], hp["min_lr"], hp["warmup"], hp["beta1"], hp["beta2"], hp["eps"], hp["weight_decay"],
                    hp["clip"]], np.float64)
    w.add("inputs", idx.numpy().reshape(-1), np.int32)
    w.add("targets", tgt.numpy().reshape(-1), np.int32)
    for n in PARAM_NAMES:
        w.add("param." + n, p32[n].numpy(), np.float32)

    # float64 from the exact float32 weights: the oracle's own rounding is far below the tolerances checked.
    p = {n: p32[n].double().clone().requires_grad_(True) for n in PARAM_NAMES}
    logits = forward(p, idx, L, NH, V)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1))
    loss.backward()
    w.add("logits", logits.detach().numpy(), np.float64)
    w.add("loss", [loss.item()], np.float64)
    for n in PARAM_NAMES:
        w.add("grad." + n, p[n].grad.numpy(), np.float64)

    p = {n: p32[n].double().clone().requires_grad_(True) for n in PARAM_NAMES}
    opt = make_optimizer(p, hp["lr"], hp["beta1"], hp["beta2"], hp["eps"], hp["weight_decay"])
    losses, lrs, norms = [], [], []
    for step in range(steps):
        opt.zero_grad(set_to_none=False)
        loss = torch.nn.functional.cross_entropy(forward(p, idx, L, NH, V).reshape(-1, V), tgt.reshape(-1))
        loss.backward()
        norms.append(clip_(p, hp["clip"]))
        lr = lr_at(step, hp["lr"], hp["min_lr"], hp["warmup"], steps)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        losses.append(loss.item())
        lrs.append(lr)
    w.add("step_loss", losses, np.float64)
    w.add("step_lr", lrs, np.float64)
    w.add("step_grad_norm", norms, np.float64)
    for n in PARAM_NAMES:
        w.add("final." + n, p[n].detach().numpy(), np.float64)
    w.write(path)
    clipped = sum(1 for x in norms if x > hp["clip"])
    print("fixture: %s: L=%d NH=%d C=%d F=%d V=%d B=%d T=%d; loss %.6f; %d steps, clipping on %d of them" %
          (path, L, NH, C, F, V, B, T, losses[0], steps, clipped))


def read_fixture(path):
    """A fixture file (the format above) -> {name: numpy array}."""
    names = {0: "<f4", 1: "<f8", 2: "<i4"}
    out = {}
    with open(path, "rb") as f:
        if f.read(8) != b"GPTFIX01":
            sys.exit("%s: not a GPTFIX01 fixture" % path)
        (count,) = struct.unpack("<I", f.read(4))
        for _ in range(count):
            (n,) = struct.unpack("<I", f.read(4))
            name = f.read(n).decode("ascii")
            dtype, ndim = struct.unpack("<II", f.read(8))
            dims = struct.unpack("<%dq" % ndim, f.read(8 * ndim))
            count_el = int(np.prod(dims)) if ndim else 1
            dt = np.dtype(names[dtype])
            out[name] = np.frombuffer(f.read(count_el * dt.itemsize), dtype=dt).reshape(dims)
    return out


def dropout_ref(src, dst):
    """--dropout-ref IN OUT: IN (written by tests/test_dropout_ref.c) holds config (int32: L, NH, C, F, V, Vp, maxT,
    B, T), dropout (float64: p), inputs, targets, param.<name> (float32, flat) and the masks gptrain drew, as 0/1 int32:
    mask.embed (B,T,C), mask.attn (L,B,NH,T,T), mask.attproj and mask.mlp (L,B,T,C). OUT gets, in float64 from
    the same fp32 weights, the loss (mean cross-entropy) with those masks applied at nanoGPT's sites and grad.<name>."""
    fx = read_fixture(src)
    L, NH, C, F, V, Vp, maxT, B, T = (int(x) for x in fx["config"])
    scale = 1.0 / (1.0 - float(fx["dropout"][0]))
    drop = {k: torch.from_numpy(fx["mask." + k].astype(np.float64) * scale) for k in ("embed", "attn", "attproj",
                                                                                      "mlp")}
    shapes = param_shapes(L, C, F, Vp, maxT)
    p = {n: torch.from_numpy(fx["param." + n].astype(np.float64).reshape(shapes[n])).requires_grad_(True)
         for n in PARAM_NAMES}
    idx = torch.from_numpy(fx["inputs"].astype(np.int64).reshape(B, T))
    tgt = torch.from_numpy(fx["targets"].astype(np.int64).reshape(B, T))
    loss = torch.nn.functional.cross_entropy(forward(p, idx, L, NH, V, drop).reshape(-1, V), tgt.reshape(-1))
    loss.backward()
    w = FixtureWriter()
    w.add("loss", [loss.item()], np.float64)
    for n in PARAM_NAMES:
        w.add("grad." + n, p[n].grad.numpy(), np.float64)
    w.write(dst)


def read_shard(path):
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(1024), dtype="<i4")
        if header[0] != 20240520 or header[1] != 1:
            sys.exit("%s: not an llm.c token shard" % path)
        tokens = np.frombuffer(f.read(), dtype="<u2")
    if len(tokens) != header[2]:
        sys.exit("%s: truncated" % path)
    return tokens.astype(np.int64)


def bench(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    tokens = torch.from_numpy(read_shard(a.data + "/train_000000.bin"))
    V = int(open(a.data + "/tokenizer.txt").read().split("vocab_size")[1].split()[0])
    Vp = (V + 127) // 128 * 128
    F = 4 * a.d_model
    gen = torch.Generator().manual_seed(a.seed)
    p = init_params(gen, a.n_layer, a.d_model, F, V, Vp, a.seq_len, torch.float32, perturb_ln=False)
    # --no-bias: nanoGPT's bias=False variant: every bias (linear and LayerNorm) stays zero and is not trained.
    p = {n: t.requires_grad_(not (a.no_bias and n.endswith("b"))) for n, t in p.items()}
    opt = make_optimizer(p, a.lr, a.beta1, a.beta2, a.eps, a.weight_decay)
    B, T = a.batch, a.seq_len
    times = []
    for step in range(a.steps):
        t0 = time.perf_counter()
        ix = torch.randint(0, len(tokens) - T - 1, (B,), generator=gen)
        x = torch.stack([tokens[i:i + T] for i in ix])
        y = torch.stack([tokens[i + 1:i + T + 1] for i in ix])
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(forward(p, x, a.n_layer, a.n_head, V).reshape(-1, V), y.reshape(-1))
        loss.backward()
        clip_(p, a.grad_clip)
        lr = lr_at(step, a.lr, a.min_lr, a.warmup_steps, a.steps)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        times.append(time.perf_counter() - t0)
    steady = sorted(times[10:] if len(times) > 10 else times)
    median = steady[len(steady) // 2]
    result = {"tokens_per_s": B * T / median, "step_ms": median * 1e3, "final_loss": loss.item(),
              "threads": torch.get_num_threads(), "torch": torch.__version__}
    if a.eval:
        # gptrain's evaluation: the whole val split in consecutive (B, T+1) windows (llm.c order), mean of batch means.
        val = torch.from_numpy(read_shard(a.data + "/val_000000.bin"))
        nb = (len(val) - 1) // (B * T)
        with torch.no_grad():
            tot = 0.0
            for k in range(nb):
                w = val[k * B * T: k * B * T + B * T + 1]
                x, y = w[:-1].view(B, T), w[1:].view(B, T)
                tot += torch.nn.functional.cross_entropy(forward(p, x, a.n_layer, a.n_head, V).reshape(-1, V),
                                                         y.reshape(-1)).item()
        result["val_loss"] = tot / nb
    print(json.dumps(result))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fixture", metavar="OUT")
    ap.add_argument("--dropout-ref", nargs=2, metavar=("IN", "OUT"))
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--data")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup-steps", type=int, default=100)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.99)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--eval", action="store_true", help="bench: report the val loss over the whole val split")
    ap.add_argument("--no-bias", action="store_true", help="bench: nanoGPT's bias=False variant")
    ap.add_argument("--gelu", choices=["tanh", "exact"], default="tanh", help="bench: GELU flavour")
    a = ap.parse_args()
    global EXACT_GELU
    EXACT_GELU = a.gelu == "exact"
    if a.fixture:
        write_fixture(a.fixture)
    elif a.dropout_ref:
        dropout_ref(*a.dropout_ref)
    elif a.bench:
        if not a.data:
            ap.error("--bench needs --data DIR (shards from gptrain prepare)")
        bench(a)
    else:
        ap.error("give --fixture OUT, --dropout-ref IN OUT or --bench")


if __name__ == "__main__":
    main()
