#!/usr/bin/env python3
"""synthetic_shards.py: llm.c-format token shards of random GPT-2 token ids, for speed runs (bench/device_check.sh):
no dataset, download or tokenizer, and as many tokens as any batch needs. Standard library only.

  synthetic_shards.py --out DIR --train-tokens N --val-tokens M [--vocab 50257] [--seed 1]

Writes DIR/train_000000.bin and DIR/val_000000.bin: int32 header[256] = {20240520, 1, ntok, 0, ...}, then ntok
uint16 ids uniform in [0, vocab), from a seeded generator (the same files every run); for GPT-2's vocabulary also
DIR/tokenizer.txt, so `gptrain train --data DIR` reads them.
"""
import argparse
import array
import os
import random
import struct
import sys


def write(path, ntok, vocab, rng):
    tokens = array.array("H", (rng.randrange(vocab) for _ in range(ntok)))
    if sys.byteorder != "little":
        tokens.byteswap()
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<256i", 20240520, 1, ntok, *([0] * 253)))
        f.write(tokens.tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-tokens", type=int, required=True)
    ap.add_argument("--val-tokens", type=int, required=True)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.train_tokens < 2 or a.val_tokens < 2 or not 1 < a.vocab <= 65536:
        sys.exit("synthetic_shards.py: expected at least 2 tokens per split and a vocabulary of 2 to 65536 ids")
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)
    write(os.path.join(a.out, "train_000000.bin"), a.train_tokens, a.vocab, rng)
    write(os.path.join(a.out, "val_000000.bin"), a.val_tokens, a.vocab, rng)
    if a.vocab == 50257:   # so that `gptrain train --data DIR` reads it as GPT-2 tokens
        with open(os.path.join(a.out, "tokenizer.txt"), "w") as f:
            f.write("gptrain-tokenizer 1\ntype gpt2\nvocab_size 50257\n")


if __name__ == "__main__":
    main()
