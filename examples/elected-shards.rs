//! Elected shards: three replicas split twelve shards; one is killed and its shards move
//! after its TTL; it comes back and the shares even out again.
//!
//! Run: `cargo run --example elected-shards` (in-memory backend).

use std::{collections::BTreeSet, time::Duration};

use lock_core::{ElectedShards, Faulty, MemoryBackend, Timing};
use tokio::{task::JoinHandle, time::sleep};

const TTL: Duration = Duration::from_secs(2);
const SHARDS: u32 = 12;

struct Replica {
    name: String,
    connection: Faulty<MemoryBackend>,
    shards: ElectedShards,
    running: JoinHandle<lock_core::Result<()>>,
}

fn start(server: &MemoryBackend, name: &str) -> Replica {
    let connection = Faulty::new(server.clone());
    let shards = ElectedShards::builder(connection.clone(), "demo-shards", name, SHARDS)
        .timing(Timing::new(TTL))
        .max_members(8)
        .drain(Duration::from_millis(100))
        .build()
        .expect("valid shards");
    let running = {
        let shards = shards.clone();
        tokio::spawn(async move { shards.run().await })
    };
    Replica {
        name: name.to_owned(),
        connection,
        shards,
        running,
    }
}

fn show(moment: &str, replicas: &[&Replica]) {
    println!("--- {moment}");
    for replica in replicas {
        let owned: BTreeSet<u32> = (0..SHARDS)
            .filter(|s| replica.shards.owns_shard(*s))
            .collect();
        println!(
            "{:<10} owns {:>2} shards: {owned:?}",
            replica.name,
            owned.len()
        );
    }
    let key = "default/my-object";
    let owner = replicas
        .iter()
        .find(|r| r.shards.owns(key))
        .map_or("nobody", |r| r.name.as_str());
    println!(
        "{key:?} is on shard {} and processed by {owner}",
        replicas[0].shards.shard_of(key)
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = MemoryBackend::new();
    let (a, b, c) = (
        start(&server, "replica-a"),
        start(&server, "replica-b"),
        start(&server, "replica-c"),
    );
    sleep(Duration::from_secs(1)).await;
    show("three replicas", &[&a, &b, &c]);

    b.connection.partition(true); // killed: no release, its locks expire
    println!("--- replica-b is killed");
    sleep(TTL + Duration::from_secs(1)).await;
    show("replica-b's shards moved after its TTL", &[&a, &c]);
    b.shards.shutdown();
    b.running.abort();

    let b = start(&server, "replica-b");
    sleep(Duration::from_secs(1)).await;
    show("replica-b is back", &[&a, &b, &c]);

    for replica in [&a, &b, &c] {
        replica.shards.shutdown();
    }
    for replica in [a, b, c] {
        replica.running.await??;
    }
    Ok(())
}
