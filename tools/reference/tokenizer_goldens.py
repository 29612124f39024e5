#!/usr/bin/env python3
"""Golden token ids from the real HuggingFace `tokenizers` library, for MoETokenizerTests.

Dev-only (never run by CI). Needs the pinned library from requirements-tokenizers.txt:

    python -m venv ${MOE_EVAL_TOK_VENV:-.venv-tok} && ${MOE_EVAL_TOK_VENV:-.venv-tok}/bin/pip install -r tools/reference/requirements-tokenizers.txt
    ${MOE_EVAL_TOK_VENV:-.venv-tok}/bin/python tools/reference/tokenizer_goldens.py build-demo   # only to rebuild the demo asset
    ${MOE_EVAL_TOK_VENV:-.venv-tok}/bin/python tools/reference/tokenizer_goldens.py goldens      # writes the fixtures

Outputs (Tests/MoETokenizerTests/Fixtures/):
  golden_<name>.json.gz  one per real tokenizer: ids for >= 10,000 texts drawn from ../shared/data
                         (stored as source file + line number + field, never the text) plus
                         hand-written edge cases (stored as text).
  components.json.gz     small synthetic tokenizers and single components (pre-tokenizers,
                         normalizers, decoders, post-processors, added-token flags, BPE options)
                         with what the library gives for each input.

"With special tokens" ids follow TorchTitan's HuggingFaceTokenizer wrapper
(torchtitan/components/tokenizer.py): tokenizer_config.json's bos/eos/pad/unk/sep/cls/mask
tokens and added_tokens_decoder are registered with add_special_tokens, the post-processor runs,
then BOS/EOS are added when add_bos_token/add_eos_token ask for them and the post-processor did
not already add them. With --check-torchtitan (torchtitan importable) every such encoding is
also compared with the real wrapper.
"""

import argparse
import gzip
import io
import json
import os
import sys
import tempfile

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer
from tokenizers import decoders as D
from tokenizers import models as M
from tokenizers import normalizers as N
from tokenizers import pre_tokenizers as P
from tokenizers import processors as PP
from tokenizers import trainers as T

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(REPO, "Tests", "MoETokenizerTests", "Fixtures")
DEMO_DIR = os.path.join(REPO, "assets", "tokenizers", "demo-dsv3")
PINNED = "0.23.3"

# --------------------------------------------------------------------------------------------
# DeepSeek-V3's pre-tokenizer, exactly as in deepseek-ai/DeepSeek-V3 tokenizer.json.
DSV3_DIGITS = r"\p{N}{1,3}"
DSV3_CJK = "[一-龥぀-ゟ゠-ヿ]+"
# Written as in the JSON file: CR and LF appear as raw characters in this pattern, not as \r \n.
DSV3_MAIN = ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
             " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+")
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CL100K_PATTERN = (r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|"
                  r"\s*[\r\n]|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
DEMO_EXTRA_TOKENS = ["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>",
                     "<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>", "<|EOT|>"]
DEMO_VOCAB = 4096


def dsv3_pre_tokenizer():
    return P.Sequence([
        P.Split(Regex(DSV3_DIGITS), behavior="isolated", invert=False),
        P.Split(Regex(DSV3_CJK), behavior="isolated", invert=False),
        P.Split(Regex(DSV3_MAIN), behavior="isolated", invert=False),
        P.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def build_demo(data_root):
    """Trains the demo DeepSeek-V3-style tokenizer on tinyshakespeare (committed as an asset)."""
    tok = Tokenizer(M.BPE())
    tok.normalizer = N.Sequence([])
    tok.pre_tokenizer = dsv3_pre_tokenizer()
    tok.decoder = D.ByteLevel()
    trainer = T.BpeTrainer(
        vocab_size=DEMO_VOCAB - len(DEMO_EXTRA_TOKENS),
        min_frequency=2,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=P.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([os.path.join(data_root, "tinyshakespeare", "input.txt")], trainer)
    # As in DeepSeek-V3: the sentence markers are special but normalized, the chat/FIM markers are
    # plain added tokens.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=True) for t in (BOS, EOS, PAD)])
    tok.add_tokens([AddedToken(t, special=False, normalized=True) for t in DEMO_EXTRA_TOKENS])
    tok.post_processor = PP.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    assert tok.get_vocab_size() == DEMO_VOCAB, tok.get_vocab_size()
    os.makedirs(DEMO_DIR, exist_ok=True)
    tok.save(os.path.join(DEMO_DIR, "tokenizer.json"), pretty=True)

    def added(content, normalized=True):
        return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": normalized,
                "rstrip": False, "single_word": False}

    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": added(BOS),
        "clean_up_tokenization_spaces": False,
        "eos_token": added(EOS),
        "legacy": True,
        "model_max_length": 4096,
        "pad_token": added(EOS),
        "sp_model_kwargs": {},
        "unk_token": None,
        "tokenizer_class": "LlamaTokenizerFast",
    }
    with open(os.path.join(DEMO_DIR, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
        f.write("\n")
    print(f"wrote {DEMO_DIR} (vocab {tok.get_vocab_size()})")


# --------------------------------------------------------------------------------------------
# Reference encoder: tokenizers + TorchTitan's special-token rules (see module docstring).

def load_tokenizer_json(folder):
    plain = os.path.join(folder, "tokenizer.json")
    if os.path.exists(plain):
        with open(plain, "rb") as f:
            return f.read().decode("utf-8")
    with gzip.open(plain + ".gz", "rb") as f:
        return f.read().decode("utf-8")


class Reference:
    STANDARD_KEYS = ["bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token", "mask_token"]

    def __init__(self, folder=None, tokenizer_json=None, config=None):
        if folder is not None:
            tokenizer_json = load_tokenizer_json(folder)
            config_path = os.path.join(folder, "tokenizer_config.json")
            if os.path.exists(config_path):
                with open(config_path, encoding="utf-8") as f:
                    config = json.load(f)
        self.tok = Tokenizer.from_str(tokenizer_json)
        self.config = config
        self.bos_id = self.eos_id = None
        if config:
            bos = self._token_text(config, "bos_token")
            eos = self._token_text(config, "eos_token")
            to_add = []
            for key in self.STANDARD_KEYS:
                value = config.get(key)
                if value is not None:
                    to_add.append(self._added(self._token_text(config, key), value))
            for _, value in config.get("added_tokens_decoder", {}).items():
                if isinstance(value, dict) and "content" in value:
                    to_add.append(self._added(value["content"], value))
            if to_add:
                self.tok.add_special_tokens(to_add)
            if bos is not None:
                self.bos_id = self.tok.token_to_id(bos)
            if eos is not None:
                self.eos_id = self.tok.token_to_id(eos)
        empty = self.tok.encode("").ids
        self.hf_adds_bos = self.bos_id is not None and self.bos_id in empty
        self.hf_adds_eos = self.eos_id is not None and self.eos_id in empty
        self.add_bos = bool((config or {}).get("add_bos_token") or False)
        self.add_eos = bool((config or {}).get("add_eos_token") or False)

    @staticmethod
    def _token_text(config, key):
        value = config.get(key)
        return value["content"] if isinstance(value, dict) else value

    @staticmethod
    def _added(content, value):
        if isinstance(value, dict):
            return AddedToken(content, single_word=value.get("single_word", False),
                              lstrip=value.get("lstrip", False), rstrip=value.get("rstrip", False),
                              normalized=value.get("normalized", True), special=value.get("special", True))
        return AddedToken(content, special=True)

    def encode(self, text, add_special_tokens=True):
        if not add_special_tokens:
            return self.tok.encode(text, add_special_tokens=False).ids
        ids = self.tok.encode(text).ids
        if self.add_bos and not self.hf_adds_bos and self.bos_id is not None:
            ids.insert(0, self.bos_id)
        if self.add_eos and not self.hf_adds_eos and self.eos_id is not None:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids, skip_special_tokens=False):
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)


def api_bos_eos(ref):
    """The BOS/EOS ids moe-eval's Tokenizer reports: tokenizer_config.json's bos/eos token (as
    TorchTitan reads them), else the special tokens the post-processor template puts before / after
    the sequence."""
    bos, eos = ref.bos_id, ref.eos_id
    config = ref.config or {}
    if config.get("bos_token") is None or config.get("eos_token") is None:
        first, last = template_boundary_ids(json.loads(ref.tok.to_str()).get("post_processor"))
        if config.get("bos_token") is None:
            bos = first
        if config.get("eos_token") is None:
            eos = last
    return bos, eos


def template_boundary_ids(processor):
    if not processor:
        return None, None
    if processor.get("type") == "Sequence":
        for step in processor.get("processors", []):
            ids = template_boundary_ids(step)
            if ids != (None, None):
                return ids
        return None, None
    if processor.get("type") != "TemplateProcessing":
        return None, None
    single = processor["single"]
    position = next(i for i, item in enumerate(single) if "Sequence" in item)
    ids = [[processor["special_tokens"][item["SpecialToken"]["id"]]["ids"] for item in part if "SpecialToken" in item]
           for part in (single[:position], single[position + 1:])]
    before = [i for group in ids[0] for i in group]
    after = [i for group in ids[1] for i in group]
    return (before[0] if before else None), (after[-1] if after else None)


def torchtitan_wrapper(folder):
    """The real TorchTitan wrapper on a plain copy of the folder, or None when not importable."""
    try:
        from torchtitan.components.tokenizer import HuggingFaceTokenizer
    except Exception as error:  # noqa: BLE001 - any import failure just disables the cross-check
        print(f"  (torchtitan not importable: {error}; cross-check skipped)")
        return None
    tmp = tempfile.mkdtemp(prefix="tok-golden-")
    with open(os.path.join(tmp, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(load_tokenizer_json(folder))
    config_path = os.path.join(folder, "tokenizer_config.json")
    if os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as src, open(os.path.join(tmp, "tokenizer_config.json"), "w",
                                                             encoding="utf-8") as dst:
            dst.write(src.read())
    return HuggingFaceTokenizer(tokenizer_path=tmp)


# --------------------------------------------------------------------------------------------
# Inputs. The selection rules are stored in each golden file; the Swift test re-derives the
# texts from ../shared/data with the same rules (split on "\n", a final empty piece dropped).

MMLU_SUBJECTS = ["abstract_algebra", "college_chemistry", "high_school_us_history", "world_religions",
                 "professional_law", "formal_logic", "virology", "econometrics"]

SOURCES = (
    [{"file": "tinyshakespeare/input.txt", "kind": "lines", "every": 6, "offset": 0},
     {"file": "wikitext2/wikitext-2-raw-v1_test_nonblank_crlf.raw", "kind": "lines", "every": 6, "offset": 1},
     {"file": "hellaswag/hellaswag_val_subset1000.jsonl", "kind": "jsonl", "every": 2, "offset": 0,
      "fields": ["ctx", "endings"]}]
    + [{"file": f"mmlu/data/test/{s}_test.csv", "kind": "lines", "every": 5, "offset": 2} for s in MMLU_SUBJECTS]
)


def file_lines(path):
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return lines


def source_texts(data_root, source):
    """Yields (line number (0-based), field label or None, text)."""
    lines = file_lines(os.path.join(data_root, source["file"]))
    for number in range(source["offset"], len(lines), source["every"]):
        line = lines[number]
        if source["kind"] == "lines":
            yield number, None, line
            continue
        record = json.loads(line)
        for field in source["fields"]:
            value = record[field]
            if isinstance(value, list):
                for index, item in enumerate(value):
                    yield number, f"{field}.{index}", item
            else:
                yield number, field, value


EDGE_CASES = [
    "", " ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n\n", " \n ", "a\r\nb", "a\n\nb", "a \n b",
    "   leading spaces", "trailing spaces   ", "a  b   c    d", "\t\tx\ty\t", " \t \n x", "x \t\n\n  ",
    "line one\r\nline two\r\n", "tab\there", "\u000b\u000c vertical tab and form feed",
    "1", "12", "123", "1234", "12345", "1234567", "12345678901234567890", "3.14159", "1,000,000.00",
    "x1y22z333w4444", " 2024-06-01T12:34:56Z", "٣٤٥ ١٢", "①②③", "Ⅻ Ⅳ", "x² + y³ = z⁴", "१२३४५", "０１２３４",
    "don't", "DON'T", "I'm here", "you'RE", "it'ſ", "we'll've'd", "'s'S'ſ", "o'clock", "'", "''", "' s",
    "rock 'n' roll", "she'sup DON'Tx we'LLy it'ſx 'ſtraße", "a'  b", "' x'\n", "Hello world", "Hello, world!", "HELLO WORLD", "hello    world",
    "👍", "👨‍👩‍👧‍👦 family", "🏳️‍🌈", "👍🏽 thumbs", "🇯🇵🇫🇷", "a👍b", "😀😃😄😁", "emoji 🤖 in text 🎉!",
    "e\u0301", "\u0301abc", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇", "café naïve résumé", "Å Å Å", "ﬁnance ﬂow",
    "日本語のテキスト", "中文字符测试，标点。", "한국어 텍스트입니다", "カタカナ ひらがな 漢字", "个人情报1234你好",
    "ＡＢＣ１２３！", "東京タワー333m", "ｶﾀｶﾅ",
    "مرحبا بالعالم", "العربية ١٢٣ English", "\u200fRTL mark", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก",
    "Привет, мир!", "Γειά σου Κόσμε", "Ελληνικά ΣΑΣ σας",
    "\u0000", "nul\u0000inside", "\u007f", "\u0085next line", "\u00a0nbsp\u00a0", "\u2028\u2029", "zero\u200bwidth",
    "\ufeffbom", "\ufffd replacement", "\ufffe\uffff", "\U0010ffff", "\ue000 private", "𝐀𝐁𝐂 math bold",
    "ſtraße", "İstanbul", "ß ẞ", "K Kelvin", "𐐀 deseret", "text\ufe0f", "\U000e0041\U000e007f tags",
    "\u3000ideographic space\u3000", "x\u2003em\u2002en", "a\u00adsoft hyphen", "\u202e override",
    "<|endoftext|>", "hello<|endoftext|>world", "<|endoftext|><|endoftext|>", " <|endoftext|> ", "<|endoftext",
    "<｜begin▁of▁sentence｜>Hi there", "a<｜end▁of▁sentence｜>", "<｜User｜>hi<｜Assistant｜>yo", "<think>x</think>",
    "<|begin_of_text|>Hello world<|end_of_text|>", "<|im_start|>user\nhi<|im_end|>", "[PAD] <|pad|>",
    "a" * 300, " " * 50, "!!!!!!", "......", "?!?!", "--- ***", "http://example.com/path?q=1&r=2#frag",
    "def f(x):\n    return x**2\n", "{\"key\": [1, 2, 3], \"v\": null}", "C'est l'été", "snake_case camelCase",
    "e-mail: someone@example.org", "$100 €50 £20 ¥1000", "α+β=γ", "∀x∈ℝ: x²≥0", "½ ¼ ¾",
]


def write_gz_json(path, obj):
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    with open(path, "wb") as raw:
        # mtime=0 keeps the file byte-identical between runs
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:
            f.write(data)
    print(f"  wrote {os.path.relpath(path, REPO)} ({os.path.getsize(path)} bytes)")


REAL_TOKENIZERS = [
    # name, folder (data: relative to the data root, repo: relative to the repo root),
    # store raw ids, store the decoded text of every n-th data text when it differs from the text
    # (the TorchTitan test tokenizer drops spaces, so its decoded texts would double its fixture)
    ("gpt2", "data:tokenizers/gpt2_olmo_test_fixture", False, 1),
    ("dolma2", "data:tokenizers/olmo_dolma2", False, 1),
    ("torchtitan", "data:tokenizers/torchtitan_test_tokenizer", False, 4),
    ("demo-dsv3", "repo:assets/tokenizers/demo-dsv3", True, 1),
]


def resolve(data_root, location):
    kind, rel = location.split(":", 1)
    return os.path.join(data_root if kind == "data" else REPO, rel)


def golden_case(ref, text, store_raw, round_trip, edge_case):
    """ids: with special tokens; raw: without (when different); dec: decode(raw) when it is not the
    text; for edge cases also dec_ids / dec_skip: decode(ids) without / with skip_special_tokens."""
    ids = ref.encode(text, True)
    raw = ref.encode(text, False)
    case = {"ids": ids}
    if raw != ids:
        if not store_raw:
            raise SystemExit(f"add_special_tokens changes ids but raw ids are not stored: {text!r}")
        case["raw"] = raw
    decoded = ref.decode(raw)
    if decoded != text:
        if round_trip:
            raise SystemExit(f"round trip failed in the reference for {text!r}: {decoded!r}")
        case["dec"] = decoded
    if edge_case:
        case["dec_ids"] = ref.decode(ids)
        case["dec_skip"] = ref.decode(ids, skip_special_tokens=True)
    return case


def write_real_goldens(data_root, check_torchtitan):
    for name, location, store_raw, decoded_every in REAL_TOKENIZERS:
        folder = resolve(data_root, location)
        ref = Reference(folder=folder)
        round_trip = (json.loads(ref.tok.to_str()).get("decoder") or {}).get("type") == "ByteLevel" \
            and name != "torchtitan"
        wrapper = torchtitan_wrapper(folder) if check_torchtitan else None
        cases = []
        total_texts = 0
        for index, source in enumerate(SOURCES):
            for number, field, text in source_texts(data_root, source):
                total_texts += 1
                case = {"src": index, "line": number}
                if field is not None:
                    case["field"] = field
                case.update(golden_case(ref, text, store_raw, round_trip, False))
                if (total_texts - 1) % decoded_every:
                    case.pop("dec", None)
                if wrapper is not None:
                    assert wrapper.encode(text) == case["ids"], (name, text)
                cases.append(case)
        for text in EDGE_CASES:
            case = {"text": text}
            case.update(golden_case(ref, text, store_raw, round_trip, True))
            if wrapper is not None:
                assert wrapper.encode(text) == case["ids"], (name, text)
            cases.append(case)
        golden = {
            "tokenizer": name,
            "location": location,
            "library": f"tokenizers {tokenizers.__version__}",
            "round_trip": round_trip,
            "bos_id": api_bos_eos(ref)[0],
            "eos_id": api_bos_eos(ref)[1],
            "vocab_size": ref.tok.get_vocab_size(with_added_tokens=True),
            "sources": SOURCES,
            "cases": cases,
        }
        print(f"{name}: {total_texts} data texts + {len(EDGE_CASES)} edge cases, "
              f"{sum(len(c['ids']) for c in cases)} ids")
        write_gz_json(os.path.join(FIXTURES, f"golden_{name}.json.gz"), golden)


# --------------------------------------------------------------------------------------------
# Components: each pre-tokenizer / normalizer / decoder alone, and small synthetic tokenizers.

COMPONENT_TEXTS = [
    "Hello world", "Hello, world! How are you?", "  two leading", "trailing  ", "a\tb\nc\r\nd", "",
    " ", "don't STOP it'S", "123456 7.89 x42y", "café Ünïcödé ÉCOLE", "e\u0301 combining", "ﬁ ① ＡＢＣ ½",
    "日本語のテキスト 中文", "مرحبا 123", "👨‍👩‍👧‍👦 emoji!", "snake_case-and-dash...", "▁already▁meta space",
    "UPPER lower MiXeD", "İstanbul ΣΑΣ", "  multiple   spaces\t\ttabs  ", "x!!y??z", "<s>tag</s> [MASK] x",
    "hello world hello", "ahello helloa hello", "WORLD world World", "ab abab ab", "end<tag>  next",
]


def component_config(kind, component):
    """The JSON the library writes for one component."""
    tok = Tokenizer(M.BPE())
    setattr(tok, kind, component)
    return json.loads(tok.to_str())[kind]


def pre_tokenizer_cases():
    entries = []
    behaviors = ["removed", "isolated", "merged_with_previous", "merged_with_next", "contiguous"]
    candidates = [
        ("ByteLevel(prefix,regex)", P.ByteLevel(add_prefix_space=True, use_regex=True)),
        ("ByteLevel(noprefix,regex)", P.ByteLevel(add_prefix_space=False, use_regex=True)),
        ("ByteLevel(prefix,noregex)", P.ByteLevel(add_prefix_space=True, use_regex=False)),
        ("ByteLevel(noprefix,noregex)", P.ByteLevel(add_prefix_space=False, use_regex=False)),
        ("Digits(individual)", P.Digits(individual_digits=True)),
        ("Digits(grouped)", P.Digits(individual_digits=False)),
        ("Metaspace(always,split)", P.Metaspace(replacement="▁", prepend_scheme="always", split=True)),
        ("Metaspace(first,split)", P.Metaspace(replacement="▁", prepend_scheme="first", split=True)),
        ("Metaspace(never,split)", P.Metaspace(replacement="▁", prepend_scheme="never", split=True)),
        ("Metaspace(always,nosplit)", P.Metaspace(replacement="▁", prepend_scheme="always", split=False)),
        ("Metaspace(underscore)", P.Metaspace(replacement="_", prepend_scheme="always", split=True)),
        ("Whitespace", P.Whitespace()),
        ("WhitespaceSplit", P.WhitespaceSplit()),
        ("CharDelimiterSplit", P.CharDelimiterSplit("-")),
        ("BertPreTokenizer", P.BertPreTokenizer()),
        ("Split(gpt2)", P.Split(Regex(GPT2_PATTERN), behavior="isolated")),
        ("Split(llama3,removed,invert)", P.Split(Regex(LLAMA3_PATTERN), behavior="removed", invert=True)),
        ("Split(dsv3-digits)", P.Split(Regex(DSV3_DIGITS), behavior="isolated")),
        ("Split(dsv3-cjk)", P.Split(Regex(DSV3_CJK), behavior="isolated")),
        ("Split(dsv3-main)", P.Split(Regex(DSV3_MAIN), behavior="isolated")),
        ("Sequence(dsv3)", dsv3_pre_tokenizer()),
        ("Sequence(llama3)", P.Sequence([P.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
                                         P.ByteLevel(add_prefix_space=False, use_regex=False)])),
        ("Sequence(whitespace,digits)", P.Sequence([P.WhitespaceSplit(), P.Digits(individual_digits=True)])),
        ("Split(literal-space,invert)", P.Split(" ", behavior="removed", invert=True)),
        ("Split(regex-fallback,\\s+)", P.Split(Regex(r"\s+"), behavior="isolated")),
        ("Split(regex-fallback,(?i)the|[aeiou]{2})", P.Split(Regex(r"(?i)th[a-z]*|[aeiou]{2}"), behavior="isolated")),
        ("Split(regex-fallback,\\w+)", P.Split(Regex(r"\w+"), behavior="removed", invert=True)),
        ("Split(regex-fallback,\\d+|[\\w-]+)", P.Split(Regex(r"\d+|[\w\-]+"), behavior="isolated")),
        ("Split(regex-fallback,\\W+ removed)", P.Split(Regex(r"\W+"), behavior="removed")),
        ("Split(regex-fallback,\\h+)", P.Split(Regex(r"\h+"), behavior="isolated")),
        ("Split(cl100k)", P.Split(Regex(CL100K_PATTERN), behavior="isolated")),
        ("Split(qwen2)", P.Split(Regex(QWEN2_PATTERN), behavior="isolated")),
        ("Split(llama3, raw CR LF)", P.Split(Regex(LLAMA3_PATTERN.replace(r"\r", "\r").replace(r"\n", "\n")),
                                             behavior="isolated")),
    ]
    for behavior in behaviors:
        for invert in (False, True):
            candidates.append((f"Split(punct,{behavior},invert={invert})",
                               P.Split(Regex(r"[\p{P}\p{S}]+"), behavior=behavior, invert=invert)))
            candidates.append((f"Split(literal-a,{behavior},invert={invert})",
                               P.Split("a", behavior=behavior, invert=invert)))
        candidates.append((f"Punctuation({behavior})", P.Punctuation(behavior=behavior)))
    for name, component in candidates:
        cases = []
        for text in COMPONENT_TEXTS + EDGE_CASES:
            cases.append({"text": text, "pieces": [piece for piece, _ in component.pre_tokenize_str(text)]})
        entries.append({"name": name, "config": component_config("pre_tokenizer", component), "cases": cases})
    return entries


def normalizer_cases():
    candidates = [
        ("NFC", N.NFC()), ("NFD", N.NFD()), ("NFKC", N.NFKC()), ("NFKD", N.NFKD()),
        ("Lowercase", N.Lowercase()), ("Prepend", N.Prepend("▁")),
        ("Replace(string)", N.Replace(" ", "▁")), ("Replace(regex)", N.Replace(Regex(r"\s+"), " ")),
        ("Replace(regex-remove)", N.Replace(Regex(r"[aeiou]"), "")),
        ("Strip(both)", N.Strip(left=True, right=True)), ("Strip(left)", N.Strip(left=True, right=False)),
        ("Strip(right)", N.Strip(left=False, right=True)), ("StripAccents", N.StripAccents()),
        ("Sequence(NFD,StripAccents,Lowercase)", N.Sequence([N.NFD(), N.StripAccents(), N.Lowercase()])),
        ("Sequence(Prepend,Replace)", N.Sequence([N.Prepend("▁"), N.Replace(" ", "▁")])),
        ("Sequence(empty)", N.Sequence([])), ("ByteLevel", N.ByteLevel()),
    ]
    entries = []
    for name, component in candidates:
        cases = [{"text": t, "normalized": component.normalize_str(t)} for t in COMPONENT_TEXTS + EDGE_CASES]
        entries.append({"name": name, "config": component_config("normalizer", component), "cases": cases})
    return entries


def byte_level_alphabet():
    """GPT-2's byte -> printable character table, in byte order (taken from the library itself)."""
    decoder = D.ByteLevel()
    alphabet = sorted(P.ByteLevel.alphabet())
    by_byte = {}
    for char in alphabet:
        raw = decoder.decode([char]).encode("utf-8", "surrogateescape")
        if len(raw) == 1:
            by_byte[raw[0]] = char
    # Bytes >= 0x80 decode to U+FFFD alone, so recover them from GPT-2's published construction.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    assert all(table[b] == c for b, c in by_byte.items()) and set(table.values()) == set(alphabet)
    return [table[b] for b in range(256)]


def decoder_cases():
    token_lists = [
        ["Hello", "Ġworld", "!"], ["ĠĠ", "Ċ", "x"], ["ðŁ", "ĳ", "į"], ["ðŁ"], ["<|endoftext|>", "Ġa"],
        ["▁Hello", "▁world", "▁▁x"], ["▁", "▁a▁b"], ["<0x41>", "<0x42>", "c"], ["<0xE6>", "<0x97>", "<0xA5>"],
        ["<0xE6>", "<0x97>", "x"], ["<0xFF>"], ["<0x4G>", "<0x41"], ["  a  ", " b", "c "], ["a", "", "b"],
        ["hello</w>", "wor", "ld</w>"], ["##ab", "cd", "##ef"], [], ["日本", "語"],
    ]
    # Invalid UTF-8 through the byte alphabet: truncated sequences, overlong forms, surrogates,
    # code points past U+10FFFF, stray continuation bytes (lossy decoding replaces each maximal
    # invalid subpart).
    byte_char = {b: c for b, c in zip(range(256), byte_level_alphabet())}
    for invalid in ([0xE2, 0x82], [0xF0, 0x9F, 0x98], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
                    [0xFF], [0x80, 0x80], [0xE2, 0x82, 0x41], [0x61, 0xF0, 0x9F, 0x98, 0x62], [0xE0, 0x80, 0x80]):
        token_lists.append(["".join(byte_char[b] for b in invalid)])
        token_lists.append([f"<0x{b:02X}>" for b in invalid])
    candidates = [
        ("ByteLevel", D.ByteLevel()),
        ("Metaspace(always)", D.Metaspace(replacement="▁", prepend_scheme="always", split=True)),
        ("Metaspace(never)", D.Metaspace(replacement="▁", prepend_scheme="never", split=True)),
        ("Metaspace(first)", D.Metaspace(replacement="▁", prepend_scheme="first", split=True)),
        ("Replace", D.Replace("▁", " ")), ("Replace(regex)", D.Replace(Regex("[ab]+"), "_")),
        ("ByteFallback", D.ByteFallback()), ("Fuse", D.Fuse()),
        ("Strip(space,1,0)", D.Strip(" ", 1, 0)), ("Strip(space,2,2)", D.Strip(" ", 2, 2)),
        ("BPEDecoder", D.BPEDecoder(suffix="</w>")),
        ("Sequence(llama2)", D.Sequence([D.Replace("▁", " "), D.ByteFallback(), D.Fuse(), D.Strip(" ", 1, 0)])),
        ("Sequence(ByteFallback,ByteLevel)", D.Sequence([D.ByteFallback(), D.ByteLevel()])),
    ]
    entries = []
    for name, component in candidates:
        cases = []
        for tokens in token_lists:
            # The library indexes below zero (a panic) when Strip's stop exceeds a token's length,
            # and BPEDecoder does on an empty list.
            if name == "Strip(space,2,2)" and any(len(t) < 2 for t in tokens):
                continue
            if name == "BPEDecoder" and not tokens:
                continue
            try:
                decoded = component.decode(tokens)
            except BaseException as error:  # noqa: BLE001 - the library panics (index underflow) on some inputs
                if isinstance(error, KeyboardInterrupt):
                    raise
                continue
            cases.append({"tokens": tokens, "decoded": decoded})
        entries.append({"name": name, "config": component_config("decoder", component), "cases": cases})
    return entries


def train_small(pre_tokenizer, normalizer=None, vocab_size=300, trainer_kwargs=None, data_root=None,
                alphabet=None):
    tok = Tokenizer(M.BPE(**(trainer_kwargs or {}).get("model", {})))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    kwargs = dict(vocab_size=vocab_size, min_frequency=2, show_progress=False)
    kwargs.update((trainer_kwargs or {}).get("trainer", {}))
    if alphabet is not None:
        kwargs["initial_alphabet"] = alphabet
    trainer = T.BpeTrainer(**kwargs)
    lines = file_lines(os.path.join(data_root, "tinyshakespeare", "input.txt"))[:3000]
    tok.train_from_iterator(lines + COMPONENT_TEXTS, trainer)
    return tok


def synthetic_tokenizers(data_root):
    """Small tokenizers that exercise model options, added-token flags and post-processors."""
    entries = []

    def add(name, tok, config=None):
        entries.append({"name": name, "tokenizer": json.loads(tok.to_str()), "config": config})

    # 1. Llama-2 style: Metaspace + byte_fallback + unk, Llama-2 decoder.
    tok = train_small(P.Metaspace(prepend_scheme="first"), data_root=data_root)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    next_id = max(vocab.values()) + 1
    for name in ["<unk>"] + [f"<0x{b:02X}>" for b in range(256)]:
        if name not in vocab:
            vocab[name] = next_id
            next_id += 1
    spec["model"].update({"byte_fallback": True, "unk_token": "<unk>"})
    spec["decoder"] = json.loads(Tokenizer(M.BPE()).to_str())["decoder"]
    llama2 = Tokenizer.from_str(json.dumps(spec))
    llama2.decoder = D.Sequence([D.Replace("▁", " "), D.ByteFallback(), D.Fuse(), D.Strip(" ", 1, 0)])
    llama2.add_special_tokens([AddedToken("<s>", special=True), AddedToken("</s>", special=True)])
    llama2.post_processor = PP.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", llama2.token_to_id("<s>"))])
    add("llama2-style(byte_fallback)", llama2)

    # 2. unk without byte fallback, fused and not fused.
    for fuse in (True, False):
        spec2 = json.loads(llama2.to_str())
        spec2["model"]["vocab"] = {k: v for k, v in spec2["model"]["vocab"].items() if not k.startswith("<0x")}
        spec2["model"].update({"byte_fallback": False, "fuse_unk": fuse})
        add(f"unk(fuse_unk={fuse})", Tokenizer.from_str(json.dumps(spec2)))

    # 3. no unk token: unknown characters are dropped; Metaspace never/split false; Replace normalizer.
    tok = train_small(P.Metaspace(prepend_scheme="never", split=False),
                      normalizer=N.Sequence([N.Replace(Regex(r"\s+"), " "), N.Strip()]), data_root=data_root)
    tok.decoder = D.Metaspace(prepend_scheme="never")
    add("no-unk(metaspace-never,nosplit)", tok)

    # 4. byte-level with ignore_merges and extra whole-word vocabulary entries; merges in legacy "a b" form.
    tok = train_small(P.ByteLevel(add_prefix_space=True), alphabet=P.ByteLevel.alphabet(), data_root=data_root)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    next_id = max(vocab.values()) + 1
    for word in ["ĠHello", "Ġworld", "Ġhello", "ĠUPPER", "Ġemoji"]:
        if word not in vocab:
            vocab[word] = next_id
            next_id += 1
    spec["model"]["ignore_merges"] = True
    spec["model"]["merges"] = [" ".join(pair) for pair in spec["model"]["merges"]]
    spec["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    spec["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    add("bytelevel(ignore_merges,legacy merges)", Tokenizer.from_str(json.dumps(spec)))
    spec["model"]["ignore_merges"] = False
    add("bytelevel(merges only)", Tokenizer.from_str(json.dumps(spec)))

    # 5. continuing_subword_prefix + end_of_word_suffix (BPE decoder).
    tok = train_small(P.Whitespace(), normalizer=N.Lowercase(), data_root=data_root,
                      trainer_kwargs={"model": {"continuing_subword_prefix": "##", "end_of_word_suffix": "</w>"},
                                      "trainer": {"continuing_subword_prefix": "##", "end_of_word_suffix": "</w>"}})
    tok.decoder = D.BPEDecoder(suffix="</w>")
    add("subword-prefix-suffix", tok)

    # 6. added tokens with every flag, a Lowercase+NFKC normalizer, template post-processor with pair ids.
    tok = train_small(P.ByteLevel(add_prefix_space=False), normalizer=N.Sequence([N.NFKC(), N.Lowercase()]),
                      alphabet=P.ByteLevel.alphabet(), data_root=data_root)
    tok.decoder = D.ByteLevel()
    tok.add_special_tokens([AddedToken("<s>", special=True), AddedToken("</s>", special=True),
                            AddedToken("[MASK]", special=True, lstrip=True, rstrip=True)])
    tok.add_tokens([AddedToken("hello", single_word=True, normalized=True),
                    AddedToken("WORLD", normalized=True),
                    AddedToken("<tag>", rstrip=True, normalized=False),
                    AddedToken("ab", single_word=True, lstrip=True, normalized=False),
                    AddedToken("ＡＢＣ", normalized=True),
                    AddedToken("  ", normalized=False)])
    tok.post_processor = PP.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1",
                                               special_tokens=[("<s>", tok.token_to_id("<s>")),
                                                               ("</s>", tok.token_to_id("</s>"))])
    add("added-token-flags(template)", tok)

    # 7. BERT and RoBERTa post-processors, and a Sequence of post-processors.
    base = train_small(P.ByteLevel(add_prefix_space=True), alphabet=P.ByteLevel.alphabet(), data_root=data_root)
    base.decoder = D.ByteLevel()
    base.add_special_tokens(["<cls>", "<sep>"])
    cls, sep = ("<cls>", base.token_to_id("<cls>")), ("<sep>", base.token_to_id("<sep>"))
    for name, processor in [
        ("bert-processing", PP.BertProcessing(sep, cls)),
        ("roberta-processing", PP.RobertaProcessing(sep, cls, add_prefix_space=True)),
        ("sequence(bytelevel,template)", PP.Sequence([PP.ByteLevel(trim_offsets=False),
                                                      PP.TemplateProcessing(single="<cls> $0 <sep> <sep>",
                                                                            special_tokens=[cls, sep])])),
    ]:
        copy = Tokenizer.from_str(base.to_str())
        copy.post_processor = processor
        add(name, copy)

    # 8. BOS/EOS from tokenizer_config.json (no post-processor): TorchTitan's add_bos/add_eos rules,
    #    tokens given as strings and as AddedToken dicts, one of them new to the vocabulary.
    config_tok = Tokenizer.from_str(base.to_str())
    config = {"bos_token": "<cls>", "eos_token": {"__type": "AddedToken", "content": "<eos-new>", "lstrip": False,
                                                   "rstrip": False, "normalized": False, "single_word": False},
              "pad_token": "<cls>", "add_bos_token": True, "add_eos_token": True,
              "added_tokens_decoder": {"9999": {"content": "<extra>", "lstrip": False, "rstrip": False,
                                                "normalized": True, "single_word": False, "special": False}}}
    add("config-bos-eos", config_tok, config)
    add("config-bos-only", config_tok, {"bos_token": "<sep>", "add_bos_token": True})

    # 9. Metaspace prepend_scheme "first" after a Strip normalizer (the stripped piece no longer
    #    starts at offset 0), and truncation from either side.
    tok = train_small(P.Metaspace(prepend_scheme="first"), normalizer=N.Strip(), data_root=data_root)
    tok.decoder = D.Metaspace(prepend_scheme="first")
    add("metaspace-first(strip)", tok)
    for direction in ("right", "left"):
        truncated = Tokenizer.from_str(base.to_str())
        truncated.post_processor = PP.TemplateProcessing(single="<cls> $A <sep>", special_tokens=[cls, sep])
        truncated.enable_truncation(max_length=6, direction=direction)
        add(f"truncation({direction})", truncated)

    # 10. normalizer chain in a full tokenizer: NFD + StripAccents + Lowercase + Prepend, Digits + Punctuation.
    tok = train_small(P.Sequence([P.WhitespaceSplit(), P.Digits(individual_digits=True), P.Punctuation()]),
                      normalizer=N.Sequence([N.NFD(), N.StripAccents(), N.Lowercase(), N.Prepend("^")]),
                      data_root=data_root)
    tok.decoder = D.Fuse()
    add("normalizer-chain", tok)
    return entries


def synthetic_cases(entries, check_torchtitan):
    texts = COMPONENT_TEXTS + EDGE_CASES
    for entry in entries:
        ref = Reference(tokenizer_json=json.dumps(entry["tokenizer"]), config=entry["config"])
        entry["bos_id"], entry["eos_id"] = api_bos_eos(ref)
        cases = []
        for text in texts:
            ids = ref.encode(text, True)
            case = {"text": text, "ids": ids, "raw": ref.encode(text, False), "dec": ref.decode(ids)}
            skipped = ref.decode(ids, skip_special_tokens=True)
            if skipped != case["dec"]:
                case["dec_skip"] = skipped
            cases.append(case)
        entry["cases"] = cases
        if check_torchtitan and entry["config"]:
            tmp = tempfile.mkdtemp(prefix="tok-comp-")
            with open(os.path.join(tmp, "tokenizer.json"), "w", encoding="utf-8") as f:
                json.dump(entry["tokenizer"], f, ensure_ascii=False)
            with open(os.path.join(tmp, "tokenizer_config.json"), "w", encoding="utf-8") as f:
                json.dump(entry["config"], f, ensure_ascii=False)
            wrapper = torchtitan_wrapper(tmp)
            if wrapper is not None:
                for case in cases:
                    assert wrapper.encode(case["text"]) == case["ids"], (entry["name"], case["text"])
                print(f"  {entry['name']}: TorchTitan wrapper agrees")
    return entries


def write_components(data_root, check_torchtitan):
    components = {
        "library": f"tokenizers {tokenizers.__version__}",
        "pre_tokenizers": pre_tokenizer_cases(),
        "normalizers": normalizer_cases(),
        "decoders": decoder_cases(),
        "tokenizers": synthetic_cases(synthetic_tokenizers(data_root), check_torchtitan),
    }
    write_gz_json(os.path.join(FIXTURES, "components.json.gz"), components)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build-demo", "goldens"])
    parser.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data"),
                        help="the shared data folder (default: ../shared/data from the repo root)")
    parser.add_argument("--check-torchtitan", action="store_true",
                        help="also compare with torchtitan's HuggingFaceTokenizer (needs torchtitan importable)")
    args = parser.parse_args()
    if tokenizers.__version__ != PINNED:
        sys.exit(f"tokenizers {tokenizers.__version__} found, {PINNED} pinned (requirements-tokenizers.txt)")
    data_root = os.path.abspath(args.data)
    if args.command == "build-demo":
        build_demo(data_root)
        return
    os.makedirs(FIXTURES, exist_ok=True)
    write_real_goldens(data_root, args.check_torchtitan)
    write_components(data_root, args.check_torchtitan)


if __name__ == "__main__":
    main()
