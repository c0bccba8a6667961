//! Everything that talks to RabbitMQ: the connection pool, the topology, confirmed
//! publishing and consuming. Nothing outside this module uses lapin directly.

mod broker;
mod consume;
mod message;
mod publish;
pub mod server;
mod settle;
pub mod topology;

pub use broker::{Broker, BrokerError, QueueStats};
pub use consume::{Backoff, Incoming, Subscription};
pub use message::{Outgoing, REASON_HEADER, SOURCE_QUEUE_HEADER, printable};
pub use publish::{PublishError, Publisher};
pub use settle::{HOLD, SettleFrames, Settler};
pub use topology::{QueueType, Topology};
