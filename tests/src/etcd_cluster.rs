//! A three-member etcd cluster on loopback whose peer traffic runs through a
//! [`PeerNetwork`], so any one member can be killed, paused, restarted or cut off from
//! its peers.

use std::{ffi::OsString, net::SocketAddr, path::PathBuf, time::Duration};

use crate::{
    peer_network::{PeerNetwork, PeerProxy},
    process::{Server, free_port, program},
};

/// The number of members.
pub const MEMBERS: usize = 3;

/// One member: its process, its client port (clients connect to it directly or through
/// proxies of their own) and the proxy its peers reach it through.
#[derive(Debug)]
struct Member {
    server: Server,
    client_port: u16,
    _peer_proxy: PeerProxy,
}

/// A three-member etcd cluster on 127.0.0.1, stopped on drop. Members keep their data
/// across [`kill`](EtcdCluster::kill) and [`restart`](EtcdCluster::restart).
///
/// ```no_run
/// use lock_tests::EtcdCluster;
///
/// # #[tokio::main] async fn main() {
/// let mut cluster = EtcdCluster::start().await;
/// let leader = cluster.leader().await;
/// cluster.isolate(leader);        // a minority of one: it can commit nothing
/// cluster.heal();
/// cluster.kill(leader);           // the other two elect a new leader
/// cluster.restart(leader).await;  // back, on its data
/// # }
/// ```
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    network: PeerNetwork,
}

impl EtcdCluster {
    /// Starts Debian's etcd as three members and waits until all of them answer.
    pub async fn start() -> Self {
        Self::start_program(program("etcd", "apt-get install etcd-server")).await
    }

    /// Starts the etcd binary at `etcd` as three members.
    pub async fn start_program(etcd: PathBuf) -> Self {
        let network = PeerNetwork::new(MEMBERS);
        let token = format!("lock-tests-{}", free_port());
        let mut planned = Vec::new();
        for member in 0..MEMBERS {
            let (client_port, peer_port) = (free_port(), free_port());
            let proxy = network
                .proxy(member, SocketAddr::from(([127, 0, 0, 1], peer_port)))
                .await;
            planned.push((format!("{token}-{member}"), client_port, peer_port, proxy));
        }
        let initial_cluster = planned
            .iter()
            .map(|(name, _, _, proxy)| format!("{name}=http://{}", proxy.address()))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (name, client_port, peer_port, proxy) in planned {
            let dir = Server::make_dir("etcd-member");
            let client = format!("http://127.0.0.1:{client_port}");
            let args = [
                format!("--name={name}"),
                format!("--data-dir={}", dir.join("data").display()),
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://{}", proxy.address()),
                format!("--initial-cluster={initial_cluster}"),
                format!("--initial-cluster-token={token}"),
                "--initial-cluster-state=new".to_owned(),
                // A member that was cut off does not depose the leader when it returns
                // (the default from etcd 3.5 on).
                "--pre-vote".to_owned(),
                "--listen-metrics-urls=".to_owned(),
                "--logger=zap".to_owned(),
                "--log-level=warn".to_owned(),
            ];
            let server = Server::spawn(
                &name,
                etcd.clone(),
                args.into_iter().map(OsString::from).collect(),
                dir,
            );
            members.push(Member {
                server,
                client_port,
                _peer_proxy: proxy,
            });
        }
        let cluster = Self { members, network };
        for member in 0..MEMBERS {
            cluster
                .network
                .set_pid(member, cluster.members[member].server.pid());
        }
        for member in 0..MEMBERS {
            cluster.wait_until_ready(member).await;
        }
        cluster
    }

    async fn wait_until_ready(&self, member: usize) {
        let url = self.url(member);
        let server = &self.members[member].server;
        server
            .wait_until_ready(Duration::from_secs(30), || async {
                // Ready once it has a leader and serves a linearizable read.
                let Ok(mut client) = etcd_client::Client::connect([url.as_str()], None).await
                else {
                    return false;
                };
                client.get("lock-tests/ready", None).await.is_ok()
            })
            .await;
    }

    /// Member `member`'s client URL, `http://127.0.0.1:PORT`.
    pub fn url(&self, member: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[member].client_port)
    }

    /// Every member's client port, in member order.
    pub fn client_ports(&self) -> Vec<u16> {
        self.members.iter().map(|m| m.client_port).collect()
    }

    /// Every member's client URL, in member order.
    pub fn urls(&self) -> Vec<String> {
        (0..MEMBERS).map(|member| self.url(member)).collect()
    }

    /// A client of the whole cluster (every member's URL).
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect(self.urls(), None)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to the etcd cluster: {error}"))
    }

    /// The member that leads now, as the members that answer say; waits up to 10 s for
    /// one to be elected.
    pub async fn leader(&self) -> usize {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            for member in 0..MEMBERS {
                if !self.members[member].server.is_alive() {
                    continue;
                }
                let Ok(mut client) = etcd_client::Client::connect([self.url(member)], None).await
                else {
                    continue;
                };
                let Ok(status) =
                    tokio::time::timeout(Duration::from_secs(1), client.status()).await
                else {
                    continue;
                };
                if let Ok(status) = status
                    && let Some(header) = status.header()
                    && status.leader() == header.member_id()
                {
                    return member;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no etcd member led for 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills member `member` (SIGKILL), keeping its data.
    pub fn kill(&mut self, member: usize) {
        self.members[member].server.kill();
        self.network.set_pid(member, None);
    }

    /// Kills member `member` if it runs and starts it again on its data; returns once it
    /// serves a linearizable read (it has rejoined and has a leader).
    pub async fn restart(&mut self, member: usize) {
        self.members[member].server.restart();
        self.network
            .set_pid(member, self.members[member].server.pid());
        self.wait_until_ready(member).await;
    }

    /// Freezes member `member` (SIGSTOP).
    pub fn pause(&self, member: usize) {
        self.members[member].server.pause();
    }

    /// Thaws member `member` (SIGCONT).
    pub fn resume(&self, member: usize) {
        self.members[member].server.resume();
    }

    /// Cuts member `member` off from its peers, both ways; clients still reach it.
    pub fn isolate(&self, member: usize) {
        self.network.isolate(member);
    }

    /// Reconnects every member to its peers.
    pub fn heal(&self) {
        self.network.heal();
    }

    /// Member `member`'s process.
    pub fn server(&self, member: usize) -> &Server {
        &self.members[member].server
    }
}
