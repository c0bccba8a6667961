//! The registry of job handlers: one module per kind, each registered here.

mod account_link;
mod accounts;
mod clip;
mod email;
mod group_users;
mod import_users;
mod purge_deleted;
mod purge_jobs;
mod purge_logins;
mod purge_logs;
mod purge_users;
mod reap_workers;
mod scan;
mod scan_all;
mod send_email_draft;
mod share_proxy;
mod sleep;
mod snapshot_stats;
mod transcode;
mod transcode_long;
mod transcode_upload;
mod transcribe;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rushes_common::job::JobPayload;
use serde_json::Value;

pub use crate::context::JobContext;

/// How a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (a timeout, a busy resource, a network error).
    #[error("{0}")]
    Retryable(String),
    /// Will fail the same way again (corrupt input): not retried.
    #[error("{0}")]
    Permanent(String),
    /// The job saw its cancellation and stopped.
    #[error("cancelled")]
    Cancelled,
    /// This worker cannot run the job now (it lacks the Whisper model asked for, say);
    /// another worker may. The job goes back to the queue, the attempt not counted.
    #[error("{0}")]
    Unable(String),
}

/// A database error inside a handler: worth another attempt.
pub(crate) fn db_error(err: sqlx::Error) -> JobError {
    JobError::Retryable(format!("database: {err}"))
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, JobError>> + Send>>;
type Handler = Arc<dyn Fn(JobContext, Value) -> HandlerFuture + Send + Sync>;

/// Maps each kind's name to its handler.
#[derive(Clone)]
pub struct Registry {
    handlers: HashMap<&'static str, Handler>,
}

impl Registry {
    /// Every kind this build can run.
    pub fn builtin() -> Self {
        let mut registry = Self {
            handlers: HashMap::new(),
        };
        registry.register::<rushes_common::job::sleep::Sleep, _, _>(sleep::run);
        registry.register::<rushes_common::job::maintenance::PurgeJobs, _, _>(purge_jobs::run);
        registry.register::<rushes_common::job::maintenance::ReapWorkers, _, _>(reap_workers::run);
        registry.register::<rushes_common::job::maintenance::PurgeLogins, _, _>(purge_logins::run);
        registry.register::<rushes_common::job::maintenance::SnapshotStats, _, _>(snapshot_stats::run);
        registry.register::<rushes_common::job::maintenance::PurgeLogs, _, _>(purge_logs::run);
        registry.register::<rushes_common::job::media::Scan, _, _>(scan::run);
        registry.register::<rushes_common::job::media::ScanAll, _, _>(scan_all::run);
        registry.register::<rushes_common::job::media::Transcode, _, _>(transcode::run);
        registry.register::<rushes_common::job::media::TranscodeLong, _, _>(transcode_long::run);
        registry.register::<rushes_common::job::media::TranscodeUpload, _, _>(transcode_upload::run);
        registry.register::<rushes_common::job::media::ShareProxy, _, _>(share_proxy::run);
        registry.register::<rushes_common::job::transcription::Transcribe, _, _>(transcribe::run);
        registry.register::<rushes_common::job::email::Email, _, _>(email::run);
        registry.register::<rushes_common::job::accounts::ImportUsers, _, _>(import_users::run);
        registry.register::<rushes_common::job::accounts::GroupUsers, _, _>(group_users::run);
        registry.register::<rushes_common::job::accounts::PurgeUsers, _, _>(purge_users::run);
        registry.register::<rushes_common::job::maintenance::PurgeDeleted, _, _>(purge_deleted::run);
        registry.register::<rushes_common::job::email::SendEmailDraft, _, _>(send_email_draft::run);
        registry.register::<rushes_common::job::accounts::AccountLink, _, _>(account_link::run);
        registry
    }

    fn register<P, F, Fut>(&mut self, handler: F)
    where
        P: JobPayload,
        F: Fn(JobContext, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, JobError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |ctx: JobContext, payload: Value| {
            let handler = handler.clone();
            Box::pin(async move {
                let payload: P = serde_json::from_value(payload)
                    .map_err(|e| JobError::Permanent(format!("invalid payload for `{}`: {e}", P::KIND)))?;
                handler(ctx, payload).await
            }) as HandlerFuture
        });
        self.handlers.insert(P::KIND, erased);
    }

    /// The future running `kind` on `payload`, if this build knows the kind.
    pub(crate) fn start(&self, kind: &str, ctx: JobContext, payload: Value) -> Option<HandlerFuture> {
        self.handlers.get(kind).map(|h| h(ctx, payload))
    }

    pub fn knows(&self, kind: &str) -> bool {
        self.handlers.contains_key(kind)
    }

    /// The kinds this registry runs.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.handlers.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogued_kind_has_a_handler() {
        let registry = Registry::builtin();
        for kind in rushes_common::job::catalogue() {
            assert!(registry.knows(kind.name), "no handler for `{}`", kind.name);
        }
    }

    #[test]
    fn every_handler_runs_a_catalogued_kind() {
        let registry = Registry::builtin();
        for kind in registry.kinds() {
            assert!(
                rushes_common::job::spec(kind).is_some(),
                "`{kind}` has a handler but is not in the catalogue (common/src/job/catalogue.rs)"
            );
        }
        assert_eq!(registry.kinds().count(), rushes_common::job::catalogue().len());
    }
}
