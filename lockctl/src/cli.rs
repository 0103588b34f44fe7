//! The command line: what `lockctl --help` shows.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  lockctl -b kube://default status my-controller
  lockctl -b kube://default list --output json
  lockctl -b etcd://127.0.0.1:2379/locks/ watch my-controller
  lockctl -b redis://127.0.0.1:6379 acquire nightly-backup --hold 30m
  lockctl -b kube://default acquire my-controller --until-signal
  lockctl -b kube://default release my-controller --holder pod-7f9c
  lockctl -b etcd://127.0.0.1:2379 break my-controller --yes

Exit codes:
  0  done
  1  the backend failed (unreachable, forbidden, malformed data)
  2  bad usage (unknown command, invalid name or duration)
  3  the lock is not in the state asked for (release: not held by that holder;
     acquire: still held by another when --wait ran out)
  4  acquire: the lock was lost while held (it could not be renewed in time)
  5  break: not confirmed

Backends are cargo features (kube, etcd, redis; all by default): a lockctl built with
`--no-default-features --features kube` has only Kubernetes and needs no protoc.";

/// See and operate distributed locks on Kubernetes, etcd and Redis.
#[derive(Debug, Parser)]
#[command(name = "lockctl", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Where the locks live: kube://NAMESPACE (the usual kubeconfig; empty for its
    /// namespace), etcd://HOST:PORT/PREFIX, redis://USER:PASSWORD@HOST:PORT/DB (user,
    /// password and DB optional) or rediss://... for TLS (its value is never shown in
    /// this help, since it may hold a password)
    #[arg(
        short,
        long,
        env = "LOCKCTL_BACKEND",
        global = true,
        hide_env_values = true
    )]
    pub backend: Option<String>,

    #[command(flatten)]
    pub connection: Connection,

    #[command(subcommand)]
    pub command: Command,
}

/// How to authenticate to the backend.
#[derive(Debug, Default, Args)]
pub struct Connection {
    /// etcd: user name.
    #[arg(long, global = true)]
    pub user: Option<String>,

    /// etcd: password.
    #[arg(long, env = "LOCKCTL_PASSWORD", global = true, hide_env_values = true)]
    pub password: Option<String>,

    /// etcd, and Redis over rediss://: a CA certificate (PEM) to verify the server with
    /// (for etcd it turns TLS on).
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,

    /// etcd, and Redis over rediss://: a client certificate (PEM) for mutual TLS, with
    /// --key.
    #[arg(long, global = true, requires = "key")]
    pub cert: Option<PathBuf>,

    /// etcd, and Redis over rediss://: the client certificate's private key (PEM).
    #[arg(long, global = true, requires = "cert")]
    pub key: Option<PathBuf>,

    /// Kubernetes: the kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Who holds a lock: holder, token, acquired and renewed ages, lease duration, expiry.
    Status {
        /// The lock.
        name: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
    /// Every lock whose name starts with PREFIX, with the same columns.
    List {
        /// Only locks whose name starts with this.
        #[arg(default_value = "")]
        prefix: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
    /// A line now and on every change of holder, token or expiry, until interrupted.
    Watch {
        /// The lock.
        name: String,
        /// Stop after this many lines.
        #[arg(long)]
        count: Option<usize>,
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
    /// Hold a lock from a shell (renewing it), printing its token; released on exit.
    Acquire {
        /// The lock.
        name: String,
        /// Hold it this long, then release (e.g. 30s, 15m, 2h).
        #[arg(long, value_parser = humantime::parse_duration, required_unless_present = "until_signal")]
        hold: Option<Duration>,
        /// Hold it until SIGINT or SIGTERM, then release.
        #[arg(long, conflicts_with = "hold")]
        until_signal: bool,
        /// Give up if it is still held by another after this long (default: wait).
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<Duration>,
        /// The lease duration.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
        ttl: Duration,
        /// Who holds it (default: lockctl@HOST-PID).
        #[arg(long)]
        identity: Option<String>,
    },
    /// Release a lock only if HOLDER still holds it (compare-and-set).
    Release {
        /// The lock.
        name: String,
        /// The holder that must still hold it.
        #[arg(long)]
        holder: String,
    },
    /// Forcibly free a lock, taking the next token so that the broken holder is superseded.
    Break {
        /// The lock.
        name: String,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
    },
}

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// One JSON object per lock (per line for list and watch).
    Json,
}
