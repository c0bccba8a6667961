//! `sleep`: waits the asked number of seconds, reporting progress and honouring cancel.

use std::time::Duration;

use rushes_common::job::sleep::Sleep;
use serde_json::{Value, json};

use super::{JobContext, JobError};

/// Progress is reported at most this often.
const TICK: Duration = Duration::from_millis(100);

pub async fn run(ctx: JobContext, payload: Sleep) -> Result<Value, JobError> {
    if payload.panic {
        panic!("sleep job {} was asked to panic", ctx.job_id);
    }
    if u32::try_from(ctx.attempt).is_ok_and(|a| a <= payload.fail_attempts) {
        return Err(JobError::Retryable(format!("asked to fail attempt {}", ctx.attempt)));
    }
    if let Some(until) = payload.fail_until
        && chrono::Utc::now() < until
    {
        return Err(JobError::Retryable(format!("asked to fail until {until}")));
    }
    let total = Duration::from_secs_f64(payload.seconds);
    let started = tokio::time::Instant::now();
    loop {
        let elapsed = started.elapsed();
        if elapsed >= total {
            break;
        }
        ctx.set_progress(elapsed.as_secs_f32() / total.as_secs_f32());
        tokio::select! {
            _ = ctx.cancelled() => return Err(JobError::Cancelled),
            _ = tokio::time::sleep((total - elapsed).min(TICK)) => {}
        }
    }
    Ok(json!({ "slept_s": payload.seconds }))
}
