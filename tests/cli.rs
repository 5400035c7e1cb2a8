//! End-to-end tests: the `rlvr-studio` binary driven as a user drives it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::path::PathBuf;

/// The default preset, shortened, must raise held-out accuracy by a clear margin.
#[test]
fn default_preset_learns() {
    let dir = tempfile::tempdir().unwrap();
    let lines = train_json(&preset("default.toml"), dir.path(), &["--steps", "120"]);
    assert!(lines
        .iter()
        .all(|v| v["type"].is_string() && v["elapsed_s"].is_number()));
    let evals = of_type(&lines, "eval");
    let steps = of_type(&lines, "step");
    assert_eq!(steps.len(), 120);
    for key in [
        "reward_mean",
        "reward_std",
        "reward_components",
        "accuracy",
        "entropy",
        "clip_low_frac",
        "clip_high_frac",
        "response_len_mean",
        "response_len_max",
        "truncated_frac",
        "zero_var_frac",
        "grad_norm",
        "lr",
        "step_time_s",
        "tokens_per_s",
    ] {
        assert!(!steps[0][key].is_null(), "step line lacks {key}");
    }
    let first = evals.first().unwrap();
    let last = evals.last().unwrap();
    assert_eq!(first["step"], 0);
    assert_eq!(last["step"], 120);
    assert!(first["pass_at_k"]["8"].is_number() && first["greedy_accuracy"].is_number());
    let p0 = first["pass_at_1"].as_f64().unwrap();
    let p1 = last["pass_at_1"].as_f64().unwrap();
    assert!(p1 - p0 >= 0.08, "held-out pass@1 went {p0:.3} -> {p1:.3}");
    assert_eq!(of_type(&lines, "done").len(), 1);
    // The output folder: resolved config, metrics, final policy in HF format.
    for f in [
        "config.toml",
        "metrics.jsonl",
        "policy/config.json",
        "policy/model.safetensors",
        "policy/tokenizer.json",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.contains("\"type\":\"step\""))
            .count(),
        120
    );
}

/// Same seed, same machine: identical metrics (timings aside); another seed differs.
#[test]
fn runs_are_deterministic_for_a_seed() {
    let run = |seed: &str| {
        let dir = tempfile::tempdir().unwrap();
        let lines = train_json(
            &preset("default.toml"),
            dir.path(),
            &["--steps", "4", "--seed", seed],
        );
        of_type(&lines, "step")
            .into_iter()
            .map(|v| {
                let mut v = v.clone();
                let o = v.as_object_mut().unwrap();
                o.retain(|k, _| !k.ends_with("_s") && !k.contains("per_s") && k != "run_id");
                v
            })
            .collect::<Vec<_>>()
    };
    let a = run("3");
    assert_eq!(a, run("3"));
    assert_ne!(a, run("4"));
}

#[test]
fn bad_inputs_give_one_clear_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let missing = d.join("nope.toml").to_string_lossy().into_owned();
    expect_error(&["train", &missing], &["nope.toml"]);
    let garbled = write("garbled.toml", "steps = [1,\n");
    expect_error(&["train", &garbled], &["garbled.toml"]);
    let unknown_key = write("key.toml", "[rollout]\ngroup_sise = 4\n");
    expect_error(&["train", &unknown_key], &["key.toml", "group_sise"]);
    let range = write("range.toml", "[optim]\nlr = 5.0\n");
    expect_error(&["train", &range], &["range.toml", "optim.lr", "5"]);
    // Checks that need the command line name the file and the flags.
    let warm = write("warm.toml", "steps = 600\n[optim]\nwarmup_steps = 10\n");
    expect_error(
        &["train", &warm, "--steps", "5"],
        &[
            "warm.toml (with --steps 5)",
            "optim.warmup_steps = 10",
            "steps (5)",
        ],
    );
    // The launcher's own checks name the file too.
    let heldout = write(
        "heldout.toml",
        "[task]\nname = \"arithmetic\"\nmax_digits = 1\n[eval]\nheldout_size = 5000\n",
    );
    let out_dir = d.join("out-heldout").to_string_lossy().into_owned();
    expect_error(
        &["train", &heldout, "--out", &out_dir],
        &["heldout.toml", "eval.heldout_size = 5000"],
    );
    let no_path = write("nopath.toml", "[model]\npath = \"\"\n");
    expect_error(&["train", &no_path], &["nopath.toml", "model.path = \"\""]);
    // A huge number is not written out in full.
    let huge = write("huge.toml", "[rollout]\ngroup_size = 1e300\n");
    let out = bin().args(["train", &huge]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rollout.group_size") && err.len() < 300,
        "{err}"
    );
    let task = write("task.toml", "[task]\nname = \"chess\"\n");
    expect_error(&["train", &task], &["task.toml", "chess"]);
    // A model folder whose weights are garbage.
    let model = d.join("model");
    std::fs::create_dir(&model).unwrap();
    let src = repo().join("app/assets/default-policy");
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), model.join(f)).unwrap();
    }
    std::fs::write(model.join("model.safetensors"), b"\x00\x01not safetensors").unwrap();
    let cfg = write(
        "badmodel.toml",
        &format!("[model]\npath = {:?}\n", model.to_string_lossy()),
    );
    let out_dir = d.join("out").to_string_lossy().into_owned();
    expect_error(&["train", &cfg, "--out", &out_dir], &["model.safetensors"]);
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let cfg = write(
        "nomodel.toml",
        &format!("[model]\npath = {:?}\n", empty.to_string_lossy()),
    );
    expect_error(&["train", &cfg, "--out", &out_dir], &["config.json"]);
}

#[test]
fn bench_prints_throughput() {
    let out = run_ok(["bench", "--iters", "1", "--rows", "16", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in [
        "rollout_tokens_per_s",
        "train_tokens_per_s",
        "train_gflops",
        "matmul_peak_gflops",
    ] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}");
    }
}

/// Every shipped preset parses, loads its model and trains.
#[test]
fn every_preset_runs() {
    for entry in std::fs::read_dir(repo().join("app/presets")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "pretrain.toml" {
            continue;
        }
        let cfg = rlvr_core::RunConfig::from_file(&path).unwrap();
        if !cfg.plugins.dirs.is_empty() {
            // Presets that use plugins run in tests/plugins.rs, which builds the plugins.
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let lines = train_json(&path, dir.path(), &["--steps", "2"]);
        assert_eq!(of_type(&lines, "step").len(), 2, "{name}");
        let kl = &of_type(&lines, "step")[1]["kl"];
        assert_eq!(
            kl.is_number(),
            cfg.algorithm.kl_coef > 0.0,
            "{name}: kl = {kl}"
        );
        for key in [
            "entropy_top20",
            "top1_prob",
            "nonzero_adv_frac",
            "distinct_answers",
        ] {
            assert!(of_type(&lines, "step")[1][key].is_number(), "{name}: {key}");
        }
    }
}

/// `pretrain` writes a loadable model folder, bit-for-bit reproducibly.
#[test]
fn pretrain_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let run = |sub: &str| {
        let out_dir = dir.path().join(sub);
        run_ok([
            std::ffi::OsStr::new("pretrain"),
            "--steps".as_ref(),
            "3".as_ref(),
            "--config".as_ref(),
            preset("pretrain.toml").as_os_str(),
            "--out".as_ref(),
            out_dir.as_os_str(),
        ]);
        std::fs::read(out_dir.join("model.safetensors")).unwrap()
    };
    assert_eq!(run("a"), run("b"));
    let model = dir.path().join("a");
    let out = run_ok([
        std::ffi::OsStr::new("generate"),
        "--prompt".as_ref(),
        "1 2 3>6:".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["prompt"], "1 2 3>6:");
    // The pretrained folder has no chat template: --chat says so, naming the folder.
    let (model_s, _) = (model.to_str().unwrap(), ());
    expect_error(
        &[
            "generate", "--model", model_s, "--chat", "--prompt", "1 2 3>6:",
        ],
        &["--chat", model_s, "no chat template"],
    );
    let out = run_ok(["models".as_ref(), "inspect".as_ref(), model.as_os_str()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Qwen2ForCausalLM") && text.contains("chat template: none"),
        "{text}"
    );
    // A folder without weights: the message training would give.
    std::fs::remove_file(model.join("model.safetensors")).unwrap();
    expect_error(
        &["models", "inspect", model_s],
        &[model_s, "no weights: expected model.safetensors"],
    );
}

#[test]
fn compare_prints_one_row_per_preset() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok([
        std::ffi::OsStr::new("compare"),
        preset("grpo.toml").as_os_str(),
        preset("nsr.toml").as_os_str(),
        "--steps".as_ref(),
        "2".as_ref(),
        "--json".as_ref(),
        "--out".as_ref(),
        dir.path().as_os_str(),
    ]);
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["name"].as_str(), rows[1]["name"].as_str()),
        (Some("grpo"), Some("nsr"))
    );
    for r in &rows {
        for k in [
            "pass_at_1",
            "pass_at_g",
            "mean_entropy",
            "mean_length",
            "wall_s",
        ] {
            assert!(r[k].is_number(), "{k}");
        }
    }
}

/// `train --resume RUN` continues a stored run from its checkpoint and appends to its metrics
/// (the engine test `resuming_a_checkpoint_reproduces_the_uninterrupted_run` checks that the
/// continuation is bit-identical; `tests/history.rs` kills runs at random points).
#[test]
fn resume_continues_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let lines = train_json(&preset("default.toml"), dir.path(), &["--steps", "3"]);
    assert_eq!(of_type(&lines, "step").len(), 3);
    let id = lines[0]["run_id"].as_i64().unwrap().to_string();
    assert!(dir.path().join("resume-1.ckpt").is_file());
    let out = run_ok(["train", "--resume", &id, "--steps", "5", "--json"]);
    let resumed = json_lines(&out);
    assert!(resumed
        .iter()
        .all(|v| v["run_id"].as_i64() == id.parse().ok()));
    let steps: Vec<u64> = of_type(&resumed, "step")
        .iter()
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![4, 5]);
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let all: Vec<u64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "step")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(all, vec![1, 2, 3, 4, 5]);
    // Nothing to resume from: one clear error line.
    for f in ["resume-0.ckpt", "resume-1.ckpt"] {
        std::fs::remove_file(dir.path().join(f)).unwrap();
    }
    expect_error(
        &["train", "--resume", &id],
        &["checkpoint", "files were removed"],
    );
    expect_error(
        &["train", "--resume", "no-such-run"],
        &["no run \"no-such-run\""],
    );
}

/// `import-gguf` turns the real SmolLM2 GGUF (from `scripts/fetch-test-assets.sh`) into a bf16
/// model folder that `generate` opens; a file that is not GGUF is one error line naming it.
#[test]
fn import_gguf_writes_a_model_folder() {
    let assets = std::env::var_os("RLVR_TEST_ASSETS")
        .map_or_else(|| repo().join("target/test-assets"), PathBuf::from);
    let gguf = assets.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        gguf.is_file(),
        "test asset {} is missing: run scripts/fetch-test-assets.sh (or set RLVR_TEST_ASSETS)",
        gguf.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("smollm2");
    let out = run_ok([
        "import-gguf".as_ref(),
        gguf.as_os_str(),
        "--out".as_ref(),
        out_dir.as_os_str(),
        "--dtype".as_ref(),
        "bf16".as_ref(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("LlamaForCausalLM: 30 layers, hidden 576, 9/3 heads, vocab 49152, tied")
            && text.contains("272 tensors, 134515008 parameters"),
        "{text}"
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["torch_dtype"], "bfloat16");
    let size = std::fs::metadata(out_dir.join("model.safetensors"))
        .unwrap()
        .len();
    assert!((269_000_000..270_000_000).contains(&size), "{size}");
    let gen = run_ok([
        "generate".as_ref(),
        "--model".as_ref(),
        out_dir.as_os_str(),
        "--prompt".as_ref(),
        "The capital of France is".as_ref(),
        "--max-new-tokens".as_ref(),
        "4".as_ref(),
    ]);
    assert!(String::from_utf8_lossy(&gen.stdout).contains("\"completion\""));
    // Through the imported chat template (ChatML with SmolLM's default system prompt).
    let chat = run_ok([
        "generate".as_ref(),
        "--model".as_ref(),
        out_dir.as_os_str(),
        "--chat".as_ref(),
        "--prompt".as_ref(),
        "What is the capital of France?".as_ref(),
        "--max-new-tokens".as_ref(),
        "12".as_ref(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&chat.stdout).unwrap();
    assert!(
        v["model_input"]
            .as_str()
            .unwrap()
            .starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
            && v["completion"].as_str().unwrap().contains("Paris"),
        "{v}"
    );
    let facts = run_ok([
        "models".as_ref(),
        "inspect".as_ref(),
        out_dir.as_os_str(),
        "--json".as_ref(),
    ]);
    let f: serde_json::Value = serde_json::from_slice(&facts.stdout).unwrap();
    assert_eq!(f["params"], 134_515_008);
    assert_eq!(f["architecture"], "LlamaForCausalLM");
    assert_eq!(f["dtypes"]["BF16"], 272);
    assert!(f["chat_template"]
        .as_str()
        .unwrap()
        .ends_with("tokenizer_config.json"));
    assert_eq!(f["stop"][0], "<|im_end|>");
    assert!(f["memory"]["lora_bytes"].as_f64() < f["memory"]["full_bytes"].as_f64());

    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00 truncated").unwrap();
    let (bad_s, out_s) = (bad.to_str().unwrap(), dir.path().join("x"));
    expect_error(
        &["import-gguf", bad_s, "--out", out_s.to_str().unwrap()],
        &["bad.gguf", "not a readable GGUF file"],
    );
}

/// A LoRA run from the command line: its policy is an adapter folder that `generate` runs and
/// `models merge` turns into a full folder generating the same tokens; a non-empty output
/// folder is refused.
#[test]
fn lora_runs_write_adapters_that_merge() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("lora.toml");
    let model = repo().join("app/assets/default-policy");
    std::fs::write(
        &cfg,
        format!(
            "steps = 3\n[model]\npath = {:?}\n[model.lora]\nrank = 8\nalpha = 16\n[task]\nname = \"countdown\"\n[rollout]\nprompts_per_step = 8\ngroup_size = 4\n[optim]\nlr = 0.01\n[eval]\nevery = 0\nheldout_size = 8\n",
            model.display().to_string()
        ),
    )
    .unwrap();
    let out = dir.path().join("run");
    let lines = train_json(&cfg, &out, &[]);
    assert_eq!(of_type(&lines, "step").len(), 3);
    let policy = out.join("policy");
    assert!(policy.join("adapter_config.json").is_file());
    assert!(!policy.join("model.safetensors").exists());
    let gen = |m: &std::path::Path| {
        let o = run_ok([
            "generate",
            "--model",
            m.to_str().unwrap(),
            "--prompt",
            "3 5 7>22:",
            "--prompt",
            "2 9 4>17:",
        ]);
        json_lines(&o)
            .iter()
            .map(|v| v["tokens"].clone())
            .collect::<Vec<_>>()
    };
    let merged = dir.path().join("merged");
    let o = run_ok([
        "models",
        "merge",
        policy.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("merged 28 adapters of rank 8"), "{text}");
    assert!(merged.join("model.safetensors").is_file());
    assert_eq!(gen(&policy), gen(&merged));
    expect_error(
        &[
            "models",
            "merge",
            policy.to_str().unwrap(),
            "--out",
            merged.to_str().unwrap(),
        ],
        &["expected a new or empty folder"],
    );
}
