//! The Whisper network on candle: encoder, and a decoder with a self-attention KV cache
//! and cross-attention keys/values computed once per 30-s window.

use std::collections::HashMap;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, LayerNorm, Linear};

use super::weights::Dims;

struct Weights<'a> {
    map: &'a HashMap<String, Tensor>,
    dtype: DType,
    device: &'a Device,
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
    fn layer_norm(&self, prefix: &str) -> Result<LayerNorm> {
        Ok(LayerNorm::new(
            self.get(&format!("{prefix}.weight"))?,
            self.get(&format!("{prefix}.bias"))?,
            1e-5,
        ))
    }
}

/// Most attention scores computed at once in the encoder (4 Mi values, 16 MiB in f32).
const ATTENTION_BLOCK: usize = 4 << 20;

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
    /// Self-attention cache `[1, heads, t, head_dim]` (decoder only).
    cache: Option<(Tensor, Tensor)>,
}

impl Attention {
    fn new(w: &Weights<'_>, prefix: &str, heads: usize) -> Result<Attention> {
        // Scores are scaled by 1/sqrt(head_dim): folded into the query projection.
        let q = w.linear(&format!("{prefix}.q_proj"))?;
        let scale = 1.0 / ((q.weight().dim(0)? / heads) as f64).sqrt();
        let q = Linear::new((q.weight() * scale)?, q.bias().map(|b| b * scale).transpose()?);
        Ok(Attention {
            q,
            k: w.linear(&format!("{prefix}.k_proj"))?,
            v: w.linear(&format!("{prefix}.v_proj"))?,
            out: w.linear(&format!("{prefix}.out_proj"))?,
            heads,
            cache: None,
        })
    }

    /// `[1, t, d]` → `[1, heads, t, head_dim]`.
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        x.reshape((b, t, self.heads, d / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, _, t, dh) = q.dims4()?;
        let mut w = q.matmul(&k.t()?)?;
        if let Some(mask) = mask {
            w = w.broadcast_add(mask)?;
        }
        let w = super::ops::softmax_last_dim(&w)?;
        let o = w.matmul(v)?; // [b, h, t, dh]
        let o = o.transpose(1, 2)?.reshape((b, t, self.heads * dh))?;
        self.out.forward(&o)
    }

    /// Full self-attention (encoder), a block of queries at a time: the score matrix of
    /// all 1500 frames at once is tens of MB, which the allocator would map and zero
    /// afresh for every layer; blocks of at most `ATTENTION_BLOCK` scores are reused.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let q = self.split(&self.q.forward(x)?)?;
        let k = self.split(&self.k.forward(x)?)?;
        let v = self.split(&self.v.forward(x)?)?;
        let (_, heads, t, _) = q.dims4()?;
        let rows = (ATTENTION_BLOCK / (heads * t)).max(1);
        if rows >= t {
            return self.attend(&q, &k, &v, None);
        }
        let mut outs = Vec::with_capacity(t.div_ceil(rows));
        let mut start = 0;
        while start < t {
            let n = rows.min(t - start);
            outs.push(self.attend(&q.narrow(2, start, n)?, &k, &v, None)?);
            start += n;
        }
        Tensor::cat(&outs, 1)
    }

    /// Causal self-attention over the cache plus `x` (decoder).
    fn forward_cached(&mut self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let q = self.split(&self.q.forward(x)?)?;
        let mut k = self.split(&self.k.forward(x)?)?;
        let mut v = self.split(&self.v.forward(x)?)?;
        if let Some((ck, cv)) = &self.cache {
            k = Tensor::cat(&[ck, &k], 2)?;
            v = Tensor::cat(&[cv, &v], 2)?;
        }
        let out = self.attend(&q, &k, &v, mask)?;
        self.cache = Some((k, v));
        Ok(out)
    }

    /// Keys and values of the audio features for cross-attention.
    fn cross_kv(&self, audio: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.split(&self.k.forward(audio)?)?,
            self.split(&self.v.forward(audio)?)?,
        ))
    }

    fn forward_cross(&self, x: &Tensor, kv: &(Tensor, Tensor)) -> Result<Tensor> {
        let q = self.split(&self.q.forward(x)?)?;
        self.attend(&q, &kv.0, &kv.1, None)
    }
}

struct Mlp {
    fc1: Linear,
    fc2: Linear,
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
    dec_pos: Tensor,
    dec_layers: Vec<DecoderLayer>,
    dec_ln: LayerNorm,
    /// Cross-attention K/V of the current window, one pair per decoder layer.
    cross_kv: Vec<(Tensor, Tensor)>,
    /// Tokens already in the self-attention cache.
    offset: usize,
}

impl Model {
    pub fn new(map: &HashMap<String, Tensor>, dims: Dims, dtype: DType, device: &Device) -> Result<Model> {
        let w = Weights { map, dtype, device };
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
        let mlp = |p: &str| -> Result<Mlp> {
            Ok(Mlp {
                fc1: w.linear(&format!("{p}.fc1"))?,
                fc2: w.linear(&format!("{p}.fc2"))?,
            })
        };
        let enc_layers = (0..dims.n_audio_layer)
            .map(|i| {
                let p = format!("encoder.layers.{i}");
                Ok(EncoderLayer {
                    attn: Attention::new(&w, &format!("{p}.self_attn"), dims.n_audio_head)?,
                    attn_ln: w.layer_norm(&format!("{p}.self_attn_layer_norm"))?,
                    mlp: mlp(&p)?,
                    mlp_ln: w.layer_norm(&format!("{p}.final_layer_norm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let dec_layers = (0..dims.n_text_layer)
            .map(|i| {
                let p = format!("decoder.layers.{i}");
                Ok(DecoderLayer {
                    attn: Attention::new(&w, &format!("{p}.self_attn"), dims.n_text_head)?,
                    attn_ln: w.layer_norm(&format!("{p}.self_attn_layer_norm"))?,
                    cross: Attention::new(&w, &format!("{p}.encoder_attn"), dims.n_text_head)?,
                    cross_ln: w.layer_norm(&format!("{p}.encoder_attn_layer_norm"))?,
                    mlp: mlp(&p)?,
                    mlp_ln: w.layer_norm(&format!("{p}.final_layer_norm"))?,
                })
            })
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
            tok_emb: w.get("decoder.embed_tokens.weight")?,
            dec_pos: w.get("decoder.embed_positions.weight")?,
            dec_layers,
            dec_ln: w.layer_norm("decoder.layer_norm")?,
            cross_kv: Vec::new(),
            offset: 0,
        })
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

    /// Forgets the decoded tokens (keeps the audio).
    pub fn reset(&mut self) {
        self.offset = 0;
        for l in &mut self.dec_layers {
            l.attn.cache = None;
        }
    }

    /// Tokens decoded so far in this window.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Runs `tokens` through the decoder after those already cached and returns the
    /// logits (f32, on the CPU) at the positions `want` (indices into `tokens`).
    pub fn decode(&mut self, tokens: &[u32], want: &[usize]) -> Result<Vec<Vec<f32>>> {
        let t = tokens.len();
        if self.offset + t > self.dims.n_text_ctx {
            return Err(candle_core::Error::Msg("decoder context is full".into()));
        }
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let mut x = self
            .tok_emb
            .embedding(&ids.squeeze(0)?)?
            .unsqueeze(0)?
            .broadcast_add(&self.dec_pos.narrow(0, self.offset, t)?)?;
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
        for (layer, kv) in self.dec_layers.iter_mut().zip(&self.cross_kv) {
            x = (&x + layer.attn.forward_cached(&layer.attn_ln.forward(&x)?, mask.as_ref())?)?;
            x = (&x + layer.cross.forward_cross(&layer.cross_ln.forward(&x)?, kv)?)?;
            x = (&x + layer.mlp.forward(&layer.mlp_ln.forward(&x)?)?)?;
        }
        self.offset += t;
        let rows: Vec<Tensor> = want.iter().map(|&i| x.narrow(1, i, 1)).collect::<Result<_>>()?;
        let x = Tensor::cat(&rows, 1)?.squeeze(0)?; // [n, d]
        let x = self.dec_ln.forward(&x)?;
        let logits = x.matmul(&self.tok_emb.t()?)?.to_dtype(DType::F32)?;
        logits.to_device(&Device::Cpu)?.to_vec2::<f32>()
    }
}
