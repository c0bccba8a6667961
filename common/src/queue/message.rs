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
            routing_key: topology.routing_key(&job.queue, Some(job_priority(job))),
            body: job.envelope().to_bytes(),
            properties: job_properties(job),
        }
    }

    /// The message that brings `job` back to its queue after `delay_s` seconds
    /// (one of [`super::topology::DELAY_LEVELS_S`]).
    pub fn delayed(topology: &Topology, job: &JobRecord, delay_s: u64) -> Self {
        Self {
            exchange: topology.delay(delay_s),
            routing_key: topology.routing_key(&job.queue, Some(job_priority(job))),
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
            routing_key: topology.routing_key(family.as_str(), priority),
            body,
            properties,
        }
    }

    /// Raw bytes to a family's queue: for tests and tools that inject foreign messages.
    pub fn raw(topology: &Topology, family: crate::job::QueueFamily, body: Vec<u8>) -> Self {
        Self {
            exchange: topology.jobs_exchange(),
            routing_key: topology.routing_key(family.as_str(), None),
            body,
            properties: BasicProperties::default().with_delivery_mode(2),
        }
    }
}

/// The AMQP priority (0–10) of a job's messages.
fn job_priority(job: &JobRecord) -> u8 {
    amqp_priority(u8::try_from(job.priority).unwrap_or(0))
}

fn job_properties(job: &JobRecord) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(KIND_HEADER.into(), long_string(&job.kind));
    BasicProperties::default()
        .with_message_id(job.id.to_string().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_priority(job_priority(job))
        .with_headers(headers)
}

/// An AMQP long-string value (headers, queue arguments).
pub(crate) fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.as_bytes().to_vec().into())
}

/// Longest header value kept from a foreign message, in characters.
const HEADER_CHARS: usize = 1000;
/// Most entries kept from one header table or array (RabbitMQ's `x-death` holds one
/// per queue a message died in).
const HEADER_ENTRIES: usize = 100;
/// Deepest nesting of tables and arrays kept; deeper values become `"…"`.
const HEADER_DEPTH: usize = 8;

/// Headers of a delivery as readable JSON — tables as objects, arrays as arrays,
/// timestamps as RFC 3339 instants, numbers as numbers, byte arrays as text (lossy
/// UTF-8) — storable whatever a foreign producer put in them: no NUL, bounded length,
/// entries and depth.
pub(crate) fn headers_json(properties: &BasicProperties) -> serde_json::Value {
    properties.headers().as_ref().map_or_else(
        || serde_json::Value::Object(serde_json::Map::new()),
        |h| table_json(h, 0),
    )
}

fn table_json(table: &FieldTable, depth: usize) -> serde_json::Value {
    let map = table
        .inner()
        .iter()
        .take(HEADER_ENTRIES)
        .map(|(key, value)| (printable(key.as_str(), HEADER_CHARS), value_json(value, depth + 1)))
        .collect();
    serde_json::Value::Object(map)
}

fn value_json(value: &AMQPValue, depth: usize) -> serde_json::Value {
    use serde_json::Value;
    let text = |s: &str| Value::String(printable(s, HEADER_CHARS));
    if depth > HEADER_DEPTH {
        return text("…");
    }
    match value {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(i) => Value::from(*i),
        AMQPValue::ShortShortUInt(i) => Value::from(*i),
        AMQPValue::ShortInt(i) => Value::from(*i),
        AMQPValue::ShortUInt(i) => Value::from(*i),
        AMQPValue::LongInt(i) => Value::from(*i),
        AMQPValue::LongUInt(i) => Value::from(*i),
        AMQPValue::LongLongInt(i) => Value::from(*i),
        // Not finite (NaN, ∞): JSON has no number for it.
        AMQPValue::Float(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        AMQPValue::Double(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        AMQPValue::DecimalValue(d) => {
            let scaled = f64::from(d.value) / 10f64.powi(i32::from(d.scale));
            serde_json::Number::from_f64(scaled).map_or(Value::Null, Value::Number)
        }
        AMQPValue::ShortString(s) => text(s.as_str()),
        AMQPValue::LongString(s) => text(&String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::ByteArray(b) => text(&String::from_utf8_lossy(b.as_slice())),
        AMQPValue::FieldArray(items) => Value::Array(
            items
                .as_slice()
                .iter()
                .take(HEADER_ENTRIES)
                .map(|item| value_json(item, depth + 1))
                .collect(),
        ),
        AMQPValue::FieldTable(table) => table_json(table, depth),
        // Seconds since the epoch (AMQP 0-9-1); out of range, the number itself.
        AMQPValue::Timestamp(seconds) => i64::try_from(*seconds)
            .ok()
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .map_or_else(|| Value::from(*seconds), |at| Value::String(at.to_rfc3339())),
        AMQPValue::Void => Value::Null,
    }
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

    #[test]
    fn rabbitmq_death_records_become_readable_json() {
        use lapin::types::FieldArray;
        // As RabbitMQ writes `x-death` when a message dead-letters out of a delay queue.
        let mut death = FieldTable::default();
        death.insert("count".into(), AMQPValue::LongLongInt(2));
        death.insert("reason".into(), long_string("expired"));
        death.insert("queue".into(), long_string("rushes.retry.5s"));
        death.insert("time".into(), AMQPValue::Timestamp(1_764_662_400));
        death.insert(
            "routing-keys".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![long_string("maintenance")])),
        );
        death.insert("original-expiration".into(), AMQPValue::Void);
        death.insert("ratio".into(), AMQPValue::Double(f64::NAN));
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        );
        headers.insert("x-first-death-reason".into(), AMQPValue::ShortString("expired".into()));
        headers.insert("flag".into(), AMQPValue::ShortShortUInt(7));
        headers.insert(
            "price".into(),
            AMQPValue::DecimalValue(lapin::types::DecimalValue { scale: 2, value: 1250 }),
        );
        let json = headers_json(&BasicProperties::default().with_headers(headers));
        assert_eq!(
            json,
            serde_json::json!({
                "x-death": [{
                    "count": 2,
                    "reason": "expired",
                    "queue": "rushes.retry.5s",
                    "time": "2025-12-02T08:00:00+00:00",
                    "routing-keys": ["maintenance"],
                    "original-expiration": null,
                    "ratio": null,
                }],
                "x-first-death-reason": "expired",
                "flag": 7,
                "price": 12.5,
            })
        );
    }

    #[test]
    fn deep_or_long_headers_are_bounded() {
        let mut value = long_string("bottom");
        for _ in 0..20 {
            let mut table = FieldTable::default();
            table.insert("in".into(), value);
            value = AMQPValue::FieldTable(table);
        }
        let mut headers = FieldTable::default();
        headers.insert("deep".into(), value);
        let items: Vec<AMQPValue> = (0..500).map(AMQPValue::LongInt).collect();
        headers.insert("long".into(), AMQPValue::FieldArray(items.into()));
        let json = headers_json(&BasicProperties::default().with_headers(headers));
        assert_eq!(json["long"].as_array().map(Vec::len), Some(HEADER_ENTRIES));
        let mut node = &json["deep"];
        let mut depth = 1;
        while let Some(inner) = node.get("in") {
            node = inner;
            depth += 1;
        }
        assert_eq!(node, "…");
        assert!(depth <= HEADER_DEPTH + 1, "{depth}");
    }
}
