//! `rlvr-studio import-gguf`: a GGUF model file → a Hugging Face model folder.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use rlvr_engine::gguf::{self, OutDType};

/// Storage dtype of the written weights.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DTypeArg {
    /// 32-bit floats (4 bytes per parameter).
    F32,
    /// bfloat16 (2 bytes per parameter).
    Bf16,
}

/// `rlvr-studio import-gguf FILE --out DIR [--dtype f32|bf16]`.
#[derive(clap::Args, Debug)]
pub struct ImportGgufArgs {
    /// The GGUF file (architectures llama and qwen2; quantized tensors are dequantized).
    pub file: PathBuf,
    /// The model folder to write (new or empty).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Storage dtype of model.safetensors.
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
}

/// Imports the file, showing a progress bar over the tensors on a terminal.
pub fn import_gguf(args: ImportGgufArgs) -> anyhow::Result<()> {
    let dtype = match args.dtype {
        DTypeArg::F32 => OutDType::F32,
        DTypeArg::Bf16 => OutDType::Bf16,
    };
    let start = Instant::now();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} tensors ({elapsed})")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    bar.set_message("dequantizing");
    let summary = gguf::import(&args.file, &args.out, dtype, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let summary = summary.with_context(|| format!("importing {}", args.file.display()))?;
    let c = &summary.config;
    println!(
        "imported {} ({}: {} layers, hidden {}, {}/{} heads, vocab {}{}) into {}: {} tensors, \
         {} parameters, {:.1} MB in {:.1} s",
        args.file.display(),
        c.architectures.first().map_or("?", String::as_str),
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.kv_heads(),
        c.vocab_size,
        if c.tie_word_embeddings { ", tied" } else { "" },
        args.out.display(),
        summary.tensors,
        summary.params,
        summary.bytes as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
