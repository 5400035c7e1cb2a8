#![allow(clippy::unwrap_used)]

use super::*;
use crate::model::transformer::gather_logprobs;
use crate::sampling::{generate, generate_parallel, left_pad, row_rngs, GenParams, SamplingConfig};

fn tiny_policy(tie: bool, model_type: &str) -> Policy {
    let tok = Tok::char_level(crate::tasks::ALPHABET).unwrap();
    let mut cfg = ModelConfig::tiny(tok.vocab_size(), 1, 2, 0);
    cfg.hidden_size = 32;
    cfg.intermediate_size = 48;
    cfg.num_hidden_layers = 2;
    cfg.tie_word_embeddings = tie;
    match model_type {
        // Qwen3 with a head width that is not hidden / heads (32 / 4 = 8).
        "qwen3" => cfg.head_dim = Some(12),
        // Llama with every bias transformers can put on it.
        "llama+bias" => {
            cfg.attention_bias = Some(true);
            cfg.mlp_bias = Some(true);
        }
        _ => {}
    }
    cfg.model_type = model_type.trim_end_matches("+bias").into();
    Policy::init(cfg, tok, 7, &Device::Cpu).unwrap()
}

fn prompts(p: &Policy) -> Vec<Vec<u32>> {
    ["12+34=", "7*8=", "sort 5 2 9:"]
        .iter()
        .map(|s| p.tok.encode_prompt(s).unwrap())
        .collect()
}

fn logits_of(model: &Transformer, prompts: &[Vec<u32>]) -> Vec<f32> {
    let (ids, t, pad) = left_pad(prompts, 0);
    let ids = Tensor::from_vec(ids, (prompts.len(), t), &Device::Cpu).unwrap();
    model
        .forward_all(&ids, &pad)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn every_parameter_receives_a_gradient() {
    for (tie, ty) in [
        (true, "qwen2"),
        (false, "llama"),
        (false, "qwen3"),
        (true, "llama+bias"),
    ] {
        let p = tiny_policy(tie, ty);
        let model = p.train_model().unwrap();
        let pr = prompts(&p);
        let (ids, t, pad) = left_pad(&pr, 0);
        let ids_t = Tensor::from_vec(ids.clone(), (pr.len(), t), &Device::Cpu).unwrap();
        let logits = model.forward_all(&ids_t, &pad).unwrap();
        // Next-token loss on the real (unpadded) positions.
        let targets: Vec<u32> = ids
            .iter()
            .skip(1)
            .chain(std::iter::once(&0))
            .copied()
            .collect();
        let targets = Tensor::from_vec(targets, (pr.len(), t), &Device::Cpu).unwrap();
        let loss = gather_logprobs(&logits, &targets)
            .unwrap()
            .mean_all()
            .unwrap()
            .neg()
            .unwrap();
        let grads = loss.backward().unwrap();
        for (name, var) in p.params() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient"));
            let norm = crate::ops::tests::sq_norm(g);
            assert!(norm > 0.0, "{name}: zero gradient ({ty})");
        }
    }
}

#[test]
fn saved_folder_reloads_to_identical_logits() {
    for ty in ["qwen3", "llama+bias"] {
        let p = tiny_policy(false, ty);
        let dir = saved(&p);
        let q = Policy::load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(q.cfg, p.cfg, "{ty}");
        let pr = prompts(&p);
        let a = logits_of(&p.frozen_view().unwrap(), &pr);
        assert_eq!(a, logits_of(&q.frozen_view().unwrap(), &pr), "{ty}");
    }
    let p = tiny_policy(false, "qwen2");
    let dir = tempfile::tempdir().unwrap();
    p.save(dir.path()).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "generation_config.json",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} written");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["model_type"], "qwen2");
    assert_eq!(cfg["num_key_value_heads"], 2);
    let q = Policy::load(dir.path(), &Device::Cpu).unwrap();
    let pr = prompts(&p);
    let a = logits_of(&p.frozen_view().unwrap(), &pr);
    let b = logits_of(&q.frozen_view().unwrap(), &pr);
    assert_eq!(a, b, "bit-identical logits after save + load");
}

#[test]
fn left_padding_does_not_change_a_rows_logits() {
    let p = tiny_policy(true, "qwen2");
    let m = p.frozen_view().unwrap();
    let pr = prompts(&p);
    let v = p.cfg.vocab_size;
    let batch = logits_of(&m, &pr);
    let t = pr.iter().map(Vec::len).max().unwrap();
    for (r, prompt) in pr.iter().enumerate() {
        let alone = logits_of(&m, std::slice::from_ref(prompt));
        let pad = t - prompt.len();
        let last_alone = &alone[(prompt.len() - 1) * v..prompt.len() * v];
        let last_batch = &batch[(r * t + t - 1) * v..(r * t + t) * v];
        for (a, b) in last_alone.iter().zip(last_batch) {
            assert!((a - b).abs() < 1e-4, "row {r} (pad {pad}): {a} vs {b}");
        }
    }
}

#[test]
fn kv_cache_generation_matches_full_recompute() {
    let p = tiny_policy(true, "qwen2");
    let m = p.frozen_view().unwrap();
    let pr = prompts(&p);
    for sampling in [SamplingConfig::greedy(), SamplingConfig::default()] {
        let params = |use_cache| GenParams {
            max_new: 12,
            eos: vec![2],
            pad: 0,
            sampling: sampling.clone(),
            use_cache,
            hook: None,
            progress: None,
        };
        let a = generate(&m, &pr, &params(true), &mut row_rngs(3, pr.len())).unwrap();
        let b = generate(&m, &pr, &params(false), &mut row_rngs(3, pr.len())).unwrap();
        // Splitting rows across workers does not change what each row samples.
        let c = generate_parallel(&m, &pr, &params(true), &mut row_rngs(3, pr.len()), 2).unwrap();
        for (x, y) in a.iter().zip(&c) {
            assert_eq!((&x.tokens, x.finished), (&y.tokens, y.finished));
        }
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((&x.tokens, x.finished), (&y.tokens, y.finished));
            for (p, q) in x.logprobs.iter().zip(&y.logprobs) {
                assert!((p - q).abs() < 1e-4, "{p} vs {q}");
            }
        }
        assert!(a.iter().all(|c| !c.tokens.is_empty()));
    }
}

#[test]
fn bad_model_folders_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Policy::load(&dir.path().join("nope"), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a folder"), "{err}");
    let err = Policy::load(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.json"), "{err}");
    std::fs::write(
        dir.path().join("config.json"),
        "{\"model_type\": \"qwen2\"}",
    )
    .unwrap();
    let err = Policy::load(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.json") && err.contains("vocab_size"),
        "{err}"
    );
    let p = tiny_policy(true, "qwen2");
    p.save(dir.path()).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"garbage").unwrap();
    let err = Policy::load(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("unreadable"),
        "{err}"
    );
    let mut cfg = p.cfg.clone();
    cfg.num_attention_heads = 3;
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
    let err = Policy::load(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("num_attention_heads"), "{err}");
}

#[test]
fn rollout_logprobs_match_the_training_forward() {
    // The log-probs recorded while sampling (KV cache, left-padded prompts) must equal those the
    // training forward computes for the same completions: otherwise PPO ratios would be off.
    let p = tiny_policy(true, "qwen2");
    let m = p.frozen_view().unwrap();
    let pr = prompts(&p);
    let params = GenParams {
        max_new: 10,
        eos: vec![2],
        pad: 0,
        sampling: SamplingConfig::default(),
        use_cache: true,
        hook: None,
        progress: None,
    };
    let outs = generate(&m, &pr, &params, &mut row_rngs(5, pr.len())).unwrap();
    let prs: Vec<&[u32]> = pr.iter().map(Vec::as_slice).collect();
    let cs: Vec<&[u32]> = outs.iter().map(|c| c.tokens.as_slice()).collect();
    let batch = crate::batch::TrainBatch::new(&prs, &cs, 0, &Device::Cpu).unwrap();
    let (_, logp) = batch.logprobs(&m).unwrap();
    let logp = logp.to_vec2::<f32>().unwrap();
    for (r, c) in outs.iter().enumerate() {
        assert_eq!(c.logprobs.len(), c.tokens.len());
        for (j, lp) in c.logprobs.iter().enumerate() {
            assert!(
                (lp - logp[r][j]).abs() < 1e-4,
                "row {r} token {j}: {lp} vs {}",
                logp[r][j]
            );
        }
        assert!(c.entropies.iter().all(|e| *e >= 0.0 && e.is_finite()));
    }
}

/// A saved tiny policy folder (2 layers, Qwen2 with q/k/v biases, tied head).
fn saved(p: &Policy) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    p.save(dir.path()).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    Policy::load(dir, &Device::Cpu).unwrap_err().to_string()
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
}

type RawTensor = (String, safetensors::Dtype, Vec<usize>, Vec<u8>);

/// The policy's parameters as raw F32 safetensors entries.
fn raw_params(p: &Policy) -> Vec<RawTensor> {
    p.params()
        .iter()
        .map(|(n, v)| {
            let data: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let bytes = data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (n.clone(), safetensors::Dtype::F32, v.dims().to_vec(), bytes)
        })
        .collect()
}

fn write_raw(path: &Path, tensors: &[RawTensor]) {
    let views: Vec<(&str, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.as_str(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn config_sizes_are_bounded_before_any_arithmetic() {
    let p = tiny_policy(true, "qwen2");
    for (key, value, range) in [
        ("num_hidden_layers", 1_000_000_000u64, "1..=1024"),
        ("hidden_size", 1 << 40, "1..=65536"),
        ("vocab_size", 1 << 30, "1..=2097152"),
        ("num_attention_heads", 1 << 40, "1..=1024"),
        ("head_dim", 1 << 40, "2..=4096"),
        ("intermediate_size", 0, "1..=1048576"),
        ("max_position_embeddings", 1 << 40, "1..=16777216"),
    ] {
        let dir = saved(&p);
        edit_config(dir.path(), |v| v[key] = value.into());
        for err in [
            load_err(dir.path()),
            Policy::read_config(dir.path()).unwrap_err().to_string(),
        ] {
            assert!(
                err.contains("config.json")
                    && err.contains(&format!("{key} = {value}"))
                    && err.contains(range),
                "{key}: {err}"
            );
        }
    }
}

#[test]
fn special_token_ids_outside_the_vocabulary_are_refused() {
    let p = tiny_policy(true, "qwen2");
    for key in ["eos_token_id", "bos_token_id", "pad_token_id"] {
        let dir = saved(&p);
        edit_config(dir.path(), |v| v[key] = 9999.into());
        let err = load_err(dir.path());
        assert!(
            err.contains("config.json")
                && err.contains(&format!("{key} = 9999"))
                && err.contains("vocab_size"),
            "{key}: {err}"
        );
    }
    // A tokenizer whose ids run past vocab_size (with as many tokens as before).
    let dir = saved(&p);
    let path = dir.path().join("tokenizer.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["model"]["vocab"]["7"] = 500.into();
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("tokenizer.json") && err.contains("500") && err.contains("vocab_size"),
        "{err}"
    );
}

#[test]
fn non_finite_weights_are_refused_naming_file_and_tensor() {
    let p = tiny_policy(true, "qwen2");
    for bad in [f32::NAN, f32::INFINITY] {
        let dir = saved(&p);
        let mut raw = raw_params(&p);
        let norm = raw.iter_mut().find(|t| t.0 == "model.norm.weight").unwrap();
        // Only the last element: a sampled check could miss it.
        let n = norm.3.len();
        norm.3[n - 4..].copy_from_slice(&bad.to_le_bytes());
        write_raw(&dir.path().join("model.safetensors"), &raw);
        let err = load_err(dir.path());
        assert!(
            err.contains("model.safetensors")
                && err.contains("model.norm.weight")
                && err.contains("non-finite"),
            "{err}"
        );
    }
}

#[test]
fn integer_weights_are_refused_naming_tensor_and_dtype() {
    let p = tiny_policy(true, "qwen2");
    let dir = saved(&p);
    let mut raw = raw_params(&p);
    let norm = raw.iter_mut().find(|t| t.0 == "model.norm.weight").unwrap();
    norm.1 = safetensors::Dtype::I32;
    write_raw(&dir.path().join("model.safetensors"), &raw);
    let err = load_err(dir.path());
    assert!(
        err.contains("model.norm.weight") && err.contains("I32") && err.contains("floating"),
        "{err}"
    );
    // F16 weights still load.
    let dir = saved(&p);
    let half: HashMap<String, Tensor> = p
        .params()
        .iter()
        .map(|(n, v)| {
            let t = v.as_tensor().to_dtype(candle_core::DType::F16).unwrap();
            (n.clone(), t)
        })
        .collect();
    candle_core::safetensors::save(&half, dir.path().join("model.safetensors")).unwrap();
    Policy::load(dir.path(), &Device::Cpu).unwrap();
}

#[test]
fn tensors_the_config_does_not_use_are_refused() {
    // 2 layers of weights, config says 1.
    let p = tiny_policy(true, "qwen2");
    let dir = saved(&p);
    edit_config(dir.path(), |v| v["num_hidden_layers"] = 1.into());
    let err = load_err(dir.path());
    assert!(
        err.contains("model.layers.1.") && err.contains("num_hidden_layers"),
        "{err}"
    );
    // A Qwen2 folder (q/k/v biases) read as llama.
    let dir = saved(&p);
    edit_config(dir.path(), |v| v["model_type"] = "llama".into());
    let err = load_err(dir.path());
    assert!(
        err.contains("_proj.bias") && err.contains("model_type"),
        "{err}"
    );
    // The same tensor in two weight files.
    let dir = saved(&p);
    let raw: Vec<RawTensor> = raw_params(&p)
        .into_iter()
        .filter(|t| t.0 == "model.norm.weight")
        .collect();
    write_raw(&dir.path().join("model-extra.safetensors"), &raw);
    let err = load_err(dir.path());
    assert!(
        err.contains("model-extra.safetensors") && err.contains("not part of the model"),
        "{err}"
    );
}

/// Writes the policy's weights as two shards with an index, as `save_pretrained` does above
/// its shard size; returns the folder.
fn sharded(p: &Policy) -> tempfile::TempDir {
    let dir = saved(p);
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let raw = raw_params(p);
    let (a, b) = raw.split_at(raw.len() / 2);
    let mut map = serde_json::Map::new();
    for (part, name) in [
        (a, "model-00001-of-00002.safetensors"),
        (b, "model-00002-of-00002.safetensors"),
    ] {
        write_raw(&dir.path().join(name), part);
        for t in part {
            map.insert(t.0.clone(), name.into());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    dir
}

#[test]
fn sharded_weights_load_as_the_index_says() {
    let p = tiny_policy(false, "qwen2");
    let dir = sharded(&p);
    let back = Policy::load(dir.path(), &Device::Cpu).unwrap();
    for ((n, a), (m, b)) in p.params().iter().zip(back.params()) {
        assert_eq!(n, m);
        let d = (a.as_tensor() - b.as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "{n}");
    }
    let edit_index = |f: &dyn Fn(&mut serde_json::Value)| {
        let path = dir.path().join("model.safetensors.index.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&path, v.to_string()).unwrap();
    };
    // A tensor the index puts in the wrong shard.
    edit_index(&|v| {
        v["weight_map"]["model.norm.weight"] =
            if v["weight_map"]["model.norm.weight"] == "model-00001-of-00002.safetensors" {
                "model-00002-of-00002.safetensors".into()
            } else {
                "model-00001-of-00002.safetensors".into()
            }
    });
    let err = load_err(dir.path());
    assert!(
        err.contains("model.safetensors.index.json") && err.contains("model.norm.weight"),
        "{err}"
    );
    // A shard the index names that is missing.
    edit_index(&|v| {
        v["weight_map"]["model.norm.weight"] = "model-00003-of-00003.safetensors".into()
    });
    let err = load_err(dir.path());
    assert!(
        err.contains("model-00003-of-00003.safetensors") && err.contains("not in the folder"),
        "{err}"
    );
    // No weight_map at all.
    edit_index(&|v| *v = serde_json::json!({"metadata": {}}));
    let err = load_err(dir.path());
    assert!(err.contains("no weight_map"), "{err}");
    // The same tensor in two shards.
    let dir = sharded(&p);
    let raw: Vec<RawTensor> = raw_params(&p)
        .into_iter()
        .filter(|t| t.0 == "model.norm.weight" || t.0 == "model.embed_tokens.weight")
        .collect();
    write_raw(&dir.path().join("model-00001-of-00002.safetensors"), &raw);
    write_raw(&dir.path().join("model-00002-of-00002.safetensors"), &raw);
    let err = load_err(dir.path());
    assert!(err.contains("defined twice"), "{err}");
}

#[cfg(unix)]
#[test]
fn saved_weights_get_the_mode_of_the_other_files() {
    use std::os::unix::fs::PermissionsExt as _;
    let p = tiny_policy(true, "qwen2");
    let dir = saved(&p);
    let mode = |f: &str| {
        std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("model.safetensors"), mode("config.json"));
    assert_eq!(mode("model.safetensors"), mode("tokenizer.json"));
    assert_eq!(mode("model.safetensors"), 0o666 & !super::process_umask());
}

/// Mistral's sliding window: with one layer, the last position sees only the last `w` tokens,
/// and RoPE scores depend on relative positions only, so its logits equal those of the last `w`
/// tokens alone. Without the window they differ; with the KV cache they agree.
#[test]
fn sliding_window_limits_attention_to_the_last_tokens() {
    let tok = Tok::char_level(crate::tasks::ALPHABET).unwrap();
    let mut cfg = ModelConfig::tiny(tok.vocab_size(), 1, 2, 0);
    cfg.num_hidden_layers = 1;
    cfg.model_type = "mistral".into();
    cfg.extra.insert("sliding_window".into(), 3.into());
    let p = Policy::init(cfg.clone(), tok.clone(), 3, &Device::Cpu).unwrap();
    let full = p.tok.encode("12+34=46").unwrap();
    let tail = full[full.len() - 3..].to_vec();
    let m = p.frozen_view().unwrap();
    let last = |ids: &[u32]| {
        let v = logits_of(&m, &[ids.to_vec()]);
        v[v.len() - cfg.vocab_size..].to_vec()
    };
    let (a, b) = (last(&full), last(&tail));
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "windowed logits differ by {diff}");
    cfg.extra.remove("sliding_window");
    let q = Policy::init(cfg, tok, 3, &Device::Cpu).unwrap();
    let m2 = q.frozen_view().unwrap();
    let v = logits_of(&m2, std::slice::from_ref(&full));
    let w = logits_of(&m2, &[tail]);
    let d2 = v[v.len() - q.cfg.vocab_size..]
        .iter()
        .zip(&w[w.len() - q.cfg.vocab_size..])
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        d2 > 1e-3,
        "without the window the whole prefix matters ({d2})"
    );
    // Cached decoding applies the same window.
    let params = GenParams {
        max_new: 6,
        eos: vec![2],
        pad: 0,
        sampling: SamplingConfig::greedy(),
        use_cache: true,
        hook: None,
        progress: None,
    };
    let prompts = vec![full.clone(), full[2..].to_vec()];
    let cached = generate(&m, &prompts, &params, &mut row_rngs(1, 2)).unwrap();
    let plain = generate(
        &m,
        &prompts,
        &GenParams {
            use_cache: false,
            ..params
        },
        &mut row_rngs(1, 2),
    )
    .unwrap();
    for (c, u) in cached.iter().zip(&plain) {
        assert_eq!(c.tokens, u.tokens);
    }
}

#[test]
fn config_features_that_change_the_math_are_refused() {
    let base = tiny_policy(true, "qwen2").cfg;
    for (edit, want) in [
        (
            serde_json::json!({"use_sliding_window": true}),
            "use_sliding_window = true",
        ),
        (serde_json::json!({"num_experts": 8}), "num_experts = 8"),
        (
            serde_json::json!({"quantization_config": {"bits": 4}}),
            "quantization_config",
        ),
        (
            serde_json::json!({"final_logit_softcapping": 30.0}),
            "final_logit_softcapping",
        ),
        (
            serde_json::json!({"attention_dropout": 0.1}),
            "attention_dropout = 0.1",
        ),
        (
            serde_json::json!({"layer_types": ["full_attention", "sliding_attention"]}),
            "layer_types",
        ),
        (
            serde_json::json!({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}),
            "yarn",
        ),
    ] {
        let mut cfg = base.clone();
        for (k, v) in edit.as_object().unwrap() {
            cfg.extra.insert(k.clone(), v.clone());
        }
        let err = cfg.validate().unwrap_err();
        assert!(err.contains(want), "{want}: {err}");
    }
    let mut ok = base.clone();
    for (k, v) in serde_json::json!({"use_sliding_window": false, "sliding_window": 4096,
        "max_window_layers": 28, "attention_dropout": 0.0, "rope_scaling": null})
    .as_object()
    .unwrap()
    {
        ok.extra.insert(k.clone(), v.clone());
    }
    ok.validate().unwrap();
}

/// The special tokens of tokenizer_config.json and generation_config.json: every
/// end-of-sequence id stops generation and survives a save; bad values name the file.
#[test]
fn special_tokens_come_from_every_file_and_survive_a_save() {
    let p = tiny_policy(true, "qwen2");
    let dir = saved(&p);
    let write = |name: &str, v: serde_json::Value| {
        std::fs::write(dir.path().join(name), v.to_string()).unwrap()
    };
    write(
        "generation_config.json",
        serde_json::json!({"eos_token_id": [2, 5]}),
    );
    write(
        "tokenizer_config.json",
        serde_json::json!({"add_bos_token": false, "pad_token": {"content": "<unk>"}}),
    );
    edit_config(dir.path(), |v| {
        v.as_object_mut().unwrap().remove("pad_token_id");
    });
    let q = Policy::load(dir.path(), &Device::Cpu).unwrap();
    assert_eq!((q.tok.eos, q.tok.stop.clone()), (2, vec![2, 5]));
    assert_eq!((q.tok.pad, q.tok.add_bos), (3, false));
    let again = saved(&q);
    let r = Policy::load(again.path(), &Device::Cpu).unwrap();
    assert_eq!(r.tok.stop, vec![2, 5], "the extra stop id is saved");
    for (name, v, want) in [
        (
            "generation_config.json",
            serde_json::json!({"eos_token_id": "x"}),
            "eos_token_id",
        ),
        (
            "generation_config.json",
            serde_json::json!({"eos_token_id": [2, 999]}),
            "999",
        ),
        (
            "tokenizer_config.json",
            serde_json::json!({"pad_token": "<nope>"}),
            "<nope>",
        ),
        (
            "tokenizer_config.json",
            serde_json::json!({"add_bos_token": 1}),
            "add_bos_token",
        ),
    ] {
        write("generation_config.json", serde_json::json!({}));
        write("tokenizer_config.json", serde_json::json!({}));
        write(name, v);
        let err = load_err(dir.path());
        assert!(err.contains(name), "{name}: {err}");
        assert!(err.contains(want), "{want}: {err}");
    }
}

/// Generation reports every row's decode steps, a row that stops early counting its unused
/// budget: the count ends at rows × max_new whether or not rows stop.
#[test]
fn generation_progress_ends_at_the_whole_budget() {
    let p = tiny_policy(true, "qwen2");
    let m = p.frozen_view().unwrap();
    let prompts = prompts(&p);
    for (eos, temperature) in [(vec![2], 1.0), ((0..60).collect::<Vec<u32>>(), 1.0)] {
        let progress = std::sync::Arc::new(crate::events::Progress::default());
        progress.begin(crate::events::Phase::Rollout, 1, prompts.len() * 9);
        let params = GenParams {
            max_new: 9,
            eos,
            pad: 0,
            sampling: SamplingConfig {
                temperature,
                ..SamplingConfig::greedy()
            },
            use_cache: true,
            hook: None,
            progress: Some(progress.clone()),
        };
        let outs = generate(&m, &prompts, &params, &mut row_rngs(3, prompts.len())).unwrap();
        let now = progress.now();
        assert_eq!(
            (now.done, now.total),
            (27, 27),
            "{:?}",
            outs.iter().map(|c| c.tokens.len()).collect::<Vec<_>>()
        );
        assert_eq!(now.describe().unwrap(), "rollout 27/27 tokens");
    }
}
