//! `sleep`: waits the asked number of seconds (or keeps a core busy that long),
//! reporting progress and honouring cancel.

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
    if payload.busy {
        return spin(ctx, total).await;
    }
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

/// Keeps one core busy for `total` of processor time — this thread's own, so a job on a
/// crowded machine takes longer, as real computation does — on the blocking pool (the
/// runtime's threads stay free), checking for a cancel every tick.
async fn spin(job: JobContext, total: Duration) -> Result<Value, JobError> {
    let spun = tokio::task::spawn_blocking(move || {
        let clock = ThreadClock::start();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        loop {
            let used = clock.used();
            if used >= total {
                return Ok(());
            }
            if job.running.cancel.is_cancelled() {
                return Err(JobError::Cancelled);
            }
            job.set_progress(used.as_secs_f32() / total.as_secs_f32());
            let tick = std::time::Instant::now();
            while tick.elapsed() < SPIN_TICK {
                for _ in 0..1000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                }
                std::hint::black_box(x);
            }
        }
    })
    .await;
    match spun {
        Ok(Ok(())) => Ok(json!({ "busy_s": total.as_secs_f64() })),
        Ok(Err(err)) => Err(err),
        Err(err) => Err(JobError::Retryable(format!("busy loop failed: {err}"))),
    }
}

/// How long the busy loop runs between looks at its clock and at a cancel.
const SPIN_TICK: Duration = Duration::from_millis(2);

/// Processor time the current thread has used since [`ThreadClock::start`]: Linux's
/// `/proc/thread-self/schedstat` (nanoseconds on a CPU); elsewhere, wall time.
struct ThreadClock {
    cpu_ns: Option<u64>,
    wall: std::time::Instant,
}

impl ThreadClock {
    fn start() -> Self {
        Self {
            cpu_ns: Self::cpu_ns(),
            wall: std::time::Instant::now(),
        }
    }

    fn used(&self) -> Duration {
        match (self.cpu_ns, Self::cpu_ns()) {
            (Some(start), Some(now)) => Duration::from_nanos(now.saturating_sub(start)),
            _ => self.wall.elapsed(),
        }
    }

    fn cpu_ns() -> Option<u64> {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_clock_counts_processor_time_not_sleep() {
        let clock = ThreadClock::start();
        std::thread::sleep(Duration::from_millis(50));
        let asleep = clock.used();
        // Spinning counts: 20 ms of it is reached (within a wall-clock bound that a
        // crowded machine still meets).
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        let mut x = 1u64;
        while clock.used() < asleep + Duration::from_millis(20) && std::time::Instant::now() < give_up {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
        }
        assert!(asleep < Duration::from_millis(20), "sleeping used {asleep:?}");
        assert!(
            clock.used() >= asleep + Duration::from_millis(20),
            "10 s of spinning never counted 20 ms"
        );
    }
}
