//! etcd from Debian's `etcd-server`, on loopback.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use crate::process::{Server, free_port, program};

/// A single-member etcd cluster on 127.0.0.1, stopped on drop.
///
/// Its data lives in its own folder, so [`kill`](Etcd::kill) and
/// [`restart`](Etcd::restart) keep every key and revision.
#[derive(Debug)]
pub struct Etcd {
    server: Server,
    client_port: u16,
}

/// The member name of the etcd listening on `client_port`, to tell it from any other.
fn member_name(client_port: u16) -> String {
    format!("lock-tests-{client_port}")
}

impl Etcd {
    /// One etcd for the whole test binary, started by the first test that asks. Clients
    /// are made per call, so each test's runtime owns its connections.
    pub async fn shared() -> &'static Etcd {
        static SHARED: tokio::sync::OnceCell<Etcd> = tokio::sync::OnceCell::const_new();
        SHARED.get_or_init(Self::start).await
    }

    /// Starts Debian's etcd and waits until it answers.
    pub async fn start() -> Self {
        Self::start_program(program("etcd", "apt-get install etcd-server")).await
    }

    /// Starts the etcd binary at `etcd` and waits until it answers.
    pub async fn start_program(etcd: PathBuf) -> Self {
        let dir = Server::make_dir("etcd");
        let (client_port, peer_port) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let args: Vec<OsString> = [
            format!("--name={}", member_name(client_port)),
            format!("--data-dir={}", dir.join("data").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={}={peer}", member_name(client_port)),
            "--listen-metrics-urls=".to_owned(),
            "--logger=zap".to_owned(),
            "--log-level=warn".to_owned(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let etcd = Self {
            server: Server::spawn("etcd", etcd, args, dir),
            client_port,
        };
        etcd.wait_until_ready().await;
        etcd
    }

    async fn wait_until_ready(&self) {
        let url = self.url();
        self.server
            .wait_until_ready(Duration::from_secs(30), || async {
                // Ready, and ours: its only member has our name.
                let Ok(mut client) = etcd_client::Client::connect([url.as_str()], None).await
                else {
                    return false;
                };
                client.member_list().await.is_ok_and(|list| {
                    list.members()
                        .iter()
                        .any(|member| member.name() == member_name(self.client_port))
                })
            })
            .await;
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.client_port
    }

    /// A client connected to this etcd.
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.url()], None)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to etcd at {}: {error}", self.url()))
    }

    /// The server process, for pausing and resuming.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Kills etcd with SIGKILL; its data stays for [`restart`](Etcd::restart).
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Starts etcd again on the same data and port, and waits until it answers.
    pub async fn restart(&mut self) {
        self.server.restart();
        self.wait_until_ready().await;
    }
}
