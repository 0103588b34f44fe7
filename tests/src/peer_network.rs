//! The network between the members of a cluster: each member's peer port behind a proxy
//! that knows which member dialled each connection, so that one member can be cut off
//! from all the others, both ways, while clients still reach it.
//!
//! Members advertise the proxy's address to each other. A member sends to a peer over
//! connections it dials and over connections the peer dialled, so cutting only what
//! reaches a member's own port is not a partition: each proxy also refuses what an
//! isolated member dials. Which member dialled a connection is read from `/proc`: the
//! dialling socket's inode, and the member process that holds it.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use nix::unistd::Pid;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::{JoinHandle, JoinSet},
};

/// The peer network of one cluster: which members are cut off, and each member's
/// process, to tell who dialled.
#[derive(Clone, Debug)]
pub struct PeerNetwork {
    isolated: watch::Sender<BTreeSet<usize>>,
    pids: Arc<Mutex<Vec<Option<Pid>>>>,
}

impl PeerNetwork {
    /// The network of `members` members, none cut off.
    pub fn new(members: usize) -> Self {
        Self {
            isolated: watch::Sender::new(BTreeSet::new()),
            pids: Arc::new(Mutex::new(vec![None; members])),
        }
    }

    /// Records member `member`'s process (again after each restart).
    pub fn set_pid(&self, member: usize, pid: Option<Pid>) {
        self.pids.lock().unwrap_or_else(PoisonError::into_inner)[member] = pid;
    }

    /// Cuts `member` off from every other member, both ways: its peer connections close,
    /// new ones are refused, until [`heal`](PeerNetwork::heal).
    pub fn isolate(&self, member: usize) {
        self.isolated.send_modify(|isolated| {
            isolated.insert(member);
        });
    }

    /// Reconnects every member.
    pub fn heal(&self) {
        self.isolated.send_modify(BTreeSet::clear);
    }

    /// The member whose process holds the dialling end of a connection from `dialler`
    /// to `proxy`.
    fn member_of(&self, dialler: SocketAddr, proxy: SocketAddr) -> Option<usize> {
        let inode = socket_inode(dialler, proxy)?;
        let pids = self
            .pids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        pids.iter()
            .position(|pid| pid.is_some_and(|pid| holds_socket(pid, inode)))
    }

    /// Starts the proxy in front of `member`'s peer port `target`; it stops on drop.
    pub async fn proxy(&self, member: usize, target: SocketAddr) -> PeerProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("the peer proxy cannot listen: {error}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("the peer proxy has no address: {error}"));
        let accepting = tokio::spawn(accept(listener, address, self.clone(), member, target));
        PeerProxy { address, accepting }
    }
}

/// A member's peer port as its peers reach it. Stops on drop.
#[derive(Debug)]
pub struct PeerProxy {
    address: SocketAddr,
    accepting: JoinHandle<()>,
}

impl PeerProxy {
    /// The address members advertise and dial.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for PeerProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept(
    listener: TcpListener,
    proxy: SocketAddr,
    network: PeerNetwork,
    member: usize,
    target: SocketAddr,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((connection, dialler)) = accepted {
                    connections.spawn(forward(connection, target, member, (dialler, proxy), network.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Forwards one connection while neither end is cut off.
async fn forward(
    mut connection: TcpStream,
    target: SocketAddr,
    member: usize,
    (dialler, proxy): (SocketAddr, SocketAddr),
    network: PeerNetwork,
) {
    // Who dialled, read again while unknown: members dial each other before the cluster
    // has recorded every member's process.
    let mut from = network.member_of(dialler, proxy);
    let mut cut = |isolated: &BTreeSet<usize>| {
        if isolated.is_empty() {
            return false;
        }
        if from.is_none() {
            from = network.member_of(dialler, proxy);
        }
        isolated.contains(&member) || from.is_some_and(|from| isolated.contains(&from))
    };
    let mut isolated = network.isolated.subscribe();
    if cut(&isolated.borrow_and_update()) {
        return;
    }
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = (connection.set_nodelay(true), server.set_nodelay(true));
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut connection, &mut server) => {}
        _ = isolated.wait_for(cut) => {}
    }
}

/// The inode of the open socket from `local` to `remote` (IPv4 or IPv6 table); not one
/// in TIME_WAIT (inode 0), whose port another connection may reuse.
fn socket_inode(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let (local, remote) = (proc_address(local), proc_address(remote));
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let table = std::fs::read_to_string(table).ok()?;
            table.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let ends = (fields.get(1).copied(), fields.get(2).copied());
                if ends != (Some(local.as_str()), Some(remote.as_str())) {
                    return None;
                }
                fields
                    .get(9)?
                    .parse()
                    .ok()
                    .filter(|&inode: &u64| inode != 0)
            })
        })
}

/// An address as `/proc/net/tcp` writes it: the IP's 32-bit words in host order and the
/// port, in hex.
fn proc_address(address: SocketAddr) -> String {
    match address {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(v6) => {
            let words: String = v6
                .ip()
                .octets()
                .chunks(4)
                .map(|word| {
                    format!(
                        "{:08X}",
                        u32::from_le_bytes([word[0], word[1], word[2], word[3]])
                    )
                })
                .collect();
            format!("{words}:{:04X}", v6.port())
        }
    }
}

/// Whether process `pid` has socket `inode` open.
fn holds_socket(pid: Pid, inode: u64) -> bool {
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == wanted.as_str())
        })
    })
}
