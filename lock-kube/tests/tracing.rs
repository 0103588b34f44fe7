//! `nodelay_client` opens the same tracing spans, with the same fields and events, as
//! the client kube builds from the same config. Alone in its test binary, with a global
//! subscriber: a scoped one misses what other tests' threads do to callsites' interest.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, api::ListParams};
use lock_kube::nodelay_client;
use lock_tests::Kube;

async fn list_one(client: kube::Client) -> Result<(), kube::Error> {
    Api::<Lease>::default_namespaced(client)
        .list(&ListParams::default().limit(1))
        .await
        .map(drop)
}

#[test]
fn every_request_is_traced_in_the_span_kubes_client_opens() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let config = runtime.block_on(async { Kube::shared().await.config(false).await });
    let recorder = Recorder::default();
    let trace = recorder.lines.clone();
    tracing::subscriber::set_global_default(recorder).expect("the only subscriber");
    let clients = runtime.block_on(async {
        let kube = kube::Client::try_from(config.clone()).expect("kube builds a client");
        let ours = nodelay_client(config.clone()).expect("nodelay_client builds a client");
        [("kube's client", kube), ("nodelay_client", ours)]
    });
    let mut traces = Vec::new();
    for (name, client) in clients {
        trace.lock().expect("the trace").clear();
        runtime
            .block_on(list_one(client))
            .unwrap_or_else(|error| panic!("{name} lists: {error}"));
        let lines = trace.clone();
        // Without the body's "stream closed" event: whether it is reported before the
        // request's future ends depends on how the answer's body is read.
        let lines: Vec<String> = lines
            .lock()
            .expect("the trace")
            .iter()
            .filter(|line| *line != "event message=stream closed")
            .cloned()
            .collect();
        assert!(
            lines.iter().any(|line| line.starts_with("span HTTP ")),
            "{name} opens an HTTP span: {lines:#?}"
        );
        traces.push(lines);
    }
    assert_eq!(traces[0], traces[1], "the same spans, fields and events");
}

/// A tracing subscriber that writes what our request's spans and events say, in order:
/// `span <name> <field>=<value>...`, `record <field>=<value>`, `event <message>`.
#[derive(Default)]
struct Recorder {
    lines: Arc<Mutex<Vec<String>>>,
    next_id: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl Recorder {
    fn write(&self, line: String) {
        self.lines.lock().expect("the trace").push(line);
    }
}

impl tracing::Subscriber for Recorder {
    /// Asked again at every span and event: tests on other threads meanwhile hit the
    /// same callsites with no subscriber, and a cached answer would be theirs.
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        // Ours and kube's: not hyper's or rustls' own.
        metadata.target().starts_with("lock_kube") || metadata.target().starts_with("kube")
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = Fields::default();
        span.record(&mut fields);
        self.write(format!("span {}{}", span.metadata().name(), fields.0));
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::span::Id::from_u64(id + 1)
    }

    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        self.write(format!("record{}", fields.0));
    }

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.write(format!("event{}", fields.0));
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
