#!/usr/bin/python3
"""torch_gpt2_gpu.py: the PyTorch peer for bench/gpu_124m.sh (a benchmark tool; training never needs Python).

The tests/ref model (GPT-2: learned positions, pre-LN blocks, tanh-GELU MLP, tied LM head over a padded vocabulary) as
nn.Modules on the GPU, trained the way a careful PyTorch user would: bf16 autocast, torch.compile,
F.scaled_dot_product_attention (causal), fused AdamW (betas 0.9/0.95, wd 0.1 on matrices and embeddings), clipping
at 1.0, random initialisation (std 0.02, residual projections 0.02/sqrt(2L)), on llm.c-format uint16 shards read in
llm.c's order. Prints one JSON line: tokens/s (median step after warm-up), step ms, and the peak memory.

  --data GLOB --batch B --seq-len T --steps S --warmup W [--no-compile] [--tiny]
"""
import argparse
import glob
import json
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln1 = nn.LayerNorm(C)
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)
        self.ln2 = nn.LayerNorm(C)
        self.fc = nn.Linear(C, 4 * C)
        self.fcproj = nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.NH, C // self.NH).transpose(1, 2) for t in (q, k, v))
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:   # torch < 2.0 (only for --tiny, the dry run on Debian's torch): the same attention, written out
            s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
            y = s.softmax(-1) @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.fcproj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, L=12, NH=12, C=768, V=50257, Vp=50304, maxT=1024):
        super().__init__()
        self.V = V
        self.wte = nn.Embedding(Vp, C)
        self.wpe = nn.Embedding(maxT, C)
        self.blocks = nn.ModuleList(Block(C, NH) for _ in range(L))
        self.lnf = nn.LayerNorm(C)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.blocks:
            x = b(x)
        logits = self.lnf(x) @ self.wte.weight.T
        return F.cross_entropy(logits[..., :self.V].float().reshape(-1, self.V), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--tiny", action="store_true",
                    help="a check of this script (bench/device_check.sh --dry-run): 2 layers of width 64, eager, on "
                         "the CPU when there is no GPU")
    a = ap.parse_args()
    torch.manual_seed(1337)
    toks = np.concatenate([np.fromfile(f, dtype=np.uint16)[512:] for f in sorted(glob.glob(a.data))]).astype(np.int64)
    dev = "cuda" if torch.cuda.is_available() or not a.tiny else "cpu"
    model = (GPT(L=2, NH=2, C=64, maxT=a.seq_len) if a.tiny else GPT()).to(dev)
    if a.tiny:
        a.no_compile = True
    decay = [p for p in model.parameters() if p.dim() == 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, **({"fused": True} if dev == "cuda" else {}))
    step_fn = model if a.no_compile else torch.compile(model)
    B, T = a.batch, a.seq_len
    pos, times = 0, []
    for s in range(a.steps):
        if pos + B * T + 1 > len(toks):
            pos = 0
        chunk = torch.from_numpy(toks[pos:pos + B * T + 1]).to(dev, non_blocking=True)
        pos += B * T
        x, y = chunk[:-1].view(B, T), chunk[1:].view(B, T)
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
            loss = step_fn(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        times.append(time.perf_counter() - t0)
    t = sorted(times[a.warmup:] or times)
    med = t[len(t) // 2]
    print(json.dumps({"tokens_per_s": B * T / med, "step_ms": med * 1e3, "loss": loss.item(),
                      "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else 0.0,
                      "torch": torch.__version__, "compile": not a.no_compile, "batch": B, "seq_len": T,
                      "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu"}))


if __name__ == "__main__":
    main()
