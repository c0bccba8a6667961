//! The Whisper models a worker holds for its `transcribe` slots: one model per slot,
//! each slot on its own device (one GPU per slot where the node has GPUs, else the
//! CPU), loaded on first use and kept across jobs, reloaded when the admins'
//! `whisper_model` setting changes. A model this worker has not installed, or one too
//! large for its GPU, makes the worker `unable`: it stops taking `transcribe` (and says
//! why in the workers list) until the setting or the model folder changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rushes_common::settings;
use sqlx::PgPool;

use crate::config::TranscribeConfig;
use crate::gpu::{self, GpuInfo};
use crate::metrics::WorkerMetrics;
use crate::whisper::memory::{self, MemoryNeed};
use crate::whisper::{Budget, ComputeType, DecodeOptions, Timings, VadOptions, Whisper, WhisperError};

/// Why a model cannot be used here.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Another worker may have it: worth another attempt elsewhere.
    #[error("{0}")]
    Unavailable(String),
    /// Not in this worker's model folder.
    #[error("{0}")]
    NotInstalled(String),
    /// This node's GPU is too small for it.
    #[error("{0}")]
    TooLarge(String),
    /// The files are there but unusable.
    #[error("{0}")]
    Invalid(String),
    /// The GPU failed while loading it (out of memory on a shared GPU, kernels the
    /// driver cannot run): this worker takes no transcription until a probe passes.
    #[error("{0}")]
    Device(String),
}

pub struct Transcriber {
    model_dir: PathBuf,
    default_model: String,
    /// Beam size, word timestamps and voice activity detection, from the configuration.
    beam_size: usize,
    word_timestamps: bool,
    vad: bool,
    /// How the weights are held and multiplied.
    compute_type: ComputeType,
    gpus: Vec<GpuInfo>,
    slots: Mutex<Vec<Slot>>,
    /// The model asked for now (the setting, else `default_model`).
    current: Mutex<String>,
    /// Set while the model asked for cannot be used here: why.
    unable: Mutex<Option<String>>,
    /// What the workers row last said (see [`Transcriber::changed_description`]).
    described: Mutex<Option<serde_json::Value>>,
    /// Why a GPU's self-test failed, or why a GPU is dead, if one is.
    self_test: Mutex<Option<String>>,
    /// A GPU failed while loading or decoding: no transcription until it passes a probe.
    trouble: Mutex<Option<String>>,
    /// Cancelled when a GPU met a sticky error: the worker drains and exits non-zero,
    /// for its supervisor to start a fresh process (and CUDA context).
    dead: tokio_util::sync::CancellationToken,
    metrics: WorkerMetrics,
}

struct Slot {
    gpu: Option<usize>,
    busy: bool,
    loaded: Option<Loaded>,
}

/// A model in memory, with the name it was loaded under.
pub struct Loaded {
    pub name: String,
    pub whisper: Whisper,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Transcriber {
    /// `slots` transcription slots; with GPUs, slot *i* uses GPU *i mod n*.
    pub fn new(
        config: &TranscribeConfig,
        data_dir: &Path,
        gpus: Vec<GpuInfo>,
        slots: usize,
        metrics: WorkerMetrics,
    ) -> Self {
        let slots = (0..slots.max(1))
            .map(|i| Slot {
                gpu: (!gpus.is_empty()).then(|| gpus[i % gpus.len()].index),
                busy: false,
                loaded: None,
            })
            .collect();
        let transcriber = Self {
            model_dir: config
                .whisper_model_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("models")),
            default_model: config.whisper_model.clone(),
            beam_size: usize::from(config.whisper_beam_size.max(1)),
            word_timestamps: config.whisper_word_timestamps,
            vad: config.whisper_vad,
            compute_type: config.whisper_compute_type,
            gpus,
            slots: Mutex::new(slots),
            current: Mutex::new(config.whisper_model.clone()),
            unable: Mutex::new(None),
            described: Mutex::new(None),
            self_test: Mutex::new(None),
            trouble: Mutex::new(None),
            dead: tokio_util::sync::CancellationToken::new(),
            metrics,
        };
        for g in &transcriber.gpus {
            transcriber.record_gpu_memory(g.index, g.free_bytes, g.total_bytes);
        }
        transcriber
    }

    /// Decoding as configured on this worker (a transcript's own options go on top).
    pub fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            beam_size: self.beam_size,
            word_timestamps: self.word_timestamps,
            vad: self.vad.then(VadOptions::default),
            ..DecodeOptions::default()
        }
    }

    pub fn gpus(&self) -> &[GpuInfo] {
        &self.gpus
    }

    /// Transcription slots (models loaded at once).
    pub fn slot_count(&self) -> usize {
        lock(&self.slots).len()
    }

    /// The models installed in the model folder (sub-folders with a `config.json`).
    pub fn installed(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.model_dir)
            .map(|dir| {
                dir.flatten()
                    .filter(|e| e.path().join("config.json").is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The installed models this worker can load (each fits its GPUs).
    pub fn usable(&self) -> Vec<String> {
        self.installed().into_iter().filter(|m| self.fits(m).is_ok()).collect()
    }

    /// What the workers list shows: device, GPUs, the model folder, its models (`installed`,
    /// and `usable`: those that fit), the model used now (`model`; `default_model` is
    /// `RUSHES_WHISPER_MODEL`) and why it cannot be used (`unable`).
    pub fn describe(&self) -> serde_json::Value {
        let installed = self.installed();
        let usable: Vec<&String> = installed.iter().filter(|m| self.fits(m).is_ok()).collect();
        let description = serde_json::json!({
            "device": if self.gpus.is_empty() { "cpu" } else { "cuda" },
            "gpus": self.gpus,
            "model_dir": self.model_dir,
            "installed": installed,
            "usable": usable,
            "default_model": self.default_model,
            "model": *lock(&self.current),
            "unable": *lock(&self.unable),
        });
        *lock(&self.described) = Some(description.clone());
        description
    }

    /// The description, when it differs from what [`Transcriber::describe`] last gave
    /// (the workers row is rewritten only then).
    pub fn changed_description(&self) -> Option<serde_json::Value> {
        let before = lock(&self.described).clone();
        let now = self.describe();
        (before.as_ref() != Some(&now)).then_some(now)
    }

    /// Makes the next [`Transcriber::changed_description`] answer (its write failed).
    pub fn forget_description(&self) {
        *lock(&self.described) = None;
    }

    /// The model to use now: the admins' setting if they made one, else this worker's default.
    pub async fn wanted_model(&self, db: &PgPool) -> Result<String, sqlx::Error> {
        Ok(settings::stored_text(db, settings::WHISPER_MODEL)
            .await?
            .unwrap_or_else(|| self.default_model.clone()))
    }

    /// Re-checks whether `model` is installed here and fits this node; returns whether
    /// this worker may take `transcribe` (the reason is kept for the workers list).
    pub fn refresh(&self, model: &str) -> bool {
        model.clone_into(&mut lock(&self.current));
        let failed = lock(&self.self_test).clone().or_else(|| lock(&self.trouble).clone());
        let verdict = match failed {
            Some(failed) => Some(failed),
            None => self
                .fits(model)
                .and_then(|()| self.check_installed(model))
                .err()
                .map(|e| e.to_string()),
        };
        let able = verdict.is_none();
        let mut unable = lock(&self.unable);
        if *unable != verdict {
            match &verdict {
                Some(why) => {
                    tracing::error!(model, reason = %why, "this worker cannot transcribe with the configured model")
                }
                None => tracing::info!(model, "this worker can transcribe again"),
            }
            *unable = verdict;
        }
        able
    }

    /// A GPU failed its self-test at start: this worker takes no transcription (the
    /// reason, the driver's message in it, shows in the workers list).
    pub fn failed_self_test(&self, why: String) {
        *lock(&self.self_test) = Some(why);
    }

    /// A GPU failed at work. A sticky error kills it (see [`Transcriber::dead_gpu`]);
    /// any other stops transcriptions here until [`Transcriber::probe`] passes.
    pub fn gpu_fault(&self, gpu: usize, error: &str) {
        if gpu::is_sticky(error) {
            let why = format!("GPU {gpu} is unusable until the worker restarts: {error}");
            tracing::error!(gpu, reason = %why, "sticky GPU error: draining and exiting for a restart");
            *lock(&self.self_test) = Some(why);
            self.dead.cancel();
        } else {
            let why = format!("GPU {gpu} failed: {error} (transcriptions resume once it passes a probe)");
            tracing::warn!(gpu, reason = %why, "GPU failed; probing it at each heartbeat");
            *lock(&self.trouble) = Some(why);
        }
    }

    /// Cancelled once a GPU is dead; [`Transcriber::gpu_failure`] says why.
    pub fn dead_gpu(&self) -> tokio_util::sync::CancellationToken {
        self.dead.clone()
    }

    /// Why a GPU failed its self-test or died, if one did.
    pub fn gpu_failure(&self) -> Option<String> {
        lock(&self.self_test).clone()
    }

    /// After a GPU failure: every GPU runs the self-test's operations again; all
    /// passing ends the pause.
    pub async fn probe(&self) {
        if lock(&self.trouble).is_none() {
            return;
        }
        for g in self.gpus.clone() {
            let index = g.index;
            let passed = tokio::task::spawn_blocking(move || {
                let device = gpu::device_for(Some(index)).map_err(|e| e.to_string())?;
                crate::whisper::selftest::run(&device, candle_core::DType::F16, None, ComputeType::Auto)
            })
            .await
            .unwrap_or_else(|e| Err(format!("the probe stopped: {e}")));
            if let Err(why) = passed {
                tracing::warn!(gpu = index, reason = %why, "GPU still fails its probe");
                return;
            }
        }
        tracing::info!("every GPU passed its probe: transcribing again");
        *lock(&self.trouble) = None;
    }

    pub fn unable(&self) -> Option<String> {
        lock(&self.unable).clone()
    }

    /// Whether `model` is in the model folder; the error names the installed ones.
    fn check_installed(&self, model: &str) -> Result<(), ModelError> {
        let dir = self.model_dir.join(model);
        if dir.join("config.json").is_file() {
            return Ok(());
        }
        Err(ModelError::NotInstalled(format!(
            "model `{model}` is not installed on this worker: no {} (installed: {})",
            dir.display(),
            match self.installed() {
                names if names.is_empty() => "none".to_owned(),
                names => names.join(", "),
            }
        )))
    }

    /// Whether a model of a standard size (by name) could be loaded on every GPU of
    /// this worker, once in each slot sharing the GPU (the CPU always can). Other names
    /// pass: the exact check runs at load, on the model's own sizes and the memory
    /// free then ([`Budget`]).
    fn fits(&self, model: &str) -> Result<(), ModelError> {
        let Some((dims, parameters)) = memory::standard(model) else {
            return Ok(());
        };
        let dtype = if self.compute_type == ComputeType::Float32 {
            candle_core::DType::F32
        } else {
            candle_core::DType::F16
        };
        let need = MemoryNeed::of(&dims, parameters, dtype, self.beam_size);
        let slots = lock(&self.slots);
        for g in &self.gpus {
            let copies = slots.iter().filter(|s| s.gpu == Some(g.index)).count().max(1) as u64;
            if need.total().saturating_mul(copies) > g.total_bytes {
                return Err(ModelError::TooLarge(format!(
                    "model `{model}` needs about {need} per slot; GPU {} ({}) has {} for {copies} slot(s)",
                    g.index,
                    g.name,
                    memory::mib(g.total_bytes)
                )));
            }
        }
        Ok(())
    }

    /// What a model loaded on `gpu` must fit in: the memory free there now, for a copy
    /// in each of the slots on that GPU that hold no model (this one among them).
    fn budget(&self, gpu: usize) -> Result<Budget, ModelError> {
        let (free, total) = gpu::memory(gpu).map_err(|e| ModelError::Unavailable(e.to_string()))?;
        self.record_gpu_memory(gpu, free, total);
        let copies = lock(&self.slots)
            .iter()
            .filter(|s| s.gpu == Some(gpu) && s.loaded.is_none())
            .count()
            .max(1);
        Ok(Budget {
            free_bytes: free,
            copies: copies as u64,
            beams: self.beam_size,
        })
    }

    /// GPU memory as the driver reports it now (each heartbeat, each model load).
    pub fn refresh_gpu_memory(&self) {
        for g in &self.gpus {
            match gpu::memory(g.index) {
                Ok((free, total)) => self.record_gpu_memory(g.index, free, total),
                Err(err) => tracing::warn!(gpu = g.index, error = %err, "cannot read GPU memory"),
            }
        }
    }

    fn record_gpu_memory(&self, index: usize, free: u64, total: u64) {
        let Some(g) = self.gpus.iter().find(|g| g.index == index) else {
            return;
        };
        let label = index.to_string();
        for (kind, bytes) in [("total", total), ("free", free)] {
            self.metrics
                .gpu_memory
                .with_label_values(&[label.as_str(), g.name.as_str(), kind])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// Takes a free slot (one that already holds `model` if there is one).
    pub fn acquire(self: &Arc<Self>, model: &str) -> Result<Lease, ModelError> {
        let mut slots = lock(&self.slots);
        let free = slots
            .iter()
            .position(|s| !s.busy && s.loaded.as_ref().is_some_and(|l| l.name == model))
            .or_else(|| slots.iter().position(|s| !s.busy))
            .ok_or_else(|| ModelError::Unavailable("every transcription slot is busy".into()))?;
        let slot = &mut slots[free];
        slot.busy = true;
        Ok(Lease {
            transcriber: self.clone(),
            index: free,
            gpu: slot.gpu,
            loaded: slot.loaded.take(),
        })
    }

    fn release(&self, index: usize, loaded: Option<Loaded>) {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get_mut(index) {
            slot.busy = false;
            slot.loaded = loaded;
        }
    }

    /// Records one transcription's speed: overall, and the encoder's per window and
    /// the decoder's per token.
    pub fn observe(&self, model: &str, gpu: Option<usize>, real_time_factor: f64, timings: &Timings) {
        let device = gpu.map_or_else(|| "cpu".to_owned(), |g| format!("cuda:{g}"));
        let labels = [model, device.as_str()];
        self.metrics
            .whisper_rtf
            .with_label_values(&labels)
            .observe(real_time_factor);
        if let Some(s) = timings.encoder_per_window() {
            self.metrics.whisper_encoder.with_label_values(&labels).observe(s);
        }
        if let Some(s) = timings.decoder_per_token() {
            self.metrics.whisper_token.with_label_values(&labels).observe(s);
        }
    }
}

/// Most transcriptions sharing one GPU by default: beyond 4, streams on one card
/// mostly wait for each other.
const MAX_SLOTS_PER_GPU: u16 = 4;

/// Transcription slots per GPU when `transcribe` has no `=N`: as many copies of the
/// worker's default model (a standard size; others get one) as the smallest GPU's free
/// memory holds, 1 to [`MAX_SLOTS_PER_GPU`] — small on an 80 GB card: 4; large-v3 on
/// a 24 GB card: 4, on a 12 GB one: 2.
pub fn slots_per_gpu(gpus: &[GpuInfo], config: &TranscribeConfig) -> u16 {
    let Some((dims, parameters)) = memory::standard(&config.whisper_model) else {
        return 1;
    };
    let dtype = if config.whisper_compute_type == ComputeType::Float32 {
        candle_core::DType::F32
    } else {
        candle_core::DType::F16
    };
    let beams = usize::from(config.whisper_beam_size.max(1));
    let need = MemoryNeed::of(&dims, parameters, dtype, beams).total().max(1);
    gpus.iter()
        .map(|g| u16::try_from(g.free_bytes / need).unwrap_or(u16::MAX))
        .min()
        .unwrap_or(1)
        .clamp(1, MAX_SLOTS_PER_GPU)
}

/// A slot held by one job; the model goes back to the slot when the lease is dropped.
pub struct Lease {
    transcriber: Arc<Transcriber>,
    index: usize,
    pub gpu: Option<usize>,
    loaded: Option<Loaded>,
}

impl Lease {
    /// The slot's model, loaded (or swapped) to `model` first when needed.
    pub async fn model(&mut self, model: &str) -> Result<&mut Loaded, ModelError> {
        if self.loaded.as_ref().is_none_or(|l| l.name != model) {
            self.loaded = None;
            self.transcriber.check_installed(model)?;
            let dir = self.transcriber.model_dir.join(model);
            let gpu = self.gpu;
            let budget = gpu.map(|g| self.transcriber.budget(g)).transpose()?;
            let model_name = model.to_owned();
            let compute = self.transcriber.compute_type;
            let started = std::time::Instant::now();
            let whisper = tokio::task::spawn_blocking(move || {
                let device = gpu::device_for(gpu).map_err(|e| ModelError::Unavailable(e.to_string()))?;
                Whisper::load_within(&dir, &device, compute, budget).map_err(|e| match e {
                    WhisperError::DoesNotFit(why) => ModelError::TooLarge(why),
                    // The files are fine; the device failed (out of memory on a shared
                    // GPU, a driver that cannot run the kernels): another try may not.
                    WhisperError::Inference(err) if gpu.is_some() => {
                        ModelError::Device(format!("loading model `{model_name}` on the GPU: {err}"))
                    }
                    e => ModelError::Invalid(format!("model `{}`: {e}", dir.display())),
                })
            })
            .await
            .map_err(|e| ModelError::Unavailable(format!("loading the model stopped: {e}")))?
            .inspect_err(|e| {
                if let (ModelError::Device(why), Some(g)) = (e, gpu) {
                    self.transcriber.gpu_fault(g, why);
                }
            })?;
            tracing::info!(model, gpu = ?self.gpu, load_s = started.elapsed().as_secs_f64(), "Whisper model loaded");
            self.loaded = Some(Loaded {
                name: model.to_owned(),
                whisper,
            });
        }
        self.loaded
            .as_mut()
            .ok_or_else(|| ModelError::Unavailable("the model was not kept".into()))
    }

    /// Takes the model out to run it on a blocking thread; give it back with [`Lease::put`].
    pub fn take(&mut self) -> Option<Loaded> {
        self.loaded.take()
    }

    pub fn put(&mut self, loaded: Loaded) {
        self.loaded = Some(loaded);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.transcriber.release(self.index, self.loaded.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults, with `small` and models under `dir`.
    fn config(dir: Option<PathBuf>) -> TranscribeConfig {
        TranscribeConfig {
            whisper_model_dir: dir,
            whisper_model: "small".into(),
            whisper_device: "auto".into(),
            whisper_beam_size: 5,
            whisper_word_timestamps: true,
            whisper_vad: true,
            whisper_compute_type: ComputeType::Auto,
        }
    }

    fn transcriber(gpus: Vec<GpuInfo>, slots: usize) -> Arc<Transcriber> {
        transcriber_in(PathBuf::from("/nonexistent/models"), gpus, slots)
    }

    fn transcriber_in(dir: PathBuf, gpus: Vec<GpuInfo>, slots: usize) -> Arc<Transcriber> {
        let config = config(Some(dir));
        let metrics = WorkerMetrics::new().unwrap_or_else(|e| panic!("metrics: {e}"));
        Arc::new(Transcriber::new(&config, Path::new("/tmp"), gpus, slots, metrics))
    }

    /// A model folder holding (empty) `models`, removed on drop.
    struct Models(PathBuf);

    impl Models {
        fn new(models: &[&str]) -> Self {
            let dir = std::env::temp_dir().join(format!("rushes-models-{}", uuid::Uuid::new_v4()));
            for m in models {
                std::fs::create_dir_all(dir.join(m)).unwrap_or_else(|e| panic!("{e}"));
                std::fs::write(dir.join(m).join("config.json"), "{}").unwrap_or_else(|e| panic!("{e}"));
            }
            Self(dir)
        }
    }

    impl Drop for Models {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn gpu(index: usize, gib: u64) -> GpuInfo {
        GpuInfo {
            index,
            name: format!("Test GPU {index}"),
            total_bytes: gib << 30,
            free_bytes: gib << 30,
        }
    }

    #[test]
    fn a_model_larger_than_the_gpu_is_refused_with_the_reason() {
        // In f16 with five beams: small ≈ 0.8 GiB, medium ≈ 2.2, large-v3 ≈ 4.1.
        let models = Models::new(&["small", "medium", "base.en", "large-v3", "my-own-model"]);
        let small_gpu = transcriber_in(models.0.clone(), vec![gpu(0, 2)], 1);
        assert!(small_gpu.refresh("small"));
        assert!(!small_gpu.refresh("medium"));
        let why = small_gpu.unable().unwrap_or_default();
        assert!(
            why.contains("`medium` needs about 22") && why.contains("has 2048 MiB for 1 slot(s)"),
            "{why}"
        );
        assert_eq!(small_gpu.describe()["unable"], serde_json::json!(why));
        assert!(small_gpu.refresh("base.en"), "able again once the setting changes");
        assert_eq!(small_gpu.unable(), None);
        assert_eq!(
            small_gpu.usable(),
            ["base.en", "my-own-model", "small"],
            "medium and large-v3 do not fit; a name of no standard size is checked at load"
        );
        // Medium fits a 4 GiB GPU once, not twice: two slots sharing it cannot both load it.
        assert!(transcriber_in(models.0.clone(), vec![gpu(0, 4)], 1).refresh("medium"));
        let shared = transcriber_in(models.0.clone(), vec![gpu(0, 4)], 2);
        assert!(!shared.refresh("medium"));
        assert!(shared.unable().unwrap_or_default().contains("for 2 slot(s)"));
        // The CPU holds anything.
        assert!(transcriber_in(models.0.clone(), Vec::new(), 1).refresh("large-v3"));
    }

    #[test]
    fn slots_per_gpu_follow_the_model_and_the_smallest_gpu() {
        let mut config = config(None);
        assert_eq!(slots_per_gpu(&[gpu(0, 80)], &config), 4);
        config.whisper_model = "large-v3".into();
        assert_eq!(slots_per_gpu(&[gpu(0, 24)], &config), 4);
        assert_eq!(slots_per_gpu(&[gpu(0, 12)], &config), 2);
        assert_eq!(
            slots_per_gpu(&[gpu(0, 80), gpu(1, 9)], &config),
            2,
            "the smallest decides"
        );
        assert_eq!(slots_per_gpu(&[gpu(0, 2)], &config), 1, "never none");
        config.whisper_model = "my-own-model".into();
        assert_eq!(slots_per_gpu(&[gpu(0, 80)], &config), 1);
    }

    #[tokio::test]
    async fn a_failing_gpu_pauses_transcription_and_a_sticky_error_kills_the_worker() {
        let models = Models::new(&["base"]);
        let t = transcriber_in(models.0.clone(), vec![gpu(0, 8)], 1);
        assert!(t.refresh("base"));
        t.gpu_fault(0, "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")");
        assert!(!t.refresh("base"));
        let why = t.unable().unwrap_or_default();
        assert!(why.contains("GPU 0 failed") && why.contains("out of memory"), "{why}");
        assert!(!t.dead_gpu().is_cancelled());
        // This build has no CUDA: the probe cannot pass, the pause stays.
        t.probe().await;
        assert!(!t.refresh("base"));
        t.gpu_fault(
            0,
            "DriverError(CUDA_ERROR_ILLEGAL_ADDRESS, \"an illegal memory access was encountered\")",
        );
        assert!(t.dead_gpu().is_cancelled());
        assert!(!t.refresh("base"));
        assert!(
            t.unable()
                .unwrap_or_default()
                .contains("unusable until the worker restarts"),
            "{:?}",
            t.unable()
        );
    }

    #[test]
    fn a_model_that_is_not_installed_makes_the_worker_unable_and_says_so() {
        let models = Models::new(&["base", "tiny.en"]);
        let t = transcriber_in(models.0.clone(), Vec::new(), 1);
        let first = t.describe();
        assert_eq!(first["model"], "small");
        assert!(!t.refresh("medium"));
        let why = t.unable().unwrap_or_default();
        assert!(
            why.contains("`medium` is not installed") && why.contains("installed: base, tiny.en"),
            "{why}"
        );
        let described = t.changed_description().unwrap_or_default();
        assert_eq!(described["model"], "medium");
        assert_eq!(described["unable"], serde_json::json!(why));
        assert_eq!(described["usable"], serde_json::json!(["base", "tiny.en"]));
        assert_eq!(t.changed_description(), None, "unchanged: nothing to write");
        assert!(t.refresh("base"));
        assert_eq!(
            t.changed_description().map(|d| d["unable"].clone()),
            Some(serde_json::Value::Null)
        );
    }

    #[test]
    fn slots_spread_over_gpus_and_come_back_when_released() {
        let t = transcriber(vec![gpu(0, 24), gpu(1, 24)], 3);
        let a = t.acquire("small").unwrap_or_else(|e| panic!("{e}"));
        let b = t.acquire("small").unwrap_or_else(|e| panic!("{e}"));
        let c = t.acquire("small").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.gpu, b.gpu, c.gpu), (Some(0), Some(1), Some(0)));
        assert!(t.acquire("small").is_err(), "every slot is busy");
        drop(b);
        let again = t.acquire("small").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.gpu, Some(1));
    }

    #[tokio::test]
    async fn a_model_that_is_not_installed_names_the_installed_ones() {
        let t = transcriber(Vec::new(), 1);
        let mut lease = t.acquire("small").unwrap_or_else(|e| panic!("{e}"));
        let err = lease
            .model("small")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("`small` is not installed") && err.contains("installed: none"),
            "{err}"
        );
    }
}
