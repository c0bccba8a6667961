//! The Whisper network on candle: encoder, and a decoder with a self-attention KV cache
//! and cross-attention keys/values computed once per 30-s window.

use std::collections::HashMap;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, LayerNorm, Linear};

use super::attention::{self, HeadsKv};
use super::int8::{self, Int8Matrix};
use super::panels::{self, Int8Panels};
use super::weights::Dims;

struct Weights<'a> {
    map: &'a HashMap<String, Tensor>,
    dtype: DType,
    device: &'a Device,
    /// Whether the matrix products' weights are held in 8 bits (else in the dtype), and
    /// with which scales.
    int8: Option<Scales>,
}

/// How 8-bit weights and activations are scaled (and so which kernel multiplies them).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scales {
    /// An f32 scale per 32 values ([`Int8Matrix`]): the most exact, for `int8`'s decoder.
    PerBlock,
    /// A scale per row of the weights and per row of the activations ([`Int8Panels`],
    /// CTranslate2's scheme): `int8_full`'s, on CPUs with AVX-512 VNNI; products of a
    /// window's frames are left in f32 without it.
    PerRow,
}

impl Weights<'_> {
    fn get(&self, name: &str) -> Result<Tensor> {
        self.map
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("missing weight `{name}`")))?
            .to_dtype(self.dtype)?
            .to_device(self.device)
    }
    fn opt(&self, name: &str) -> Result<Option<Tensor>> {
        if self.map.contains_key(name) {
            self.get(name).map(Some)
        } else {
            Ok(None)
        }
    }
    fn linear(&self, prefix: &str) -> Result<Linear> {
        Ok(Linear::new(
            self.get(&format!("{prefix}.weight"))?,
            self.opt(&format!("{prefix}.bias"))?,
        ))
    }
    fn proj(&self, prefix: &str) -> Result<Proj> {
        Proj::new(self.linear(prefix)?, self.int8)
    }
    fn layer_norm(&self, prefix: &str) -> Result<LayerNorm> {
        Ok(LayerNorm::new(
            self.get(&format!("{prefix}.weight"))?,
            self.get(&format!("{prefix}.bias"))?,
            1e-5,
        ))
    }
}

/// A projection `x·Wᵀ + b`: dense, or — on the CPU, when asked — with its weights in
/// 8 bits, the activations quantized on the fly, integer dot products ([`Scales`]):
/// a scale per 32 values ([`Int8Matrix`]; not candle's Q8_0, whose scales are f16: on
/// a CPU with VNNI, where candle multiplies them with its tiled kernels, tiny.en in
/// int8 misheard 10 words of 96 against float32's 5, through `Int8Matrix` 5), or a
/// scale per row, in panels for VNNI ([`Int8Panels`]); dense where the CPU lacks it (an
/// 8-bit product of 1500 rows without VNNI is slower than f32's FMA).
enum Proj {
    Dense(Linear),
    /// Frames' products: the bias is added by the kernel.
    Panels(Int8Panels),
    Quantized {
        weight: Int8Matrix,
        bias: Option<Tensor>,
    },
}

impl Proj {
    /// `linear` as asked; dense when `int8` is `None`, off the CPU, or when its rows do
    /// not split into blocks.
    fn new(linear: Linear, int8: Option<Scales>) -> Result<Proj> {
        let k = linear.weight().dim(1)?;
        let Some(scales) = int8 else {
            return Ok(Proj::Dense(linear));
        };
        if !linear.weight().device().is_cpu() {
            return Ok(Proj::Dense(linear));
        }
        if scales == Scales::PerRow {
            if !panels::fast() || !k.is_multiple_of(4) {
                return Ok(Proj::Dense(linear));
            }
            return Ok(Proj::Panels(Int8Panels::quantize(linear.weight(), linear.bias())?));
        }
        if !k.is_multiple_of(int8::BLOCK) {
            return Ok(Proj::Dense(linear));
        }
        Ok(Proj::Quantized {
            weight: Int8Matrix::quantize(linear.weight())?,
            bias: linear.bias().map(|b| b.to_dtype(DType::F32)).transpose()?,
        })
    }

    /// Bytes its weights take.
    fn bytes(&self) -> u64 {
        let tensor = tensor_bytes;
        match self {
            Proj::Dense(l) => tensor(l.weight()) + l.bias().map_or(0, tensor),
            Proj::Panels(p) => p.bytes(),
            Proj::Quantized { weight, bias } => weight.bytes() + bias.as_ref().map_or(0, tensor),
        }
    }
}

fn tensor_bytes(t: &Tensor) -> u64 {
    (t.elem_count() * t.dtype().size_in_bytes()) as u64
}

/// `y + bias` (broadcast over the rows), or `y` without one.
fn plus_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(bias) => y.broadcast_add(bias),
        None => Ok(y),
    }
}

impl Module for Proj {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            // A beam search's rows through a kernel that reads each weight once.
            Proj::Dense(linear) => match super::dense::few_rows(x, linear.weight())? {
                Some(y) => plus_bias(y, linear.bias()),
                None => linear.forward(x),
            },
            Proj::Panels(p) => p.forward(x),
            Proj::Quantized { weight, bias } => plus_bias(weight.forward(x)?, bias.as_ref()),
        }
    }
}

/// Attention's input projections, fused where they read the same input: one matrix
/// product (and, quantized, one quantization of the input) instead of three.
enum Projections {
    /// Self-attention: queries, keys and values of `x`, `[3d, d]`.
    Fused(Proj),
    /// Cross-attention: queries of `x`; keys and values of the audio, `[2d, d]`.
    Split { q: Proj, kv: Proj },
}

struct Attention {
    projections: Projections,
    out: Proj,
    heads: usize,
}

impl Attention {
    /// The query, key and value projections of `prefix`: the query's scaled by
    /// 1/sqrt(head_dim) (the scores' scale, folded in), the key's bias zero (Whisper's
    /// keys have none).
    fn qkv(w: &Weights<'_>, prefix: &str, heads: usize) -> Result<[Linear; 3]> {
        let q = w.linear(&format!("{prefix}.q_proj"))?;
        let scale = 1.0 / ((q.weight().dim(0)? / heads) as f64).sqrt();
        let q = Linear::new((q.weight() * scale)?, q.bias().map(|b| b * scale).transpose()?);
        let k = w.linear(&format!("{prefix}.k_proj"))?;
        let v = w.linear(&format!("{prefix}.v_proj"))?;
        let with_bias = |l: Linear| -> Result<Linear> {
            match l.bias() {
                Some(_) => Ok(l),
                None => {
                    let bias = Tensor::zeros(l.weight().dim(0)?, l.weight().dtype(), l.weight().device())?;
                    Ok(Linear::new(l.weight().clone(), Some(bias)))
                }
            }
        };
        Ok([with_bias(q)?, with_bias(k)?, with_bias(v)?])
    }

    /// One product of the projections' weights stacked (their outputs side by side).
    fn stacked(parts: &[&Linear], int8: Option<Scales>) -> Result<Proj> {
        let weights: Vec<&Tensor> = parts.iter().map(|l| l.weight()).collect();
        let biases = parts
            .iter()
            .map(|l| {
                l.bias()
                    .cloned()
                    .ok_or_else(|| candle_core::Error::Msg("stacked projections need biases".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        Proj::new(
            Linear::new(Tensor::cat(&weights, 0)?, Some(Tensor::cat(&biases, 0)?)),
            int8,
        )
    }

    fn new_self(w: &Weights<'_>, prefix: &str, heads: usize) -> Result<Attention> {
        let [q, k, v] = Attention::qkv(w, prefix, heads)?;
        Ok(Attention {
            projections: Projections::Fused(Attention::stacked(&[&q, &k, &v], w.int8)?),
            out: w.proj(&format!("{prefix}.out_proj"))?,
            heads,
        })
    }

    /// `frames` holds the audio's keys' and values' weights as the encoder's are held.
    fn new_cross(w: &Weights<'_>, frames: &Weights<'_>, prefix: &str, heads: usize) -> Result<Attention> {
        let [q, k, v] = Attention::qkv(w, prefix, heads)?;
        Ok(Attention {
            projections: Projections::Split {
                q: Proj::new(q, w.int8)?,
                // Once per window over all 1500 frames, like the encoder's products.
                kv: Attention::stacked(&[&k, &v], frames.int8)?,
            },
            out: w.proj(&format!("{prefix}.out_proj"))?,
            heads,
        })
    }

    fn bytes(&self) -> u64 {
        let inputs = match &self.projections {
            Projections::Fused(qkv) => qkv.bytes(),
            Projections::Split { q, kv } => q.bytes() + kv.bytes(),
        };
        inputs + self.out.bytes()
    }

    /// `[b, t, n·d]` (n projections side by side) → n tensors `[b, heads, t, head_dim]`,
    /// in one copy.
    fn split_n(&self, x: &Tensor, n: usize) -> Result<Vec<Tensor>> {
        let (b, t, nd) = x.dims3()?;
        let dh = nd / n / self.heads;
        let x = x
            .reshape((b, t, n, self.heads, dh))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        (0..n).map(|i| x.get(i)).collect()
    }

    /// The fused query, key and value projection of `x` (self-attention): `[b, t, 3·d]`.
    fn self_qkv_fused(&self, x: &Tensor) -> Result<Tensor> {
        let Projections::Fused(qkv) = &self.projections else {
            return Err(candle_core::Error::Msg("not a self-attention".into()));
        };
        qkv.forward(x)
    }

    /// Queries, keys and values of `x` (self-attention), each `[b, heads, t, head_dim]`.
    fn self_qkv(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        self.split_qkv(&self.self_qkv_fused(x)?)
    }

    /// [`Self::self_qkv_fused`]'s output split into queries, keys and values.
    fn split_qkv(&self, qkv: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let mut parts = self.split_n(qkv, 3)?.into_iter();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(q), Some(k), Some(v)) => Ok((q, k, v)),
            _ => Err(candle_core::Error::Msg("fused projection lost a part".into())),
        }
    }

    /// `[b, t, d]` → `[b, heads, t, head_dim]`.
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        x.reshape((b, t, self.heads, d / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Attention of `q` over `k`/`v`; `scores` receives the scaled `q·k` before the
    /// softmax (the word aligner reads the cross-attention's).
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        scores: Option<&mut Option<Tensor>>,
    ) -> Result<Tensor> {
        let (b, _, t, dh) = q.dims4()?;
        let mut w = q.matmul(&k.t()?)?;
        // The scores are this function's own (and the softmax may overwrite them)
        // unless the caller keeps them.
        let mut kept = false;
        if let Some(scores) = scores {
            *scores = Some(w.clone());
            kept = true;
        }
        if let Some(mask) = mask {
            w = w.broadcast_add(mask)?;
            kept = false;
        }
        let w = if kept {
            super::ops::softmax_last_dim(&w)?
        } else {
            super::ops::softmax_last_dim_in_place(w)?
        };
        let o = w.matmul(v)?; // [b, h, t, dh]
        let o = o.transpose(1, 2)?.reshape((b, t, self.heads * dh))?;
        self.out.forward(&o)
    }

    /// Full self-attention (encoder). On the CPU in one pass per few query rows
    /// ([`super::attention`]): the scores of all 1500 frames at once would be tens of
    /// MB per layer, written and read back three times. A GPU takes them whole.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let qkv = self.self_qkv_fused(x)?;
        if let Some(o) = attention::self_attention(&qkv, self.heads)? {
            return self.out.forward(&o);
        }
        let (q, k, v) = self.split_qkv(&qkv)?;
        self.attend(&q, &k, &v, None, None)
    }

    /// Causal self-attention (decoder): `x`'s keys and values are written into `cache`
    /// at `offset`, and its queries attend to everything cached up to them.
    fn forward_cached(&self, x: &Tensor, cache: &SelfCache, offset: usize, mask: Option<&Tensor>) -> Result<Tensor> {
        let (q, k, v) = self.self_qkv(x)?;
        let t = q.dim(2)?;
        cache.k.slice_set(&k, 2, offset)?;
        cache.v.slice_set(&v, 2, offset)?;
        let k = cache.k.narrow(2, 0, offset + t)?;
        let v = cache.v.narrow(2, 0, offset + t)?;
        self.attend(&q, &k, &v, mask, None)
    }

    /// Keys and values of the audio features for cross-attention.
    fn cross_kv(&self, audio: &Tensor) -> Result<CrossKv> {
        let Projections::Split { kv, .. } = &self.projections else {
            return Err(candle_core::Error::Msg("not a cross-attention".into()));
        };
        // Where they come out of 8-bit products (`int8_full` with VNNI), bf16 holds them
        // to within a fraction of those products' own rounding, in half the bytes.
        let bf16 = matches!(kv, Proj::Panels(_));
        let kv = kv.forward(audio)?;
        if let Some(heads) = HeadsKv::of(&kv, self.heads, bf16)? {
            return Ok(CrossKv::Heads(heads));
        }
        let mut parts = self.split_n(&kv, 2)?.into_iter();
        match (parts.next(), parts.next()) {
            (Some(k), Some(v)) => Ok(CrossKv::Tensors(k, v)),
            _ => Err(candle_core::Error::Msg("fused projection lost a part".into())),
        }
    }

    /// Cross-attention of `[b, t, d]` queries over one window's audio: every beam
    /// attends to the same audio, so the beams' queries are rows of one batch (the
    /// audio's keys and values are never copied per beam).
    fn forward_cross(&self, x: &Tensor, kv: &CrossKv, scores: Option<&mut Option<Tensor>>) -> Result<Tensor> {
        let Projections::Split { q, .. } = &self.projections else {
            return Err(candle_core::Error::Msg("not a cross-attention".into()));
        };
        let q = q.forward(x)?;
        match kv {
            CrossKv::Heads(kv) => {
                let (o, kept) = attention::cross_attention(&q, kv, scores.is_some())?;
                if let Some(scores) = scores {
                    *scores = kept;
                }
                self.out.forward(&o)
            }
            CrossKv::Tensors(k, v) => {
                let (b, t, d) = x.dims3()?;
                let q = self.split(&q.reshape((1, b * t, d))?)?;
                self.attend(&q, k, v, None, scores)?.reshape((b, t, d))
            }
        }
    }
}

/// A decoder layer's cross-attention keys and values of the window's audio: laid out
/// for the CPU kernel, or as candle tensors `[1, heads, frames, head_dim]` elsewhere.
enum CrossKv {
    Heads(HeadsKv),
    Tensors(Tensor, Tensor),
}

/// A decoder layer's self-attention keys and values, `[beams, heads, n_text_ctx,
/// head_dim]`, allocated once and written in place token by token (a `cat` per token
/// would copy the whole cache of every layer each time).
struct SelfCache {
    k: Tensor,
    v: Tensor,
}

impl SelfCache {
    fn new(beams: usize, dims: &Dims, dtype: DType, device: &Device) -> Result<SelfCache> {
        let shape = (
            beams,
            dims.n_text_head,
            dims.n_text_ctx,
            dims.n_text_state / dims.n_text_head,
        );
        Ok(SelfCache {
            k: Tensor::zeros(shape, dtype, device)?,
            v: Tensor::zeros(shape, dtype, device)?,
        })
    }

    fn beams(&self) -> usize {
        self.k.dims().first().copied().unwrap_or(0)
    }
}

struct Mlp {
    fc1: Proj,
    fc2: Proj,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&super::ops::gelu_erf(&self.fc1.forward(x)?)?)
    }
}

struct EncoderLayer {
    attn: Attention,
    attn_ln: LayerNorm,
    mlp: Mlp,
    mlp_ln: LayerNorm,
}

struct DecoderLayer {
    attn: Attention,
    attn_ln: LayerNorm,
    cross: Attention,
    cross_ln: LayerNorm,
    mlp: Mlp,
    mlp_ln: LayerNorm,
}

/// The network with per-window decoding state.
pub struct Model {
    pub dims: Dims,
    pub dtype: DType,
    pub device: Device,
    conv1: Conv1d,
    conv2: Conv1d,
    enc_pos: Tensor,
    enc_layers: Vec<EncoderLayer>,
    enc_ln: LayerNorm,
    tok_emb: Tensor,
    /// The logits: hidden states times the token embeddings (tied weights).
    head: Proj,
    dec_pos: Tensor,
    dec_layers: Vec<DecoderLayer>,
    dec_ln: LayerNorm,
    /// Cross-attention K/V of the current window, one pair per decoder layer.
    cross_kv: Vec<CrossKv>,
    /// One beam's self-attention cache per decoder layer (the prompt, greedy decoding).
    single: Vec<SelfCache>,
    /// Several beams' caches per decoder layer (beam search), made on first use.
    beams: Vec<SelfCache>,
    /// Whether `beams` is in use (after [`Model::fork`]) rather than `single`.
    forked: bool,
    /// Tokens already in the self-attention cache (per beam).
    offset: usize,
}

impl Model {
    /// The network of `map`'s weights in `dtype` on `device`; with `int8`, the
    /// decoder's matrix products' weights in 8 bits instead, with `int8_encoder` too
    /// the encoder's and the audio's keys and values (CPU only; the encoder's only where
    /// the CPU has VNNI, see [`Proj`]).
    pub fn new(
        map: &HashMap<String, Tensor>,
        dims: Dims,
        dtype: DType,
        device: &Device,
        int8: bool,
        int8_encoder: bool,
    ) -> Result<Model> {
        // `int8_full`'s decoder takes a scale per row too where the CPU has VNNI (its
        // panels run a token 3× faster than the per-block kernel there); the encoder's
        // products stay in f32 without VNNI.
        let full = int8 && int8_encoder;
        let decoder = if full && panels::fast() {
            Scales::PerRow
        } else {
            Scales::PerBlock
        };
        let w = Weights {
            map,
            dtype,
            device,
            int8: int8.then_some(decoder),
        };
        let encoder_w = Weights {
            int8: full.then_some(Scales::PerRow),
            ..w
        };
        let conv = |name: &str, stride: usize| -> Result<Conv1d> {
            Ok(Conv1d::new(
                w.get(&format!("encoder.{name}.weight"))?,
                w.opt(&format!("encoder.{name}.bias"))?,
                Conv1dConfig {
                    padding: 1,
                    stride,
                    dilation: 1,
                    groups: 1,
                    cudnn_fwd_algo: None,
                },
            ))
        };
        let mlp = |w: &Weights<'_>, p: &str| -> Result<Mlp> {
            Ok(Mlp {
                fc1: w.proj(&format!("{p}.fc1"))?,
                fc2: w.proj(&format!("{p}.fc2"))?,
            })
        };
        let enc_layers = (0..dims.n_audio_layer)
            .map(|i| {
                let p = format!("encoder.layers.{i}");
                Ok(EncoderLayer {
                    attn: Attention::new_self(&encoder_w, &format!("{p}.self_attn"), dims.n_audio_head)?,
                    attn_ln: w.layer_norm(&format!("{p}.self_attn_layer_norm"))?,
                    mlp: mlp(&encoder_w, &p)?,
                    mlp_ln: w.layer_norm(&format!("{p}.final_layer_norm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let dec_layers = (0..dims.n_text_layer)
            .map(|i| {
                let p = format!("decoder.layers.{i}");
                Ok(DecoderLayer {
                    attn: Attention::new_self(&w, &format!("{p}.self_attn"), dims.n_text_head)?,
                    attn_ln: w.layer_norm(&format!("{p}.self_attn_layer_norm"))?,
                    cross: Attention::new_cross(&w, &encoder_w, &format!("{p}.encoder_attn"), dims.n_text_head)?,
                    cross_ln: w.layer_norm(&format!("{p}.encoder_attn_layer_norm"))?,
                    mlp: mlp(&w, &p)?,
                    mlp_ln: w.layer_norm(&format!("{p}.final_layer_norm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let tok_emb = w.get("decoder.embed_tokens.weight")?;
        let head = Proj::new(Linear::new(tok_emb.clone(), None), w.int8)?;
        // With the logits' copy quantized, the embeddings serve only lookups: half the
        // bytes in f16 (the CTranslate2 and Hugging Face weights are f16 to begin with).
        let tok_emb = match head {
            Proj::Quantized { .. } | Proj::Panels(_) => tok_emb.to_dtype(DType::F16)?,
            Proj::Dense(_) => tok_emb,
        };
        let single = (0..dims.n_text_layer)
            .map(|_| SelfCache::new(1, &dims, dtype, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Model {
            dims,
            dtype,
            device: device.clone(),
            conv1: conv("conv1", 1)?,
            conv2: conv("conv2", 2)?,
            enc_pos: w.get("encoder.embed_positions.weight")?,
            enc_layers,
            enc_ln: w.layer_norm("encoder.layer_norm")?,
            tok_emb,
            head,
            dec_pos: w.get("decoder.embed_positions.weight")?,
            dec_layers,
            dec_ln: w.layer_norm("decoder.layer_norm")?,
            cross_kv: Vec::new(),
            single,
            beams: Vec::new(),
            forked: false,
            offset: 0,
        })
    }

    /// Bytes the weights take as held (quantized projections at their packed size; the
    /// token embeddings twice when the logits' copy is quantized).
    pub fn weight_bytes(&self) -> u64 {
        let norm = |n: &LayerNorm| tensor_bytes(n.weight()) + n.bias().map_or(0, tensor_bytes);
        let attention = Attention::bytes;
        let mlp = |m: &Mlp| m.fc1.bytes() + m.fc2.bytes();
        let encoder: u64 = self
            .enc_layers
            .iter()
            .map(|l| attention(&l.attn) + norm(&l.attn_ln) + mlp(&l.mlp) + norm(&l.mlp_ln))
            .sum();
        let decoder: u64 = self
            .dec_layers
            .iter()
            .map(|l| {
                attention(&l.attn)
                    + norm(&l.attn_ln)
                    + attention(&l.cross)
                    + norm(&l.cross_ln)
                    + mlp(&l.mlp)
                    + norm(&l.mlp_ln)
            })
            .sum();
        let conv = |c: &Conv1d| tensor_bytes(c.weight()) + c.bias().map_or(0, tensor_bytes);
        let head = match &self.head {
            Proj::Dense(_) => 0, // the embeddings themselves
            quantized => quantized.bytes(),
        };
        encoder
            + decoder
            + conv(&self.conv1)
            + conv(&self.conv2)
            + tensor_bytes(&self.enc_pos)
            + norm(&self.enc_ln)
            + tensor_bytes(&self.tok_emb)
            + head
            + tensor_bytes(&self.dec_pos)
            + norm(&self.dec_ln)
    }

    /// Encodes a `[n_mels, 3000]` log-mel window and prepares cross-attention for it;
    /// clears the decoder cache.
    pub fn set_audio(&mut self, mel: &Tensor) -> Result<()> {
        let mel = mel.to_dtype(self.dtype)?.to_device(&self.device)?.unsqueeze(0)?;
        let x = super::ops::gelu_erf(&self.conv1.forward(&mel)?)?;
        let x = super::ops::gelu_erf(&self.conv2.forward(&x)?)?;
        let x = x.transpose(1, 2)?; // [1, 1500, d]
        let n = x.dim(1)?;
        let mut x = x.broadcast_add(&self.enc_pos.narrow(0, 0, n)?)?;
        for layer in &self.enc_layers {
            x = (&x + layer.attn.forward(&layer.attn_ln.forward(&x)?)?)?;
            x = (&x + layer.mlp.forward(&layer.mlp_ln.forward(&x)?)?)?;
        }
        let audio = self.enc_ln.forward(&x)?;
        self.cross_kv = self
            .dec_layers
            .iter()
            .map(|l| l.cross.cross_kv(&audio))
            .collect::<Result<Vec<_>>>()?;
        self.reset();
        Ok(())
    }

    /// Forgets the decoded tokens (keeps the audio); back to one beam.
    pub fn reset(&mut self) {
        self.offset = 0;
        self.forked = false;
    }

    /// Tokens decoded so far in this window.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Beams being decoded (1 until [`Model::fork`]).
    pub fn beam_count(&self) -> usize {
        if self.forked {
            self.beams.first().map_or(1, SelfCache::beams)
        } else {
            1
        }
    }

    /// Runs `ids` (`[beams, t]`) through the decoder after the cached tokens; returns
    /// the final hidden states `[beams, t, d]` (before the last layer norm). With
    /// `scores`, the cross-attention scores `[1, heads, beams·t, frames]` of each
    /// layer listed there are kept in its slot.
    fn forward(&mut self, ids: &Tensor, mut scores: Option<&mut [(usize, Option<Tensor>)]>) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        if self.offset + t > self.dims.n_text_ctx {
            return Err(candle_core::Error::Msg("decoder context is full".into()));
        }
        let mut x = self
            .tok_emb
            .embedding(&ids.flatten_all()?)?
            .to_dtype(self.dtype)?
            .reshape((ids.dim(0)?, t, self.dims.n_text_state))?
            .broadcast_add(&self.dec_pos.narrow(0, self.offset, t)?.unsqueeze(0)?)?;
        let mask = if t > 1 {
            let offset = self.offset;
            let total = offset + t;
            let m: Vec<f32> = (0..t)
                .flat_map(|i| (0..total).map(move |j| if j > offset + i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            Some(Tensor::from_vec(m, (t, total), &self.device)?.to_dtype(self.dtype)?)
        } else {
            None
        };
        let caches = if self.forked { &self.beams } else { &self.single };
        for (i, ((layer, kv), cache)) in self.dec_layers.iter().zip(&self.cross_kv).zip(caches).enumerate() {
            x = (&x
                + layer
                    .attn
                    .forward_cached(&layer.attn_ln.forward(&x)?, cache, self.offset, mask.as_ref())?)?;
            let slot = scores
                .as_deref_mut()
                .and_then(|s| s.iter_mut().find(|(layer, _)| *layer == i))
                .map(|(_, slot)| slot);
            x = (&x + layer.cross.forward_cross(&layer.cross_ln.forward(&x)?, kv, slot)?)?;
            x = (&x + layer.mlp.forward(&layer.mlp_ln.forward(&x)?)?)?;
        }
        self.offset += t;
        Ok(x)
    }

    /// Logits (f32, on the CPU) of hidden states `[n, d]`, one row each.
    fn logits(&self, x: &Tensor) -> Result<Vec<Vec<f32>>> {
        let x = self.dec_ln.forward(x)?;
        let logits = self.head.forward(&x)?.to_dtype(DType::F32)?;
        logits.to_device(&Device::Cpu)?.to_vec2::<f32>()
    }

    /// Runs `tokens` through the decoder (one beam) after those already cached and
    /// returns the logits (f32, on the CPU) at the positions `want` (indices into `tokens`).
    pub fn decode(&mut self, tokens: &[u32], want: &[usize]) -> Result<Vec<Vec<f32>>> {
        if self.forked {
            return Err(candle_core::Error::Msg(
                "decode runs one beam; this window is forked".into(),
            ));
        }
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let x = self.forward(&ids, None)?;
        let rows: Vec<Tensor> = want.iter().map(|&i| x.narrow(1, i, 1)).collect::<Result<_>>()?;
        let x = Tensor::cat(&rows, 1)?.squeeze(0)?; // [n, d]
        self.logits(&x)
    }

    /// Copies the one beam decoded so far into `beams` beams.
    pub fn fork(&mut self, beams: usize) -> Result<()> {
        if self.forked || beams == 0 {
            return Err(candle_core::Error::Msg(
                "fork needs one beam and asks for at least one".into(),
            ));
        }
        if self.beams.first().map(SelfCache::beams) != Some(beams) {
            self.beams = (0..self.dims.n_text_layer)
                .map(|_| SelfCache::new(beams, &self.dims, self.dtype, &self.device))
                .collect::<Result<Vec<_>>>()?;
        }
        if self.offset > 0 {
            for (one, many) in self.single.iter().zip(&self.beams) {
                for (from, to) in [(&one.k, &many.k), (&one.v, &many.v)] {
                    let filled = from.narrow(2, 0, self.offset)?.repeat((beams, 1, 1, 1))?;
                    to.slice_set(&filled, 2, 0)?;
                }
            }
        }
        self.forked = true;
        Ok(())
    }

    /// After a beam-search step: beam `i` continues beam `sources[i]`.
    pub fn reorder(&mut self, sources: &[usize]) -> Result<()> {
        if !self.forked || sources.len() != self.beam_count() {
            return Err(candle_core::Error::Msg("reorder needs one source per beam".into()));
        }
        if self.offset == 0 || sources.iter().enumerate().all(|(i, &s)| i == s) {
            return Ok(());
        }
        // The gather's index, made only where a buffer cannot be reordered in place.
        let mut index: Option<Tensor> = None;
        for cache in &self.beams {
            for buffer in [&cache.k, &cache.v] {
                if super::ops::reorder_beams(buffer, sources, self.offset)? {
                    continue;
                }
                let index = match &mut index {
                    Some(index) => index,
                    None => {
                        let ids: Vec<u32> = sources.iter().map(|&s| s as u32).collect();
                        index.insert(Tensor::new(ids.as_slice(), &self.device)?)
                    }
                };
                let kept = buffer.narrow(2, 0, self.offset)?.contiguous()?.index_select(index, 0)?;
                buffer.slice_set(&kept, 2, 0)?;
            }
        }
        Ok(())
    }

    /// One token per beam through the decoder; the next logits of each beam.
    pub fn decode_beams(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        if tokens.len() != self.beam_count() {
            return Err(candle_core::Error::Msg("one token per beam".into()));
        }
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(1)?;
        let x = self.forward(&ids, None)?.squeeze(1)?; // [beams, d]
        self.logits(&x)
    }

    /// Cross-attention scores of `tokens` (decoded afresh, one beam, from the start of
    /// the window) at the alignment heads `(layer, head)`: `[heads][token][frame]`,
    /// f32. Clears the decoder cache.
    pub fn alignment_scores(&mut self, tokens: &[u32], heads: &[(usize, usize)]) -> Result<Vec<Vec<Vec<f32>>>> {
        self.reset();
        let mut layers: Vec<(usize, Option<Tensor>)> = Vec::new();
        for &(layer, _) in heads {
            if !layers.iter().any(|(l, _)| *l == layer) {
                layers.push((layer, None));
            }
        }
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let result = self.forward(&ids, Some(&mut layers));
        self.reset();
        result?;
        heads
            .iter()
            .map(|&(layer, head)| {
                let scores = layers
                    .iter()
                    .find(|(l, _)| *l == layer)
                    .and_then(|(_, s)| s.as_ref())
                    .ok_or_else(|| candle_core::Error::Msg(format!("no decoder layer {layer}")))?;
                if head >= scores.dim(1)? {
                    return Err(candle_core::Error::Msg(format!("no head {head} in layer {layer}")));
                }
                scores
                    .get(0)?
                    .get(head)?
                    .to_dtype(DType::F32)?
                    .to_device(&Device::Cpu)?
                    .to_vec2::<f32>()
            })
            .collect()
    }
}
