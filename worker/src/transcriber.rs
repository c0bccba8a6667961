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
use crate::whisper::{ComputeType, DecodeOptions, Timings, VadOptions, Whisper};

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
        for g in &gpus {
            let label = g.index.to_string();
            metrics
                .gpu_memory
                .with_label_values(&[label.as_str(), g.name.as_str(), "total"])
                .set(i64::try_from(g.total_bytes).unwrap_or(i64::MAX));
            metrics
                .gpu_memory
                .with_label_values(&[label.as_str(), g.name.as_str(), "free"])
                .set(i64::try_from(g.free_bytes).unwrap_or(i64::MAX));
        }
        let slots = (0..slots.max(1))
            .map(|i| Slot {
                gpu: (!gpus.is_empty()).then(|| gpus[i % gpus.len()].index),
                busy: false,
                loaded: None,
            })
            .collect();
        Self {
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
            metrics,
        }
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
        let verdict = self
            .fits(model)
            .and_then(|()| self.check_installed(model))
            .err()
            .map(|e| e.to_string());
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

    /// Whether `model` fits every GPU this worker would load it on (the CPU always can).
    fn fits(&self, model: &str) -> Result<(), ModelError> {
        let Some(need_gib) = settings::whisper_vram_gib(model) else {
            return Ok(());
        };
        let need = need_gib << 30;
        match self.gpus.iter().find(|g| g.total_bytes < need) {
            Some(g) => Err(ModelError::TooLarge(format!(
                "model `{model}` needs about {need_gib} GiB of GPU memory; GPU {} ({}) has {:.1} GiB",
                g.index,
                g.name,
                g.total_bytes as f64 / f64::from(1u32 << 30)
            ))),
            None => Ok(()),
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
            self.transcriber.fits(model)?;
            self.transcriber.check_installed(model)?;
            let dir = self.transcriber.model_dir.join(model);
            let gpu = self.gpu;
            let compute = self.transcriber.compute_type;
            let started = std::time::Instant::now();
            let whisper = tokio::task::spawn_blocking(move || {
                let device = gpu::device_for(gpu).map_err(|e| ModelError::Unavailable(e.to_string()))?;
                Whisper::load_as(&dir, &device, compute)
                    .map_err(|e| ModelError::Invalid(format!("model `{}`: {e}", dir.display())))
            })
            .await
            .map_err(|e| ModelError::Unavailable(format!("loading the model stopped: {e}")))??;
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

    fn transcriber(gpus: Vec<GpuInfo>, slots: usize) -> Arc<Transcriber> {
        transcriber_in(PathBuf::from("/nonexistent/models"), gpus, slots)
    }

    fn transcriber_in(dir: PathBuf, gpus: Vec<GpuInfo>, slots: usize) -> Arc<Transcriber> {
        let config = TranscribeConfig {
            whisper_model_dir: Some(dir),
            whisper_model: "small".into(),
            whisper_device: "auto".into(),
            whisper_beam_size: 5,
            whisper_word_timestamps: true,
            whisper_vad: true,
            whisper_compute_type: ComputeType::Auto,
        };
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
        let models = Models::new(&["small", "medium", "base.en", "large-v3"]);
        let small_gpu = transcriber_in(models.0.clone(), vec![gpu(0, 4)], 1);
        assert!(small_gpu.refresh("small"));
        assert!(!small_gpu.refresh("medium"));
        let why = small_gpu.unable().unwrap_or_default();
        assert!(
            why.contains("`medium` needs about 5 GiB") && why.contains("has 4.0 GiB"),
            "{why}"
        );
        assert_eq!(small_gpu.describe()["unable"], serde_json::json!(why));
        assert!(small_gpu.refresh("base.en"), "able again once the setting changes");
        assert_eq!(small_gpu.unable(), None);
        assert_eq!(
            small_gpu.usable(),
            ["base.en", "small"],
            "medium and large-v3 do not fit"
        );
        // The CPU holds anything.
        assert!(transcriber_in(models.0.clone(), Vec::new(), 1).refresh("large-v3"));
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
