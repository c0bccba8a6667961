//! Whisper speech recognition on candle: model files in Hugging Face or CTranslate2
//! format, 16 kHz WAV streamed through 30-s windows, OpenAI's decoding (timestamps,
//! language detection, beam search, temperature fallback, no-speech detection, prompts,
//! word timestamps).

mod attention;
pub mod audio;
pub mod ct2;
pub mod decode;
mod dense;
mod int8;
pub mod mel;
pub mod memory;
mod model;
mod ops;
mod panels;
pub mod selftest;
pub mod timing;
pub mod tokens;
pub mod vad;
pub mod weights;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::DType;

use self::audio::{SAMPLE_RATE, SpeechMap, WavReader};
use self::decode::{Beam, DecodeSetup, Rng, WindowResult};
use self::mel::{HOP, MelFrontEnd, N_FRAMES};
use self::model::Model;
pub use self::timing::Word;
use self::tokens::Tokens;
pub use self::vad::VadOptions;
pub use self::weights::{Dims, ModelFormat};
/// candle's device, for callers without a candle dependency of their own.
pub use candle_core::Device;

/// How the weights are held and multiplied (faster-whisper's `compute_type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ComputeType {
    /// The model's own precision, as faster-whisper's default: float32 on a CPU,
    /// float16 on a GPU.
    #[default]
    Auto,
    /// f32 everywhere (the reference; a GPU runs at a fraction of its float16 speed).
    Float32,
    /// On a CPU, the decoder's matrix products' weights (the logits' too) in 8 bits
    /// with an f32 scale per 32 (GGML's Q8_0 precision), multiplied by `int8.rs`'s
    /// integer kernel with the activations quantized on the fly; the encoder (and the
    /// audio's keys and values), norms, attention scores and everything else in f32. A
    /// GPU computes in float16.
    Int8,
    /// On a CPU with AVX-512 VNNI every matrix product's weights in 8 bits, the
    /// encoder's and the audio's keys and values too, with a scale per output and per
    /// row of the activations (CTranslate2's scheme), through `panels.rs`'s kernel:
    /// faster (a token 2–3× cheaper than `Int8`'s there), and on the project's speech
    /// set base hears the same words while tiny.en mishears 9 words of 96 against
    /// float32's 5, so it is asked for by name. Without VNNI, the same as `Int8`.
    Int8Full,
}

impl std::str::FromStr for ComputeType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "default" => Ok(ComputeType::Auto),
            "float32" | "f32" => Ok(ComputeType::Float32),
            "int8" | "q8" | "q8_0" | "int8_float32" => Ok(ComputeType::Int8),
            "int8_full" => Ok(ComputeType::Int8Full),
            other => Err(format!(
                "unknown compute type `{other}` (auto, float32, int8 or int8_full)"
            )),
        }
    }
}

/// Room a model must fit in on its device: the memory free there now, shared by the
/// copies that will be loaded on it (one per transcription slot without a model yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub free_bytes: u64,
    pub copies: u64,
    /// Beams it will decode with (the caches grow with them).
    pub beams: usize,
}

/// Recognise speech, or translate it to English.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Task {
    #[default]
    Transcribe,
    Translate,
}

/// Decoding settings; the default is faster-whisper's (beam search of 5 at temperature
/// 0, sampling above; no word timestamps).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// Language code (`en`, `fr`…); `None` detects it on the first 30 s (multilingual
    /// models; English-only models always say `en`).
    pub language: Option<String>,
    pub task: Task,
    /// Text given as the "previous text" of the first window (names, spellings).
    pub initial_prompt: Option<String>,
    /// Temperatures tried in turn while a window fails the thresholds below.
    pub temperatures: Vec<f32>,
    /// A window whose text compresses better than this is repetitive: retried hotter.
    pub compression_ratio_threshold: Option<f32>,
    /// A window whose mean token log-probability is below this is retried hotter.
    pub logprob_threshold: Option<f32>,
    /// A window whose no-speech probability is above this (and whose log-probability
    /// is below `logprob_threshold`) is silence: skipped.
    pub no_speech_threshold: Option<f32>,
    /// Give each window the previous windows' text as prompt.
    pub condition_on_previous_text: bool,
    /// Never start a window's text with a blank or the end of text.
    pub suppress_blank: bool,
    /// Tokens never sampled; `None` = the model's list (or OpenAI's non-speech symbols).
    pub suppress_tokens: Option<Vec<u32>>,
    /// Beams at temperature 0 (1: greedy decoding).
    pub beam_size: usize,
    /// The search ends once `beam_size × patience` sequences have finished.
    pub patience: f32,
    /// `None`: rank finished sequences by log-probability over length; `Some(p)`:
    /// over `((5 + length) / 6) ^ p`.
    pub length_penalty: Option<f32>,
    /// Time each word (an extra decoder pass per window).
    pub word_timestamps: bool,
    /// Decode only the speech a voice-activity pass finds (`None`: everything).
    pub vad: Option<VadOptions>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            language: None,
            task: Task::Transcribe,
            initial_prompt: None,
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            compression_ratio_threshold: Some(2.4),
            logprob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            condition_on_previous_text: true,
            suppress_blank: true,
            suppress_tokens: None,
            beam_size: 5,
            patience: 1.0,
            length_penalty: None,
            word_timestamps: false,
            vad: None,
        }
    }
}

/// One timed piece of text.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Seconds from the start of the file.
    pub start: f64,
    pub end: f64,
    pub text: String,
    pub avg_logprob: f32,
    pub no_speech_prob: f32,
    pub compression_ratio: f32,
    /// Temperature the window was decoded at.
    pub temperature: f32,
    /// With word timestamps: each word, within the segment's bounds.
    pub words: Vec<Word>,
}

/// Reported after each window.
#[derive(Debug)]
pub struct Progress<'a> {
    pub seconds_done: f64,
    pub duration: f64,
    pub new_segments: &'a [Segment],
}

/// The result of [`Whisper::transcribe`].
#[derive(Debug, Clone, PartialEq)]
pub struct Transcription {
    pub language: String,
    /// Probability of the detected language; `None` when given or the model is
    /// English-only.
    pub language_probability: Option<f32>,
    /// Seconds of audio.
    pub duration: f64,
    pub segments: Vec<Segment>,
    /// Where the time went.
    pub timings: Timings,
}

/// Time spent encoding and decoding (the device synchronised before each reading).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// 30-s windows encoded, and the time they took.
    pub windows: usize,
    pub encoder: std::time::Duration,
    /// Tokens kept (every window's chosen text, timestamps included), and the time
    /// all decoding took: beams, temperature fallbacks and word timings.
    pub tokens: usize,
    pub decoder: std::time::Duration,
}

impl Timings {
    /// Seconds per window encoded.
    pub fn encoder_per_window(&self) -> Option<f64> {
        (self.windows > 0).then(|| self.encoder.as_secs_f64() / self.windows as f64)
    }
    /// Seconds of decoding per token kept.
    pub fn decoder_per_token(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.decoder.as_secs_f64() / self.tokens as f64)
    }
}

/// What a loaded model is.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Name of the model directory (`tiny.en`, `base`…).
    pub name: String,
    pub dir: PathBuf,
    pub format: ModelFormat,
    pub n_mels: usize,
    pub multilingual: bool,
    pub dims: Dims,
    /// Compute dtype (f32 on the CPU, f16 on CUDA, unless asked otherwise).
    pub dtype: DType,
    /// Whether the matrix products' weights are 8-bit (see [`ComputeType::Int8`]).
    pub int8: bool,
    pub parameters: u64,
    /// Bytes the weights take as held.
    pub weight_bytes: u64,
    /// `cpu` or `cuda:N`.
    pub device: String,
}

/// Why a transcription failed.
#[derive(Debug, thiserror::Error)]
pub enum WhisperError {
    /// The audio file is not something we can read (permanent).
    #[error("audio {path}: {reason}")]
    Audio { path: PathBuf, reason: String },
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The model directory is missing, incomplete or invalid (permanent).
    #[error("model {dir}: {reason}")]
    Model { dir: PathBuf, reason: String },
    /// A language the model does not know (permanent).
    #[error("unknown language `{0}` for this model")]
    UnknownLanguage(String),
    /// The computation failed (out of memory on a GPU, …).
    #[error("inference failed: {0}")]
    Inference(#[from] candle_core::Error),
    /// `on_progress` asked to stop.
    #[error("transcription cancelled")]
    Cancelled,
    /// The model would not fit in the device memory free now (another process or
    /// another slot holds it): nothing was put on the device.
    #[error("{0}")]
    DoesNotFit(String),
}

impl WhisperError {
    /// Whether trying again cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            WhisperError::Audio { .. } | WhisperError::Model { .. } | WhisperError::UnknownLanguage(_) => true,
            WhisperError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::InvalidData
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::IsADirectory
            ),
            WhisperError::Inference(_) | WhisperError::Cancelled | WhisperError::DoesNotFit(_) => false,
        }
    }
}

/// A loaded Whisper model, reused across files.
pub struct Whisper {
    info: ModelInfo,
    model: Model,
    tokens: Tokens,
    mel: MelFrontEnd,
    suppress: Vec<u32>,
    suppress_begin: Vec<u32>,
    /// Cross-attention heads that follow the spoken frame: the model's own list, else
    /// OpenAI's default (every head of the second half of the decoder).
    alignment_heads: Vec<(usize, usize)>,
}

impl std::fmt::Debug for Whisper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whisper")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Whisper {
    /// Loads the model in `dir` (Hugging Face: `config.json`, `tokenizer.json`,
    /// `model.safetensors`; CTranslate2: `config.json`, `model.bin`, `tokenizer.json`)
    /// onto `device`, in f32 on a CPU and f16 on a GPU.
    pub fn load(dir: &Path, device: &Device) -> Result<Whisper, WhisperError> {
        Whisper::load_as(dir, device, ComputeType::Auto)
    }

    /// [`Whisper::load`], holding and multiplying the weights as `compute` says.
    pub fn load_as(dir: &Path, device: &Device, compute: ComputeType) -> Result<Whisper, WhisperError> {
        Whisper::load_within(dir, device, compute, None)
    }

    /// [`Whisper::load_as`], refusing ([`WhisperError::DoesNotFit`]) before anything
    /// is put on the device when the model's need ([`memory::MemoryNeed`]) times the
    /// copies exceeds the budget's free memory.
    pub fn load_within(
        dir: &Path,
        device: &Device,
        compute: ComputeType,
        budget: Option<Budget>,
    ) -> Result<Whisper, WhisperError> {
        let model_err = |reason: String| WhisperError::Model {
            dir: dir.to_owned(),
            reason,
        };
        let w = weights::load(dir).map_err(|e| model_err(e.0))?;
        let dims = w.dims;
        // OpenAI's rule: English-only models have one token fewer (their tokenizer.json
        // still lists every language).
        let tokens =
            Tokens::from_file(&dir.join("tokenizer.json"), dims.n_vocab >= 51865).map_err(|e| model_err(e.0))?;
        if tokens.timestamp_begin as usize + 1500 >= dims.n_vocab || tokens.eot as usize >= dims.n_vocab {
            return Err(model_err(format!(
                "tokenizer.json does not match the weights: {} tokens in the model, timestamps from {}",
                dims.n_vocab, tokens.timestamp_begin
            )));
        }
        let dtype = match compute {
            ComputeType::Float32 => DType::F32,
            ComputeType::Auto | ComputeType::Int8 | ComputeType::Int8Full if device.is_cpu() => DType::F32,
            ComputeType::Auto | ComputeType::Int8 | ComputeType::Int8Full => DType::F16,
        };
        let int8 = matches!(compute, ComputeType::Int8 | ComputeType::Int8Full) && device.is_cpu();
        let int8_encoder = compute == ComputeType::Int8Full && device.is_cpu();
        let parameters: u64 = w.tensors.values().map(|t| t.elem_count() as u64).sum();
        if let Some(budget) = budget {
            let need = memory::MemoryNeed::of(&dims, parameters, dtype, budget.beams);
            let copies = budget.copies.max(1);
            if need.total().saturating_mul(copies) > budget.free_bytes {
                return Err(WhisperError::DoesNotFit(format!(
                    "model `{}` needs {need} per copy, {copies} cop{} on {}: {} free",
                    dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
                    if copies == 1 { "y" } else { "ies" },
                    device_name(device),
                    memory::mib(budget.free_bytes)
                )));
            }
        }
        let model = Model::new(&w.tensors, dims, dtype, device, int8, int8_encoder)?;
        let mut suppress = w.suppress_ids.clone().unwrap_or_else(|| tokens.default_suppress());
        suppress.retain(|&id| id != u32::MAX);
        suppress.extend([tokens.transcribe, tokens.translate, tokens.sot, tokens.sot_prev]);
        suppress.extend(tokens.sot_lm);
        suppress.extend(tokens.no_speech);
        suppress.sort_unstable();
        suppress.dedup();
        let suppress_begin = match &w.suppress_ids_begin {
            Some(ids) => ids.clone(),
            None => {
                let mut ids = tokens.encode(" ").map_err(|e| model_err(e.0))?;
                ids.push(tokens.eot);
                ids
            }
        };
        let alignment_heads = w.alignment_heads.clone().unwrap_or_else(|| {
            (dims.n_text_layer / 2..dims.n_text_layer)
                .flat_map(|layer| (0..dims.n_text_head).map(move |head| (layer, head)))
                .collect()
        });
        let info = ModelInfo {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dir: dir.to_owned(),
            format: w.format,
            n_mels: dims.n_mels,
            multilingual: tokens.multilingual(),
            dims,
            dtype,
            int8,
            parameters,
            weight_bytes: model.weight_bytes(),
            device: device_name(device),
        };
        tracing::debug!(model = %info.name, format = ?info.format, parameters, "Whisper model read");
        Ok(Whisper {
            info,
            model,
            mel: MelFrontEnd::new(dims.n_mels)?,
            tokens,
            suppress,
            suppress_begin,
            alignment_heads,
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The device it runs on.
    pub fn device(&self) -> &Device {
        &self.model.device
    }

    /// The tokenizer and special ids.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Transcribes a 16 kHz mono WAV (16-bit PCM or 32-bit float), window by window;
    /// `on_progress` is called after each 30-s window and stops the work by returning
    /// `Break` (→ [`WhisperError::Cancelled`]).
    pub fn transcribe(
        &mut self,
        wav: &Path,
        opts: &DecodeOptions,
        on_progress: &mut dyn FnMut(&Progress<'_>) -> ControlFlow<()>,
    ) -> Result<Transcription, WhisperError> {
        let mut wav = WavReader::open(wav)?;
        let duration = wav.duration();
        // With voice activity detection, the speech alone is decoded, joined; times on
        // it are mapped back to the file's.
        let speech = match &opts.vad {
            Some(vad_options) => {
                let map = SpeechMap::new(vad::speech_regions(&mut wav, vad_options)?);
                tracing::debug!(
                    regions = map.regions().len(),
                    speech_s = map.len() as f64 / f64::from(SAMPLE_RATE),
                    duration_s = duration,
                    "voice activity"
                );
                wav.keep_only(map.clone());
                Some(map)
            }
            None => None,
        };
        let to_file = |t: f64, is_end: bool| speech.as_ref().map_or(t, |m| m.file_seconds(t, is_end));
        // Seconds decoded (the file's, or its speech's).
        let span = wav.len() as f64 / f64::from(SAMPLE_RATE);
        let content_frames = (wav.len() / HOP as u64) as usize;
        // OpenAI normalises against the whole file's loudest mel value; a file longer than
        // one window gets a first, streamed pass to find it.
        let file_max = if content_frames > N_FRAMES {
            Some(self.mel.file_max(&mut wav)?)
        } else {
            None
        };
        let tokens = &self.tokens;

        let mut encoded: Option<usize> = None;
        let mut timings = Timings::default();
        let (language, language_probability) = if !tokens.multilingual() {
            ("en".to_owned(), None)
        } else if let Some(lang) = &opts.language {
            if tokens.language_id(lang).is_none() {
                return Err(WhisperError::UnknownLanguage(lang.clone()));
            }
            (lang.clone(), None)
        } else if content_frames == 0 {
            ("en".to_owned(), None)
        } else {
            let mel = self.mel.window(&mut wav, 0, content_frames.min(N_FRAMES), file_max)?;
            encode(&mut self.model, &mel, &mut timings)?;
            encoded = Some(0);
            let (code, p) = detect_language(&mut self.model, tokens)?;
            (code, Some(p))
        };

        let mut sot_sequence = vec![tokens.sot];
        if tokens.multilingual() {
            sot_sequence.extend(tokens.language_id(&language));
            sot_sequence.push(if opts.task == Task::Translate {
                tokens.translate
            } else {
                tokens.transcribe
            });
        }
        let mut suppress_begin = Vec::new();
        if opts.suppress_blank {
            suppress_begin.extend_from_slice(&self.suppress_begin);
        }
        let suppress = match &opts.suppress_tokens {
            Some(ids) => ids.clone(),
            None => self.suppress.clone(),
        };
        let mut all_tokens: Vec<u32> = match &opts.initial_prompt {
            Some(p) if !p.trim().is_empty() => {
                tokens
                    .encode(&format!(" {}", p.trim()))
                    .map_err(|e| WhisperError::Model {
                        dir: self.info.dir.clone(),
                        reason: e.0,
                    })?
            }
            _ => Vec::new(),
        };
        let mut prompt_reset_since = 0;
        let max_prompt = self.info.dims.n_text_ctx / 2 - 1;
        let mut setup = DecodeSetup {
            prompt: Vec::new(),
            sot_sequence,
            suppress,
            suppress_begin,
            sample_len: self.info.dims.n_text_ctx / 2,
            beam: Beam {
                size: opts.beam_size.max(1),
                patience: if opts.patience > 0.0 { opts.patience } else { 1.0 },
                length_penalty: opts.length_penalty,
            },
        };
        let mut last_speech = 0f64;
        let mut rng = Rng::new(0);
        let mut segments: Vec<Segment> = Vec::new();
        let mut seek = 0usize;
        let mut last_end = 0f64;
        while seek < content_frames {
            let size = N_FRAMES.min(content_frames - seek);
            if encoded != Some(seek) {
                let mel = self.mel.window(&mut wav, seek, size, file_max)?;
                encode(&mut self.model, &mel, &mut timings)?;
                encoded = Some(seek);
            }
            let history = &all_tokens[prompt_reset_since..];
            setup.prompt = history[history.len().saturating_sub(max_prompt)..].to_vec();
            let decoding = std::time::Instant::now();
            let result = decode_with_fallback(&mut self.model, tokens, &setup, opts, &mut rng)?;
            timings.tokens += result.tokens.len();
            let offset = seek as f64 * 0.01;
            let first_new = segments.len();
            let skip = opts.no_speech_threshold.is_some_and(|t| result.no_speech_prob > t)
                && !opts.logprob_threshold.is_some_and(|t| result.avg_logprob > t);
            let advance = if skip {
                tracing::debug!(
                    seek,
                    no_speech_prob = result.no_speech_prob,
                    "window without speech skipped"
                );
                size
            } else {
                let (pieces, advance) = decode::split_segments(&result.tokens, tokens.timestamp_begin, size);
                let mut bounds: Vec<(usize, f64, f64)> = pieces
                    .iter()
                    .map(|p| {
                        let count = p.tokens.iter().filter(|&&t| t < tokens.eot).count();
                        (count, offset + p.start, offset + p.end)
                    })
                    .collect();
                let mut words: Vec<Vec<Word>> = vec![Vec::new(); pieces.len()];
                if opts.word_timestamps {
                    let text_tokens: Vec<u32> = pieces
                        .iter()
                        .flat_map(|p| p.tokens.iter().copied().filter(|&t| t < tokens.eot))
                        .collect();
                    let alignment = timing::align(
                        &mut self.model,
                        tokens,
                        &setup.sot_sequence,
                        &text_tokens,
                        size,
                        &self.alignment_heads,
                        &language,
                    )?;
                    words = timing::place(&alignment, &mut bounds, offset, &mut last_speech);
                }
                for ((piece, (_, piece_start, piece_end)), piece_words) in pieces.into_iter().zip(bounds).zip(words) {
                    all_tokens.extend_from_slice(&piece.tokens);
                    let text = tokens.decode(&piece.tokens).unwrap_or_default().trim().to_owned();
                    // Punctuation alone is what a decoder makes of noise, and a segment
                    // that starts where the audio has ended was heard in the padding:
                    // neither is speech.
                    if !text.chars().any(char::is_alphanumeric) || piece_start >= span {
                        continue;
                    }
                    let start = piece_start.max(last_end).min(span);
                    let end = piece_end.min(span).max(start);
                    last_end = end;
                    let (start, end) = (to_file(start, false), to_file(end, true));
                    let end = end.max(start);
                    // Words stay inside their segment, in order.
                    let mut floor = start;
                    let words = piece_words
                        .into_iter()
                        .map(|w| {
                            let word_start = to_file(w.start, false).clamp(floor, end);
                            floor = to_file(w.end, true).clamp(word_start, end);
                            Word {
                                start: word_start,
                                end: floor,
                                text: w.text,
                            }
                        })
                        .collect();
                    segments.push(Segment {
                        start,
                        end,
                        text,
                        avg_logprob: result.avg_logprob,
                        no_speech_prob: result.no_speech_prob,
                        compression_ratio: result.compression_ratio,
                        temperature: result.temperature,
                        words,
                    });
                }
                if !opts.condition_on_previous_text || result.temperature > 0.5 {
                    prompt_reset_since = all_tokens.len();
                }
                advance
            };
            self.model.device.synchronize()?;
            timings.decoder += decoding.elapsed();
            seek += advance;
            let progress = Progress {
                seconds_done: if seek >= content_frames {
                    duration
                } else {
                    to_file((seek as f64 * 0.01).min(span), true).min(duration)
                },
                duration,
                new_segments: &segments[first_new..],
            };
            if on_progress(&progress).is_break() {
                return Err(WhisperError::Cancelled);
            }
        }
        Ok(Transcription {
            language,
            language_probability,
            duration,
            segments,
            timings,
        })
    }
}

/// `cpu`, `cuda:N`.
fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_owned(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Encodes a window, timed.
fn encode(model: &mut Model, mel: &candle_core::Tensor, timings: &mut Timings) -> Result<(), WhisperError> {
    let started = std::time::Instant::now();
    model.set_audio(mel)?;
    model.device.synchronize()?;
    timings.windows += 1;
    timings.encoder += started.elapsed();
    Ok(())
}

/// Decodes the current window at each temperature in turn until the result passes the
/// compression-ratio and log-probability thresholds (or is silence).
fn decode_with_fallback(
    model: &mut Model,
    tokens: &Tokens,
    setup: &DecodeSetup,
    opts: &DecodeOptions,
    rng: &mut Rng,
) -> Result<WindowResult, WhisperError> {
    let temperatures: &[f32] = if opts.temperatures.is_empty() {
        &[0.0]
    } else {
        &opts.temperatures
    };
    let mut tried: Vec<WindowResult> = Vec::new();
    for &t in temperatures {
        let r = decode::decode_window(model, tokens, setup, t, rng)?;
        let too_repetitive = opts
            .compression_ratio_threshold
            .is_some_and(|c| r.compression_ratio > c);
        let too_unlikely = opts.logprob_threshold.is_some_and(|l| r.avg_logprob < l);
        let silent = opts.no_speech_threshold.is_some_and(|n| r.no_speech_prob > n);
        if silent || (!too_repetitive && !too_unlikely) {
            return Ok(r);
        }
        tracing::debug!(
            temperature = t,
            compression_ratio = r.compression_ratio,
            avg_logprob = r.avg_logprob,
            "window decoded again hotter"
        );
        tried.push(r);
    }
    // Every temperature failed: keep the likeliest of the non-repetitive ones (as
    // faster-whisper does), else the likeliest.
    let ok_ratio = |r: &WindowResult| {
        !opts
            .compression_ratio_threshold
            .is_some_and(|c| r.compression_ratio > c)
    };
    let pick = tried
        .iter()
        .enumerate()
        .filter(|(_, r)| ok_ratio(r))
        .max_by(|a, b| a.1.avg_logprob.total_cmp(&b.1.avg_logprob))
        .or_else(|| {
            tried
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.avg_logprob.total_cmp(&b.1.avg_logprob))
        })
        .map(|(i, _)| i)
        .unwrap_or(0);
    Ok(tried.swap_remove(pick))
}

impl Whisper {
    /// Detects the language of `wav`'s first 30 s: `(code, probability)`.
    pub fn detect_language(&mut self, wav: &Path) -> Result<(String, f32), WhisperError> {
        let mut wav = WavReader::open(wav)?;
        let frames = ((wav.len() / HOP as u64) as usize).clamp(1, N_FRAMES);
        let file_max = if wav.len() / HOP as u64 > N_FRAMES as u64 {
            Some(self.mel.file_max(&mut wav)?)
        } else {
            None
        };
        let mel = self.mel.window(&mut wav, 0, frames, file_max)?;
        self.model.set_audio(&mel)?;
        detect_language(&mut self.model, &self.tokens)
    }
}

fn detect_language(model: &mut Model, tokens: &Tokens) -> Result<(String, f32), WhisperError> {
    if !tokens.multilingual() {
        return Ok(("en".to_owned(), 1.0));
    }
    model.reset();
    let logits = model.decode(&[tokens.sot], &[0])?.swap_remove(0);
    model.reset();
    let scores: Vec<f32> = tokens.languages.iter().map(|&(_, id)| logits[id as usize]).collect();
    let probs = ops::log_softmax(&scores);
    let (best, lp) = probs
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, &lp)| (i, lp))
        .unwrap_or((0, 0.0));
    Ok((tokens.languages[best].0.clone(), lp.exp()))
}

#[cfg(test)]
mod tests {
    use super::ComputeType;

    #[test]
    fn compute_types_read_as_faster_whisper_names_them() {
        for (text, want) in [
            ("auto", ComputeType::Auto),
            ("default", ComputeType::Auto),
            ("float32", ComputeType::Float32),
            (" INT8 ", ComputeType::Int8),
            ("int8_float32", ComputeType::Int8),
            ("int8_full", ComputeType::Int8Full),
        ] {
            assert_eq!(text.parse::<ComputeType>(), Ok(want), "{text}");
        }
        let err = "int4".parse::<ComputeType>().err().unwrap_or_default();
        assert!(err.contains("`int4`") && err.contains("int8"), "{err}");
    }
}
