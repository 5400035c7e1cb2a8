#!/usr/bin/env python3
"""Parity fixtures: tiny random models of each family, and what transformers computes on them.

Run by hand (the tests only read what it writes):

    /work/venv-ref/bin/python scripts/parity-fixtures.py [OUT_DIR]

OUT_DIR defaults to app/engine/tests/fixtures/parity. Made with (pinned; the script refuses others
so the fixtures stay reproducible, edit PINNED deliberately to move on):

    torch        2.15.0 (CPU compute, float32, eager attention)
    transformers 5.24.0
    tokenizers   0.23.3
    safetensors  0.8.0

For each family the script builds the model with transformers' own class (seeded weights, drawn
wider than the library's 0.02 init so logits are far from uniform and greedy choices have clear
margins), writes it with `save_pretrained`, then rewrites `config.json` in the requested form:

  - "rope_theta": the form transformers 4.x and most Hub folders use (top-level `rope_theta`, and
    `rope_scaling` when the rope type is not the default);
  - "rope_parameters": what transformers 5.x writes natively (`rope_parameters: {rope_theta,
    rope_type, ...}`), kept as saved.

The reference numbers are computed by transformers on the model *loaded back from the folder*
(`from_pretrained`, float32, eager attention), so they are what transformers makes of the files.
`logprobs.json` holds, for each prompt (token ids, fed directly, no tokenizer), the prompt followed
by its greedy continuation of `greedy_new` tokens (argmax, full recompute each step, no stop at
end-of-sequence), and the log-probability of every token of that sequence after the first under
the model, each row computed alone (no padding). `min_greedy_margin` is the smallest gap between
the best and the second-best logit over the greedy steps (a tie would make the greedy check
meaningless).
"""

import json
import os

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import shutil
import sys
import tempfile

import safetensors
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

PINNED = {
    "torch": "2.15.0",
    "transformers": "5.24.0",
    "tokenizers": "0.23.3",
    "safetensors": "0.8.0",
}
VERSIONS = {
    "torch": torch.__version__.split("+")[0],
    "transformers": transformers.__version__,
    "tokenizers": tokenizers.__version__,
    "safetensors": safetensors.__version__,
}

VOCAB = 256
GREEDY_NEW = 8
# Smallest accepted gap between the best and second-best logit at a greedy step.
MIN_MARGIN = 1e-2
# Lengths of the prompts: one of 80 is past the llama3 fixture's original_max_position_embeddings
# (64), and the rows differ in length so the Rust side pads them into one batch.
PROMPT_LENGTHS = [1, 5, 13, 80]
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)


def fixtures():
    """(name, model class, config, storage dtype, config form, max shard size or None)."""
    yield "qwen2", Qwen2ForCausalLM, Qwen2Config(
        **COMMON, rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True,
        use_sliding_window=False,
    ), torch.float32, "rope_theta", None
    yield "qwen2-bf16", Qwen2ForCausalLM, Qwen2Config(
        **COMMON, rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True,
        use_sliding_window=False,
    ), torch.bfloat16, "rope_theta", None
    yield "qwen2-rope-parameters", Qwen2ForCausalLM, Qwen2Config(
        **COMMON, rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True,
        use_sliding_window=False,
    ), torch.float32, "rope_parameters", None
    yield "qwen3", Qwen3ForCausalLM, Qwen3Config(
        **COMMON, head_dim=32, rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=False,
        attention_bias=False, use_sliding_window=False,
    ), torch.float32, "rope_theta", None
    common = dict(COMMON, eos_token_id=[2, 3])
    yield "llama3", LlamaForCausalLM, LlamaConfig(
        **common, rope_theta=5e5, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_scaling={
            "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
        },
    ), torch.float32, "rope_theta", None
    yield "llama-linear", LlamaForCausalLM, LlamaConfig(
        **COMMON, rope_theta=1e4, rms_norm_eps=1e-6, tie_word_embeddings=False,
        rope_scaling={"rope_type": "linear", "factor": 2.0},
    ), torch.float32, "rope_theta", None
    yield "smollm2", LlamaForCausalLM, LlamaConfig(
        **COMMON, rope_theta=1e5, rms_norm_eps=1e-5, tie_word_embeddings=True,
    ), torch.float32, "rope_theta", None
    yield "mistral", MistralForCausalLM, MistralConfig(
        **COMMON, rope_theta=1e6, rms_norm_eps=1e-5, tie_word_embeddings=False,
        sliding_window=None,
    ), torch.float32, "rope_theta", None
    yield "llama-sharded", LlamaForCausalLM, LlamaConfig(
        **COMMON, rope_theta=1e4, rms_norm_eps=1e-6, tie_word_embeddings=False,
    ), torch.float32, "rope_theta", "split"


def init_weights(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if "norm" in name:
                p.copy_(1.0 + 0.2 * r)
            elif name.endswith(".bias"):
                p.copy_(0.2 * r)
            elif "embed_tokens" in name or name == "lm_head.weight":
                p.copy_(0.5 * r)
            else:
                p.copy_(r / p.shape[1] ** 0.5)


def write_tokenizer(out, vocab):
    """A word-level tokenizer over the ids (`<pad> <bos> <eos> <eos2>`, then `t4`, `t5`, ...):
    the tests feed ids, `Policy::load` only needs a tokenizer.json whose ids fit the vocabulary."""
    names = ["<pad>", "<bos>", "<eos>", "<eos2>"] + [f"t{i}" for i in range(4, vocab)]
    tok = Tokenizer(models.WordLevel({n: i for i, n in enumerate(names)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(names[:4])
    tok.save(os.path.join(out, "tokenizer.json"))


def rewrite_config(out, form):
    path = os.path.join(out, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    if form == "rope_theta":
        rp = dict(cfg.pop("rope_parameters"))
        cfg["rope_theta"] = rp.pop("rope_theta")
        if rp.get("rope_type", "default") != "default":
            cfg["rope_scaling"] = rp
    else:
        assert "rope_parameters" in cfg and "rope_theta" not in cfg
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def logprobs_of(model, seq):
    with torch.no_grad():
        logits = model(torch.tensor([seq])).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    return [lp[i, seq[i + 1]].item() for i in range(len(seq) - 1)]


def greedy(model, prompt, n):
    seq, margins = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([seq])).logits[0, -1].float()
            top = torch.topk(logits, 2).values
            margins.append((top[0] - top[1]).item())
            seq.append(int(torch.argmax(logits)))
    return seq[len(prompt):], min(margins)


def main():
    if VERSIONS != PINNED:
        sys.exit(f"pinned {PINNED}, found {VERSIONS}: edit PINNED deliberately to move on")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    base = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        root, "app", "engine", "tests", "fixtures", "parity")
    os.makedirs(base, exist_ok=True)
    torch.set_num_threads(1)
    for seed, (name, cls, cfg, dtype, form, shard) in enumerate(fixtures()):
        out = os.path.join(base, name)
        shutil.rmtree(out, ignore_errors=True)
        torch.manual_seed(seed)
        model = cls(cfg).eval()
        init_weights(model, 1000 + seed)
        model = model.to(dtype)
        kwargs = {}
        if shard:
            total = sum(p.numel() * p.element_size() for p in model.state_dict().values())
            kwargs["max_shard_size"] = int(total * 0.6)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp, **kwargs)
            os.makedirs(out)
            for f in os.listdir(tmp):
                shutil.copy(os.path.join(tmp, f), out)
        rewrite_config(out, form)
        write_tokenizer(out, VOCAB)
        files = sorted(os.listdir(out))
        if shard:
            shards = [f for f in files if f.endswith(".safetensors")]
            assert len(shards) == 2 and "model.safetensors.index.json" in files, files

        ref = AutoModelForCausalLM.from_pretrained(
            out, dtype=torch.float32, attn_implementation="eager").eval()
        assert type(ref) is cls, type(ref)
        # Prompts are drawn again (same stream) while a greedy step is a near tie.
        g = torch.Generator().manual_seed(2000 + seed)
        for _attempt in range(50):
            prompts = [torch.randint(4, VOCAB, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]
            rows = []
            min_margin = float("inf")
            for p in prompts:
                cont, margin = greedy(ref, p, GREEDY_NEW)
                min_margin = min(min_margin, margin)
                rows.append({"prompt": p, "greedy": cont, "logprobs": logprobs_of(ref, p + cont)})
            if min_margin > MIN_MARGIN:
                break
        assert min_margin > MIN_MARGIN, f"{name}: greedy margin {min_margin}, change the seed"
        with open(os.path.join(out, "config.json")) as f:
            saved = json.load(f)
        rope = {k: saved[k] for k in ("rope_theta", "rope_scaling", "rope_parameters") if k in saved}
        fixture = {
            "family": name,
            "class": cls.__name__,
            "versions": VERSIONS,
            "storage_dtype": str(dtype).removeprefix("torch."),
            "config_form": form,
            "rope": rope,
            "files": files,
            "greedy_new": GREEDY_NEW,
            "min_greedy_margin": min_margin,
            "rows": rows,
        }
        with open(os.path.join(out, "logprobs.json"), "w") as f:
            json.dump(fixture, f, indent=1)
            f.write("\n")
        size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
        print(f"{name:24} {cls.__name__:20} {form:16} {size / 1024:7.1f} KiB  "
              f"min greedy margin {min_margin:.3f}  files {files}")


if __name__ == "__main__":
    main()
