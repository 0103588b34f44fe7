//! The test harness: real servers on loopback, and the controls that break them.
//!
//! Every server starts on 127.0.0.1, on free ports, in a temporary folder, and stops
//! when dropped, also when the test panics. A server shared by a whole test binary
//! ([`Kube::shared`]) stops when the binary ends, however it ends. A missing server
//! program fails the test with a message naming what to install: run
//! `scripts/provision` (the README's test command does).
//!
//! ```no_run
//! use lock_tests::{Proxy, Redis, Served};
//!
//! # #[tokio::main] async fn main() {
//! let mut redis = Redis::start().await;           // redis-server on a free port
//! let proxy = Proxy::to_port(redis.port()).await; // clients connect through it
//! proxy.blackhole();                              // requests now hang
//! proxy.heal();
//! redis.server().pause();                         // SIGSTOP
//! redis.server().resume();                        // SIGCONT
//! redis.kill();                                   // SIGKILL, keeping its files
//! redis.restart().await;                          // the same server again, once it answers
//! # }
//! ```
//!
//! | server | from | type |
//! |---|---|---|
//! | etcd 3.4 | Debian's `etcd-server` | [`Etcd`] |
//! | Redis 7.0 | Debian's `redis-server` | [`Redis`] |
//! | kube-apiserver 1.20 (default) or 1.36 (`LOCK_TEST_KUBE_VERSION=1.36`) with its own etcd | 1.20: Debian's `kubernetes` source package; 1.36: Go modules (`tests/go`); both built by `scripts/provision`; or `KUBEBUILDER_ASSETS`; or a cluster named by `LOCK_TEST_KUBECONFIG` | [`Kube`], [`KubeVersion`] |

pub mod bench;
mod certificates;
mod client_go;
mod connect_proxy;
mod etcd;
mod etcd_cluster;
mod held_write;
mod hostile;
mod kube;
mod kube_ha;
mod peer_network;
mod process;
mod proxy;
mod redis;
mod redis_sentinel;
mod wait;
mod widgets;

pub use certificates::Certificates;
pub use client_go::{GoContender, Term};
pub use connect_proxy::{ConnectProxy, Tunnel};
pub use etcd::{Etcd, Secure, put_foreign};
pub use etcd_cluster::{EtcdCluster, MEMBERS};
pub use held_write::HeldWrite;
pub use hostile::{Hostile, reported_and_not_taken};
pub use kube::{APISERVER_VERSION, KUBECONFIG_VAR, Kube, KubeVersion, VERSION_VAR};
pub use kube_ha::{APISERVERS, KubeHa};
pub use peer_network::{PeerNetwork, PeerProxy};
pub use process::{Served, Server, free_port, program};
pub use proxy::Proxy;
pub use redis::{Persistence, Redis, connect_redis};
pub use redis_sentinel::{RedisSentinel, SERVICE};
pub use wait::{eventually, waited};
pub use widgets::{WIDGET_GROUP, Widget, widget_resource};
