//! A real kube-apiserver for tests, the way envtest runs one: an apiserver and its own
//! etcd, on loopback, no nodes.
//!
//! Where the apiserver comes from, in order:
//! 1. `LOCK_TEST_KUBECONFIG` names a kubeconfig: the tests run against that cluster (its
//!    user must be allowed to impersonate, for the forbidden client);
//! 2. `KUBEBUILDER_ASSETS` names a folder holding `kube-apiserver` and `etcd`;
//! 3. the v1.20.2 binary that `scripts/provision` builds from Debian's source package,
//!    cached in `$LOCKS_CACHE` (default `~/.cache/locks`).
//!
//! Only etcd and the apiserver run: nothing garbage-collects, so tests use fresh Lease
//! names in the `default` namespace rather than fresh namespaces.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use kube::config::{KubeConfigOptions, Kubeconfig};
use secrecy::SecretString;
use tokio::sync::OnceCell;

use crate::{
    certificates::{Certificates, openssl},
    etcd::Etcd,
    process::{Server, free_port, program},
};

/// The variable naming a kubeconfig to test against instead of a local apiserver.
pub const KUBECONFIG_VAR: &str = "LOCK_TEST_KUBECONFIG";

/// The apiserver version `scripts/provision` builds.
pub const APISERVER_VERSION: &str = "1.20.2";

const ADMIN_TOKEN: &str = "lock-tests-admin-token";
const FORBIDDEN_TOKEN: &str = "lock-tests-forbidden-token";
const FORBIDDEN_USER: &str = "lock-tests-forbidden";

/// A Kubernetes API to test against; a local one is stopped on drop.
#[derive(Debug)]
pub struct Kube {
    cluster: Cluster,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per test binary at most
enum Cluster {
    Local {
        apiserver: Server,
        _etcd: Etcd,
        url: String,
        ca: Vec<u8>,
    },
    External {
        kubeconfig: PathBuf,
    },
}

impl Kube {
    /// One apiserver for the whole test binary, started by the first test that asks.
    /// Clients are made per call, so each test's runtime owns its connections.
    pub async fn shared() -> &'static Kube {
        static SHARED: OnceCell<Kube> = OnceCell::const_new();
        SHARED.get_or_init(Self::start).await
    }

    /// Starts an apiserver of its own (or connects to `LOCK_TEST_KUBECONFIG`'s cluster).
    pub async fn start() -> Self {
        if let Some(kubeconfig) = std::env::var_os(KUBECONFIG_VAR) {
            return Self::external(kubeconfig.into()).await;
        }
        let (apiserver_program, etcd_program) = binaries();
        let etcd = Etcd::start_program(etcd_program).await;
        let dir = Server::make_dir("kube-apiserver");
        let port = free_port();
        let ca = make_certificates(&dir);
        std::fs::write(
            dir.join("tokens.csv"),
            format!(
                "{ADMIN_TOKEN},lock-tests-admin,1,\"system:masters\"\n{FORBIDDEN_TOKEN},{FORBIDDEN_USER},2\n"
            ),
        )
        .unwrap_or_else(|error| panic!("cannot write the token file: {error}"));

        let file = |name: &str| dir.join(name).display().to_string();
        let mut args = vec![
            format!("--etcd-servers={}", etcd.url()),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={port}"),
            "--endpoint-reconciler-type=none".to_owned(),
            format!("--tls-cert-file={}", file("server.crt")),
            format!("--tls-private-key-file={}", file("server.key")),
            format!("--cert-dir={}", file("certs")),
            format!("--token-auth-file={}", file("tokens.csv")),
            "--authorization-mode=RBAC".to_owned(),
            format!("--service-account-issuer=https://127.0.0.1:{port}"),
            format!("--service-account-key-file={}", file("sa.pub")),
            format!("--service-account-signing-key-file={}", file("sa.key")),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--enable-priority-and-fairness=false".to_owned(),
            "--profiling=false".to_owned(),
        ];
        if has_insecure_port(&apiserver_program) {
            // Before 1.24 the apiserver also listens on 127.0.0.1:8080 unless told not to.
            args.push("--insecure-port=0".to_owned());
        }
        let apiserver = Server::spawn(
            "kube-apiserver",
            apiserver_program,
            args.into_iter().map(OsString::from).collect(),
            dir,
        );
        let kube = Self {
            cluster: Cluster::Local {
                apiserver,
                _etcd: etcd,
                url: format!("https://127.0.0.1:{port}"),
                ca,
            },
        };
        kube.wait_until_ready().await;
        kube
    }

    /// Kills the apiserver with SIGKILL and starts it again on the same port and
    /// certificates; its etcd keeps every object. Returns once it answers `/readyz` and
    /// the tests' namespace exists.
    pub async fn restart_apiserver(&mut self) {
        let Cluster::Local { apiserver, .. } = &mut self.cluster else {
            panic!("an external cluster's apiserver cannot be restarted by the tests");
        };
        apiserver.restart();
        self.wait_until_ready().await;
    }

    async fn wait_until_ready(&self) {
        let Cluster::Local { apiserver, .. } = &self.cluster else {
            return;
        };
        apiserver
            .wait_until_ready(Duration::from_secs(90), || async {
                // `/readyz` says "ok" before the bootstrap controller has created the
                // `default` namespace the tests use, so wait for that too.
                let admin = self.admin().await;
                let ready = http::Request::get("/readyz").body(Vec::new());
                let namespace =
                    http::Request::get(format!("/api/v1/namespaces/{}", self.namespace()))
                        .body(Vec::new());
                let (Ok(ready), Ok(namespace)) = (ready, namespace) else {
                    return false;
                };
                admin
                    .request_text(ready)
                    .await
                    .is_ok_and(|body| body == "ok")
                    && admin.request_text(namespace).await.is_ok()
            })
            .await;
    }

    /// Connects to the cluster a kubeconfig names; its user must be allowed to
    /// impersonate, for [`forbidden`](Kube::forbidden).
    pub async fn external(kubeconfig: PathBuf) -> Self {
        let kube = Self {
            cluster: Cluster::External { kubeconfig },
        };
        if let Err(error) = kube.admin().await.apiserver_version().await {
            panic!("the cluster of the kubeconfig does not answer: {error}");
        }
        kube
    }

    /// A kubeconfig file for the admin user, for programs that read one: the one named
    /// by `LOCK_TEST_KUBECONFIG`, or one written for the local apiserver.
    pub fn kubeconfig(&self) -> Option<PathBuf> {
        let (apiserver, url) = match &self.cluster {
            Cluster::Local { apiserver, url, .. } => (apiserver, url),
            Cluster::External { kubeconfig } => return Some(kubeconfig.clone()),
        };
        let path = apiserver.dir().join("kubeconfig.yaml");
        let ca = apiserver.dir().join("ca.crt");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lock-tests\n  cluster:\n    server: {url}\n    \
             certificate-authority: {}\nusers:\n- name: admin\n  user:\n    token: {ADMIN_TOKEN}\ncontexts:\n\
             - name: lock-tests\n  context:\n    cluster: lock-tests\n    user: admin\n    namespace: {}\n\
             current-context: lock-tests\n",
            ca.display(),
            self.namespace()
        );
        std::fs::write(&path, yaml)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        Some(path)
    }

    /// A client with every right (`system:masters`).
    pub async fn admin(&self) -> kube::Client {
        self.client(false).await
    }

    /// A client for an authenticated user that RBAC grants nothing: requests on Leases
    /// get 403 Forbidden.
    pub async fn forbidden(&self) -> kube::Client {
        self.client(true).await
    }

    /// The namespace tests use.
    pub fn namespace(&self) -> &str {
        "default"
    }

    async fn client(&self, forbidden: bool) -> kube::Client {
        let config = self.config(forbidden).await;
        kube::Client::try_from(config)
            .unwrap_or_else(|error| panic!("cannot build a kube client: {error}"))
    }

    /// The client configuration of the admin user (or of the forbidden one), e.g. to
    /// build a client of another kind.
    pub async fn config(&self, forbidden: bool) -> kube::Config {
        let mut config = match &self.cluster {
            Cluster::Local { url, ca, .. } => {
                let url = url
                    .parse()
                    .unwrap_or_else(|error| panic!("bad apiserver URL {url}: {error}"));
                let mut config = kube::Config::new(url);
                config.root_cert = Some(vec![ca.clone()]);
                let token = if forbidden {
                    FORBIDDEN_TOKEN
                } else {
                    ADMIN_TOKEN
                };
                config.auth_info.token = Some(SecretString::from(token.to_owned()));
                config
            }
            Cluster::External { kubeconfig } => {
                let file = Kubeconfig::read_from(kubeconfig).unwrap_or_else(|error| {
                    panic!("cannot read {}: {error}", kubeconfig.display())
                });
                let mut config =
                    kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                        .await
                        .unwrap_or_else(|error| {
                            panic!("bad kubeconfig {}: {error}", kubeconfig.display())
                        });
                if forbidden {
                    config.auth_info.impersonate = Some(FORBIDDEN_USER.to_owned());
                }
                config
            }
        };
        config.default_namespace = self.namespace().to_owned();
        config
    }

    /// The apiserver process, for pausing, killing and restarting (local clusters only).
    pub fn apiserver(&self) -> Option<&Server> {
        match &self.cluster {
            Cluster::Local { apiserver, .. } => Some(apiserver),
            Cluster::External { .. } => None,
        }
    }
}

/// The apiserver and etcd binaries to run.
fn binaries() -> (PathBuf, PathBuf) {
    if let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS") {
        let assets = PathBuf::from(assets);
        let (apiserver, etcd) = (assets.join("kube-apiserver"), assets.join("etcd"));
        assert!(
            apiserver.is_file() && etcd.is_file(),
            "KUBEBUILDER_ASSETS={} must hold kube-apiserver and etcd",
            assets.display()
        );
        return (apiserver, etcd);
    }
    let cache = std::env::var_os("LOCKS_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/locks"),
        PathBuf::from,
    );
    let apiserver = cache
        .join(format!("kube-apiserver-v{APISERVER_VERSION}"))
        .join("kube-apiserver");
    assert!(
        apiserver.is_file(),
        "no kube-apiserver at {}: run scripts/provision (it builds v{APISERVER_VERSION} from Debian's \
         source package), or set KUBEBUILDER_ASSETS or {KUBECONFIG_VAR}",
        apiserver.display()
    );
    (apiserver, program("etcd", "apt-get install etcd-server"))
}

/// Whether this apiserver still has the insecure port (removed in 1.24).
fn has_insecure_port(apiserver: &Path) -> bool {
    let output = Command::new(apiserver).arg("--version").output();
    let version = output
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // "Kubernetes v1.20.2"
    version
        .trim()
        .strip_prefix("Kubernetes v1.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|minor| minor.parse::<u32>().ok())
        .is_some_and(|minor| minor < 24)
}

/// Makes a CA, a serving certificate for 127.0.0.1 signed by it, and a service-account
/// key pair in `dir` with openssl; returns the CA certificate (DER) for clients.
fn make_certificates(dir: &Path) -> Vec<u8> {
    let certificates = Certificates::make(dir, "lock-tests-admin");
    openssl(dir, &["genrsa", "-out", "sa.key", "2048"]);
    openssl(dir, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
    certificates.read("ca.der")
}
