//! A highly available Kubernetes control plane on loopback: two kube-apiservers over a
//! three-member etcd cluster, each apiserver reaching every member through proxies of
//! its own, so one apiserver can be killed, paused, or slowed on its way to etcd while
//! the other serves.

use std::time::Duration;

use secrecy::SecretString;

use crate::{
    etcd_cluster::EtcdCluster,
    kube::{
        ADMIN_TOKEN, KubeVersion, apiserver_args, binaries, name_version_on_panic, ready,
        write_apiserver_files,
    },
    process::{Server, free_port},
    proxy::Proxy,
};

/// The number of apiservers.
pub const APISERVERS: usize = 2;

/// One apiserver: its process, its port, and its proxies to each etcd member.
#[derive(Debug)]
struct Apiserver {
    server: Server,
    port: u16,
    to_etcd: Vec<Proxy>,
}

/// Two kube-apiservers of the version `LOCK_TEST_KUBE_VERSION` picks, over a
/// three-member etcd cluster of the etcd that goes with it; stopped on drop. Local
/// only: `LOCK_TEST_KUBECONFIG` does not apply.
///
/// ```no_run
/// use std::time::Duration;
/// use lock_tests::KubeHa;
///
/// # #[tokio::main] async fn main() {
/// let mut control_plane = KubeHa::start().await;
/// let config = control_plane.config(1);                   // the second apiserver's admin
/// control_plane.lag(0, Duration::from_secs(1));           // the first is slow to etcd
/// control_plane.kill(0);
/// control_plane.restart(0).await;
/// let leader = control_plane.etcd().leader().await;
/// # drop((config, leader)); }
/// ```
#[derive(Debug)]
pub struct KubeHa {
    apiservers: Vec<Apiserver>,
    ca: Vec<u8>,
    etcd: EtcdCluster,
    version: KubeVersion,
}

impl KubeHa {
    /// Starts the etcd cluster, then each apiserver in turn, and waits until both are ready.
    pub async fn start() -> Self {
        let version = KubeVersion::from_env();
        name_version_on_panic(version);
        let (program, etcd_program) = binaries(version);
        let etcd = EtcdCluster::start_program(etcd_program).await;
        let files = Server::make_dir("kube-ha");
        let ca = write_apiserver_files(&files);
        let mut control_plane = Self {
            apiservers: Vec::new(),
            ca,
            etcd,
            version,
        };
        for index in 0..APISERVERS {
            let mut to_etcd = Vec::new();
            for port in control_plane.etcd.client_ports() {
                to_etcd.push(Proxy::to_port(port).await);
            }
            let servers = to_etcd
                .iter()
                .map(|proxy| format!("http://127.0.0.1:{}", proxy.port()))
                .collect::<Vec<_>>()
                .join(",");
            let port = free_port();
            // The first apiserver's folder holds the shared files; each has its own log.
            let dir = if index == 0 {
                files.clone()
            } else {
                Server::make_dir("kube-ha")
            };
            let server = Server::spawn(
                &format!("kube-apiserver-v{}-{index}", version.apiserver()),
                program.clone(),
                apiserver_args(&program, &servers, port, &files),
                dir,
            );
            control_plane.apiservers.push(Apiserver {
                server,
                port,
                to_etcd,
            });
            // One after the other, halving the start's load on a busy machine (a v1.20.2
            // apiserver once exited while both started beside the rest of the suite).
            control_plane.wait_until_ready(index).await;
        }
        control_plane
    }

    async fn wait_until_ready(&self, index: usize) {
        let config = self.config(index);
        self.apiservers[index]
            .server
            .wait_until_ready(Duration::from_secs(90), || {
                let config = config.clone();
                async move {
                    match kube::Client::try_from(config) {
                        Ok(admin) => ready(admin, "default").await,
                        Err(_) => false,
                    }
                }
            })
            .await;
    }

    /// The version running.
    pub fn version(&self) -> KubeVersion {
        self.version
    }

    /// The admin user's configuration for apiserver `index`, namespace `default`.
    pub fn config(&self, index: usize) -> kube::Config {
        let url = format!("https://127.0.0.1:{}", self.apiservers[index].port);
        let mut config = kube::Config::new(url.parse().expect("a URL"));
        config.root_cert = Some(vec![self.ca.clone()]);
        config.auth_info.token = Some(SecretString::from(ADMIN_TOKEN.to_owned()));
        config.default_namespace = "default".to_owned();
        config
    }

    /// Apiserver `index`'s port.
    pub fn port(&self, index: usize) -> u16 {
        self.apiservers[index].port
    }

    /// Kills apiserver `index` (SIGKILL).
    pub fn kill(&mut self, index: usize) {
        self.apiservers[index].server.kill();
    }

    /// Starts apiserver `index` again (killing it first if it runs); returns once it is
    /// ready.
    pub async fn restart(&mut self, index: usize) {
        self.apiservers[index].server.restart();
        self.wait_until_ready(index).await;
    }

    /// Freezes apiserver `index` (SIGSTOP).
    pub fn pause(&self, index: usize) {
        self.apiservers[index].server.pause();
    }

    /// Thaws apiserver `index` (SIGCONT).
    pub fn resume(&self, index: usize) {
        self.apiservers[index].server.resume();
    }

    /// Delays everything between apiserver `index` and etcd by `latency` each way (its
    /// watch cache lags, its writes are slow); [`heal`](KubeHa::heal) ends it.
    pub fn lag(&self, index: usize, latency: Duration) {
        for proxy in &self.apiservers[index].to_etcd {
            proxy.set_latency(latency);
        }
    }

    /// Every apiserver's way to etcd back to normal.
    pub fn heal(&self) {
        for apiserver in &self.apiservers {
            apiserver.to_etcd.iter().for_each(Proxy::heal);
        }
    }

    /// The etcd cluster, for its own faults.
    pub fn etcd(&self) -> &EtcdCluster {
        &self.etcd
    }

    /// The etcd cluster, to kill and restart its members.
    pub fn etcd_mut(&mut self) -> &mut EtcdCluster {
        &mut self.etcd
    }
}
