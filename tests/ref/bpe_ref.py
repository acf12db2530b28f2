#!/usr/bin/env python3
"""bpe_ref.py: an independent Python implementation of OpenAI's GPT-2 encoder (encoder.py in openai/gpt-2: the
bytes_to_unicode byte map, get_pairs, BPE by merge rank, the pre-tokenizer regex run by the `regex` module), written
from the published algorithm, and the expected-ids oracle of tests/test_bpe.c.

It reads data/gpt2/encoder.json and data/gpt2/vocab.bpe and writes tests/ref/bpe_cases.txt: one line per tricky string,
    NAME <TAB> HEX-OF-THE-BYTES (or "-" for the empty string) <TAB> EXPECTED IDS, space-separated
and one closing line for the whole of data/tinyshakespeare/input.txt,
    tinyshakespeare <TAB> NTOKENS <TAB> SHA256 OF THE IDS AS LITTLE-ENDIAN UINT16

Invalid UTF-8. encoder.py takes str; gptrain encodes bytes, and treats every byte that is not part of a well-formed
UTF-8 sequence as one character of class "other" (not a letter, number or space). The oracle gives the regex the same
view: it decodes with errors='surrogateescape', which turns each such byte into one lone surrogate U+DC80..U+DCFF (the
`regex` module puts those in none of \\p{L}, \\p{N}, \\s, checked below), and encodes each pre-token back with
errors='surrogateescape' before the byte map, so the BPE sees exactly the original bytes.

Run with a Python that has `regex` (here /root/.pyenv/versions/3.11.7/bin/python3):  python3 tests/ref/bpe_ref.py
"""
import hashlib
import json
import os
import random
import struct
import sys

import regex

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    # The 188 printable latin-1 bytes map to themselves; the other 68 to 256, 257, ... in byte order, so every byte
    # is a visible character and no token string holds whitespace or control characters.
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def get_pairs(word):
    return {(word[i], word[i + 1]) for i in range(len(word) - 1)}


class Encoder:
    def __init__(self, gpt2_dir):
        with open(os.path.join(gpt2_dir, "encoder.json"), encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(os.path.join(gpt2_dir, "vocab.bpe"), encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1:-1]]   # line 0 is "#version: 0.2", the last is empty
        self.ranks = {m: r for r, m in enumerate(merges)}
        self.byte_map = bytes_to_unicode()
        self.cache = {}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        while len(word) > 1:
            # the adjacent pair of lowest merge rank; stop when no pair is a merge
            best = min(get_pairs(word), key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            first, second = best
            merged, i = [], 0
            while i < len(word):   # every non-overlapping occurrence, left to right
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        self.cache[token] = word
        return word

    def encode(self, data: bytes):
        ids = []
        text = data.decode("utf-8", errors="surrogateescape")
        for piece in PAT.findall(text):
            raw = piece.encode("utf-8", errors="surrogateescape")
            token = "".join(self.byte_map[b] for b in raw)
            ids.extend(self.encoder[t] for t in self.bpe(token))
        return ids


CASES = [
    ("empty", b""),
    ("hello_world", b"Hello world"),
    ("sentence", b"The quick brown fox jumps over the lazy dog."),
    ("accented_latin", "Café naïve résumé Ångström façade".encode()),
    ("greek", "Καλημέρα κόσμε, ελληνικά".encode()),
    ("cyrillic", "Привет, мир! Съешь же ещё".encode()),
    ("cjk", "你好，世界。日本語のテキスト 한국어".encode()),
    ("arabic", "مرحبا بالعالم، كيف حالك؟".encode()),
    ("devanagari_marks", "नमस्ते दुनिया क्षत्रिय".encode()),
    ("combining_marks", "e\u0301 a\u0300\u0323 n\u0303".encode()),
    ("emoji", "I ❤️ 🍕 and 🚀!".encode()),
    ("emoji_zwj_family", "👨‍👩‍👧‍👦 👩🏽‍💻".encode()),
    ("emoji_flags", "🇫🇷🇯🇵 🏳️‍🌈".encode()),
    ("digits_run", b"1234567890 0000 42"),
    ("number_punct", b"1,234.56 and -7.5e-3 and $19.99"),
    ("superscript_fraction", "x² + y³ = ½ ¼ ¾".encode()),
    ("roman_numeral", "Chapter Ⅻ and ⅷ".encode()),
    ("arabic_indic_digits", "٠١٢٣٤٥٦٧٨٩ ۱۲۳".encode()),
    ("double_space", b"a  b"),
    ("many_spaces", b"word          next"),
    ("tabs", b"a\tb\t\tc \t d"),
    ("newlines", b"line1\nline2\n\nline4\n\n\n"),
    ("crlf", b"one\r\ntwo\r\n\r\nthree"),
    ("leading_ws", b"   leading"),
    ("trailing_ws", b"trailing   "),
    ("only_spaces", b"     "),
    ("only_mixed_ws", b" \t\n \r\n  "),
    ("single_space", b" "),
    ("single_newline", b"\n"),
    ("unicode_spaces", "a\u00a0b\u3000c\u2003 d\u2028e\u0085f".encode()),
    ("unicode_space_runs", "a \u0085b\u0085\u0085 \u00a0 c\u3000\u3000d\u2029".encode()),
    ("contractions", b"it's don't you're we've I'm we'll he'd"),
    ("contractions_bare", b"'s't're've'm'll'd"),
    ("contraction_upper_S", b"IT'S DON'T YOU'RE"),
    ("curly_apostrophe", "it’s don’t".encode()),
    ("apostrophe_runs", b"'''s ''hello' 'sup"),
    ("endoftext_plain", b"<|endoftext|>"),
    ("endoftext_in_text", b"end.<|endoftext|>Next doc"),
    ("punct_run", b"!!!??? ... --- *** ;;; ()[]{}"),
    ("code_c", b"int main(void) {\n    return x->y[0] + 1;\n}\n"),
    ("code_python", b"def f(a, b=2):\n\tif a == b: return a**2  # ok\n"),
    ("url_email", b"https://example.com/a?b=c&d=e user@mail.org"),
    ("long_word", b"Pneumonoultramicroscopicsilicovolcanoconiosis" * 3),
    ("mixed_alnum", b"abc123def 4x4 A1B2C3"),
    ("invalid_ff_fe", b"\xff\xfe"),
    ("invalid_in_word", b"ab\xffcd \xfe x"),
    ("truncated_3byte", b"a\xe4\xb8 b"),
    ("truncated_4byte_end", b"hi \xf0\x9f\x98"),
    ("lone_continuation", b"\x80\x81 z \xbf"),
    ("overlong_and_surrogate", b"\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80"),
    ("space_then_invalid", b" \xff \xfe\xfd"),
    ("control_chars", b"\x00\x01\x1b[0m\x7f\x1c\x1d"),
    ("space_before_number", b"a 1 22 333"),
    ("space_before_punct", b"a ! ?? ..."),
    ("shakespeare", b"First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"),
]


def random_cases(n, seed):
    # Strings drawn from a pool that exercises every class boundary: ASCII letters, digits, apostrophes and their
    # contraction letters, spaces of several kinds, punctuation, non-ASCII letters and numbers, emoji, invalid bytes.
    pool = [b"a", b"Z", b"s", b"t", b"ll", b"re", b"'", b"'", b"0", b"7", b" ", b" ", b" ", b"  ", b"\t", b"\n",
            b"\r\n", b"!", b".", b",", b"-", "é".encode(), "Ж".encode(), "中".encode(), "²".encode(), "٣".encode(),
            "\u00a0".encode(), "\u3000".encode(), "😀".encode(), "\u200d".encode(), b"\xff", b"\xe4\xb8", b"\x80"]
    rng = random.Random(seed)
    return [("random_%02d" % i, b"".join(rng.choice(pool) for _ in range(rng.randint(1, 40)))) for i in range(n)]


def main():
    for cp in (0xDC80, 0xDCFF):   # the invalid-byte convention above relies on this
        assert not regex.match(r"[\s\p{L}\p{N}]", chr(cp)), hex(cp)
    enc = Encoder(os.path.join(ROOT, "data", "gpt2"))
    out = ["# GENERATED by tests/ref/bpe_ref.py (Python regex %s): NAME<TAB>HEX<TAB>IDS; tinyshakespeare<TAB>NTOK<TAB>"
           "SHA256(ids as uint16 LE)" % regex.__version__]
    for name, data in CASES + random_cases(24, 1234):
        ids = enc.encode(data)
        out.append("%s\t%s\t%s" % (name, data.hex() or "-", " ".join(map(str, ids))))
    with open(os.path.join(ROOT, "data", "tinyshakespeare", "input.txt"), "rb") as f:
        ids = enc.encode(f.read())
    out.append("tinyshakespeare\t%d\t%s" % (len(ids), hashlib.sha256(struct.pack("<%dH" % len(ids), *ids)).hexdigest()))
    path = os.path.join(ROOT, "tests", "ref", "bpe_cases.txt")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote %s: %d cases, tinyshakespeare %d tokens" % (path, len(out) - 2, len(ids)), file=sys.stderr)


if __name__ == "__main__":
    main()
