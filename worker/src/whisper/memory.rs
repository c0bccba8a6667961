//! What a model takes in device memory once loaded: its weights as held, the decoder's
//! caches (the window's cross-attention keys and values, the self-attention keys and
//! values of one beam and of a beam search) and the largest transient of a window
//! (the encoder's attention scores, taken whole on a GPU). Computed from the model read
//! from disk, before anything is put on the device, and compared with the memory the
//! device has free — not with a table of model names, which is silent for a name
//! outside it and, being OpenAI's PyTorch figures, 2.5–3× too strict for one slot.

use candle_core::DType;

use super::weights::Dims;

/// Bytes a loaded model needs, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryNeed {
    pub weights: u64,
    pub caches: u64,
    pub workspace: u64,
}

/// Allocator slack and small tensors (norms, masks, token ids) on top of the parts.
const SLACK: f64 = 0.10;
const SLACK_FLOOR: u64 = 64 << 20;

impl MemoryNeed {
    /// The model of `dims` with `parameters` held in `dtype`, decoding with `beams` beams.
    pub fn of(dims: &Dims, parameters: u64, dtype: DType, beams: usize) -> MemoryNeed {
        let bytes = dtype.size_in_bytes() as u64;
        let [layers, audio_ctx, text_ctx, text_state] =
            [dims.n_text_layer, dims.n_audio_ctx, dims.n_text_ctx, dims.n_text_state].map(|n| n as u64);
        // Keys and values: the window's audio for each decoder layer; the text of one
        // beam (the prompt, greedy decoding) and of a beam search.
        let cross = layers * 2 * audio_ctx * text_state * bytes;
        let own = layers * 2 * (1 + beams.max(1) as u64) * text_ctx * text_state * bytes;
        // The encoder's largest moment: one layer's scores and their softmax (every
        // head, every frame against every frame), its query/key/value projection, the
        // MLP's hidden layer and the residual stream, in the compute dtype.
        let [heads, state] = [dims.n_audio_head, dims.n_audio_state].map(|n| n as u64);
        let encoder = (2 * heads * audio_ctx * audio_ctx + audio_ctx * state * (3 + 4 + 2)) * bytes;
        // The decoder's: the logits of every beam, in f32 (and their copy to the host).
        let logits = 2 * beams.max(1) as u64 * dims.n_vocab as u64 * 4;
        MemoryNeed {
            weights: parameters * bytes,
            caches: cross + own,
            workspace: encoder.max(logits),
        }
    }

    /// Everything, with slack for the allocator and small tensors.
    pub fn total(&self) -> u64 {
        let parts = self.weights + self.caches + self.workspace;
        parts + ((parts as f64 * SLACK) as u64).max(SLACK_FLOOR)
    }
}

impl std::fmt::Display for MemoryNeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (weights {}, caches {}, workspace {}, slack)",
            mib(self.total()),
            mib(self.weights),
            mib(self.caches),
            mib(self.workspace)
        )
    }
}

/// OpenAI's model sizes by the name a model folder usually has (`small`, `medium.en`,
/// `large-v3`, `distil-…` and other names are not guessed): their dimensions and
/// parameter count, to tell early whether a GPU could hold one at all.
pub fn standard(name: &str) -> Option<(Dims, u64)> {
    let size = name.split('.').next().unwrap_or(name);
    let english = name.ends_with(".en");
    let (state, heads, layers, text_layers, parameters) = match size {
        "tiny" => (384, 6, 4, 4, 39_000_000),
        "base" => (512, 8, 6, 6, 74_000_000),
        "small" => (768, 12, 12, 12, 244_000_000),
        "medium" => (1024, 16, 24, 24, 769_000_000),
        "turbo" | "large-v3-turbo" => (1280, 20, 32, 4, 809_000_000),
        "large" | "large-v1" | "large-v2" | "large-v3" => (1280, 20, 32, 32, 1_550_000_000),
        _ => return None,
    };
    let v3 = size == "large-v3" || size == "turbo" || size == "large-v3-turbo";
    let dims = Dims {
        n_mels: if v3 { 128 } else { 80 },
        n_audio_ctx: 1500,
        n_audio_state: state,
        n_audio_head: heads,
        n_audio_layer: layers,
        n_vocab: match (english, v3) {
            (true, _) => 51864,
            (false, true) => 51866,
            (false, false) => 51865,
        },
        n_text_ctx: 448,
        n_text_state: state,
        n_text_head: heads,
        n_text_layer: text_layers,
    };
    Some((dims, parameters))
}

/// `1234 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes.div_ceil(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenAI's large-v3 (1.55 G parameters, 128 mels, 51 866 tokens).
    const LARGE_V3: Dims = Dims {
        n_mels: 128,
        n_audio_ctx: 1500,
        n_audio_state: 1280,
        n_audio_head: 20,
        n_audio_layer: 32,
        n_vocab: 51866,
        n_text_ctx: 448,
        n_text_state: 1280,
        n_text_head: 20,
        n_text_layer: 32,
    };

    #[test]
    fn large_v3_in_f16_with_five_beams_needs_about_four_gib() {
        let need = MemoryNeed::of(&LARGE_V3, 1_550_000_000, DType::F16, 5);
        assert_eq!(need.weights, 3_100_000_000);
        // Cross: 32 layers × K and V × 1500 × 1280 × 2 bytes; own: × 6 beams × 448.
        assert_eq!(need.caches, 245_760_000 + 440_401_920);
        // Scores of 20 heads over 1500 × 1500, twice, beat five beams' logits.
        assert_eq!(need.workspace, (2 * 20 * 1500 * 1500 + 1500 * 1280 * 9) * 2);
        let gib = need.total() as f64 / f64::from(1u32 << 30);
        // OpenAI's table says ~10 GB (PyTorch, f16, one beam); faster-whisper reports
        // about 4.5 GB with a beam of 5.
        assert!((3.8..4.8).contains(&gib), "{gib:.2} GiB: {need}");
    }

    #[test]
    fn standard_sizes_are_known_by_name_and_others_are_not_guessed() {
        let (large, parameters) = standard("large-v3").unwrap_or_else(|| panic!("large-v3"));
        assert_eq!((large, parameters), (LARGE_V3, 1_550_000_000));
        let (tiny_en, _) = standard("tiny.en").unwrap_or_else(|| panic!("tiny.en"));
        assert_eq!((tiny_en.n_vocab, tiny_en.n_text_state), (51864, 384));
        let (turbo, _) = standard("turbo").unwrap_or_else(|| panic!("turbo"));
        assert_eq!((turbo.n_audio_layer, turbo.n_text_layer, turbo.n_mels), (32, 4, 128));
        for other in ["distil-large-v3", "my-model", ""] {
            assert!(standard(other).is_none(), "{other}");
        }
        // Every standard size in f16 with five beams: from ~0.2 GiB (tiny) to ~4 GiB.
        for name in ["tiny", "base", "small", "medium", "large-v2", "turbo"] {
            let (dims, parameters) = standard(name).unwrap_or_else(|| panic!("{name}"));
            let gib = MemoryNeed::of(&dims, parameters, DType::F16, 5).total() as f64 / f64::from(1u32 << 30);
            assert!((0.1..4.5).contains(&gib), "{name}: {gib:.2} GiB");
        }
    }

    #[test]
    fn more_beams_and_f32_need_more() {
        let f16 = MemoryNeed::of(&LARGE_V3, 1_550_000_000, DType::F16, 1);
        let beams = MemoryNeed::of(&LARGE_V3, 1_550_000_000, DType::F16, 5);
        let f32 = MemoryNeed::of(&LARGE_V3, 1_550_000_000, DType::F32, 1);
        assert!(f16.total() < beams.total() && beams.total() < f32.total());
        assert_eq!(f32.weights, 2 * f16.weights);
        assert!(format!("{beams}").contains("weights 2957 MiB"), "{beams}");
    }
}
