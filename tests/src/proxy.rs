//! A TCP proxy between a client and a server that breaks the network on command.

use std::{io, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{mpsc, watch},
    task::{JoinHandle, JoinSet},
    time::{Instant, sleep_until},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Open,
    Cut,
    Blackhole,
}

#[derive(Clone, Copy, Debug)]
struct State {
    mode: Mode,
    latency: Duration,
    /// Bumped by every cut: connections of an older epoch close.
    epoch: u64,
}

/// A TCP proxy on 127.0.0.1 that forwards to a server and can cut, blackhole or slow
/// every connection, and heal. Runs on the runtime that started it; stops on drop.
///
/// - [`cut`](Proxy::cut): every connection is closed at once, and new ones are closed as
///   soon as they are accepted, as when a network partition resets connections;
/// - [`blackhole`](Proxy::blackhole): connections are accepted but nothing is forwarded
///   either way, as when packets are silently dropped: requests hang until they time out;
/// - [`set_latency`](Proxy::set_latency): every chunk of data waits this long in each
///   direction (a round trip gains twice the latency);
/// - [`heal`](Proxy::heal): back to forwarding everything at once.
#[derive(Debug)]
pub struct Proxy {
    address: SocketAddr,
    state: watch::Sender<State>,
    accepting: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `target` on a free port of 127.0.0.1.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("the proxy cannot listen on 127.0.0.1: {error}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("the proxy has no address: {error}"));
        let state = watch::Sender::new(State {
            mode: Mode::Open,
            latency: Duration::ZERO,
            epoch: 0,
        });
        let accepting = tokio::spawn(accept(listener, target, state.subscribe()));
        Self {
            address,
            state,
            accepting,
        }
    }

    /// Starts a proxy to `127.0.0.1:port`.
    pub async fn to_port(port: u16) -> Self {
        Self::start(SocketAddr::from(([127, 0, 0, 1], port))).await
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Closes every connection now, and every new one until [`heal`](Proxy::heal).
    pub fn cut(&self) {
        self.state.send_modify(|state| {
            state.mode = Mode::Cut;
            state.epoch += 1;
        });
    }

    /// Forwards nothing, either way, until [`heal`](Proxy::heal).
    pub fn blackhole(&self) {
        self.state.send_modify(|state| state.mode = Mode::Blackhole);
    }

    /// Delays every chunk of data by `latency` in each direction.
    pub fn set_latency(&self, latency: Duration) {
        self.state.send_modify(|state| state.latency = latency);
    }

    /// Forwards everything at once again.
    pub fn heal(&self) {
        self.state.send_modify(|state| {
            state.mode = Mode::Open;
            state.latency = Duration::ZERO;
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accepting task owns every connection: aborting it closes them all.
        self.accepting.abort();
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, state: watch::Receiver<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((client, _)) = accepted {
                    let _ = client.set_nodelay(true);
                    connections.spawn(forward(client, target, state.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Forwards one connection until either side closes it or the proxy cuts it.
async fn forward(client: TcpStream, target: SocketAddr, mut state: watch::Receiver<State>) {
    let epoch = state.borrow().epoch;
    let cut = |s: &State| s.epoch != epoch || s.mode == Mode::Cut;
    // A blackholed proxy accepts and then holds the connection without connecting.
    let Ok(open) = state
        .wait_for(|s| cut(s) || s.mode == Mode::Open)
        .await
        .map(|s| !cut(&s))
    else {
        return;
    };
    if !open {
        return;
    }
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let mut cut_watch = state.clone();
    tokio::select! {
        _ = async {
            tokio::join!(
                pump(client_read, server_write, state.clone()),
                pump(server_read, client_write, state.clone()),
            )
        } => {}
        _ = cut_watch.wait_for(|s| cut(s)) => {}
    }
}

/// Copies one direction, holding data while blackholed and delaying each chunk by the
/// latency from when it was read: a link with that latency, whose chunks do not wait
/// for one another.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    state: watch::Receiver<State>,
) -> io::Result<()> {
    let (chunks, mut arriving) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let mut reading_state = state.clone();
    let reading = async move {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            open(&mut reading_state).await?;
            let read = from.read(&mut buffer).await?;
            if read == 0 {
                // Dropping `chunks` ends the writing once it has written what is in flight.
                return Ok(());
            }
            let due = Instant::now() + reading_state.borrow().latency;
            if chunks.send((due, buffer[..read].to_vec())).await.is_err() {
                return Ok(());
            }
        }
    };
    let mut writing_state = state;
    let writing = async move {
        while let Some((due, chunk)) = arriving.recv().await {
            sleep_until(due).await;
            open(&mut writing_state).await?;
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(reading, writing).map(|_| ())
}

/// How many chunks one direction holds on their way before it stops reading.
const IN_FLIGHT: usize = 64;

/// Waits while the proxy blackholes.
async fn open(state: &mut watch::Receiver<State>) -> io::Result<()> {
    state
        .wait_for(|s| s.mode != Mode::Blackhole)
        .await
        .map(|_| ())
        .map_err(|_| io::ErrorKind::BrokenPipe.into())
}
