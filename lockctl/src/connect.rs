//! From `--backend URL` and the connection flags to a backend.

use std::sync::Arc;

use lock_core::Backend;

use crate::{
    cli::Connection,
    exit::{Exit, Failure},
};

/// Where the locks live, from `--backend`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `kube://NAMESPACE`: Leases in that namespace (`None`: the kubeconfig's).
    Kube {
        /// The namespace, if given.
        namespace: Option<String>,
    },
    /// `etcd://HOST:PORT/PREFIX`.
    Etcd {
        /// `HOST:PORT`.
        endpoint: String,
        /// The key prefix (lock-etcd's default if none is given).
        prefix: String,
    },
    /// `redis://...` or `rediss://...`, passed to Redis as is.
    Redis {
        /// The URL.
        url: String,
    },
}

impl Target {
    /// Parses a `--backend` value.
    pub fn parse(url: &str) -> Result<Self, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "{url:?} is not a backend URL: use kube://NAMESPACE, etcd://HOST:PORT/PREFIX or redis://HOST:PORT"
            ));
        };
        match scheme {
            "kube" => Ok(Target::Kube {
                namespace: Some(rest.trim_matches('/').to_owned()).filter(|ns| !ns.is_empty()),
            }),
            "etcd" => {
                let (endpoint, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if endpoint.is_empty() {
                    return Err(format!("{url:?} names no etcd host"));
                }
                let endpoint = if endpoint.contains(':') {
                    endpoint.to_owned()
                } else {
                    format!("{endpoint}:2379")
                };
                let prefix = if prefix.is_empty() {
                    ETCD_PREFIX.to_owned()
                } else {
                    prefix.to_owned()
                };
                Ok(Target::Etcd { endpoint, prefix })
            }
            "redis" | "rediss" => Ok(Target::Redis {
                url: url.to_owned(),
            }),
            other => Err(format!(
                "unknown backend {other:?}: use kube://, etcd://, redis:// or rediss://"
            )),
        }
    }
}

/// lock-etcd's default key prefix, for `etcd://HOST:PORT` without one.
#[cfg(feature = "etcd")]
const ETCD_PREFIX: &str = lock_etcd::DEFAULT_PREFIX;
#[cfg(not(feature = "etcd"))]
const ETCD_PREFIX: &str = "locks/";

/// Connects to `target` with the connection flags. A backend this lockctl was built
/// without (its cargo feature off) is a usage error saying how to get it.
pub async fn connect(target: &Target, flags: &Connection) -> Result<Arc<dyn Backend>, Failure> {
    match target {
        Target::Kube { namespace } => connect_kube(namespace.as_deref(), flags).await,
        Target::Etcd { endpoint, prefix } => connect_etcd(endpoint, prefix, flags).await,
        Target::Redis { url } => connect_redis(url, flags).await,
    }
}

#[cfg(any(feature = "kube", feature = "etcd"))]
fn failed(what: &str, error: &dyn std::fmt::Display) -> Failure {
    Failure::new(Exit::Failed, format!("cannot {what}: {error}"))
}

/// The error for a backend left out of this build.
#[allow(dead_code)] // used only by builds without some backend
fn not_built(feature: &str) -> Failure {
    Failure::new(
        Exit::Usage,
        format!(
            "this lockctl was built without the {feature} backend: \
             install it with `cargo install lockctl --features {feature}`"
        ),
    )
}

#[cfg(not(feature = "kube"))]
async fn connect_kube(_: Option<&str>, _: &Connection) -> Result<Arc<dyn Backend>, Failure> {
    Err(not_built("kube"))
}

#[cfg(not(feature = "etcd"))]
async fn connect_etcd(_: &str, _: &str, _: &Connection) -> Result<Arc<dyn Backend>, Failure> {
    Err(not_built("etcd"))
}

#[cfg(not(feature = "redis"))]
async fn connect_redis(_: &str, _: &Connection) -> Result<Arc<dyn Backend>, Failure> {
    Err(not_built("redis"))
}

#[cfg(feature = "kube")]
async fn connect_kube(
    namespace: Option<&str>,
    flags: &Connection,
) -> Result<Arc<dyn Backend>, Failure> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions {
        context: flags.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match Kubeconfig::read() {
        Ok(kubeconfig) => kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| failed("read the kubeconfig", &e))?,
        Err(_) => kube::Config::infer()
            .await
            .map_err(|e| failed("find a kubeconfig or in-cluster config", &e))?,
    };
    let namespace = namespace.map_or_else(|| config.default_namespace.clone(), str::to_owned);
    let client =
        lock_kube::nodelay_client(config).map_err(|e| failed("build a Kubernetes client", &e))?;
    Ok(Arc::new(lock_kube::KubeBackend::new(client, &namespace)))
}

#[cfg(feature = "etcd")]
async fn connect_etcd(
    endpoint: &str,
    prefix: &str,
    flags: &Connection,
) -> Result<Arc<dyn Backend>, Failure> {
    use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
    let mut options = ConnectOptions::new();
    match (&flags.user, &flags.password) {
        (Some(user), Some(password)) => options = options.with_user(user, password),
        (None, None) => {}
        _ => {
            return Err(Failure::new(
                Exit::Usage,
                "--user and --password (or LOCKCTL_PASSWORD) go together",
            ));
        }
    }
    let scheme = if flags.ca.is_some() || flags.cert.is_some() {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &flags.ca {
            let pem = std::fs::read(ca).map_err(|e| failed("read the CA certificate", &e))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&flags.cert, &flags.key) {
            let cert = std::fs::read(cert).map_err(|e| failed("read the certificate", &e))?;
            let key = std::fs::read(key).map_err(|e| failed("read the key", &e))?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        options = options.with_tls(tls);
        "https"
    } else {
        "http"
    };
    let client = etcd_client::Client::connect([format!("{scheme}://{endpoint}")], Some(options))
        .await
        .map_err(|e| failed(&format!("connect to etcd at {endpoint}"), &e))?;
    Ok(Arc::new(lock_etcd::EtcdBackend::with_prefix(
        client, prefix,
    )))
}

#[cfg(feature = "redis")]
async fn connect_redis(url: &str, flags: &Connection) -> Result<Arc<dyn Backend>, Failure> {
    if flags.user.is_some() {
        return Err(Failure::new(
            Exit::Usage,
            "for Redis, put the user and password in the URL (redis://USER:PASSWORD@HOST:PORT)",
        ));
    }
    if flags.ca.is_none() && flags.cert.is_none() {
        return Ok(Arc::new(lock_redis::RedisBackend::connect(url).await?));
    }
    if !url.starts_with("rediss://") {
        return Err(Failure::new(
            Exit::Usage,
            "--ca, --cert and --key are for TLS: use a rediss:// URL",
        ));
    }
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).map_err(|e| {
            Failure::new(
                Exit::Failed,
                format!("cannot read the {what} {}: {e}", path.display()),
            )
        })
    };
    let root_cert = flags
        .ca
        .as_deref()
        .map(|ca| read(ca, "CA certificate"))
        .transpose()?;
    let client_tls = match (&flags.cert, &flags.key) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert, "certificate")?,
            client_key: read(key, "key")?,
        }),
        (None, None) => None,
        _ => return Err(Failure::new(Exit::Usage, "--cert and --key go together")),
    };
    let certificates = redis::TlsCertificates {
        client_tls,
        root_cert,
    };
    Ok(Arc::new(
        lock_redis::RedisBackend::connect_with_tls(url, certificates).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_urls_name_the_namespace_endpoint_and_prefix() {
        assert_eq!(
            Target::parse("kube://team-a"),
            Ok(Target::Kube {
                namespace: Some("team-a".into())
            })
        );
        assert_eq!(
            Target::parse("kube://"),
            Ok(Target::Kube { namespace: None })
        );
        assert_eq!(
            Target::parse("etcd://10.0.0.1:2379/my-app/locks/"),
            Ok(Target::Etcd {
                endpoint: "10.0.0.1:2379".into(),
                prefix: "my-app/locks/".into()
            })
        );
        assert_eq!(
            Target::parse("etcd://etcd"),
            Ok(Target::Etcd {
                endpoint: "etcd:2379".into(),
                prefix: ETCD_PREFIX.into()
            })
        );
        assert_eq!(
            Target::parse("rediss://u:p@cache:6380/2"),
            Ok(Target::Redis {
                url: "rediss://u:p@cache:6380/2".into()
            })
        );
    }

    #[test]
    fn anything_else_is_rejected_saying_what_is_accepted() {
        for url in ["localhost:2379", "zk://x", "etcd://", "etcd:///prefix"] {
            let error = Target::parse(url).expect_err(url);
            assert!(
                error.contains("etcd") || error.contains("backend"),
                "{url}: {error}"
            );
        }
    }
}
