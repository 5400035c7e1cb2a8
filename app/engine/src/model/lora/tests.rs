#![allow(clippy::unwrap_used)]

use candle_core::{Device, Tensor};

use super::*;
use crate::model::{Policy, Transformer};
use crate::sampling::left_pad;
use crate::tokenizer::Tok;

fn tiny(tie: bool, qkv_bias: bool) -> Policy {
    let tok = Tok::char_level(crate::tasks::ALPHABET).unwrap();
    let mut cfg = ModelConfig::tiny(tok.vocab_size(), 1, 2, 0);
    cfg.hidden_size = 32;
    cfg.intermediate_size = 48;
    cfg.num_hidden_layers = 2;
    cfg.tie_word_embeddings = tie;
    if !qkv_bias {
        cfg.model_type = "llama".into();
        cfg.architectures = vec!["LlamaForCausalLM".into()];
    }
    Policy::init(cfg, tok, 3, &Device::Cpu).unwrap()
}

fn spec(rank: usize, modules: &[&str], dropout: f64) -> LoraSpec {
    LoraSpec {
        rank,
        alpha: 2.0 * rank as f64,
        dropout,
        target_modules: modules.iter().map(|m| m.to_string()).collect(),
        rslora: false,
    }
}

/// Gives every `B` seeded values (a fresh adapter's B is zero and would test nothing).
fn randomise_b(p: &Policy) {
    let ad = p.adapters().unwrap();
    for (i, a) in ad.layers.iter().enumerate() {
        let t = Tensor::randn(0f32, 0.3, a.b.dims(), &Device::Cpu).unwrap();
        // Deterministic: scale by the index so no two are equal even if randn repeats.
        a.b.set(&(t + i as f64 * 1e-3).unwrap()).unwrap();
    }
}

fn batch(p: &Policy) -> (Tensor, crate::model::Padding, Tensor) {
    let rows: Vec<Vec<u32>> = ["12+34=46", "7*8=56", "sort 5 2 9:259"]
        .iter()
        .map(|s| p.tok.encode_prompt(s).unwrap())
        .collect();
    let (ids, t, pad) = left_pad(&rows, 0);
    let targets: Vec<u32> = ids.iter().skip(1).copied().chain([0]).collect();
    let n = rows.len();
    (
        Tensor::from_vec(ids, (n, t), &Device::Cpu).unwrap(),
        pad,
        Tensor::from_vec(targets, (n, t), &Device::Cpu).unwrap(),
    )
}

fn loss(model: &Transformer, p: &Policy) -> Tensor {
    let (ids, pad, targets) = batch(p);
    let logits = model.forward_all(&ids, &pad).unwrap();
    crate::model::transformer::gather_logprobs(&logits, &targets)
        .unwrap()
        .sum_all()
        .unwrap()
}

fn logits(model: &Transformer, p: &Policy) -> Vec<f32> {
    let (ids, pad, _) = batch(p);
    model
        .forward_all(&ids, &pad)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn fresh_adapters_leave_the_model_unchanged() {
    let mut p = tiny(true, true);
    let before = logits(&p.frozen_view().unwrap(), &p);
    p.attach_lora(spec(4, &["all-linear"], 0.0), 9).unwrap();
    let ad = p.adapters().unwrap();
    assert_eq!(ad.layers.len(), 2 * 7);
    let b: Vec<f32> = ad.layers[0].b.flatten_all().unwrap().to_vec1().unwrap();
    assert!(b.iter().all(|&v| v == 0.0), "B starts at zero");
    let a: Vec<f32> = ad.layers[0].a.flatten_all().unwrap().to_vec1().unwrap();
    let bound = 1.0 / 32f32.sqrt();
    assert!(a.iter().all(|v| v.abs() <= bound) && a.iter().any(|&v| v != 0.0));
    assert_eq!(before, logits(&p.frozen_view().unwrap(), &p));
    assert_eq!(
        p.num_trainable(),
        2 * 4 * ((32 + 32) + 2 * (32 + 16) + (32 + 32) + 3 * (32 + 48))
    );
}

#[test]
fn gradients_reach_only_the_adapters() {
    for modules in [&["all-linear"][..], &["q_proj", "down_proj"][..]] {
        let mut p = tiny(false, true);
        p.attach_lora(spec(2, modules, 0.0), 1).unwrap();
        randomise_b(&p);
        let grads = loss(&p.train_model().unwrap(), &p).backward().unwrap();
        for (name, v) in p.trainable() {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let n: f32 = g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(n > 0.0, "{name}: zero gradient");
        }
        for (name, v) in p.params() {
            assert!(
                grads.get(v.as_tensor()).is_none(),
                "{name} of the frozen base got a gradient"
            );
        }
    }
}

#[test]
fn frozen_products_give_the_same_values_and_input_gradients() {
    let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 7), &Device::Cpu).unwrap())
        .unwrap();
    let w = Tensor::randn(0f32, 1.0, (3, 7), &Device::Cpu).unwrap();
    let frozen = crate::ops::matmul_t(x.as_tensor(), &w).unwrap();
    let plain = x.as_tensor().matmul(&w.t().unwrap()).unwrap();
    let fv: Vec<f32> = frozen.flatten_all().unwrap().to_vec1().unwrap();
    let pv: Vec<f32> = plain.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(fv, pv, "the same gemm call");
    let gf = (frozen.sqr().unwrap().sum_all().unwrap())
        .backward()
        .unwrap();
    let gp = (plain.sqr().unwrap().sum_all().unwrap())
        .backward()
        .unwrap();
    let a: Vec<f32> = gf
        .get(x.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = gp
        .get(x.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(max_diff(&a, &b) < 1e-5);
}

#[test]
fn merged_weights_are_base_plus_scaled_ba() {
    let mut p = tiny(true, false);
    p.attach_lora(spec(3, &["q_proj", "v_proj", "up_proj"], 0.0), 2)
        .unwrap();
    randomise_b(&p);
    let merged = p.merged().unwrap();
    assert!(merged.adapters().is_none());
    let ad = p.adapters().unwrap();
    let scale = ad.spec.scale();
    assert_eq!(scale, 2.0);
    let by_name = |pol: &Policy, n: &str| -> Tensor {
        pol.params()
            .iter()
            .find(|(m, _)| m == n)
            .unwrap()
            .1
            .as_tensor()
            .clone()
    };
    for a in &ad.layers {
        let name = format!("{}.weight", linear_path(a.layer, a.module));
        let want =
            (by_name(&p, &name) + (a.b.matmul(a.a.as_tensor()).unwrap() * scale).unwrap()).unwrap();
        let got = by_name(&merged, &name);
        let d = max_diff(
            &want.flatten_all().unwrap().to_vec1().unwrap(),
            &got.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert!(d < 1e-6, "{name}: {d}");
    }
    let untouched = "model.layers.0.self_attn.k_proj.weight";
    assert_eq!(
        by_name(&p, untouched)
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        by_name(&merged, untouched)
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    );
    let d = max_diff(
        &logits(&p.frozen_view().unwrap(), &p),
        &logits(&merged.frozen_view().unwrap(), &merged),
    );
    assert!(d < 1e-4, "merged model vs base + adapters: {d}");
}

#[test]
fn checkpointed_and_plain_training_give_the_same_gradients() {
    for (lora, dropout) in [(false, 0.0), (true, 0.0), (true, 0.2)] {
        let mut p = tiny(true, true);
        if lora {
            p.attach_lora(spec(2, &["all-linear"], dropout), 4).unwrap();
            randomise_b(&p);
        }
        let model = p.train_model().unwrap().with_dropout_seed(Some(77));
        let (ids, pad, targets) = batch(&p);
        let plain = {
            let logits = model.forward_all(&ids, &pad).unwrap();
            crate::model::transformer::gather_logprobs(&logits, &targets)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let (h, recompute) = model.hidden_checkpointed(&ids, &pad).unwrap();
        let (n, t, d) = h.dims3().unwrap();
        let logits = model.logits(&h.reshape((n * t, d)).unwrap()).unwrap();
        let ckpt = crate::model::transformer::gather_logprobs(&logits, &targets)
            .unwrap()
            .sum_all()
            .unwrap();
        let (lp, lc): (f32, f32) = (plain.to_scalar().unwrap(), ckpt.to_scalar().unwrap());
        assert!((lp - lc).abs() < 1e-4, "losses {lp} vs {lc}");
        let gp = plain.backward().unwrap();
        let gc = recompute
            .backward(&model, ckpt.backward().unwrap())
            .unwrap();
        for (name, v) in p.trainable() {
            let a: Vec<f32> = gp
                .get(v.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let b: Vec<f32> = gc
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no checkpointed gradient"))
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let scale = a.iter().map(|x| x.abs()).fold(1e-6, f32::max);
            assert!(
                max_diff(&a, &b) / scale < 1e-4,
                "{name} (lora {lora}, dropout {dropout})"
            );
        }
    }
}

#[test]
fn dropout_masks_are_drawn_from_the_seed() {
    let mut p = tiny(true, true);
    p.attach_lora(spec(2, &["all-linear"], 0.5), 4).unwrap();
    randomise_b(&p);
    let m = p.train_model().unwrap();
    let a = logits(&m.clone().with_dropout_seed(Some(1)), &p);
    assert_eq!(a, logits(&m.clone().with_dropout_seed(Some(1)), &p));
    assert_ne!(a, logits(&m.clone().with_dropout_seed(Some(2)), &p));
    // Sampling views never drop.
    assert_eq!(logits(&m, &p), logits(&p.frozen_view().unwrap(), &p));
}

#[test]
fn adapter_folders_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let p = tiny(false, true);
    p.save(&base).unwrap();
    let mut p = Policy::load(&base, &Device::Cpu).unwrap();
    p.attach_lora(spec(2, &["k_proj", "gate_proj"], 0.05), 4)
        .unwrap();
    randomise_b(&p);
    let out = dir.path().join("adapter");
    p.save(&out).unwrap();
    assert!(!out.join("model.safetensors").exists() && !out.join("config.json").exists());
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(ADAPTER_CONFIG)).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 2);
    assert_eq!(cfg["lora_alpha"], 4);
    assert_eq!(
        cfg["target_modules"],
        serde_json::json!(["k_proj", "gate_proj"])
    );
    assert_eq!(
        cfg["base_model_name_or_path"],
        base.to_string_lossy().as_ref()
    );
    let keys: Vec<String> =
        safetensors::SafeTensors::deserialize(&std::fs::read(out.join(ADAPTER_WEIGHTS)).unwrap())
            .unwrap()
            .names()
            .into_iter()
            .map(String::from)
            .collect();
    assert!(
        keys.contains(&"base_model.model.model.layers.1.mlp.gate_proj.lora_B.weight".to_string())
    );
    assert_eq!(keys.len(), 2 * 2 * 2);
    let back = Policy::load(&out, &Device::Cpu).unwrap();
    assert_eq!(
        logits(&p.frozen_view().unwrap(), &p),
        logits(&back.frozen_view().unwrap(), &back)
    );
    assert_eq!(back.adapters().unwrap().spec, p.adapters().unwrap().spec);
    // Training (and inspect) read config.json: an adapter folder is named as one.
    let e = Policy::read_config(&out).unwrap_err().to_string();
    assert!(
        e.contains("adapter_config.json") && e.contains("models merge"),
        "{e}"
    );
}

#[test]
fn unsupported_adapter_options_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let mut p = tiny(true, true);
    p.save(&base).unwrap();
    p = Policy::load(&base, &Device::Cpu).unwrap();
    p.attach_lora(spec(2, &["q_proj"], 0.0), 4).unwrap();
    let out = dir.path().join("adapter");
    p.save(&out).unwrap();
    let original = std::fs::read_to_string(out.join(ADAPTER_CONFIG)).unwrap();
    for (key, value, want) in [
        ("use_dora", serde_json::json!(true), "key use_dora = true"),
        (
            "r",
            serde_json::json!(3),
            "has shape [2, 32], expected [3, 32]",
        ),
        (
            "target_modules",
            serde_json::json!(".*proj"),
            "regular expressions are not supported",
        ),
        (
            "target_modules",
            serde_json::json!(["lm_head"]),
            "\"lm_head\" is not a linear layer",
        ),
        (
            "target_modules",
            serde_json::json!(["q_proj", "v_proj"]),
            "missing tensor base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight",
        ),
        (
            "peft_type",
            serde_json::json!("IA3"),
            "key peft_type = \"IA3\"",
        ),
        (
            "rank_pattern",
            serde_json::json!({"q_proj": 4}),
            "key rank_pattern",
        ),
        (
            "base_model_name_or_path",
            serde_json::json!("Qwen/Qwen2.5-0.5B"),
            "--base DIR",
        ),
    ] {
        let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
        v[key] = value;
        std::fs::write(out.join(ADAPTER_CONFIG), v.to_string()).unwrap();
        let err = Policy::load(&out, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains(want), "{key}: {err}");
        assert!(err.contains("adapter_"), "{key}: names the file: {err}");
    }
}
