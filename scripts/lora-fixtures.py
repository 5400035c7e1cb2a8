#!/usr/bin/env python3
"""LoRA fixtures: PEFT adapters on the tiny parity models, and what PEFT computes with them.

Run by hand (the tests only read what it writes):

    /work/venv-ref/bin/python scripts/lora-fixtures.py            # write the fixtures
    /work/venv-ref/bin/python scripts/lora-fixtures.py --check DIR NAME
        # open a folder the studio wrote (DIR: adapter folder, NAME: its fixture) with
        # peft.PeftModel.from_pretrained and compare with the fixture's numbers

Pinned: torch 2.15.0, transformers 5.24.0, peft (PINNED below). For each base in BASES (a folder
of app/engine/tests/fixtures/parity), the script wraps the base with `get_peft_model`
(LoraConfig as listed), fills every lora_A / lora_B with seeded normal values (a fresh adapter
has B = 0 and would test nothing), saves it with `save_pretrained` into
app/engine/tests/fixtures/lora/NAME (`base_model_name_or_path` rewritten to the base folder,
relative to the adapter folder), and records, on the model loaded back with
`PeftModel.from_pretrained`, the base fixture's prompts with their greedy continuation and the
per-token log-probs (same layout as the parity fixtures' logprobs.json), and the same for the
merged model (`merge_and_unload`), which must agree.
"""

import json
import os
import sys

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

PINNED = {"torch": "2.15.0", "transformers": "5.24.0", "peft": "0.21.2"}
VERSIONS = {
    "torch": torch.__version__.split("+")[0],
    "transformers": transformers.__version__,
    "peft": peft.__version__,
}
ROOT = os.path.join(os.path.dirname(__file__), "..", "app", "engine", "tests", "fixtures")
GREEDY_NEW = 8

# (fixture name, base parity folder, LoraConfig keyword arguments)
BASES = [
    ("qwen2-all-linear", "qwen2", dict(r=4, lora_alpha=8, target_modules="all-linear")),
    ("qwen3-qv", "qwen3", dict(r=2, lora_alpha=5, target_modules=["q_proj", "v_proj"])),
    ("llama3-rslora", "llama3", dict(r=4, lora_alpha=4, use_rslora=True,
                                     target_modules=["k_proj", "o_proj", "up_proj", "down_proj"])),
]


def load_base(name):
    return AutoModelForCausalLM.from_pretrained(
        os.path.join(ROOT, "parity", name), dtype=torch.float32, attn_implementation="eager"
    ).eval()


def logprobs_of(model, seq):
    with torch.no_grad():
        logits = model(torch.tensor([seq])).logits[0].float()
    lsm = torch.log_softmax(logits, dim=-1)
    return [lsm[i, seq[i + 1]].item() for i in range(len(seq) - 1)]


def greedy(model, prompt, n):
    seq = list(prompt)
    margins = []
    for _ in range(n):
        with torch.no_grad():
            logits = model(torch.tensor([seq])).logits[0, -1].float()
        top = torch.topk(logits, 2)
        margins.append((top.values[0] - top.values[1]).item())
        seq.append(int(top.indices[0]))
    return seq[len(prompt):], min(margins)


def measure(model, prompts):
    rows, margin = [], float("inf")
    for p in prompts:
        g, m = greedy(model, p, GREEDY_NEW)
        margin = min(margin, m)
        rows.append({"prompt": p, "greedy": g, "logprobs": logprobs_of(model, p + g)})
    return rows, margin


def prompts_of(base):
    with open(os.path.join(ROOT, "parity", base, "logprobs.json")) as f:
        return [r["prompt"] for r in json.load(f)["rows"]]


def write(name, base, kwargs):
    torch.manual_seed(0)
    model = get_peft_model(load_base(base), LoraConfig(task_type="CAUSAL_LM", **kwargs))
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    out = os.path.join(ROOT, "lora", name)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    os.remove(os.path.join(out, "README.md"))  # PEFT's model card template
    cfg_path = os.path.join(out, "adapter_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["base_model_name_or_path"] = os.path.join("..", "..", "parity", base)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    loaded = PeftModel.from_pretrained(load_base(base), out).eval()
    prompts = prompts_of(base)
    rows, margin = measure(loaded, prompts)
    merged_rows, _ = measure(loaded.merge_and_unload(), prompts)
    merged_delta = max(
        abs(a - b)
        for r, m in zip(rows, merged_rows)
        for a, b in zip(r["logprobs"], m["logprobs"])
    )
    assert all(r["greedy"] == m["greedy"] for r, m in zip(rows, merged_rows))
    doc = {
        "family": f"lora/{name}",
        "base": base,
        "lora": kwargs,
        "versions": VERSIONS,
        "greedy_new": GREEDY_NEW,
        "min_greedy_margin": margin,
        "merged_max_delta": merged_delta,
        "rows": rows,
    }
    with open(os.path.join(out, "logprobs.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{name}: margin {margin:.3g}, merged vs adapter max |Δ| {merged_delta:.2e}")


def check(folder, name):
    """Opens a studio-written adapter folder with PEFT and compares with fixture NAME."""
    with open(os.path.join(ROOT, "lora", name, "logprobs.json")) as f:
        fx = json.load(f)
    model = PeftModel.from_pretrained(load_base(fx["base"]), folder).eval()
    rows, _ = measure(model, [r["prompt"] for r in fx["rows"]])
    delta = max(
        abs(a - b) for r, x in zip(rows, fx["rows"]) for a, b in zip(r["logprobs"], x["logprobs"])
    )
    same = all(r["greedy"] == x["greedy"] for r, x in zip(rows, fx["rows"]))
    print(f"{folder}: PeftModel.from_pretrained opened it; greedy "
          f"{'identical' if same else 'DIFFERENT'}, max |Δ log-prob| {delta:.2e}")
    sys.exit(0 if same and delta <= 1e-4 else 1)


def main():
    if VERSIONS != PINNED:
        sys.exit(f"pinned {PINNED}, found {VERSIONS}: edit PINNED deliberately to move on")
    if sys.argv[1:2] == ["--check"]:
        check(sys.argv[2], sys.argv[3])
        return
    for name, base, kwargs in BASES:
        write(name, base, kwargs)


if __name__ == "__main__":
    main()
