//! An HTTP proxy that tunnels `CONNECT` requests, as clients behind a corporate proxy
//! reach their cluster.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// One `CONNECT` the proxy answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tunnel {
    /// The `host:port` asked for.
    pub target: String,
    /// The `Proxy-Authorization` header, if one was sent.
    pub authorization: Option<String>,
    /// Whether the proxy opened the tunnel (it refuses wrong credentials with 407).
    pub opened: bool,
}

#[derive(Debug, Default)]
struct Record {
    tunnels: Mutex<Vec<Tunnel>>,
    /// Bytes sent from servers to clients through open tunnels.
    downloaded: AtomicU64,
}

/// An HTTP `CONNECT` proxy on a free port of 127.0.0.1 that records every tunnel and
/// counts the bytes it carries to clients. With [`requiring`](ConnectProxy::requiring)
/// it opens tunnels only for one `Proxy-Authorization` value. Stops on drop.
#[derive(Debug)]
pub struct ConnectProxy {
    address: SocketAddr,
    record: Arc<Record>,
    accepting: JoinHandle<()>,
}

impl ConnectProxy {
    /// A proxy that opens every tunnel.
    pub async fn start() -> Self {
        Self::listen(None).await
    }

    /// A proxy that opens tunnels only for `authorization` (e.g. `Basic dXNlcjpwYXNz`)
    /// and answers others `407 Proxy Authentication Required`.
    pub async fn requiring(authorization: &str) -> Self {
        Self::listen(Some(authorization.to_owned())).await
    }

    async fn listen(required: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("the proxy cannot listen on 127.0.0.1: {error}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("the proxy has no address: {error}"));
        let record = Arc::new(Record::default());
        let accepting = tokio::spawn(accept(listener, required, record.clone()));
        Self {
            address,
            record,
            accepting,
        }
    }

    /// The proxy's URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every `CONNECT` so far, in order.
    pub fn tunnels(&self) -> Vec<Tunnel> {
        self.record
            .tunnels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Bytes carried from servers to clients so far.
    pub fn downloaded(&self) -> u64 {
        self.record.downloaded.load(Ordering::Relaxed)
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        // The accepting task owns every tunnel: aborting it closes them all.
        self.accepting.abort();
    }
}

async fn accept(listener: TcpListener, required: Option<String>, record: Arc<Record>) {
    let mut tunnels = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((client, _)) = accepted {
                    tunnels.spawn(tunnel(client, required.clone(), record.clone()));
                }
            }
            Some(_) = tunnels.join_next(), if !tunnels.is_empty() => {}
        }
    }
}

/// Reads a `CONNECT` request's head, then carries bytes both ways until either side
/// closes. Anything but a `CONNECT` is answered 405.
async fn tunnel(client: TcpStream, required: Option<String>, record: Arc<Record>) {
    let mut client = BufReader::new(client);
    let mut request_line = String::new();
    if client.read_line(&mut request_line).await.is_err() {
        return;
    }
    let mut authorization = None;
    loop {
        let mut line = String::new();
        match client.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) if line.trim().is_empty() => break,
            Ok(_) => {
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("proxy-authorization")
                {
                    authorization = Some(value.trim().to_owned());
                }
            }
        }
    }
    let mut words = request_line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ = client
            .get_mut()
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    let opened = required.is_none() || required == authorization;
    record
        .tunnels
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(Tunnel {
            target: target.to_owned(),
            authorization,
            opened,
        });
    if !opened {
        let _ = client
            .get_mut()
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(target).await else {
        let _ = client
            .get_mut()
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    if client
        .get_mut()
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    // Whatever the client sent after its head is already in the buffer: it goes first.
    let early = client.buffer().to_vec();
    if server.write_all(&early).await.is_err() {
        return;
    }
    let (mut client_read, mut client_write) = client.into_inner().into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upload = async {
        tokio::io::copy(&mut client_read, &mut server_write).await?;
        server_write.shutdown().await
    };
    let download = async {
        // Counted as it goes: a pooled connection stays open long after its answers.
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = server_read.read(&mut buffer).await?;
            if read == 0 {
                return client_write.shutdown().await;
            }
            record.downloaded.fetch_add(read as u64, Ordering::Relaxed);
            client_write.write_all(&buffer[..read]).await?;
        }
    };
    let _: (std::io::Result<()>, std::io::Result<()>) = tokio::join!(upload, download);
}
