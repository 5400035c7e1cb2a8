#!/usr/bin/env python3
"""Writes app/engine/tests/fixtures/written/<name>.json: what transformers does with the model
folders the studio writes (prompt token ids from tokenizer(text), greedy completion from
generate(do_sample=False)), for app/engine/tests/written.rs to compare with the studio.

Run by hand (the tests only read the fixtures), after scripts/fetch-test-assets.sh:
    RLVR_WRITTEN_DIR=/tmp/written cargo test --release --workspace --test written
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch transformers==5.24.0 safetensors
    /tmp/venv/bin/python scripts/written-fixtures.py /tmp/written
(the test fails until the fixtures exist; the folders are written before it compares).
"""
import hashlib
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "app", "engine", "tests", "fixtures", "written")
MAX_NEW = 12

PROMPTS = {
    "default-policy": ["3 5 7>22:", "12+34=", "sort 5 2 9:", "reverse abc:"],
    "qwen3-resaved": ["t4 t5 t6", "t9 t10 t11 t12 t13", "t200"],
    "smollm2-import": [
        "What is 3 + 5?",
        "The capital of France is",
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    ],
}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    os.makedirs(OUT_DIR, exist_ok=True)
    torch.manual_seed(0)
    for name, prompts in PROMPTS.items():
        d = os.path.join(root, name)
        if not os.path.isdir(d):
            sys.exit(f"{d} is missing: run the written test with RLVR_WRITTEN_DIR={root} first")
        tok = AutoTokenizer.from_pretrained(d)
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
        model.eval()
        gen = model.generation_config
        rows = []
        for text in prompts:
            ids = tok(text)["input_ids"]
            with torch.no_grad():
                out = model.generate(
                    torch.tensor([ids]),
                    attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    max_new_tokens=MAX_NEW,
                    do_sample=False,
                    eos_token_id=gen.eos_token_id,
                    pad_token_id=gen.pad_token_id if gen.pad_token_id is not None else 0,
                )
            rows.append({"text": text, "ids": ids, "greedy": out[0, len(ids):].tolist()})
        with open(os.path.join(d, "model.safetensors"), "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        fixture = {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "tokenizer_class": type(tok).__name__,
            "weights_sha256": sha,
            "max_new": MAX_NEW,
            "prompts": rows,
        }
        path = os.path.join(OUT_DIR, f"{name}.json")
        with open(path, "w") as f:
            json.dump(fixture, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(f"wrote {path}: {[(r['text'], len(r['ids']), r['greedy']) for r in rows]}")


if __name__ == "__main__":
    main()
