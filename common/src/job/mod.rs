//! Jobs as every process sees them: states, the catalogue of kinds, the message
//! envelope, the `jobs` rows, and the store that writes them.

pub mod accounts;
pub mod audit;
mod catalogue;
pub mod email;
mod envelope;
pub mod maintenance;
pub mod media;
mod record;
pub mod redact;
pub mod schema;
pub mod sleep;
pub mod store;
pub mod transcription;

pub use catalogue::{
    Follows, JobPayload, KindSpec, Mirror, QueueFamily, Target, UnknownQueue, catalogue, housekeeping_kinds, spec,
};
pub use envelope::{ENVELOPE_VERSION, Envelope, EnvelopeError};
pub use record::{JOB_COLUMNS, JobRecord, JobState};

/// Priority as the API speaks it: 0 (lowest) to 100, default 20 as productions use.
pub const DEFAULT_PRIORITY: u8 = 20;
/// Highest API priority.
pub const MAX_PRIORITY: u8 = 100;
/// `x-max-priority` of every job queue: API priorities map onto 0..=10.
pub const AMQP_MAX_PRIORITY: u8 = 10;

/// Maps an API priority (0–100) onto an AMQP priority (0–10), rounding half up.
pub fn amqp_priority(priority: u8) -> u8 {
    (priority.min(MAX_PRIORITY) + 5) / 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_monotonically_onto_amqp() {
        assert_eq!(amqp_priority(0), 0);
        assert_eq!(amqp_priority(DEFAULT_PRIORITY), 2);
        assert_eq!(amqp_priority(90), 9);
        assert_eq!(amqp_priority(100), AMQP_MAX_PRIORITY);
        assert_eq!(amqp_priority(250), AMQP_MAX_PRIORITY);
        let mapped: Vec<u8> = (0..=100).map(amqp_priority).collect();
        assert!(mapped.windows(2).all(|w| w[0] <= w[1]));
    }
}
