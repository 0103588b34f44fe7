//! One pub/sub connection per backend, shared by every waiter.
//!
//! Opening a connection per waiter would cost a TCP connect and a SUBSCRIBE each time a
//! contended acquire starts waiting. Instead the backend keeps one subscriber
//! connection, subscribes each lock's channel once, and fans its messages out to the
//! waiters of that lock. When the connection fails, every waiter's stream ends and
//! lock-core subscribes again (on a new connection).

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

type Channels = Arc<Mutex<HashMap<String, broadcast::Sender<()>>>>;

#[derive(Default)]
pub(crate) struct Subscriber {
    connection: tokio::sync::Mutex<Option<Connection>>,
}

struct Connection {
    sink: PubSubSink,
    channels: Channels,
    reader: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Subscriber {
    /// Messages published on `channel`, one `()` each, until the connection fails.
    pub async fn subscribe(
        &self,
        client: &Client,
        channel: &str,
        name: &str,
    ) -> lock_core::Result<broadcast::Receiver<()>> {
        let mut connection = self.connection.lock().await;
        if connection.as_ref().is_none_or(|c| c.reader.is_finished()) {
            let pubsub = client
                .get_async_pubsub()
                .await
                .map_err(|e| lock_error(e, name, "subscribe to the lock's channel"))?;
            let (sink, stream) = pubsub.split();
            let channels = Channels::default();
            let reader = tokio::spawn(read(stream, channels.clone()));
            *connection = Some(Connection {
                sink,
                channels,
                reader,
            });
        }
        let Some(connection) = connection.as_mut() else {
            unreachable!("connected above");
        };
        // Forget the channels nobody waits on any more.
        let idle: Vec<String> = {
            let mut channels = connection
                .channels
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let idle = channels
                .iter()
                .filter(|(subscribed, sender)| {
                    sender.receiver_count() == 0 && subscribed.as_str() != channel
                })
                .map(|(subscribed, _)| subscribed.clone())
                .collect();
            channels
                .retain(|subscribed, sender| sender.receiver_count() > 0 || subscribed == channel);
            idle
        };
        if !idle.is_empty() {
            let _ = connection.sink.unsubscribe(idle).await;
        }
        let existing = {
            let channels = connection
                .channels
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            channels.get(channel).map(broadcast::Sender::subscribe)
        };
        if let Some(receiver) = existing {
            return Ok(receiver);
        }
        // Known only once Redis confirmed it: an entry made before, by a subscribe whose
        // future was then dropped, would be reused by later waiters that never hear a
        // message. A message published before the entry exists is not missed either:
        // every waiter looks at the lock again after subscribing.
        connection
            .sink
            .subscribe(channel)
            .await
            .map_err(|error| lock_error(error, name, "subscribe to the lock's channel"))?;
        let mut channels = connection
            .channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let receiver = channels
            .entry(channel.to_owned())
            .or_insert_with(|| broadcast::Sender::new(16))
            .subscribe();
        Ok(receiver)
    }
}

/// Passes each message to the waiters of its channel; when the connection ends, drops
/// every sender so that all waiters' streams end.
async fn read(mut stream: PubSubStream, channels: Channels) {
    while let Some(message) = stream.next().await {
        let channels = channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = channels.get(message.get_channel_name()) {
            let _ = sender.send(());
        }
    }
    channels
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
}
