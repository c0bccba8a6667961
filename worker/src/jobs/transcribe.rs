//! `transcribe`: Whisper over one transcript's audio — a clip's or an upload's 16 kHz
//! WAV (made here when the transcode has not, or when one audio track is asked for) —
//! with the options stored on the transcript. Progress per 30-s window, cancel between
//! windows, segments replaced in one transaction, the requester mailed.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use rushes_common::job::email::Email;
use rushes_common::job::store::{self, NewJob};
use rushes_common::job::transcription::Transcribe;
use rushes_common::mail;
use rushes_common::media::UPLOAD_ORIGINAL;
use rushes_common::transcripts::{NewSegment, TimedWord, insert_segments};
use serde_json::{Value, json};
use uuid::Uuid;

use super::clip::run_ffmpeg;
use super::{JobContext, JobError, db_error};
use crate::media::formats::{self, MAX_AUDIO_TRACKS};
use crate::media::plan;
use crate::media::staging::Staging;
use crate::transcriber::{Loaded, ModelError};
use crate::whisper::{DecodeOptions, Progress, Segment, Task, Transcription, WhisperError};

#[derive(sqlx::FromRow)]
struct TranscriptRow {
    job_id: Option<Uuid>,
    clip_id: Option<Uuid>,
    upload_id: Option<Uuid>,
    audio_track: i32,
    language: Option<String>,
    task: String,
    initial_prompt: Option<String>,
    notify_user_id: Option<Uuid>,
    /// The clip's file name or the upload's title.
    name: String,
    /// The clip's original, relative to its production's folder (clips only).
    production_path: Option<String>,
    clip_path: Option<String>,
    missing: bool,
    audio_tracks: i32,
    duration_s: Option<f64>,
}

/// Where the audio comes from, and the folder our outputs for it live in.
struct Source {
    original: PathBuf,
    outputs: PathBuf,
}

pub async fn run(ctx: JobContext, payload: Transcribe) -> Result<Value, JobError> {
    let id = payload.transcript_id;
    let row: TranscriptRow = sqlx::query_as(
        "SELECT t.job_id, t.clip_id, t.upload_id, t.audio_track, t.language, t.task, t.initial_prompt, \
                t.notify_user_id, coalesce(c.name, u.title, '') AS name, p.path AS production_path, \
                c.path AS clip_path, coalesce(c.missing, false) AS missing, \
                coalesce(c.audio_tracks, u.audio_tracks, 0) AS audio_tracks, \
                coalesce(c.duration_s, u.duration_s) AS duration_s \
         FROM transcripts t LEFT JOIN clips c ON c.id = t.clip_id LEFT JOIN productions p ON p.id = c.production_id \
              LEFT JOIN uploads u ON u.id = t.upload_id \
         WHERE t.id = $1",
    )
    .bind(id)
    .fetch_optional(&ctx.db)
    .await
    .map_err(db_error)?
    .ok_or_else(|| JobError::Permanent(format!("unknown transcript {id} (deleted?)")))?;
    if row.job_id != Some(ctx.job_id) {
        return Ok(json!({ "skipped": "a newer transcription of this transcript replaced this one" }));
    }
    if row.audio_tracks == 0 {
        return Err(JobError::Permanent(
            "the media has no audio stream to transcribe".into(),
        ));
    }
    if row.audio_track > row.audio_tracks {
        return Err(JobError::Permanent(format!(
            "audio track {} asked for; the media has {}",
            row.audio_track, row.audio_tracks
        )));
    }
    let transcriber = ctx
        .services
        .transcriber
        .clone()
        .ok_or_else(|| JobError::Unable("this worker has no transcription slots".into()))?;
    let model_name = transcriber.wanted_model(&ctx.db).await.map_err(db_error)?;
    if !transcriber.refresh(&model_name) {
        let why = transcriber.unable().unwrap_or_default();
        return Err(JobError::Unable(format!("{why}; another worker may take it")));
    }

    // The WAV: the transcode's mix when it exists and the mix is wanted, else made now.
    let source = source(&ctx, &row)?;
    let staging = Staging::create(&source.outputs, ctx.job_id, ctx.attempt)
        .map_err(|e| JobError::Retryable(format!("cannot prepare a work folder: {e}")))?;
    let mix = source.outputs.join("audio.wav");
    let wav = if row.audio_track == 0 && mix.is_file() {
        mix
    } else {
        let track = usize::try_from(row.audio_track).ok().filter(|t| *t > 0);
        let tracks = usize::try_from(row.audio_tracks).unwrap_or(1);
        if track.is_none() && tracks > MAX_AUDIO_TRACKS {
            return Err(JobError::Permanent(formats::too_many_tracks(tracks)));
        }
        let plan = plan::speech_wav(&source.original, tracks, track, &staging);
        ctx.log(
            rushes_common::logs::Level::Info,
            match track {
                Some(t) => format!("extracting audio track {t} at 16 kHz"),
                None => "no transcode WAV yet: extracting the mix at 16 kHz".to_owned(),
            },
        );
        run_ffmpeg(&ctx, plan.args, row.duration_s).await?;
        staging.path("speech.wav")
    };

    let mut lease = transcriber.acquire(&model_name).map_err(model_error)?;
    lease.model(&model_name).await.map_err(model_error)?;
    let Some(loaded) = lease.take() else {
        return Err(JobError::Retryable("the model went missing from its slot".into()));
    };
    let options = DecodeOptions {
        language: row.language.clone(),
        task: if row.task == "translate" {
            Task::Translate
        } else {
            Task::Transcribe
        },
        initial_prompt: row.initial_prompt.clone(),
        ..transcriber.decode_options()
    };
    ctx.log(
        rushes_common::logs::Level::Info,
        format!(
            "Whisper `{model_name}` on {}{}",
            lease.gpu.map_or_else(|| "CPU".to_owned(), |g| format!("GPU {g}")),
            row.language
                .as_ref()
                .map(|l| format!(", language {l}"))
                .unwrap_or_default()
        ),
    );
    let progress = ctx.clone();
    let started = Instant::now();
    let gpu = lease.gpu;
    // The lease and the work folder travel with the work: if this job is abandoned (a
    // timeout aborts it), the slot stays taken and the WAV stays until Whisper really
    // stops, so no second model is loaded beside one still running.
    let outcome = tokio::task::spawn_blocking(move || {
        let mut lease = lease;
        let _staging = staging;
        let mut loaded: Loaded = loaded;
        let outcome = loaded.whisper.transcribe(&wav, &options, &mut |p: &Progress<'_>| {
            if p.duration > 0.0 {
                progress.set_progress((p.seconds_done / p.duration) as f32 * 0.98);
            }
            if progress.is_cancelled() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if matches!(outcome, Err(WhisperError::Inference(_))) && !loaded.whisper.device().is_cpu() {
            // The GPU failed mid-decode: its model goes (freeing its memory) and the
            // device is synchronised, so no queued kernel outlives the job.
            let device = loaded.whisper.device().clone();
            drop(loaded);
            if let Err(err) = device.synchronize() {
                tracing::warn!(error = %err, "cannot synchronise the GPU after its failure");
            }
        } else {
            lease.put(loaded);
        }
        outcome
    })
    .await
    .map_err(|e| JobError::Retryable(format!("the transcription thread stopped: {e}")))?;
    let transcription = match (outcome, gpu) {
        (Err(WhisperError::Inference(err)), Some(g)) => {
            let why = err.to_string();
            transcriber.gpu_fault(g, &why);
            return Err(JobError::Unable(format!("GPU {g} failed during transcription: {why}")));
        }
        (outcome, _) => outcome.map_err(whisper_error)?,
    };
    let elapsed = started.elapsed().as_secs_f64();
    let rtf = if transcription.duration > 0.0 {
        elapsed / transcription.duration
    } else {
        0.0
    };
    transcriber.observe(&model_name, gpu, rtf, &transcription.timings);

    let stored = store(&ctx, id, &model_name, &transcription, rtf).await?;
    if !stored {
        return Ok(json!({ "skipped": "a newer transcription of this transcript replaced this one" }));
    }
    notify(&ctx, &row, id, &transcription).await;
    ctx.set_progress(1.0);
    Ok(json!({
        "transcript_id": id,
        "model": model_name,
        "language": transcription.language,
        "language_probability": transcription.language_probability,
        "duration_s": transcription.duration,
        "segments": transcription.segments.len(),
        "real_time_factor": rtf,
    }))
}

fn source(ctx: &JobContext, row: &TranscriptRow) -> Result<Source, JobError> {
    match (row.clip_id, row.upload_id) {
        (Some(clip), _) => {
            if row.missing {
                return Err(JobError::Permanent("the clip's file is missing".into()));
            }
            let original = ctx
                .services
                .roots
                .resolve_inside(
                    row.production_path.as_deref().unwrap_or_default(),
                    row.clip_path.as_deref().unwrap_or_default(),
                )
                .map_err(|e| JobError::Permanent(format!("source file: {e}")))?;
            Ok(Source {
                original,
                outputs: ctx.services.media.clip_dir(clip),
            })
        }
        (None, Some(upload)) => {
            let outputs = ctx.services.media.upload_dir(upload);
            Ok(Source {
                original: outputs.join(UPLOAD_ORIGINAL),
                outputs,
            })
        }
        (None, None) => Err(JobError::Permanent("the transcript names no clip or upload".into())),
    }
}

fn model_error(err: ModelError) -> JobError {
    match err {
        ModelError::Invalid(why) => JobError::Permanent(why),
        err @ (ModelError::NotInstalled(_) | ModelError::TooLarge(_)) => JobError::Unable(err.to_string()),
        err @ ModelError::Unavailable(_) => JobError::Retryable(err.to_string()),
        // Not the job's fault: another worker takes it, the attempt not counted.
        err @ ModelError::Device(_) => JobError::Unable(err.to_string()),
    }
}

fn whisper_error(err: WhisperError) -> JobError {
    match err {
        WhisperError::Cancelled => JobError::Cancelled,
        err if err.is_permanent() => JobError::Permanent(format!("transcription: {err}")),
        err => JobError::Retryable(format!("transcription: {err}")),
    }
}

/// Replaces the transcript's segments (unless a newer job took it over); returns
/// whether they were stored.
async fn store(
    ctx: &JobContext,
    id: Uuid,
    model: &str,
    transcription: &Transcription,
    rtf: f64,
) -> Result<bool, JobError> {
    let segments: &[Segment] = &transcription.segments;
    let mut tx = ctx.db.begin().await.map_err(db_error)?;
    let updated = sqlx::query(
        "UPDATE transcripts SET model = $3, detected_language = $4, language_probability = $5, duration_s = $6, \
                real_time_factor = $7, transcribed_at = now(), edited_at = NULL \
         WHERE id = $1 AND job_id = $2",
    )
    .bind(id)
    .bind(ctx.job_id)
    .bind(model)
    .bind(&transcription.language)
    .bind(transcription.language_probability)
    .bind(transcription.duration)
    .bind(rtf as f32)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    if updated.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM transcript_segments WHERE transcript_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    let words: Vec<Option<Vec<TimedWord>>> = segments
        .iter()
        .map(|s| {
            (!s.words.is_empty()).then(|| {
                s.words
                    .iter()
                    .map(|w| TimedWord {
                        start_s: w.start,
                        end_s: w.end,
                        text: w.text.clone(),
                    })
                    .collect()
            })
        })
        .collect();
    let rows: Vec<NewSegment<'_>> = segments
        .iter()
        .zip(&words)
        .enumerate()
        .map(|(i, (s, words))| NewSegment {
            idx: i32::try_from(i).unwrap_or(i32::MAX),
            start_s: s.start,
            end_s: s.end.max(s.start),
            text: s.text.trim(),
            avg_logprob: Some(s.avg_logprob),
            no_speech_prob: Some(s.no_speech_prob),
            edited: false,
            words: words.as_deref(),
        })
        .collect();
    insert_segments(&mut tx, id, &rows).await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(true)
}

/// Mails whoever asked for the transcript (when they have an address).
async fn notify(ctx: &JobContext, row: &TranscriptRow, id: Uuid, transcription: &Transcription) {
    let Some(user) = row.notify_user_id else {
        return;
    };
    let address: Option<String> =
        match sqlx::query_scalar("SELECT email FROM users WHERE id = $1 AND active AND deleted_at IS NULL")
            .bind(user)
            .fetch_optional(&ctx.db)
            .await
        {
            Ok(address) => address,
            Err(err) => {
                tracing::warn!(error = %err, "cannot look up who to tell about the transcript");
                return;
            }
        };
    let Some(address) = address.filter(|a| mail::looks_like_address(a)) else {
        return;
    };
    // A page a person can open without a token (the control plane serves it).
    let link = mail::transcript_page(&ctx.services.smtp.public_url, id);
    let message = mail::transcript_ready(&row.name, transcription.segments.len(), transcription.duration, &link);
    let job = NewJob::of(&Email::new(vec![address], message))
        .parent(ctx.job_id)
        .requested_by("transcribe");
    if let Err(err) = store::enqueue(&ctx.db, &ctx.publisher, vec![job]).await {
        tracing::warn!(error = %err, "cannot queue the transcript-ready mail");
    }
}
