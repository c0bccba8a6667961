//! Model files → one set of tensors under Hugging Face names: a HF directory
//! (`config.json` + `model.safetensors`) read as is, a CTranslate2 directory
//! (`config.json` + `model.bin`) mapped variable by variable, fused projections split.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::ct2::{self, Ct2Model};

/// The architecture's sizes (OpenAI's `ModelDimensions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub n_mels: usize,
    pub n_audio_ctx: usize,
    pub n_audio_state: usize,
    pub n_audio_head: usize,
    pub n_audio_layer: usize,
    pub n_vocab: usize,
    pub n_text_ctx: usize,
    pub n_text_state: usize,
    pub n_text_head: usize,
    pub n_text_layer: usize,
}

/// On-disk format a model was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    HuggingFace,
    CTranslate2,
}

/// Tensors under HF names (without the `model.` prefix; `proj_out.weight` omitted:
/// it is tied to `decoder.embed_tokens.weight`), on the CPU in their stored dtype
/// (int8 already dequantized to f32).
#[derive(Debug)]
pub struct Weights {
    pub format: ModelFormat,
    pub dims: Dims,
    pub tensors: HashMap<String, Tensor>,
    /// Extra configuration found beside the weights (CT2 `config.json` or HF
    /// `generation_config.json`): suppressed tokens and language ids.
    pub suppress_ids: Option<Vec<u32>>,
    pub suppress_ids_begin: Option<Vec<u32>>,
    pub lang_ids: Option<Vec<u32>>,
    /// Cross-attention heads `(layer, head)` that follow the spoken frame (word timings).
    pub alignment_heads: Option<Vec<(usize, usize)>>,
}

/// Why model files cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WeightsError(pub String);

impl From<candle_core::Error> for WeightsError {
    fn from(e: candle_core::Error) -> Self {
        WeightsError(format!("invalid tensor data: {e}"))
    }
}

impl From<ct2::Ct2Error> for WeightsError {
    fn from(e: ct2::Ct2Error) -> Self {
        WeightsError(format!("model.bin: {e}"))
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, WeightsError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| WeightsError(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| WeightsError(format!("{} is not valid JSON: {e}", path.display())))
}

/// `[[layer, head], …]`.
fn heads(v: &serde_json::Value) -> Option<Vec<(usize, usize)>> {
    v.get("alignment_heads")?
        .as_array()?
        .iter()
        .map(|pair| match pair.as_array()?.as_slice() {
            [layer, head] => Some((layer.as_u64()? as usize, head.as_u64()? as usize)),
            _ => None,
        })
        .collect()
}

fn ids(v: &serde_json::Value, key: &str) -> Option<Vec<u32>> {
    v.get(key)?
        .as_array()?
        .iter()
        .map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok()))
        .collect()
}

/// Which format `dir` holds, if any.
pub fn detect(dir: &Path) -> Result<ModelFormat, WeightsError> {
    let has = |f: &str| dir.join(f).is_file();
    if !dir.is_dir() {
        return Err(WeightsError(format!(
            "model directory {} does not exist",
            dir.display()
        )));
    }
    let missing_common: Vec<&str> = ["config.json", "tokenizer.json"]
        .into_iter()
        .filter(|f| !has(f))
        .collect();
    let format = if has("model.safetensors") {
        ModelFormat::HuggingFace
    } else if has("model.bin") {
        ModelFormat::CTranslate2
    } else {
        return Err(WeightsError(format!(
            "{} holds neither model.safetensors (Hugging Face format) nor model.bin (CTranslate2 format)",
            dir.display()
        )));
    };
    if !missing_common.is_empty() {
        return Err(WeightsError(format!(
            "{} lacks {}",
            dir.display(),
            missing_common.join(" and ")
        )));
    }
    Ok(format)
}

/// Reads the model in `dir` (either format).
pub fn load(dir: &Path) -> Result<Weights, WeightsError> {
    match detect(dir)? {
        ModelFormat::HuggingFace => load_hf(dir),
        ModelFormat::CTranslate2 => load_ct2(dir),
    }
}

fn usize_of(v: &serde_json::Value, key: &str) -> Result<usize, WeightsError> {
    v.get(key)
        .and_then(serde_json::Value::as_u64)
        .map(|n| n as usize)
        .ok_or_else(|| WeightsError(format!("config.json lacks `{key}`")))
}

fn load_hf(dir: &Path) -> Result<Weights, WeightsError> {
    let config = read_json(&dir.join("config.json"))?;
    let dims = Dims {
        n_mels: usize_of(&config, "num_mel_bins")?,
        n_audio_ctx: usize_of(&config, "max_source_positions")?,
        n_audio_state: usize_of(&config, "d_model")?,
        n_audio_head: usize_of(&config, "encoder_attention_heads")?,
        n_audio_layer: usize_of(&config, "encoder_layers")?,
        n_vocab: usize_of(&config, "vocab_size")?,
        n_text_ctx: usize_of(&config, "max_target_positions")?,
        n_text_state: usize_of(&config, "d_model")?,
        n_text_head: usize_of(&config, "decoder_attention_heads")?,
        n_text_layer: usize_of(&config, "decoder_layers")?,
    };
    let path = dir.join("model.safetensors");
    let raw = candle_core::safetensors::load(&path, &Device::Cpu)
        .map_err(|e| WeightsError(format!("{}: {e}", path.display())))?;
    let tensors: HashMap<String, Tensor> = raw
        .into_iter()
        .filter(|(k, _)| k != "proj_out.weight")
        .map(|(k, v)| (k.strip_prefix("model.").map(str::to_owned).unwrap_or(k), v))
        .collect();
    let generation = dir.join("generation_config.json");
    let generation = if generation.is_file() {
        Some(read_json(&generation)?)
    } else {
        None
    };
    let g = generation.as_ref();
    let weights = Weights {
        format: ModelFormat::HuggingFace,
        dims,
        tensors,
        suppress_ids: g
            .and_then(|g| ids(g, "suppress_tokens"))
            .or_else(|| ids(&config, "suppress_tokens")),
        suppress_ids_begin: g
            .and_then(|g| ids(g, "begin_suppress_tokens"))
            .or_else(|| ids(&config, "begin_suppress_tokens")),
        lang_ids: g
            .and_then(|g| g.get("lang_to_id"))
            .and_then(|m| m.as_object())
            .map(|m| m.values().filter_map(|v| v.as_u64().map(|n| n as u32)).collect()),
        alignment_heads: g.and_then(heads).or_else(|| heads(&config)),
    };
    check(&weights)?;
    Ok(weights)
}

fn load_ct2(dir: &Path) -> Result<Weights, WeightsError> {
    let config = read_json(&dir.join("config.json"))?;
    let model = ct2::read(&dir.join("model.bin"))?;
    if model.spec != "WhisperSpec" {
        return Err(WeightsError(format!(
            "model.bin holds a `{}`, not a Whisper model",
            model.spec
        )));
    }
    let (dims, tensors) = ct2_to_hf(&model)?;
    let weights = Weights {
        format: ModelFormat::CTranslate2,
        dims,
        tensors,
        suppress_ids: ids(&config, "suppress_ids"),
        suppress_ids_begin: ids(&config, "suppress_ids_begin"),
        lang_ids: ids(&config, "lang_ids"),
        alignment_heads: heads(&config),
    };
    check(&weights)?;
    Ok(weights)
}

fn count_layers(model: &Ct2Model, prefix: &str) -> usize {
    (0..)
        .take_while(|i| {
            model
                .tensors
                .contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))
        })
        .count()
}

/// Maps CT2 Whisper variables onto HF names.
pub fn ct2_to_hf(model: &Ct2Model) -> Result<(Dims, HashMap<String, Tensor>), WeightsError> {
    let get = |name: &str| -> Result<Tensor, WeightsError> {
        if let Some(t) = model.get(name) {
            if model.int8.iter().any(|n| n == name) {
                let scale_name = format!("{name}_scale");
                let scale = model
                    .get(&scale_name)
                    .ok_or_else(|| WeightsError(format!("model.bin: int8 `{name}` without `{scale_name}`")))?;
                return Ok(ct2::dequantize(t, scale)?);
            }
            Ok(t.clone())
        } else {
            Err(WeightsError(format!("model.bin lacks the variable `{name}`")))
        }
    };
    let heads = |name: &str| -> Result<usize, WeightsError> {
        model
            .scalars
            .get(name)
            .map(|s| s.as_i64() as usize)
            .filter(|&h| h > 0)
            .ok_or_else(|| WeightsError(format!("model.bin lacks `{name}`")))
    };
    let conv1 = get("encoder/conv1/weight")?;
    let emb = get("decoder/embeddings/weight")?;
    let dims = Dims {
        n_mels: conv1.dim(1)?,
        n_audio_ctx: get("encoder/position_encodings/encodings")?.dim(0)?,
        n_audio_state: conv1.dim(0)?,
        n_audio_head: heads("encoder/num_heads")?,
        n_audio_layer: count_layers(model, "encoder"),
        n_vocab: emb.dim(0)?,
        n_text_ctx: get("decoder/position_encodings/encodings")?.dim(0)?,
        n_text_state: emb.dim(1)?,
        n_text_head: heads("decoder/num_heads")?,
        n_text_layer: count_layers(model, "decoder"),
    };
    let mut t = HashMap::new();
    let mut put = |k: String, v: Tensor| {
        t.insert(k, v);
    };
    for side in ["encoder", "decoder"] {
        for c in ["conv1", "conv2"] {
            if side == "encoder" {
                put(format!("encoder.{c}.weight"), get(&format!("encoder/{c}/weight"))?);
                put(format!("encoder.{c}.bias"), get(&format!("encoder/{c}/bias"))?);
            }
        }
        put(
            format!("{side}.embed_positions.weight"),
            get(&format!("{side}/position_encodings/encodings"))?,
        );
        put(
            format!("{side}.layer_norm.weight"),
            get(&format!("{side}/layer_norm/gamma"))?,
        );
        put(
            format!("{side}.layer_norm.bias"),
            get(&format!("{side}/layer_norm/beta"))?,
        );
        let (layers, d) = if side == "encoder" {
            (dims.n_audio_layer, dims.n_audio_state)
        } else {
            (dims.n_text_layer, dims.n_text_state)
        };
        for i in 0..layers {
            let c = format!("{side}/layer_{i}");
            let h = format!("{side}.layers.{i}");
            let qkv_w = get(&format!("{c}/self_attention/linear_0/weight"))?;
            let qkv_b = get(&format!("{c}/self_attention/linear_0/bias"))?;
            put(format!("{h}.self_attn.q_proj.weight"), qkv_w.narrow(0, 0, d)?);
            put(format!("{h}.self_attn.k_proj.weight"), qkv_w.narrow(0, d, d)?);
            put(format!("{h}.self_attn.v_proj.weight"), qkv_w.narrow(0, 2 * d, d)?);
            put(format!("{h}.self_attn.q_proj.bias"), qkv_b.narrow(0, 0, d)?);
            put(format!("{h}.self_attn.v_proj.bias"), qkv_b.narrow(0, 2 * d, d)?);
            put(
                format!("{h}.self_attn.out_proj.weight"),
                get(&format!("{c}/self_attention/linear_1/weight"))?,
            );
            put(
                format!("{h}.self_attn.out_proj.bias"),
                get(&format!("{c}/self_attention/linear_1/bias"))?,
            );
            put(
                format!("{h}.self_attn_layer_norm.weight"),
                get(&format!("{c}/self_attention/layer_norm/gamma"))?,
            );
            put(
                format!("{h}.self_attn_layer_norm.bias"),
                get(&format!("{c}/self_attention/layer_norm/beta"))?,
            );
            if side == "decoder" {
                let a = format!("{c}/attention");
                put(
                    format!("{h}.encoder_attn.q_proj.weight"),
                    get(&format!("{a}/linear_0/weight"))?,
                );
                put(
                    format!("{h}.encoder_attn.q_proj.bias"),
                    get(&format!("{a}/linear_0/bias"))?,
                );
                let kv_w = get(&format!("{a}/linear_1/weight"))?;
                let kv_b = get(&format!("{a}/linear_1/bias"))?;
                put(format!("{h}.encoder_attn.k_proj.weight"), kv_w.narrow(0, 0, d)?);
                put(format!("{h}.encoder_attn.v_proj.weight"), kv_w.narrow(0, d, d)?);
                put(format!("{h}.encoder_attn.v_proj.bias"), kv_b.narrow(0, d, d)?);
                put(
                    format!("{h}.encoder_attn.out_proj.weight"),
                    get(&format!("{a}/linear_2/weight"))?,
                );
                put(
                    format!("{h}.encoder_attn.out_proj.bias"),
                    get(&format!("{a}/linear_2/bias"))?,
                );
                put(
                    format!("{h}.encoder_attn_layer_norm.weight"),
                    get(&format!("{a}/layer_norm/gamma"))?,
                );
                put(
                    format!("{h}.encoder_attn_layer_norm.bias"),
                    get(&format!("{a}/layer_norm/beta"))?,
                );
            }
            put(format!("{h}.fc1.weight"), get(&format!("{c}/ffn/linear_0/weight"))?);
            put(format!("{h}.fc1.bias"), get(&format!("{c}/ffn/linear_0/bias"))?);
            put(format!("{h}.fc2.weight"), get(&format!("{c}/ffn/linear_1/weight"))?);
            put(format!("{h}.fc2.bias"), get(&format!("{c}/ffn/linear_1/bias"))?);
            put(
                format!("{h}.final_layer_norm.weight"),
                get(&format!("{c}/ffn/layer_norm/gamma"))?,
            );
            put(
                format!("{h}.final_layer_norm.bias"),
                get(&format!("{c}/ffn/layer_norm/beta"))?,
            );
        }
    }
    put("decoder.embed_tokens.weight".to_owned(), emb);
    // Make the split halves their own contiguous tensors.
    let t = t
        .into_iter()
        .map(|(k, v)| v.contiguous().map(|v| (k, v)))
        .collect::<Result<HashMap<_, _>, _>>()?;
    Ok((dims, t))
}

/// Every tensor the model needs is present with the right shape.
fn check(w: &Weights) -> Result<(), WeightsError> {
    let d = &w.dims;
    if !d.n_audio_state.is_multiple_of(d.n_audio_head.max(1)) || !d.n_text_state.is_multiple_of(d.n_text_head.max(1)) {
        return Err(WeightsError("head count does not divide the model width".into()));
    }
    if let Some(&(layer, head)) = w
        .alignment_heads
        .iter()
        .flatten()
        .find(|&&(layer, head)| layer >= d.n_text_layer || head >= d.n_text_head)
    {
        return Err(WeightsError(format!(
            "alignment head ({layer}, {head}) is outside the decoder's {} layers of {} heads",
            d.n_text_layer, d.n_text_head
        )));
    }
    let mut want: Vec<(String, Vec<usize>)> = vec![
        ("encoder.conv1.weight".into(), vec![d.n_audio_state, d.n_mels, 3]),
        ("encoder.conv2.weight".into(), vec![d.n_audio_state, d.n_audio_state, 3]),
        (
            "encoder.embed_positions.weight".into(),
            vec![d.n_audio_ctx, d.n_audio_state],
        ),
        ("decoder.embed_tokens.weight".into(), vec![d.n_vocab, d.n_text_state]),
        (
            "decoder.embed_positions.weight".into(),
            vec![d.n_text_ctx, d.n_text_state],
        ),
    ];
    for i in 0..d.n_audio_layer {
        want.push((
            format!("encoder.layers.{i}.self_attn.k_proj.weight"),
            vec![d.n_audio_state, d.n_audio_state],
        ));
        want.push((
            format!("encoder.layers.{i}.fc1.weight"),
            vec![4 * d.n_audio_state, d.n_audio_state],
        ));
    }
    for i in 0..d.n_text_layer {
        want.push((
            format!("decoder.layers.{i}.encoder_attn.k_proj.weight"),
            vec![d.n_text_state, d.n_audio_state],
        ));
        want.push((
            format!("decoder.layers.{i}.fc2.weight"),
            vec![d.n_text_state, 4 * d.n_text_state],
        ));
    }
    for (name, shape) in want {
        match w.tensors.get(&name) {
            None => return Err(WeightsError(format!("the weights lack `{name}`"))),
            Some(t) if t.dims() != shape.as_slice() => {
                return Err(WeightsError(format!(
                    "`{name}` has shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
            Some(_) => {}
        }
    }
    if d.n_audio_layer == 0 || d.n_text_layer == 0 {
        return Err(WeightsError("the weights hold no encoder or decoder layers".into()));
    }
    Ok(())
}

/// Writes `weights` as a Hugging Face model directory (`model.safetensors` in f32 and
/// `config.json`); the caller copies `tokenizer.json`.
pub fn save_hf(weights: &Weights, dir: &Path) -> Result<(), WeightsError> {
    let d = &weights.dims;
    let tensors = weights
        .tensors
        .iter()
        .map(|(k, v)| v.to_dtype(DType::F32).map(|v| (format!("model.{k}"), v)))
        .collect::<Result<HashMap<_, _>, _>>()?;
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    let config = serde_json::json!({
        "model_type": "whisper",
        "architectures": ["WhisperForConditionalGeneration"],
        "num_mel_bins": d.n_mels,
        "max_source_positions": d.n_audio_ctx,
        "d_model": d.n_audio_state,
        "encoder_attention_heads": d.n_audio_head,
        "encoder_layers": d.n_audio_layer,
        "encoder_ffn_dim": 4 * d.n_audio_state,
        "vocab_size": d.n_vocab,
        "max_target_positions": d.n_text_ctx,
        "decoder_attention_heads": d.n_text_head,
        "decoder_layers": d.n_text_layer,
        "decoder_ffn_dim": 4 * d.n_text_state,
        "activation_function": "gelu",
        "tie_word_embeddings": true,
        "suppress_tokens": weights.suppress_ids,
        "begin_suppress_tokens": weights.suppress_ids_begin,
        "alignment_heads": weights.alignment_heads.as_ref().map(|h| h.iter().map(|&(l, h)| [l, h]).collect::<Vec<_>>()),
    });
    std::fs::write(dir.join("config.json"), config.to_string())
        .map_err(|e| WeightsError(format!("cannot write config.json: {e}")))
}
