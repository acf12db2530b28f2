"""info_table.py: the memory table `gptrain info` prints ("  what   X MiB   Y bytes/param" lines), for the tests."""
import re


def lines(path):
    """{what: MiB} of every table line in the file at path."""
    out = {}
    for line in open(path):
        m = re.match(r"  (.+?)\s+([0-9.]+) MiB\s+([0-9.]+) bytes/param", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out
