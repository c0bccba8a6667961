//! Queueing transcriptions: a clip gets (or keeps) its one transcript row holding the
//! options, and each transcript gets a new `transcribe` job it points at, in the
//! caller's transaction ([`Tx`]); the jobs are published when it commits.

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::job::JobRecord;
use crate::job::store::{EnqueueError, NewJob, Tx};
use crate::job::transcription::Transcribe;

/// Whisper's tasks.
pub const TASKS: [&str; 2] = ["transcribe", "translate"];

/// How to transcribe: which audio, which language, what task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// 0 = the mix of every track (the clip's WAV); n = that audio track alone.
    #[serde(default)]
    pub audio_track: i32,
    /// An ISO 639-1 code; `None` = detect (multilingual models).
    #[serde(default)]
    pub language: Option<String>,
    /// Translate to English instead of transcribing.
    #[serde(default)]
    pub translate: bool,
    /// Text that primes the decoder (names, spellings).
    #[serde(default)]
    pub initial_prompt: Option<String>,
}

impl Options {
    /// Checks the options; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(0..=64).contains(&self.audio_track) {
            return Err("audio_track: 0 (the mix) to 64".into());
        }
        if let Some(lang) = &self.language
            && (!(2..=3).contains(&lang.len()) || !lang.bytes().all(|b| b.is_ascii_lowercase()))
        {
            return Err(format!("language: a two- or three-letter code like `en`, got `{lang}`"));
        }
        if self.initial_prompt.as_ref().is_some_and(|p| p.chars().count() > 2000) {
            return Err("initial_prompt: at most 2000 characters".into());
        }
        Ok(())
    }

    pub fn task(&self) -> &'static str {
        if self.translate { "translate" } else { "transcribe" }
    }
}

/// Creates the transcript of each clip that has none, or sets new options on the one
/// it has (when `options` is given); returns `(clip, transcript)` pairs.
pub async fn upsert_for_clips(
    tx: &mut PgConnection,
    clips: &[Uuid],
    options: Option<&Options>,
    requested_by: &str,
    notify_user_id: Option<Uuid>,
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    let ids: Vec<Uuid> = clips.iter().map(|_| Uuid::now_v7()).collect();
    let defaults = Options::default();
    let o = options.unwrap_or(&defaults);
    sqlx::query_as(
        "INSERT INTO transcripts (id, clip_id, audio_track, language, task, initial_prompt, requested_by, \
                                  notify_user_id) \
         SELECT u.id, u.clip_id, $3, $4, $5, $6, $7, $8 FROM unnest($1::uuid[], $2::uuid[]) AS u(id, clip_id) \
         ON CONFLICT (clip_id) WHERE clip_id IS NOT NULL DO UPDATE SET \
             audio_track = CASE WHEN $9 THEN EXCLUDED.audio_track ELSE transcripts.audio_track END, \
             language = CASE WHEN $9 THEN EXCLUDED.language ELSE transcripts.language END, \
             task = CASE WHEN $9 THEN EXCLUDED.task ELSE transcripts.task END, \
             initial_prompt = CASE WHEN $9 THEN EXCLUDED.initial_prompt ELSE transcripts.initial_prompt END, \
             requested_by = EXCLUDED.requested_by, \
             notify_user_id = EXCLUDED.notify_user_id \
         RETURNING clip_id, id",
    )
    .bind(&ids)
    .bind(clips)
    .bind(o.audio_track)
    .bind(&o.language)
    .bind(o.task())
    .bind(&o.initial_prompt)
    .bind(requested_by)
    .bind(notify_user_id)
    .bind(options.is_some())
    .fetch_all(&mut *tx)
    .await
}

/// Creates the (waiting) transcript of an upload sent for transcription: its job is
/// queued once the upload is transcoded. Returns its id.
pub async fn insert_for_upload(
    tx: &mut PgConnection,
    upload: Uuid,
    options: &Options,
    requested_by: &str,
    notify_user_id: Option<Uuid>,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO transcripts (id, upload_id, audio_track, language, task, initial_prompt, requested_by, \
                                  notify_user_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(upload)
    .bind(options.audio_track)
    .bind(&options.language)
    .bind(options.task())
    .bind(&options.initial_prompt)
    .bind(requested_by)
    .bind(notify_user_id)
    .execute(&mut *tx)
    .await?;
    Ok(id)
}

/// Enqueues one `transcribe` job per `(transcript, priority)`, each the transcript's
/// current one.
pub async fn queue(
    tx: &mut Tx,
    transcripts: &[(Uuid, u8)],
    parent: Option<Uuid>,
    requested_by: &str,
) -> Result<Vec<JobRecord>, EnqueueError> {
    let jobs = NewJob::batch(
        transcripts.iter().map(|(transcript_id, priority)| {
            (
                Transcribe {
                    transcript_id: *transcript_id,
                },
                *priority,
            )
        }),
        parent,
        requested_by,
    );
    tx.enqueue(jobs).await
}

/// A word of a segment and when it is spoken, in seconds from the start of the media
/// (the `words` of a segment in the API, the database and transcript exports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimedWord {
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
}

impl TimedWord {
    /// Whether the words are in order, each within `start..=end` and not ending before
    /// it starts (what an imported document must hold).
    pub fn all_within(words: &[TimedWord], start: f64, end: f64) -> bool {
        let mut floor = start;
        words.iter().all(|w| {
            let ok = w.start_s.is_finite()
                && w.end_s.is_finite()
                && floor <= w.start_s
                && w.start_s <= w.end_s
                && w.end_s <= end;
            floor = w.start_s;
            ok
        })
    }
}

/// One segment to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSegment<'a> {
    pub idx: i32,
    pub start_s: f64,
    pub end_s: f64,
    pub text: &'a str,
    pub avg_logprob: Option<f32>,
    pub no_speech_prob: Option<f32>,
    pub edited: bool,
    /// The words' timings, when known.
    pub words: Option<&'a [TimedWord]>,
}

/// Inserts a transcript's segments in one statement (the caller's transaction).
pub async fn insert_segments(
    tx: &mut PgConnection,
    transcript_id: Uuid,
    segments: &[NewSegment<'_>],
) -> Result<(), sqlx::Error> {
    let column = |f: &dyn Fn(&NewSegment<'_>) -> f64| segments.iter().map(f).collect::<Vec<f64>>();
    let idx: Vec<i32> = segments.iter().map(|s| s.idx).collect();
    let text: Vec<&str> = segments.iter().map(|s| s.text).collect();
    let logprob: Vec<Option<f32>> = segments.iter().map(|s| s.avg_logprob).collect();
    let no_speech: Vec<Option<f32>> = segments.iter().map(|s| s.no_speech_prob).collect();
    let edited: Vec<bool> = segments.iter().map(|s| s.edited).collect();
    let words: Vec<Option<serde_json::Value>> = segments
        .iter()
        .map(|s| s.words.and_then(|w| serde_json::to_value(w).ok()))
        .collect();
    sqlx::query(
        "INSERT INTO transcript_segments (transcript_id, idx, start_s, end_s, text, avg_logprob, no_speech_prob, edited, \
                                          words) \
         SELECT $1, * FROM unnest($2::int[], $3::float8[], $4::float8[], $5::text[], $6::real[], $7::real[], \
                                  $8::bool[], $9::jsonb[])",
    )
    .bind(transcript_id)
    .bind(idx)
    .bind(column(&|s| s.start_s))
    .bind(column(&|s| s.end_s))
    .bind(text)
    .bind(logprob)
    .bind(no_speech)
    .bind(edited)
    .bind(words)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_must_be_in_order_and_inside_their_segment() {
        let word = |start_s: f64, end_s: f64| TimedWord {
            start_s,
            end_s,
            text: " w".into(),
        };
        assert!(TimedWord::all_within(&[word(1.0, 1.5), word(1.5, 2.0)], 1.0, 2.0));
        assert!(TimedWord::all_within(&[], 1.0, 2.0));
        assert!(
            !TimedWord::all_within(&[word(1.5, 2.0), word(1.0, 1.5)], 1.0, 2.0),
            "out of order"
        );
        assert!(!TimedWord::all_within(&[word(0.5, 1.5)], 1.0, 2.0), "starts before");
        assert!(!TimedWord::all_within(&[word(1.5, 2.5)], 1.0, 2.0), "ends after");
        assert!(
            !TimedWord::all_within(&[word(1.6, 1.5)], 1.0, 2.0),
            "ends before it starts"
        );
        assert!(!TimedWord::all_within(&[word(f64::NAN, 1.5)], 1.0, 2.0));
    }

    #[test]
    fn options_are_checked() {
        assert!(Options::default().validate().is_ok());
        let lang = |l: &str| Options {
            language: Some(l.into()),
            ..Options::default()
        };
        assert!(lang("en").validate().is_ok());
        assert!(lang("yue").validate().is_ok());
        for bad in ["", "e", "EN", "english", "e1"] {
            assert!(lang(bad).validate().is_err(), "{bad}");
        }
        let track = Options {
            audio_track: 65,
            ..Options::default()
        };
        assert!(track.validate().err().is_some_and(|e| e.contains("audio_track")));
    }
}
