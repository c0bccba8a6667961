//! Messages as we publish them: jobs, delayed retries and parked dead letters.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

use super::topology::Topology;
use crate::job::{JobRecord, amqp_priority};

/// Header naming why a message was parked.
pub const REASON_HEADER: &str = "x-rushes-reason";
/// Header naming the queue a parked message came from.
pub const SOURCE_QUEUE_HEADER: &str = "x-rushes-source-queue";
const KIND_HEADER: &str = "x-rushes-kind";

/// A message ready for [`super::Publisher::publish`].
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    pub(crate) body: Vec<u8>,
    pub(crate) properties: BasicProperties,
}

impl Outgoing {
    /// The message that hands `job` to the workers of its queue.
    pub fn job(topology: &Topology, job: &JobRecord) -> Self {
        Self {
            exchange: topology.jobs_exchange(),
            routing_key: job.queue.clone(),
            body: job.envelope().to_bytes(),
            properties: job_properties(job),
        }
    }

    /// The message that brings `job` back to its queue after `delay_s` seconds
    /// (one of [`super::topology::DELAY_LEVELS_S`]).
    pub fn delayed(topology: &Topology, job: &JobRecord, delay_s: u64) -> Self {
        Self {
            exchange: topology.delay(delay_s),
            routing_key: job.queue.clone(),
            body: job.envelope().to_bytes(),
            properties: job_properties(job),
        }
    }

    /// A message parked in the dead-letter queue, with the reason in its headers.
    pub fn dead_letter(
        topology: &Topology,
        source_queue: &str,
        body: Vec<u8>,
        message_id: Option<&str>,
        reason: &str,
    ) -> Self {
        let mut headers = FieldTable::default();
        headers.insert(REASON_HEADER.into(), long_string(reason));
        headers.insert(SOURCE_QUEUE_HEADER.into(), long_string(source_queue));
        let mut properties = BasicProperties::default().with_delivery_mode(2).with_headers(headers);
        if let Some(id) = message_id {
            properties = properties.with_message_id(id.into());
        }
        Self {
            exchange: topology.dead_letters(),
            routing_key: String::new(),
            body,
            properties,
        }
    }

    /// A delivered message sent back to its family's queue after `delay_s` seconds
    /// (one of [`super::topology::DELAY_LEVELS_S`]), body and identity unchanged.
    pub fn delayed_copy(
        topology: &Topology,
        family: crate::job::QueueFamily,
        body: Vec<u8>,
        message_id: Option<&str>,
        priority: Option<u8>,
        delay_s: u64,
    ) -> Self {
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        if let Some(id) = message_id {
            properties = properties.with_message_id(id.into());
        }
        if let Some(p) = priority {
            properties = properties.with_priority(p);
        }
        Self {
            exchange: topology.delay(delay_s),
            routing_key: family.as_str().to_owned(),
            body,
            properties,
        }
    }

    /// Raw bytes to a family's queue: for tests and tools that inject foreign messages.
    pub fn raw(topology: &Topology, family: crate::job::QueueFamily, body: Vec<u8>) -> Self {
        Self {
            exchange: topology.jobs_exchange(),
            routing_key: family.as_str().to_owned(),
            body,
            properties: BasicProperties::default().with_delivery_mode(2),
        }
    }
}

fn job_properties(job: &JobRecord) -> BasicProperties {
    let priority = u8::try_from(job.priority).unwrap_or(0);
    let mut headers = FieldTable::default();
    headers.insert(KIND_HEADER.into(), long_string(&job.kind));
    BasicProperties::default()
        .with_message_id(job.id.to_string().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_priority(amqp_priority(priority))
        .with_headers(headers)
}

/// An AMQP long-string value (headers, queue arguments).
pub(crate) fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.as_bytes().to_vec().into())
}

/// Longest header value kept from a foreign message, in characters.
const HEADER_CHARS: usize = 1000;

/// Headers of a delivery as JSON (strings and numbers; other values as their debug
/// form), storable whatever a foreign producer put in them: no NUL, bounded length.
pub(crate) fn headers_json(properties: &BasicProperties) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    if let Some(headers) = properties.headers() {
        for (key, value) in headers.inner() {
            let text = |s: &str| serde_json::Value::String(printable(s, HEADER_CHARS));
            let json = match value {
                AMQPValue::LongString(s) => text(&String::from_utf8_lossy(s.as_bytes())),
                AMQPValue::ShortString(s) => text(s.as_str()),
                AMQPValue::Boolean(b) => serde_json::Value::Bool(*b),
                AMQPValue::LongLongInt(i) => serde_json::Value::from(*i),
                AMQPValue::LongInt(i) => serde_json::Value::from(*i),
                AMQPValue::LongUInt(i) => serde_json::Value::from(*i),
                other => text(&format!("{other:?}")),
            };
            map.insert(printable(key.as_str(), HEADER_CHARS), json);
        }
    }
    serde_json::Value::Object(map)
}

/// `text` as PostgreSQL can store it and a log can show it: control characters (NUL
/// above all, which `text` and `jsonb` refuse) become U+FFFD, and anything past
/// `max_chars` characters becomes `…`. For text that comes from a message.
pub fn printable(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max_chars)
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect();
    if text.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_text_becomes_storable() {
        assert_eq!(printable("sleep", 10), "sleep");
        assert_eq!(printable("a\0b\u{1b}c\nd", 10), "a\u{fffd}b\u{fffd}c\nd");
        assert_eq!(printable("ééééé", 3), "ééé…");
        let mut headers = FieldTable::default();
        headers.insert("x-\0key".into(), long_string("nul\0inside"));
        let json = headers_json(&BasicProperties::default().with_headers(headers));
        assert_eq!(json, serde_json::json!({ "x-\u{fffd}key": "nul\u{fffd}inside" }));
    }
}
