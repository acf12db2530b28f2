#!/usr/bin/python3
"""compare_runs.py: two training runs of the same model, from their JSONL logs and model files (the data-parallel
tests: N ranks against 1 rank with the whole batch).

  compare_runs.py A.jsonl B.jsonl A.bin B.bin --steps S --loss-rtol X [--val-rtol Y] --weights-rms Z

Both logs must have S steps; the per-step losses (and, with --val-rtol, the validation losses) must agree within X
(Y) relative to A's; the weights (llm.c model files: a 1024-byte header, then fp32) within Z of A's rms in max
absolute difference. Prints what it found; exits 0 when all hold, 1 otherwise.
"""
import argparse
import json
import math
import struct
import sys


def weights(path):
    d = open(path, "rb").read()[1024:]
    return struct.unpack("<%df" % (len(d) // 4), d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("logs", nargs=2)
    ap.add_argument("models", nargs=2)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--loss-rtol", type=float, required=True)
    ap.add_argument("--val-rtol", type=float)
    ap.add_argument("--weights-rms", type=float, required=True)
    a = ap.parse_args()
    la, lb = ([json.loads(l) for l in open(p)] for p in a.logs)
    if not len(la) == len(lb) == a.steps:
        print("the logs have %d and %d steps, expected %d" % (len(la), len(lb), a.steps))
        return 1
    dl = max(abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(la, lb))
    wa, wb = weights(a.models[0]), weights(a.models[1])
    rms = math.sqrt(sum(x * x for x in wa) / len(wa))
    dw = max(abs(x - y) for x, y in zip(wa, wb)) / rms
    ok = dl <= a.loss_rtol and dw <= a.weights_rms and len(wa) == len(wb)
    msg = "losses %.2g" % dl
    if a.val_rtol is not None:
        dv = max(abs(x["val_loss"] - y["val_loss"]) / abs(x["val_loss"]) for x, y in zip(la, lb) if "val_loss" in x)
        ok = ok and dv <= a.val_rtol
        msg += ", val %.2g" % dv
    print("%s (rel), weights %.2g (of rms)" % (msg, dw))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
