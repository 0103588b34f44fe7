//! `nodelay_client` beside the client kube builds from the same config
//! (`kube::Client::try_from`), on a real apiserver: the same proxy tunnels with the same
//! credentials, the same read timeout, and the same gzip-compressed answers (the same tracing
//! spans: `tracing.rs`). Its one difference, `TCP_NODELAY`, is measured by lock-bench (a round
//! trip without the 40 ms delayed-ACK wait).

use std::{error::Error as _, time::Duration};

use http::Uri;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, api::ListParams};
use lock_core::{Lock, Timing, conformance::unique_name};
use lock_kube::{KubeBackend, nodelay_client};
use lock_tests::{ConnectProxy, Kube, Proxy};

/// A client kube builds, and ours, from the same config.
fn both(config: &kube::Config) -> [(&'static str, kube::Client); 2] {
    let kube = kube::Client::try_from(config.clone()).expect("kube builds a client");
    let ours = nodelay_client(config.clone()).expect("nodelay_client builds a client");
    [("kube's client", kube), ("nodelay_client", ours)]
}

/// The apiserver's `host:port`, as a proxy is asked to connect to it.
fn authority(url: &Uri) -> String {
    let authority = url.authority().expect("the cluster URL has a host");
    let port = authority.port_u16().unwrap_or(443);
    format!("{}:{port}", authority.host())
}

async fn list_one(client: kube::Client) -> Result<(), kube::Error> {
    Api::<Lease>::default_namespaced(client)
        .list(&ListParams::default().limit(1))
        .await
        .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_an_http_proxy_both_tunnel_with_the_urls_credentials() {
    let kube = Kube::shared().await;
    // "lock:p@ss:word": a password that must be percent-escaped in a URL.
    let proxy = ConnectProxy::requiring("Basic bG9jazpwQHNzOndvcmQ=").await;
    let mut config = kube.config(false).await;
    let apiserver = authority(&config.cluster_url);
    let through = |credentials: &str| -> Uri {
        let url = proxy
            .url()
            .replace("http://", &format!("http://{credentials}@"));
        url.parse().expect("a proxy URL")
    };
    config.proxy_url = Some(through("lock:p%40ss%3Aword"));
    for (name, client) in both(&config) {
        let before = proxy.tunnels().len();
        list_one(client)
            .await
            .unwrap_or_else(|error| panic!("{name} lists through the proxy: {error}"));
        let tunnels = proxy.tunnels();
        let tunnel = tunnels
            .get(before)
            .unwrap_or_else(|| panic!("{name} tunnelled"));
        assert_eq!(
            tunnel.target, apiserver,
            "{name} tunnelled to the apiserver"
        );
        assert!(tunnel.opened, "{name} sent the URL's credentials, decoded");
    }

    // A lock works through the proxy, hand-over on a watch included.
    let name = unique_name("proxied");
    let lock = |identity: &str| {
        let client = nodelay_client(config.clone()).expect("a client");
        Lock::builder(KubeBackend::new(client, kube.namespace()), &name, identity)
            .timing(Timing::new(Duration::from_secs(5)))
            .build()
            .expect("a valid lock")
    };
    let guard = lock("replica-a").acquire().await.expect("acquired");
    let waiter = lock("replica-b");
    let waiting =
        tokio::spawn(async move { waiter.acquire_timeout(Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    guard.release().await.expect("released");
    let taken = waiting.await.expect("the waiter ran").expect("taken over");
    taken.release().await.expect("released");

    // Wrong credentials: the proxy refuses both alike.
    config.proxy_url = Some(through("lock:wrong"));
    let mut messages = Vec::new();
    for (name, client) in both(&config) {
        let error = list_one(client)
            .await
            .expect_err(&format!("{name} is refused by the proxy"));
        messages.push(error.to_string());
    }
    assert_eq!(messages[0], messages[1], "the same error from both");
    let refused = proxy.tunnels().iter().filter(|t| !t.opened).count();
    assert!(
        refused >= 2,
        "both asked, both refused: {:?}",
        proxy.tunnels()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_timeout_ends_a_request_the_server_stops_answering() {
    let kube = Kube::shared().await;
    let mut config = kube.config(false).await;
    let apiserver = authority(&config.cluster_url);
    let address = tokio::net::lookup_host(&apiserver)
        .await
        .expect("the apiserver's address")
        .next()
        .expect("an address");
    let network = Proxy::start(address).await;
    let host = config.cluster_url.host().expect("a host").to_owned();
    config.tls_server_name.get_or_insert(host);
    config.cluster_url = format!("https://127.0.0.1:{}", network.port())
        .parse()
        .expect("a URL");
    config.read_timeout = Some(Duration::from_secs(1));
    for (name, client) in both(&config) {
        network.heal();
        list_one(client.clone())
            .await
            .unwrap_or_else(|error| panic!("{name} lists before the blackhole: {error}"));
        network.blackhole();
        let answer = tokio::time::timeout(Duration::from_secs(10), list_one(client))
            .await
            .unwrap_or_else(|_| panic!("{name} still waits 10 s after its 1 s read timeout"));
        let error = answer.expect_err("no answer through a blackhole");
        let mut source = error.source();
        let mut timed_out = false;
        while let Some(cause) = source {
            timed_out |= cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
            source = cause.source();
        }
        assert!(timed_out, "{name} ends with a timeout: {error:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_come_gzip_compressed_unless_compression_is_disabled() {
    let kube = Kube::shared().await;
    let proxy = ConnectProxy::start().await;
    let mut config = kube.config(false).await;
    config.proxy_url = Some(proxy.url().parse().expect("a proxy URL"));
    // The OpenAPI document: megabytes, which the apiserver compresses when asked.
    let openapi = || {
        http::Request::get("/openapi/v2")
            .body(Vec::new())
            .expect("a request")
    };
    let mut downloaded = Vec::new();
    for disable_compression in [false, true] {
        config.disable_compression = disable_compression;
        for (name, client) in both(&config) {
            let before = proxy.downloaded();
            let text = client
                .request_text(openapi())
                .await
                .unwrap_or_else(|error| panic!("{name} reads /openapi/v2: {error}"));
            let carried = proxy.downloaded() - before;
            downloaded.push((name, disable_compression, text.len(), carried));
        }
    }
    println!("(client, compression disabled, document bytes, bytes carried): {downloaded:?}");
    for &(name, disabled, document, carried) in &downloaded {
        if disabled {
            assert!(carried as usize >= document, "{name} without compression");
        } else {
            assert!(
                (carried as usize) < document / 3,
                "{name} gets a compressed answer: {carried} bytes for {document}"
            );
        }
    }
    let kube_compressed = downloaded[0].3 as f64;
    let ours_compressed = downloaded[1].3 as f64;
    assert!(
        (ours_compressed / kube_compressed - 1.0).abs() < 0.1,
        "the same compressed size: {downloaded:?}"
    );
}
