//! Reading a Hugging Face model folder's weights, checked so that a broken folder is refused at
//! load with the file and the tensor named, instead of failing late (or not at all) in training:
//! floating dtypes only, no tensor defined twice, no tensor the config does not use, shapes as
//! `config.json` implies, and every value finite (a full scan of every element, not a sample).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::Load as _;
use candle_core::{DType, Device, Tensor};

use super::ModelConfig;
use crate::error::{EngineError, Result};

/// Every tensor of the folder's weight files, with the file it came from.
pub(super) type Weights = HashMap<String, (Tensor, PathBuf)>;

/// One tensor as its file's header describes it.
#[derive(Clone, Debug)]
pub struct TensorHeader {
    /// The stored dtype (`F32`, `BF16`, `F16`, `F64`).
    pub dtype: String,
    /// The shape.
    pub shape: Vec<usize>,
    /// The file that holds it.
    pub file: PathBuf,
}

/// Every tensor of the folder's weight files, from their headers only.
pub type Headers = HashMap<String, TensorHeader>;

/// Largest header accepted (safetensors' own limit).
const MAX_HEADER: u64 = 100_000_000;

/// The name of the single-file weights.
pub(super) const SINGLE: &str = "model.safetensors";
/// The index of sharded weights (`{"weight_map": {tensor: file}}`).
pub(super) const INDEX: &str = "model.safetensors.index.json";

/// The weight files of a folder, chosen as `transformers` chooses them: `model.safetensors`
/// when present, else the shards `model.safetensors.index.json` lists (with the map, to check
/// each tensor is where the index says).
pub(super) struct WeightFiles {
    /// The files to read, sorted by name.
    pub files: Vec<PathBuf>,
    /// The index file and its tensor → file map, for a sharded folder.
    pub index: Option<(PathBuf, HashMap<String, String>)>,
}

/// Finds the weight files of `dir`. Any other `*.safetensors` file in the folder is refused
/// (except PEFT's `adapter_model*.safetensors`): the folder would mean something different to
/// another loader. A missing shard, or an index that is not `{"weight_map": {name: file}}`, is
/// an error naming the index.
pub(super) fn weight_files(dir: &Path) -> Result<WeightFiles> {
    let present: Vec<PathBuf> = {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| EngineError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        v.sort();
        v
    };
    let (files, index) = if dir.join(SINGLE).is_file() {
        (vec![dir.join(SINGLE)], None)
    } else if dir.join(INDEX).is_file() {
        let (path, map) = read_index(dir)?;
        let mut names: Vec<&String> = map.values().collect();
        names.sort();
        names.dedup();
        let mut files = Vec::with_capacity(names.len());
        for n in names {
            let f = dir.join(n);
            if !f.is_file() {
                return Err(EngineError::model(
                    &path,
                    format!("weight_map lists the shard {n}, which is not in the folder"),
                ));
            }
            files.push(f);
        }
        (files, Some((path, map)))
    } else if present.is_empty() {
        return Err(EngineError::model(
            dir,
            format!("no weights: expected {SINGLE} or {INDEX} with its shards"),
        ));
    } else {
        return Err(EngineError::model(
            dir,
            format!(
                "weight files {} without {INDEX}: expected {SINGLE}, or shards listed in {INDEX}",
                file_names(&present)
            ),
        ));
    };
    let stray: Vec<PathBuf> = present
        .into_iter()
        .filter(|p| !files.contains(p))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("adapter_model"))
        })
        .collect();
    if !stray.is_empty() {
        let used = if index.is_some() {
            format!("the shards {INDEX} lists")
        } else {
            SINGLE.to_string()
        };
        return Err(EngineError::model(
            dir,
            format!(
                "weight file {} is not part of the model (which is {used}): remove or move it, \
                 so that every loader reads the same weights",
                file_names(&stray)
            ),
        ));
    }
    Ok(WeightFiles { files, index })
}

fn file_names(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_index(dir: &Path) -> Result<(PathBuf, HashMap<String, String>)> {
    let Some((path, v)) = super::special::read_json(dir, INDEX)? else {
        return Err(EngineError::model(dir, format!("{INDEX} is missing")));
    };
    let Some(map) = v.get("weight_map").and_then(|m| m.as_object()) else {
        return Err(EngineError::model(
            &path,
            "no weight_map: expected {\"weight_map\": {\"<tensor>\": \"<shard file>\"}}",
        ));
    };
    let mut out = HashMap::with_capacity(map.len());
    for (name, file) in map {
        let Some(f) = file.as_str().filter(|f| {
            !f.contains('/') && !f.contains('\\') && f.ends_with(".safetensors") && *f != ".."
        }) else {
            return Err(EngineError::model(
                &path,
                format!(
                    "weight_map.{name} = {file}: expected the name of a .safetensors file in \
                     the same folder"
                ),
            ));
        };
        out.insert(name.clone(), f.to_string());
    }
    Ok((path, out))
}

/// Checks that every tensor is in the shard the index names, and that the index lists every
/// tensor of the shards.
pub(super) fn check_index(
    index: &(PathBuf, HashMap<String, String>),
    weights: &Headers,
) -> Result<()> {
    let (path, map) = index;
    let mut listed: Vec<_> = map.iter().collect();
    listed.sort();
    for (name, file) in listed {
        match weights.get(name) {
            None => {
                return Err(EngineError::model(
                    path,
                    format!("weight_map lists tensor {name} in {file}, which lacks it"),
                ))
            }
            Some(h) if h.file.file_name().is_none_or(|n| n != file.as_str()) => {
                return Err(EngineError::model(
                    path,
                    format!(
                        "weight_map lists tensor {name} in {file}, but it is in {}",
                        h.file.display()
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    let mut unlisted: Vec<_> = weights
        .iter()
        .filter(|(n, _)| !map.contains_key(*n))
        .collect();
    unlisted.sort_by(|a, b| a.0.cmp(b.0));
    if let Some((name, h)) = unlisted.first() {
        return Err(EngineError::model(
            path,
            format!(
                "tensor {name} of {} is not listed in weight_map",
                h.file.display()
            ),
        ));
    }
    Ok(())
}

/// Reads the headers of `files` (the first bytes of each, not the data). Refuses a file that is
/// not safetensors or is shorter than its header says, an integer or boolean dtype (naming the
/// tensor and its dtype) and a tensor defined in two files (naming both).
pub fn read_headers(files: &[PathBuf]) -> Result<Headers> {
    let mut out = Headers::new();
    for f in files {
        for (name, h) in file_header(f)? {
            if let Some(first) = out.get(&name) {
                return Err(EngineError::model(
                    f,
                    format!(
                        "tensor {name} is defined twice: in {} and in {}; keep it in one file",
                        first.file.display(),
                        f.display()
                    ),
                ));
            }
            out.insert(name, h);
        }
    }
    Ok(out)
}

/// The tensors of one safetensors file's header, checked against the file's length.
fn file_header(f: &Path) -> Result<Vec<(String, TensorHeader)>> {
    use std::io::Read as _;
    let bad = |msg: String| EngineError::model(f, format!("unreadable weights: {msg}"));
    let mut file = std::fs::File::open(f).map_err(|e| EngineError::io(f, e))?;
    let len = file.metadata().map_err(|e| EngineError::io(f, e))?.len();
    let mut n = [0u8; 8];
    file.read_exact(&mut n)
        .map_err(|_| bad(format!("{len} bytes is too short for a safetensors file")))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || 8 + n > len {
        return Err(bad(format!(
            "the header claims {n} bytes, the file has {len}: not a safetensors file, or truncated"
        )));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header)
        .map_err(|e| EngineError::io(f, e))?;
    let header: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("the header is not a JSON object: {e}")))?;
    let mut out = Vec::with_capacity(header.len());
    let mut data_end = 0u64;
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let info: RawInfo =
            serde_json::from_value(v).map_err(|e| bad(format!("tensor {name}: {e}")))?;
        let width = match info.dtype.as_str() {
            "F32" => 4,
            "F16" | "BF16" => 2,
            "F64" => 8,
            other => {
                return Err(EngineError::model(
                    f,
                    format!(
                        "tensor {name} has dtype {other}: expected a floating dtype (F32, F16 or \
                         BF16); integer or quantized weights are not supported"
                    ),
                ))
            }
        };
        let [a, b] = info.data_offsets;
        let elems = info
            .shape
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(*d as u64));
        if b < a || elems.and_then(|e| e.checked_mul(width)) != Some(b - a) {
            return Err(bad(format!(
                "tensor {name}: shape {:?} of {} does not fit its data offsets {a}..{b}",
                info.shape, info.dtype
            )));
        }
        data_end = data_end.max(b);
        out.push((
            name,
            TensorHeader {
                dtype: info.dtype,
                shape: info.shape,
                file: f.to_path_buf(),
            },
        ));
    }
    if 8 + n + data_end != len {
        return Err(bad(format!(
            "the header describes {} bytes of tensor data, the file holds {}: truncated or \
             padded",
            data_end,
            len - 8 - n
        )));
    }
    out.sort_by(|x, y| x.0.cmp(&y.0));
    Ok(out)
}

#[derive(serde::Deserialize)]
struct RawInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Reads the data of every tensor of `files` (whose headers [`read_headers`] checked).
pub(super) fn read_weights(files: &[PathBuf], device: &Device) -> Result<Weights> {
    let mut out: Weights = HashMap::new();
    for f in files {
        let data = std::fs::read(f).map_err(|e| EngineError::io(f, e))?;
        let st = safetensors::SafeTensors::deserialize(&data)
            .map_err(|e| EngineError::model(f, format!("unreadable weights: {e}")))?;
        for (name, view) in st.tensors() {
            let t = view.load(device).map_err(|e| {
                EngineError::model(f, format!("unreadable weights: tensor {name}: {e}"))
            })?;
            out.insert(name, (t, f.clone()));
        }
    }
    Ok(out)
}

/// Tensors a Hugging Face folder may hold that are not parameters (buffers older exports
/// saved), ignored.
fn is_buffer(name: &str) -> bool {
    name.ends_with(".rotary_emb.inv_freq")
}

/// Checks the headers against the parameters `cfg` implies: each present with its shape, and
/// no tensor left over (naming it and the `config.json` key that most likely leaves it unused).
pub fn check_params(cfg: &ModelConfig, cfg_path: &Path, headers: &Headers) -> Result<()> {
    for (name, shape) in cfg.parameter_shapes() {
        let Some(h) = headers.get(&name) else {
            let dir = cfg_path.parent().unwrap_or(cfg_path);
            return Err(EngineError::model(
                dir,
                format!("weights lack tensor {name} (shape {shape:?})"),
            ));
        };
        if h.shape != shape {
            return Err(EngineError::model(
                &h.file,
                format!(
                    "tensor {name} has shape {:?}, {} implies {shape:?}",
                    h.shape,
                    cfg_path.display()
                ),
            ));
        }
    }
    let used: std::collections::HashSet<String> =
        cfg.parameter_shapes().into_iter().map(|(n, _)| n).collect();
    let mut left: Vec<_> = headers
        .iter()
        .filter(|(n, _)| !used.contains(*n) && !is_buffer(n))
        .collect();
    left.sort_by(|a, b| a.0.cmp(b.0));
    if let Some((name, h)) = left.first() {
        return Err(EngineError::model(
            &h.file,
            format!(
                "tensor {name} is not used by the model {} describes: {}",
                cfg_path.display(),
                unused_reason(cfg, name)
            ),
        ));
    }
    Ok(())
}

/// Takes the parameters `cfg` implies out of `weights` (checked by [`check_params`]), as F32,
/// each scanned for non-finite values.
pub(super) fn take_params(
    cfg: &ModelConfig,
    mut weights: Weights,
) -> Result<Vec<(String, Tensor)>> {
    let mut params = Vec::new();
    for (name, _) in cfg.parameter_shapes() {
        let Some((t, file)) = weights.remove(&name) else {
            return Err(EngineError::Internal(format!(
                "tensor {name} vanished after its check"
            )));
        };
        let t = t.to_dtype(DType::F32)?;
        check_finite(&t, &name, &file)?;
        params.push((name, t));
    }
    Ok(params)
}

/// Why a tensor is not among the config's parameters: the key to look at.
fn unused_reason(cfg: &ModelConfig, name: &str) -> String {
    let layer = name
        .strip_prefix("model.layers.")
        .and_then(|r| r.split('.').next())
        .and_then(|n| n.parse::<usize>().ok());
    if let Some(l) = layer.filter(|l| *l >= cfg.num_hidden_layers) {
        return format!(
            "num_hidden_layers = {} (layers 0..={}), but the weights have layer {l}; set \
             num_hidden_layers to the number of layers in the weights",
            cfg.num_hidden_layers,
            cfg.num_hidden_layers - 1
        );
    }
    if name.contains(".self_attn.") && name.ends_with("_proj.bias") && !cfg.qkv_bias() {
        return format!(
            "model_type = \"{}\" without attention_bias = true has no q/k/v biases; a folder \
             with them needs model_type = \"qwen2\" (or attention_bias = true)",
            cfg.model_type
        );
    }
    if name == "lm_head.weight" && cfg.tie_word_embeddings {
        return "tie_word_embeddings = true (the output head is model.embed_tokens.weight); set \
                tie_word_embeddings = false to use a separate head"
            .into();
    }
    format!(
        "it is not a parameter of a {} model (model_type); remove it or fix the config",
        cfg.model_type
    )
}

/// Scans every element of an F32 tensor (no sampling) and refuses the first NaN or infinity,
/// naming the tensor, the element and the file.
fn check_finite(t: &Tensor, name: &str, file: &Path) -> Result<()> {
    let bad = {
        let (storage, layout) = t.storage_and_layout();
        match (&*storage, layout.contiguous_offsets()) {
            (candle_core::Storage::Cpu(cpu), Some((a, b))) => {
                first_non_finite(&cpu.as_slice::<f32>()?[a..b])
            }
            _ => None,
        }
    };
    let bad = match bad {
        Some(b) => Some(b),
        None if !t.device().is_cpu() || !t.is_contiguous() => {
            first_non_finite(&t.flatten_all()?.to_vec1::<f32>()?)
        }
        None => None,
    };
    match bad {
        None => Ok(()),
        Some((i, v)) => Err(EngineError::model(
            file,
            format!(
                "tensor {name} holds a non-finite value ({v} at element {i} of {}): expected \
                 finite weights (the model is broken)",
                t.elem_count()
            ),
        )),
    }
}

fn first_non_finite(v: &[f32]) -> Option<(usize, f32)> {
    v.iter().position(|x| !x.is_finite()).map(|i| (i, v[i]))
}
