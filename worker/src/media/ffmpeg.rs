//! Running ffmpeg through `ffmpeg-sidecar`: progress from its log, the reason of a
//! failure in ffmpeg's own words, cancellation and a time limit that kill the process.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
use ffmpeg_sidecar::ffmpeg_time_duration::FfmpegTimeDuration;
use ffmpeg_sidecar::log_parser::FfmpegLogParser;
use tokio_util::sync::CancellationToken;

use super::formats;

/// Error lines of ffmpeg's log kept to explain a failure.
const REASON_LINES: usize = 6;
/// How often the process is checked for exit, cancellation and time.
const POLL: Duration = Duration::from_millis(50);

/// Why an ffmpeg run did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum FfmpegError {
    #[error("cannot start ffmpeg: {0}")]
    Spawn(std::io::Error),
    /// ffmpeg exited non-zero; the text is its own error lines.
    #[error("{0}")]
    Failed(String),
    /// An input's container format is not on the allowlist; the text names it.
    #[error("{0}")]
    Refused(String),
    #[error("cancelled")]
    Cancelled,
    #[error("ffmpeg ran longer than {0:?} and was stopped")]
    TimedOut(Duration),
}

/// Reports progress as a fraction of the expected output duration.
pub type Progress = Arc<dyn Fn(f32) + Send + Sync>;

/// One ffmpeg invocation.
pub struct FfmpegRun<'a> {
    pub binary: &'a Path,
    pub args: Vec<OsString>,
    /// Seconds of media the run produces, to turn ffmpeg's `time=` into a fraction.
    pub duration_s: Option<f64>,
    pub timeout: Duration,
}

impl FfmpegRun<'_> {
    /// Runs to completion, or kills ffmpeg on cancellation or timeout.
    pub async fn run(self, cancel: &CancellationToken, progress: Progress) -> Result<(), FfmpegError> {
        let mut command = FfmpegCommand::new_with_path(self.binary);
        command.hide_banner().args(["-nostdin", "-y"]).args(&self.args);
        // ffmpeg-sidecar insists on piped stdio; `-nostdin` keeps ffmpeg off stdin, and
        // every output goes to a file, so nothing is written to stdout.
        let mut child = command.spawn().map_err(FfmpegError::Spawn)?;
        let stderr = child.take_stderr();
        let duration = self.duration_s.filter(|d| *d > 0.0);
        // The log is read on a thread of its own: the parser is blocking.
        let reader = tokio::task::spawn_blocking(move || {
            let mut reasons: VecDeque<String> = VecDeque::with_capacity(REASON_LINES);
            let mut refused = None;
            let Some(stderr) = stderr else {
                return (reasons, refused);
            };
            let mut parser = FfmpegLogParser::new(stderr);
            loop {
                match parser.parse_next_event() {
                    Ok(FfmpegEvent::Progress(p)) => {
                        if let (Some(total), Some(done)) = (duration, FfmpegTimeDuration::from_str(&p.time)) {
                            progress((done.as_seconds() / total) as f32);
                        }
                    }
                    Ok(FfmpegEvent::Log(LogLevel::Error | LogLevel::Fatal, line)) => {
                        if refused.is_none() {
                            refused = formats::refused_in([line.as_str()]);
                        }
                        if reasons.len() == REASON_LINES {
                            reasons.pop_front();
                        }
                        reasons.push_back(line.replace("[error] ", "").replace("[fatal] ", "").trim().to_owned());
                    }
                    Ok(FfmpegEvent::LogEOF) | Err(_) => return (reasons, refused),
                    Ok(_) => {}
                }
            }
        });
        let deadline = tokio::time::Instant::now() + self.timeout;
        let outcome = loop {
            match child.as_inner_mut().try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(err) => break Err(FfmpegError::Spawn(err)),
            }
            if cancel.is_cancelled() {
                break Err(FfmpegError::Cancelled);
            }
            if tokio::time::Instant::now() >= deadline {
                break Err(FfmpegError::TimedOut(self.timeout));
            }
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        };
        let status = match outcome {
            Ok(status) => status,
            Err(err) => {
                let _ = child.kill();
                let _ = tokio::task::spawn_blocking(move || child.wait()).await;
                let _ = reader.await;
                return Err(err);
            }
        };
        let (reasons, refused) = reader.await.unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        if let Some(format) = refused {
            return Err(FfmpegError::Refused(formats::refusal(&format)));
        }
        let reason = if reasons.is_empty() {
            format!("ffmpeg exited with {status}")
        } else {
            reasons.into_iter().collect::<Vec<_>>().join("; ")
        };
        Err(FfmpegError::Failed(reason))
    }
}

/// Whether `ffmpeg` can run the given arguments (a capability probe: encoder, device).
pub async fn succeeds(binary: &Path, args: &[&str]) -> bool {
    probe(binary, args).await.is_ok()
}

/// [`succeeds`], saying why not: ffmpeg's error lines (or how it ended).
pub async fn probe(binary: &Path, args: &[&str]) -> Result<(), String> {
    let mut command = tokio::process::Command::new(binary);
    command
        .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(20), command.output()).await {
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => {
            let said = String::from_utf8_lossy(&output.stderr);
            let said: Vec<&str> = said.lines().map(str::trim).filter(|l| !l.is_empty()).take(6).collect();
            Err(if said.is_empty() {
                format!("ffmpeg exited with {}", output.status)
            } else {
                said.join("; ")
            })
        }
        Ok(Err(err)) => Err(format!("cannot run {}: {err}", binary.display())),
        Err(_) => Err("no answer in 20 s".to_owned()),
    }
}
