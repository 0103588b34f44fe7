//! One pub/sub connection per backend, shared by every waiter.
//!
//! Opening a connection per waiter would cost a TCP connect and a SUBSCRIBE each time a
//! contended acquire starts waiting. Instead the backend keeps one subscriber
//! connection, subscribes each lock's channel (or a group's pattern) once, and fans its
//! messages out to the waiters of that topic. When the connection fails, every waiter's
//! stream ends and lock-core subscribes again (on a new connection).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use futures::StreamExt;
use redis::{
    Client,
    aio::{PubSubSink, PubSubStream},
};
use tokio::{sync::broadcast, task::JoinHandle};

use crate::error::lock_error;

/// What is subscribed: one channel, or every channel matching a pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Topic {
    Channel(String),
    Pattern(String),
}

/// Each message's payload (`taken`, `released`), to the waiters of its topic.
type Topics = Arc<Mutex<HashMap<Topic, broadcast::Sender<Arc<str>>>>>;

#[derive(Default)]
pub(crate) struct Subscriber {
    connection: tokio::sync::Mutex<Option<Connection>>,
}

struct Connection {
    sink: PubSubSink,
    topics: Topics,
    reader: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Subscriber {
    /// The payload of each message published on `topic`, until the connection fails.
    pub async fn subscribe(
        &self,
        client: &Client,
        topic: Topic,
        name: &str,
    ) -> lock_core::Result<broadcast::Receiver<Arc<str>>> {
        let failed = |error| lock_error(error, name, "subscribe to the lock's channel");
        let mut connection = self.connection.lock().await;
        if connection.as_ref().is_none_or(|c| c.reader.is_finished()) {
            let pubsub = client.get_async_pubsub().await.map_err(failed)?;
            let (sink, stream) = pubsub.split();
            let topics = Topics::default();
            let reader = tokio::spawn(read(stream, topics.clone()));
            *connection = Some(Connection {
                sink,
                topics,
                reader,
            });
        }
        let Some(connection) = connection.as_mut() else {
            unreachable!("connected above");
        };
        // Forget the topics nobody waits on any more.
        let idle: Vec<Topic> = {
            let mut topics = connection
                .topics
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let idle = topics
                .iter()
                .filter(|(subscribed, sender)| {
                    sender.receiver_count() == 0 && **subscribed != topic
                })
                .map(|(subscribed, _)| subscribed.clone())
                .collect();
            topics.retain(|subscribed, sender| sender.receiver_count() > 0 || *subscribed == topic);
            idle
        };
        for idle in idle {
            let _ = match idle {
                Topic::Channel(channel) => connection.sink.unsubscribe(channel).await,
                Topic::Pattern(pattern) => connection.sink.punsubscribe(pattern).await,
            };
        }
        let existing = {
            let topics = connection
                .topics
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            topics.get(&topic).map(broadcast::Sender::subscribe)
        };
        if let Some(receiver) = existing {
            return Ok(receiver);
        }
        // Known only once Redis confirmed it: an entry made before, by a subscribe whose
        // future was then dropped, would be reused by later waiters that never hear a
        // message. A message published before the entry exists is not missed either:
        // every waiter looks at the lock again after subscribing.
        match &topic {
            Topic::Channel(channel) => connection.sink.subscribe(channel).await,
            Topic::Pattern(pattern) => connection.sink.psubscribe(pattern).await,
        }
        .map_err(failed)?;
        let mut topics = connection
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let receiver = topics
            .entry(topic)
            .or_insert_with(|| broadcast::Sender::new(16))
            .subscribe();
        Ok(receiver)
    }
}

/// Passes each message to the waiters of its topic; when the connection ends, drops
/// every sender so that all waiters' streams end.
async fn read(mut stream: PubSubStream, topics: Topics) {
    while let Some(message) = stream.next().await {
        let topic = match message.get_pattern::<String>() {
            Ok(pattern) if message.from_pattern() => Topic::Pattern(pattern),
            _ => Topic::Channel(message.get_channel_name().to_owned()),
        };
        let payload: Arc<str> = String::from_utf8_lossy(message.get_payload_bytes()).into();
        let topics = topics.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = topics.get(&topic) {
            let _ = sender.send(payload);
        }
    }
    topics
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
}
