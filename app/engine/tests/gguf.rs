//! GGUF import: the real SmolLM2-135M-Instruct (fetched by `scripts/fetch-test-assets.sh`) and
//! small GGUF files written here, including broken ones.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::asset;
use std::time::Instant;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rlvr_engine::gguf::{import, OutDType};
use rlvr_engine::model::Policy;
use rlvr_engine::sampling::{generate, row_rngs, GenParams, SamplingConfig};
use rlvr_engine::tokenizer::ChatPrompt;

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn noop(_: usize, _: usize) {}

fn import_err(file: &Path) -> String {
    let out = tempfile::tempdir().unwrap();
    let err = import(file, &out.path().join("m"), OutDType::F32, &mut noop)
        .unwrap_err()
        .to_string();
    assert!(!out.path().join("m").exists(), "nothing left behind: {err}");
    err
}

const CHATML: &str = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";

/// Ids from Python `tokenizers` (0.23, Oniguruma) on the imported tokenizer.json.
const CHATML_IDS: [u32; 37] = [
    1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407,
    19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531,
    198,
];

#[test]
fn smollm2_imports_loads_and_answers_paris() {
    let gguf = asset(SMOLLM2);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smollm2");
    let t0 = Instant::now();
    let mut calls = 0;
    let s = import(&gguf, &out, OutDType::F32, &mut |_, total| {
        calls += 1;
        assert_eq!(total, 272);
    })
    .unwrap();
    eprintln!(
        "import: {:.1} s, {} bytes",
        t0.elapsed().as_secs_f64(),
        s.bytes
    );
    assert_eq!((s.tensors, s.params, calls), (272, 134_515_008, 272));

    let t1 = Instant::now();
    let policy = Policy::load(&out, &Device::Cpu).unwrap();
    eprintln!("load: {:.1} s", t1.elapsed().as_secs_f64());
    let c = &policy.cfg;
    assert_eq!(c.architectures, ["LlamaForCausalLM"]);
    assert_eq!(
        (c.num_hidden_layers, c.hidden_size, c.intermediate_size),
        (30, 576, 1536)
    );
    assert_eq!(
        (c.num_attention_heads, c.kv_heads(), c.head_dim()),
        (9, 3, 64)
    );
    assert_eq!((c.vocab_size, c.tie_word_embeddings), (49152, true));
    assert_eq!((c.rope().unwrap().theta, c.rms_norm_eps), (100_000.0, 1e-5));
    assert_eq!((policy.tok.eos, policy.tok.pad), (2, 2));

    let ids = policy.tok.encode(CHATML).unwrap();
    assert_eq!(ids, CHATML_IDS);
    // The prompt path of rollouts without the template: `add_bos_token = false` in the GGUF,
    // so no post-processor BOS, and the ChatML text's own `<|im_start|>` (the BOS) is not doubled.
    assert_eq!(policy.tok.encode_prompt(CHATML).unwrap(), CHATML_IDS);
    // Through the imported chat template (its default system prompt), as `[model]
    // chat_template = true` renders a task's prompt.
    let mut tok = policy.tok.clone();
    tok.use_chat(ChatPrompt {
        system: None,
        enable_thinking: true,
    })
    .unwrap();
    assert_eq!(
        tok.prompt_text("What is the capital of France?").unwrap(),
        CHATML
    );
    let prompt = tok.encode_prompt("What is the capital of France?").unwrap();
    assert_eq!(prompt, CHATML_IDS);
    assert_eq!(policy.tok.encode("12345").unwrap(), [33, 34, 35, 36, 37]);
    // More ids from Python `tokenizers` on the same file; each decodes back to its text.
    for (text, want) in [
        (
            "Hello world!  It's 3.14159, isn't it? I'LL GO.",
            &[
                19556, 905, 17, 216, 657, 506, 216, 35, 30, 33, 36, 33, 37, 41, 28, 3247, 982, 357,
                47, 339, 23, 16421, 21820, 30,
            ][..],
        ),
        (
            "   leading\r\n\ttabs\n\n\nend   ",
            &[256, 2899, 2738, 197, 100, 7366, 1116, 198, 486, 333],
        ),
        (
            "café naïve 数学 🙂👍🏽",
            &[
                83, 1939, 2756, 15486, 46494, 216, 18265, 18753, 116, 47526, 10813, 235, 231,
                10813, 233, 138,
            ],
        ),
        ("<|endoftext|><repo_name>x<file_sep>", &[0, 3, 104, 5]),
    ] {
        let ids = policy.tok.encode(text).unwrap();
        assert_eq!(ids, want, "{text:?}");
        if !text.starts_with('<') {
            assert_eq!(policy.tok.decode(&ids).unwrap(), text);
        }
    }

    let tc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert_eq!(tc["eos_token"], "<|im_end|>");
    assert_eq!(tc["bos_token"], "<|im_start|>");
    assert!(tc["chat_template"]
        .as_str()
        .unwrap()
        .contains("<|im_start|>"));
    assert_eq!(tc["added_tokens_decoder"].as_object().unwrap().len(), 17);

    let t2 = Instant::now();
    let model = policy.frozen_view().unwrap();
    let params = GenParams {
        max_new: 16,
        eos: policy.tok.stop.clone(),
        pad: policy.tok.pad,
        sampling: SamplingConfig::greedy(),
        use_cache: true,
        hook: None,
        progress: None,
    };
    let done = generate(&model, &[prompt], &params, &mut row_rngs(0, 1)).unwrap();
    let text = policy.tok.decode(&done[0].tokens).unwrap();
    eprintln!("generate: {:.1} s: {text:?}", t2.elapsed().as_secs_f64());
    assert!(text.contains("Paris"), "{text:?}");
}

// ---- small GGUF files written here ----------------------------------------------------------

struct Tiny {
    arch: &'static str,
    pre: &'static str,
    extra: Vec<(&'static str, Value)>,
}

/// Qwen2-style tokenizer keys of a GGUF file, from a Hugging Face `tokenizer.json`: tokens by id,
/// added tokens as control (special) or user-defined, merges as "a b".
fn gguf_tokenizer_keys(tokenizer_json: &Path) -> (usize, Vec<(&'static str, Value)>) {
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tokenizer_json).unwrap()).unwrap();
    let mut tokens: Vec<Option<(String, i32)>> = Vec::new();
    let mut put = |id: usize, t: &str, ty: i32| {
        if tokens.len() <= id {
            tokens.resize(id + 1, None);
        }
        tokens[id] = Some((t.to_string(), ty));
    };
    for (t, id) in j["model"]["vocab"].as_object().unwrap() {
        put(id.as_u64().unwrap() as usize, t, 1);
    }
    for a in j["added_tokens"].as_array().unwrap() {
        let ty = if a["special"].as_bool().unwrap() {
            3
        } else {
            4
        };
        put(
            a["id"].as_u64().unwrap() as usize,
            a["content"].as_str().unwrap(),
            ty,
        );
    }
    let tokens: Vec<(String, i32)> = tokens.into_iter().map(Option::unwrap).collect();
    let merges: Vec<Value> = j["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Value::String(s.clone()),
            pair => Value::String(format!(
                "{} {}",
                pair[0].as_str().unwrap(),
                pair[1].as_str().unwrap()
            )),
        })
        .collect();
    let n = tokens.len();
    let keys = vec![
        (
            "tokenizer.ggml.tokens",
            Value::Array(
                tokens
                    .iter()
                    .map(|(t, _)| Value::String(t.clone()))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(tokens.iter().map(|(_, ty)| Value::I32(*ty)).collect()),
        ),
        ("tokenizer.ggml.merges", Value::Array(merges)),
    ];
    (n, keys)
}

/// A tokenizer rebuilt from the GGUF keys of a real `tokenizer.json` (from
/// `scripts/fetch-test-assets.sh`), imported with pre-tokenizer `pre`, encodes and decodes like it.
fn check_rebuilt_tokenizer(real: &str, arch: &'static str, pre: &'static str, vocab: usize) {
    let real_path = asset(real);
    let (n, keys) = gguf_tokenizer_keys(&real_path);
    assert_eq!(n, vocab);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rebuilt.gguf");
    let tiny = Tiny {
        pre,
        extra: keys,
        ..Tiny::new(arch)
    };
    write_gguf(&file, &tiny, &tiny_weights_vocab(arch == "qwen2", n));
    let out = dir.path().join("rebuilt");
    import(&file, &out, OutDType::F32, &mut noop).unwrap();
    let ours = tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
    let real = tokenizers::Tokenizer::from_file(&real_path).unwrap();
    for text in [
        "Hello world!  It's 3.14159, isn't it? I'LL GO.",
        "<|im_start|>user\nWhat is 12 + 7?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
        "   leading spaces\r\n\ttabs\n\n\nand newlines   ",
        "数学 は 楽しい 🙂👍🏽 café naïve Ĳ ﬁ ２０２５ عربى हिन्दी",
        "def f(x):\n    return x**2  # comment\n",
        "1234567 digits 12 3 and 0.000042 I'M",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    ] {
        let a = ours.encode(text, false).unwrap();
        let b = real.encode(text, false).unwrap();
        assert_eq!(a.get_ids(), b.get_ids(), "{text:?}");
        assert_eq!(ours.decode(a.get_ids(), false).unwrap(), real.decode(b.get_ids(), false).unwrap());
    }
}

#[test]
fn qwen2_tokenizer_from_gguf_keys_matches_the_real_qwen3_one() {
    check_rebuilt_tokenizer("tokenizer-qwen3/tokenizer.json", "qwen2", "qwen2", 151_669);
}

#[test]
fn llama_bpe_tokenizer_from_gguf_keys_matches_the_real_llama3_one() {
    check_rebuilt_tokenizer(
        "tokenizer-llama3/tokenizer.json",
        "llama",
        "llama-bpe",
        128_256,
    );
}

impl Tiny {
    fn new(arch: &'static str) -> Self {
        Self {
            arch,
            pre: if arch == "qwen2" { "qwen2" } else { "smollm" },
            extra: Vec::new(),
        }
    }
}

/// HF weights of a 2-layer model (hidden 8, 2/1 heads of width 4, vocab 6), values i * 0.01.
fn tiny_weights(bias: bool) -> Vec<(String, Tensor)> {
    tiny_weights_vocab(bias, 6)
}

fn tiny_weights_vocab(bias: bool, v: usize) -> Vec<(String, Tensor)> {
    let (h, hd, d, i) = (2, 4, 8, 12);
    let mut shapes = vec![("token_embd.weight".to_string(), vec![v, d])];
    for l in 0..2 {
        let p = format!("blk.{l}");
        for (n, s) in [
            ("attn_norm.weight", vec![d]),
            ("ffn_norm.weight", vec![d]),
            ("attn_q.weight", vec![h * hd, d]),
            ("attn_k.weight", vec![hd, d]),
            ("attn_v.weight", vec![hd, d]),
            ("attn_output.weight", vec![d, h * hd]),
            ("ffn_gate.weight", vec![i, d]),
            ("ffn_up.weight", vec![i, d]),
            ("ffn_down.weight", vec![d, i]),
        ] {
            shapes.push((format!("{p}.{n}"), s));
        }
        if bias {
            shapes.push((format!("{p}.attn_q.bias"), vec![h * hd]));
            shapes.push((format!("{p}.attn_k.bias"), vec![hd]));
            shapes.push((format!("{p}.attn_v.bias"), vec![hd]));
        }
    }
    shapes.push(("output_norm.weight".to_string(), vec![d]));
    let mut k = 0f32;
    shapes
        .into_iter()
        .map(|(n, s)| {
            let count: usize = s.iter().product();
            let t = Tensor::arange(k, k + count as f32, &Device::Cpu)
                .unwrap()
                .affine(0.01, 0.0)
                .unwrap()
                .reshape(s)
                .unwrap();
            k += count as f32;
            (n, t)
        })
        .collect()
}

fn write_gguf(path: &Path, tiny: &Tiny, tensors: &[(String, Tensor)]) {
    let a = tiny.arch;
    let s = |x: &str| Value::String(x.into());
    let strs = |xs: &[&str]| Value::Array(xs.iter().map(|x| s(x)).collect());
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), s(a)),
        (format!("{a}.block_count"), Value::U32(2)),
        (format!("{a}.context_length"), Value::U32(64)),
        (format!("{a}.embedding_length"), Value::U32(8)),
        (format!("{a}.feed_forward_length"), Value::U32(12)),
        (format!("{a}.attention.head_count"), Value::U32(2)),
        (format!("{a}.attention.head_count_kv"), Value::U32(1)),
        (format!("{a}.rope.freq_base"), Value::F32(10_000.0)),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-6),
        ),
        ("tokenizer.ggml.model".into(), s("gpt2")),
        ("tokenizer.ggml.pre".into(), s(tiny.pre)),
        (
            "tokenizer.ggml.tokens".into(),
            strs(&["<|endoftext|>", "a", "b", "ab", "1", "Ġ"]),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array([3, 1, 1, 1, 1, 1].map(Value::I32).to_vec()),
        ),
        ("tokenizer.ggml.merges".into(), strs(&["a b"])),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(0)),
        ("tokenizer.chat_template".into(), s("{{ messages }}")),
    ];
    for (k, v) in &tiny.extra {
        meta.retain(|(m, _)| m != k);
        meta.push(((*k).into(), v.clone()));
    }
    let q: Vec<(String, QTensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), QTensor::quantize(t, GgmlDType::F32).unwrap()))
        .collect();
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let q_refs: Vec<(&str, &QTensor)> = q.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &meta_refs, &q_refs).unwrap();
}

/// llama.cpp's Q/K permutation (HF → GGUF).
fn permute(w: &Tensor, heads: usize) -> Tensor {
    let (rows, cols) = w.dims2().unwrap();
    w.reshape((heads, 2, rows / heads / 2, cols))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .reshape((rows, cols))
        .unwrap()
}

#[test]
fn tiny_llama_round_trips_with_q_k_rows_restored() {
    let dir = tempfile::tempdir().unwrap();
    let hf = tiny_weights(false);
    let stored: Vec<(String, Tensor)> = hf
        .iter()
        .map(|(n, t)| match n {
            n if n.ends_with("attn_q.weight") => (n.clone(), permute(t, 2)),
            n if n.ends_with("attn_k.weight") => (n.clone(), permute(t, 1)),
            _ => (n.clone(), t.clone()),
        })
        .collect();
    let file = dir.path().join("tiny.gguf");
    write_gguf(&file, &Tiny::new("llama"), &stored);
    let out = dir.path().join("tiny");
    import(&file, &out, OutDType::F32, &mut noop).unwrap();
    let policy = Policy::load(&out, &Device::Cpu).unwrap();
    assert_eq!(policy.cfg.model_type, "llama");
    assert!(policy.cfg.tie_word_embeddings);
    let got: std::collections::HashMap<_, _> = policy.params().iter().cloned().collect();
    for (g, t) in &hf {
        let name = rlvr_engine::gguf::hf_name(g).unwrap();
        let w = got[&name]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(
            w,
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "{name}"
        );
    }
    assert_eq!(policy.tok.encode("ab").unwrap(), [3]);
    assert_eq!(policy.tok.encode("a1").unwrap(), [1, 4]);
}

#[test]
fn tiny_qwen2_imports_biases_unpermuted_and_bf16() {
    let dir = tempfile::tempdir().unwrap();
    let hf = tiny_weights(true);
    let file = dir.path().join("tiny.gguf");
    write_gguf(&file, &Tiny::new("qwen2"), &hf);
    let out = dir.path().join("tiny");
    import(&file, &out, OutDType::Bf16, &mut noop).unwrap();
    let policy = Policy::load(&out, &Device::Cpu).unwrap();
    assert_eq!(policy.cfg.architectures, ["Qwen2ForCausalLM"]);
    assert_eq!(policy.cfg.torch_dtype, "bfloat16");
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let q = st.tensor("model.layers.1.self_attn.q_proj.weight").unwrap();
    assert_eq!(q.dtype(), safetensors::Dtype::BF16);
    let got: std::collections::HashMap<_, _> = policy.params().iter().cloned().collect();
    let want = hf
        .iter()
        .find(|(n, _)| n == "blk.1.attn_q.weight")
        .unwrap()
        .1
        .clone();
    let w = got["model.layers.1.self_attn.q_proj.weight"].as_tensor();
    let diff = (w - want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 0.02, "bf16 rounding only: {diff}");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
    let tc = std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap();
    assert!(tc.contains("Qwen2Tokenizer"), "{tc}");
}

#[test]
fn unsupported_headers_are_refused_naming_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let hf = tiny_weights(false);
    let cases: Vec<(Tiny, &str)> = vec![
        (
            Tiny::new("gemma3"),
            "general.architecture = \"gemma3\" is not supported",
        ),
        (
            Tiny {
                pre: "deepseek-llm",
                ..Tiny::new("llama")
            },
            "tokenizer.ggml.pre = \"deepseek-llm\" is not supported",
        ),
        (
            Tiny {
                extra: vec![("tokenizer.ggml.model", Value::String("llama".into()))],
                ..Tiny::new("llama")
            },
            "tokenizer.ggml.model = \"llama\" is not supported",
        ),
        (
            Tiny {
                extra: vec![("llama.rope.scaling.type", Value::String("yarn".into()))],
                ..Tiny::new("llama")
            },
            "llama.rope.scaling.type = \"yarn\"",
        ),
        (
            Tiny {
                extra: vec![("llama.attention.head_count", Value::String("2".into()))],
                ..Tiny::new("llama")
            },
            "llama.attention.head_count = \"2\": expected a non-negative integer",
        ),
        (
            Tiny {
                extra: vec![("llama.block_count", Value::U64(u64::MAX))],
                ..Tiny::new("llama")
            },
            "llama.block_count",
        ),
    ];
    for (i, (tiny, want)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("case{i}.gguf"));
        write_gguf(&file, &tiny, &hf);
        let err = import_err(&file);
        assert!(err.contains(want) && err.contains("case"), "{i}: {err}");
    }
    // A tensor the engine has no place for.
    let mut extra = hf.clone();
    extra.push((
        "rope_freqs.weight".into(),
        Tensor::ones(2, candle_core::DType::F32, &Device::Cpu).unwrap(),
    ));
    let file = dir.path().join("extra.gguf");
    write_gguf(&file, &Tiny::new("llama"), &extra);
    assert!(import_err(&file).contains("GGUF tensor rope_freqs.weight"));
    // A missing one.
    let fewer: Vec<_> = hf
        .iter()
        .filter(|(n, _)| n != "blk.1.ffn_up.weight")
        .cloned()
        .collect();
    write_gguf(&file, &Tiny::new("llama"), &fewer);
    let err = import_err(&file);
    assert!(
        err.contains("model.layers.1.mlp.up_proj.weight") && err.contains("blk.1.ffn_up.weight"),
        "{err}"
    );
}

#[test]
fn broken_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.gguf");
    write_gguf(&good, &Tiny::new("llama"), &tiny_weights(false));
    let bytes = std::fs::read(&good).unwrap();
    let f = dir.path().join("bad.gguf");
    // Truncated anywhere: in the header, in the tensor table, in the data.
    for cut in [
        0,
        3,
        8,
        30,
        bytes.len() / 4,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        std::fs::write(&f, &bytes[..cut]).unwrap();
        let err = import_err(&f);
        assert!(err.contains("bad.gguf"), "cut {cut}: {err}");
    }
    // Garbage and a wrong magic.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&f, &garbage).unwrap();
    assert!(import_err(&f).contains("not a readable GGUF file"));
    let mut wrong = bytes.clone();
    wrong[..4].copy_from_slice(b"GGML");
    std::fs::write(&f, &wrong).unwrap();
    assert!(import_err(&f).contains("magic"));
    // An unknown tensor type code (IQ2_XXS = 16) in the first tensor's entry.
    let name = b"token_embd.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4 + 2 * 8;
    let mut odd = bytes.clone();
    odd[at..at + 4].copy_from_slice(&16u32.to_le_bytes());
    std::fs::write(&f, &odd).unwrap();
    let err = import_err(&f);
    assert!(
        err.contains("tensor type 16 (IQ2_XXS) is not supported"),
        "{err}"
    );
    // Random byte flips in the header never panic.
    for k in 0..200usize {
        let mut b = bytes.clone();
        let pos = (k * 7919) % 600.min(b.len());
        b[pos] ^= 0x5a + k as u8;
        std::fs::write(&f, &b).unwrap();
        let out = dir.path().join(format!("flip{k}"));
        let _ = import(&f, &out, OutDType::F32, &mut noop);
    }
    // An alignment of 0 (candle's reader would divide by it).
    let tiny = Tiny {
        extra: vec![("general.alignment", Value::U32(0))],
        ..Tiny::new("llama")
    };
    write_gguf(&f, &tiny, &tiny_weights(false));
    assert!(import_err(&f).contains("header is inconsistent"));
    // A missing file.
    assert!(import_err(&dir.path().join("none.gguf")).contains("none.gguf"));
}

#[test]
fn existing_non_empty_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.gguf");
    write_gguf(&file, &Tiny::new("llama"), &tiny_weights(false));
    let out = dir.path().join("m");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "x").unwrap();
    let err = import(&file, &out, OutDType::F32, &mut noop)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not empty"), "{err}");
    assert!(out.join("keep.txt").exists());
    std::fs::remove_file(out.join("keep.txt")).unwrap();
    import(&file, &out, OutDType::F32, &mut noop).unwrap();
    assert!(out.join("model.safetensors").exists());
}
