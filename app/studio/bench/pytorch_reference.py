#!/usr/bin/env python3
"""PyTorch / transformers reference for `rlvr-studio bench` and for Hugging Face compatibility.

Not part of the test suite (the build machines have no PyTorch). With `pip install torch
transformers`, run from the repository root:

    python3 app/studio/bench/pytorch_reference.py [MODEL_DIR] [--threads N]

1. Loads MODEL_DIR (default: the embedded default policy) with `transformers` and checks that its
   greedy completions and per-token log-probs equal those of `rlvr-studio generate`.
2. Times the same workloads as `rlvr-studio bench` (batched sampling with the KV cache; one
   training step = forward + backward + AdamW over prompt + completion, loss on the completion
   log-probs) in plain PyTorch, and prints the figures side by side.
"""
import argparse, json, subprocess, time

import torch
from transformers import AutoModelForCausalLM
from tokenizers import Tokenizer

PROMPTS = ["3 5 7>22:", "2 4 8>0:", "sort 5 2 9:", "12+34=", "rev 3817:", "9 1 6>15:"]


def check_logprobs(model_dir, model, tok, bos, eos):
    out = subprocess.run(
        ["target/release/rlvr-studio", "generate", "--model", model_dir, "--max-new-tokens", "12"]
        + sum([["--prompt", p] for p in PROMPTS], []),
        check=True, capture_output=True, text=True).stdout
    worst = 0.0
    for line in out.splitlines():
        ours = json.loads(line)
        ids = [bos] + tok.encode(ours["prompt"]).ids
        full = torch.tensor([ids + ours["tokens"]])
        with torch.no_grad():
            logits = model(full).logits[0].float()
        lp = torch.log_softmax(logits, -1)
        theirs = [lp[len(ids) - 1 + j, t].item() for j, t in enumerate(ours["tokens"])]
        greedy = [int(lp[len(ids) - 1 + j].argmax()) for j in range(len(ours["tokens"]))]
        assert greedy == ours["tokens"], (ours, greedy)
        worst = max(worst, max(abs(a - b) for a, b in zip(theirs, ours["logprobs"])))
    print(f"transformers loads the folder: greedy completions identical, max |log-prob diff| = {worst:.2e}")


def bench(model, rows, prompt_len, completion_len, iters, vocab):
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(4, vocab, (rows, prompt_len), generator=g)
    comps = torch.randint(4, vocab, (rows, completion_len), generator=g)
    # rollout
    times = []
    for i in range(iters + 1):
        t = time.perf_counter()
        with torch.no_grad():
            model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True,
                           max_new_tokens=completion_len, min_new_tokens=completion_len,
                           pad_token_id=0, top_k=0)
        if i:
            times.append(time.perf_counter() - t)
    roll = sorted(times)[len(times) // 2]
    # training step
    opt = torch.optim.AdamW(model.parameters(), lr=1e-7, weight_decay=0.0)
    seq = torch.cat([prompts, comps[:, :-1]], 1)
    times = []
    for i in range(iters + 1):
        t = time.perf_counter()
        logits = model(seq).logits[:, prompt_len - 1:]
        lp = torch.log_softmax(logits, -1).gather(-1, comps.unsqueeze(-1)).squeeze(-1)
        loss = -lp.sum() * 1e-6
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
    train = sorted(times)[len(times) // 2]
    return rows * completion_len / roll, roll, rows * seq.shape[1] / train, train


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="app/assets/default-policy")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    a = ap.parse_args()
    shapes = [(128, 8, 8), (64, 16, 32)]
    # Our figures first: PyTorch's OpenMP workers keep spinning for a while after each parallel
    # region and would steal the cores from a process started afterwards.
    ours = {}
    for rows, pl, cl in shapes:
        ours[(rows, pl, cl)] = json.loads(subprocess.run(
            ["target/release/rlvr-studio", "bench", "--model", a.model, "--rows", str(rows),
             "--prompt-len", str(pl), "--completion-len", str(cl), "--iters", str(a.iters),
             "--threads", str(a.threads), "--json"], check=True, capture_output=True, text=True).stdout)
    torch.set_num_threads(a.threads)
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    tok = Tokenizer.from_file(f"{a.model}/tokenizer.json")
    cfg = model.config
    check_logprobs(a.model, model, tok, cfg.bos_token_id, cfg.eos_token_id)
    model.train()
    for rows, pl, cl in shapes:
        rtok, rs, ttok, ts = bench(model, rows, pl, cl, a.iters, cfg.vocab_size)
        o = ours[(rows, pl, cl)]
        print(f"{rows} rows x ({pl}+{cl}) tokens, {a.threads} thread(s):")
        print(f"  rollout  PyTorch {rtok:9.0f} tok/s ({rs:.3f} s)   rlvr-studio {o['rollout_tokens_per_s']:9.0f} tok/s ({o['rollout_s']:.3f} s)   x{o['rollout_tokens_per_s'] / rtok:.1f}")
        print(f"  training PyTorch {ttok:9.0f} tok/s ({ts:.3f} s)   rlvr-studio {o['train_tokens_per_s']:9.0f} tok/s ({o['train_step_s']:.3f} s)   x{o['train_tokens_per_s'] / ttok:.1f}")


if __name__ == "__main__":
    main()
