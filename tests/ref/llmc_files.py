#!/usr/bin/python3
"""llmc_files.py [--gpt2-124m] OUTDIR: llm.c model files for the tests, written independently of gptrain's writer.

Follows llm.c's published layout (train_gpt2.py's write_model / the C loader gpt2_build_from_checkpoint):
int32 header[256] = {20240326, version, maxT, V, L, NH, C, Vp, 0...}, then the parameters in this order, each C-order:
wte (Vp, C) with rows V..Vp-1 zero, wpe (maxT, C), ln1w (L, C), ln1b (L, C), qkvw (L, 3C, C), qkvb (L, 3C),
attprojw (L, C, C), attprojb (L, C), ln2w (L, C), ln2b (L, C), fcw (L, 4C, C), fcb (L, 4C), fcprojw (L, C, 4C),
fcprojb (L, C), lnfw (C,), lnfb (C,). Linear weights are (out, in) rows, as nn.Linear stores them. Version 3 holds
float32, version 5 bfloat16 (the upper 16 bits of float32 after rounding to nearest even, as torch.bfloat16 does).

Writes gpt_v3.bin and gpt_v5.bin (random weights of a tiny GPT: L=2, NH=2, C=32, V=60, maxT=32), a data directory
in gptrain's format (train/val shards of random tokens, a char tokenizer.txt with 60 entries) and, for each version,
loss_vN.txt: the mean cross-entropy of the first batch of --batch 2 --seq-len 16 --shuffle off (tokens 0..32 of
the train shard) under that file's weights, computed in float64 by tests/ref/gpt_ref.py's forward.

--gpt2-124m (tests/test_llmc_124m.sh): the same files at GPT-2 124M's shape (L=12, NH=12, C=768, V=50257, Vp=50304,
maxT=1024: what llm.c's train_gpt2.py writes as gpt2_124M.bin / gpt2_124M_bf16.bin, here with random weights, since
the real ones cannot be downloaded here), shards of random GPT-2 token ids and no tokenizer.txt (so the GPT-2 BPE
is used; the train shard is one window of 33 tokens, so every step sees the same batch), and loss_vN.txt for that
batch at --batch 1 --seq-len 32.
"""
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt_ref  # noqa: E402

L, NH, C, V, MAXT = 2, 2, 32, 60, 32
VP = (V + 127) // 128 * 128
ORDER = ["wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w", "ln2b", "fcw", "fcb",
         "fcprojw", "fcprojb", "lnfw", "lnfb"]


def shapes():
    F = 4 * C
    return {"wte": (VP, C), "wpe": (MAXT, C), "ln1w": (L, C), "ln1b": (L, C), "qkvw": (L, 3 * C, C),
            "qkvb": (L, 3 * C), "attprojw": (L, C, C), "attprojb": (L, C), "ln2w": (L, C), "ln2b": (L, C),
            "fcw": (L, F, C), "fcb": (L, F), "fcprojw": (L, C, F), "fcprojb": (L, C), "lnfw": (C,), "lnfb": (C,)}


def write_model(path, params, version):
    header = np.zeros(256, dtype=np.int32)
    header[:8] = [20240326, version, MAXT, V, L, NH, C, VP]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for name in ORDER:
            t = params[name].to(torch.float32).contiguous()
            if version == 3:
                f.write(t.numpy().tobytes())
            else:
                f.write(t.to(torch.bfloat16).view(torch.int16).numpy().tobytes())


def write_shard(path, tokens):
    header = np.zeros(256, dtype=np.int32)
    header[:3] = [20240520, 1, len(tokens)]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype=np.uint16).tobytes())


def main():
    global L, NH, C, V, MAXT, VP
    args = sys.argv[1:]
    big = "--gpt2-124m" in args
    out = [a for a in args if a != "--gpt2-124m"][0]
    B, T = 2, 16
    if big:
        L, NH, C, V, MAXT = 12, 12, 768, 50257, 1024
        VP = (V + 127) // 128 * 128
        B, T = 1, 32
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(20240326)
    params = {}
    for name, shp in shapes().items():
        scale = 0.02 if name not in ("ln1w", "ln2w", "lnfw") else 0.1
        base = 1.0 if name in ("ln1w", "ln2w", "lnfw") else 0.0
        params[name] = (base + scale * torch.randn(shp, generator=g, dtype=torch.float64)).to(torch.float32)
    params["wte"][V:] = 0
    rng = np.random.default_rng(7)
    # 124M: one window of B*T+1 tokens, so every step trains on the same batch and the loss must fall
    train = rng.integers(0, V, size=4000 if not big else B * T + 1)
    val = rng.integers(0, V, size=1000)
    write_shard(os.path.join(out, "train_000000.bin"), train)
    write_shard(os.path.join(out, "val_000000.bin"), val)
    if not big:
        with open(os.path.join(out, "tokenizer.txt"), "w") as f:
            f.write("gptrain-tokenizer 1\ntype char\nvocab_size %d\nbytes %s\n" % (V, " ".join(str(32 + i) for i in range(V))))
    idx = torch.tensor(train[:B * T], dtype=torch.int64).view(B, T)
    tgt = torch.tensor(train[1:B * T + 1], dtype=torch.int64).view(B, T)
    for version in (3, 5):
        name = ("gpt2_124M.bin" if version == 3 else "gpt2_124M_bf16.bin") if big else "gpt_v%d.bin" % version
        write_model(os.path.join(out, name), params, version)
        w = {k: (v if version == 3 else v.to(torch.bfloat16).to(torch.float32)).to(torch.float64) for k, v in params.items()}
        logits = gpt_ref.forward(w, idx, L, NH, V)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1)).item()
        with open(os.path.join(out, "loss_v%d.txt" % version), "w") as f:
            f.write("%.10f\n" % loss)
    print("L=%d NH=%d C=%d V=%d Vp=%d maxT=%d; %d parameters" % (L, NH, C, V, VP, MAXT,
                                                               sum(int(np.prod(s)) for s in shapes().values())))


if __name__ == "__main__":
    main()
