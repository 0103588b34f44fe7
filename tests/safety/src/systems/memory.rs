//! The in-memory backend: faults by fault switches, and no server to restart.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use lock_core::{Faulty, MemoryBackend};

use crate::{
    nemesis::Nemesis,
    system::{Connection, Link, Route, Store, System},
};

/// One in-memory backend shared by every contender; "the server" is every contender's
/// fault switch at once.
#[derive(Default)]
pub struct MemorySystem {
    backend: MemoryBackend,
    links: Mutex<Vec<Faulty<MemoryBackend>>>,
}

impl MemorySystem {
    fn each_link(&self, f: impl Fn(&Faulty<MemoryBackend>)) {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .for_each(f);
    }
}

#[async_trait]
impl System for MemorySystem {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn supports(&self, nemesis: Nemesis) -> bool {
        !nemesis.of_topology()
            && !matches!(
                nemesis,
                Nemesis::ServerRestart | Nemesis::Latency | Nemesis::DataLoss
            )
    }

    async fn link(&self, _contender: usize) -> Link {
        let faulty = Faulty::new(self.backend.clone());
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(faulty.clone());
        Link::Memory(faulty)
    }

    async fn connect(&self, route: Route, _name: &str) -> Connection {
        let Route::Memory(faulty) = route else {
            panic!("the in-memory backend is reached through its fault switch");
        };
        (Arc::new(faulty), None)
    }

    async fn store(&self, _name: &str) -> Option<Box<dyn Store>> {
        None
    }

    async fn pause_server(&self) {
        self.each_link(|faulty| faulty.freeze(true));
    }

    async fn resume_server(&self) {
        self.each_link(Faulty::heal);
    }

    async fn restart_server(&self, _lose_data: bool) {
        panic!("the in-memory backend has no server to restart");
    }
}
