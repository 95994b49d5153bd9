//! # `meshctl`: the command-line client of `meshd`
//!
//! It owns the user-facing presentation of the admin API: it sends one JSON request per command
//! over `meshd`'s Unix socket (the types of the `api` crate) and prints the reply as a table, or
//! as JSON with `--json` for scripts. Every reply is read into its `api` struct, so the tables
//! name each field they show. It keeps no state and never talks to the network; the commands
//! that work without a daemon are `verify` (an address belongs to a key) and `policy check`.
//! `meshctl ui` serves a page that draws the node from the same answers (`ui`).
//! It does not link the daemon: no tokio, no crypto stack beyond checking a key.
//!
//! Errors are `error: MESSAGE` on stderr, then `hint: …` on a second line when meshd gave one
//! (daemon not running and no permission are one line), and a non-zero exit status.

mod gateway;
mod names;
mod policy;
mod table;
mod ui;
mod verify;
mod znet;

use anyhow::{Context, bail};
use api::{
    Attachment, CircleEdited, CircleInfo, ExplainRow, PeerInfo, PingOutcome, PolicyCheck, Reply,
    Request, RouteInfo, SessionInfo, ZnetCreated, ZnetInfo, ZnetLeft,
};
use clap::{Parser, Subcommand};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Control a running meshd (Planetary LAN daemon).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// meshd's admin socket.
    #[arg(
        long,
        global = true,
        env = "MESHCTL_SOCKET",
        default_value = "/run/meshd/admin.sock"
    )]
    socket: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// This node: public key, address, subnet, listeners.
    #[command(name = "self")]
    SelfInfo,
    /// Peers: links and configured peers, with their state and traffic.
    Peers,
    /// Node status: uptime, links, and counters of dropped packets by reason.
    Status,
    /// Add or remove peers at runtime.
    #[command(subcommand)]
    Peer(PeerCmd),
    /// This node's place in the routing tree: root, parent, coordinates, depth, peers.
    Tree,
    /// Tell meshd the host's network changed (for NetworkManager or networkd hooks): it binds
    /// its sockets again, re-learns its public endpoints and tells its peers where it is now.
    NetworkChanged,
    /// Destinations looked up and cached: address, owner key, coordinates.
    Routes,
    /// End-to-end sessions with other nodes.
    Sessions,
    /// Ping an overlay address through the overlay itself: hops, round trip, direct or relayed.
    Ping {
        /// The overlay address.
        address: std::net::Ipv6Addr,
        /// How many pings.
        #[arg(short = 'c', long, default_value_t = 3)]
        count: u32,
    },
    /// The circle policy: check a file, reload, show, explain a decision.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Circles of the policy: list, show, add or remove members (edits the policy file).
    #[command(subcommand)]
    Circle(CircleCmd),
    /// znets: private networks of a deployment for containers.
    #[command(subcommand)]
    Znet(ZnetCmd),
    /// Publish a container's service through gateways (this node dials out to each; no
    /// port is opened for it): TLS by SNI (passed through), HTTP by Host, or a raw TCP port.
    Publish {
        /// The znet the container is attached to.
        znet: String,
        /// The container's namespace and the service's port in it: NETNS:PORT.
        target: String,
        /// The public name (shop.example.com).
        #[arg(long)]
        name: String,
        /// A gateway's public key (KEY, or KEY@PORT for a mesh_port other than 7443); repeat
        /// for several gateways.
        #[arg(long = "gateway", required = true)]
        gateways: Vec<String>,
        /// tls, http or tcp.
        #[arg(long, default_value = "tls")]
        kind: String,
        /// Most connections at once (default 1000).
        #[arg(long)]
        max_connections: Option<u32>,
        /// Seconds a connection may be idle (default 300).
        #[arg(long)]
        idle_timeout: Option<u64>,
    },
    /// Stop publishing a name (and release it on its gateways).
    Unpublish {
        /// The public name.
        name: String,
        /// Only this kind (tls, http, tcp); default every kind.
        #[arg(long)]
        kind: Option<String>,
    },
    /// The services this node publishes, with the state of each gateway connection.
    Services,
    /// This node as a gateway: listeners, published names, connections, counters.
    #[command(subcommand)]
    Gateway(GatewayCmd),
    /// Names: claim, release, resolve, list, delegate (as an authority), publish a record.
    #[command(subcommand)]
    Name(names::NameCmd),
    /// Check, without a daemon, that an overlay address belongs to a public key.
    Verify {
        /// The overlay address (a node address or an address in a node's /64).
        address: std::net::Ipv6Addr,
        /// The public key (64 hex digits).
        public_key: String,
    },
    /// Serve a page that draws this node, its peers and paths, its place in the tree, its
    /// sessions and live traffic (on loopback, under a secret path it prints).
    Ui {
        /// Where to serve it: a loopback address and port (0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; `meshctl man | man -l -`).
    Man,
}

#[derive(Subcommand)]
enum PeerCmd {
    /// Add a peer: udp://HOST:PORT, optionally ?key=PUBKEY to pin its key.
    Add {
        /// The peer URI.
        uri: String,
        /// Forget the peer when meshd restarts (by default it is kept).
        #[arg(long)]
        temporary: bool,
    },
    /// Remove a peer and close its link.
    Remove {
        /// The peer URI (udp://HOST:PORT).
        uri: String,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Check a policy file without a daemon: syntax, circles, cycles, and its own tests.
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Read meshd's policy file again now (it is also reloaded when it changes).
    Reload,
    /// The policy in force: file, sizes, defaults, what it refused and dropped.
    Show,
    /// Which rule decides each action for a key or an address, and why.
    Explain {
        /// A public key or an overlay address.
        who: String,
        /// A packet to judge: tcp/22, udp/53, icmp.
        packet: Option<String>,
    },
}

#[derive(Subcommand)]
enum ZnetCmd {
    /// Create a znet with this node as its first member; prints the manifest to hand on.
    Create {
        /// Its name (1-12 of a-z, 0-9, -).
        name: String,
        /// Its IPv4 /16.
        #[arg(long)]
        ipv4: String,
        /// Its IPv6 /64.
        #[arg(long)]
        ipv6: Option<String>,
        /// Write the manifest to this file too.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Put a manifest in force on this node (join, or update after adding/removing members).
    Join {
        /// The manifest file.
        file: PathBuf,
    },
    /// Leave a znet: its containers are detached, its namespace removed.
    Leave {
        /// The znet.
        name: String,
    },
    /// The znets of this node.
    List,
    /// One znet: members, containers, counters.
    Show {
        /// The znet.
        name: String,
    },
    /// Attach a container (a network namespace) to a znet.
    Attach {
        /// The znet.
        name: String,
        /// The container's network namespace (name or path).
        #[arg(long)]
        netns: String,
        /// Its address (default: the first free one of this node's subnet).
        #[arg(long)]
        ip: Option<String>,
        /// The interface inside the container.
        #[arg(long)]
        ifname: Option<String>,
    },
    /// Detach a container.
    Detach {
        /// The znet.
        name: String,
        /// The container's network namespace.
        #[arg(long)]
        netns: String,
    },
}

#[derive(Subcommand)]
enum GatewayCmd {
    /// Listeners, the names published here, open connections, bytes and refusals.
    Status,
    /// Forget who holds a name (its publisher is gone), so that another key may publish it.
    Release {
        /// The public name.
        name: String,
    },
}

#[derive(Subcommand)]
enum CircleCmd {
    /// Every circle, with its size.
    List,
    /// One circle: its members as written, and resolved.
    Show {
        /// The circle's name.
        name: String,
    },
    /// Add a member (a key, an address or circle:NAME); creates the circle if needed.
    Add {
        /// The circle's name.
        name: String,
        /// A public key, an overlay address or circle:NAME.
        member: String,
    },
    /// Remove a member.
    Remove {
        /// The circle's name.
        name: String,
        /// A public key, an overlay address or circle:NAME.
        member: String,
    },
}

fn main() {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => {}
        Err(e) => {
            match e.downcast_ref::<api::Error>() {
                Some(refused) => {
                    eprintln!("error: {}", refused.message);
                    if let Some(hint) = &refused.hint {
                        eprintln!("hint: {hint}");
                    }
                }
                None => eprintln!("error: {e:#}"),
            }
            std::process::exit(1);
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let req = match &cli.command {
        Command::Ui { listen } => return ui::serve(&cli.socket, *listen),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "meshctl", &mut out);
            return print(&String::from_utf8_lossy(&out));
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            return print(&String::from_utf8_lossy(&page));
        }
        Command::Verify {
            address,
            public_key,
        } => return verify(address, public_key, cli.json),
        Command::Ping { address, count } => return ping(&cli.socket, address, *count, cli.json),
        Command::Policy(PolicyCmd::Check { file }) => {
            let (report, ok) = policy::check(file)?;
            if cli.json {
                let check = PolicyCheck {
                    valid: ok,
                    report: report.trim_end().to_string(),
                };
                print(&format!("{}\n", serde_json::to_value(check)?))?;
            } else if ok {
                print(&report)?;
            } else {
                eprint!("{report}");
            }
            if !ok {
                std::process::exit(1);
            }
            return Ok(());
        }
        Command::Policy(PolicyCmd::Reload) => Request::PolicyReload,
        Command::Policy(PolicyCmd::Show) => Request::PolicyShow,
        Command::Policy(PolicyCmd::Explain { who, packet }) => Request::PolicyExplain {
            who: who.clone(),
            packet: packet.clone(),
        },
        Command::Circle(CircleCmd::List) => Request::CircleList,
        Command::Circle(CircleCmd::Show { name }) => Request::CircleShow { name: name.clone() },
        Command::Circle(CircleCmd::Add { name, member }) => Request::CircleAdd {
            name: name.clone(),
            member: member.clone(),
        },
        Command::Circle(CircleCmd::Remove { name, member }) => Request::CircleRemove {
            name: name.clone(),
            member: member.clone(),
        },
        Command::Znet(ZnetCmd::Create {
            name,
            ipv4,
            ipv6,
            out,
        }) => {
            let created: ZnetCreated = call(
                &cli.socket,
                &Request::ZnetCreate {
                    name: name.clone(),
                    ipv4: ipv4.clone(),
                    ipv6: ipv6.clone(),
                },
            )?
            .decode()?;
            let manifest = &created.manifest;
            if let Some(f) = out {
                // It holds the znet's secret: readable by its owner only.
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(f)
                    .and_then(|mut h| h.write_all(manifest.as_bytes()))
                    .with_context(|| format!("cannot write {}", f.display()))?;
            }
            return if cli.json {
                print(&pretty(&created)?)
            } else {
                print(manifest)
            };
        }
        Command::Znet(ZnetCmd::Join { file }) => Request::ZnetJoin {
            manifest: std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?,
        },
        Command::Znet(ZnetCmd::Leave { name }) => Request::ZnetLeave { name: name.clone() },
        Command::Znet(ZnetCmd::List) => Request::ZnetList,
        Command::Znet(ZnetCmd::Show { name }) => Request::ZnetShow { name: name.clone() },
        Command::Znet(ZnetCmd::Attach {
            name,
            netns,
            ip,
            ifname,
        }) => Request::ZnetAttach {
            name: name.clone(),
            netns: netns.clone(),
            ip: ip.clone(),
            ifname: ifname.clone(),
            container_id: None,
        },
        Command::Znet(ZnetCmd::Detach { name, netns }) => Request::ZnetDetach {
            name: name.clone(),
            netns: Some(netns.clone()),
            container_id: None,
        },
        Command::Publish {
            znet,
            target,
            name,
            gateways,
            kind,
            max_connections,
            idle_timeout,
        } => {
            let (netns, port) = target
                .rsplit_once(':')
                .and_then(|(n, p)| Some((n, p.parse::<u16>().ok()?)))
                .filter(|(n, _)| !n.is_empty())
                .with_context(|| {
                    format!("{target:?}: write the container's namespace and port, NETNS:PORT (web1:443)")
                })?;
            Request::Publish(api::Publish {
                znet: znet.clone(),
                netns: netns.to_string(),
                port,
                name: name.clone(),
                kind: kind.clone(),
                gateways: gateways.clone(),
                max_connections: *max_connections,
                idle_timeout: *idle_timeout,
            })
        }
        Command::Unpublish { name, kind } => Request::Unpublish {
            name: name.clone(),
            kind: kind.clone(),
        },
        Command::Services => Request::Services,
        Command::Gateway(GatewayCmd::Status) => Request::GatewayStatus,
        Command::Gateway(GatewayCmd::Release { name }) => {
            Request::GatewayRelease { name: name.clone() }
        }
        Command::Name(cmd) => names::request(cmd)?,
        Command::Tree => Request::Tree,
        Command::NetworkChanged => Request::NetworkChanged,
        Command::Routes => Request::Routes,
        Command::Sessions => Request::Sessions,
        Command::SelfInfo => Request::SelfInfo,
        Command::Peers => Request::Peers,
        Command::Status => Request::Status,
        Command::Peer(PeerCmd::Add { uri, temporary }) => Request::PeerAdd {
            uri: uri.clone(),
            persist: !temporary,
        },
        Command::Peer(PeerCmd::Remove { uri }) => Request::PeerRemove { uri: uri.clone() },
    };
    let reply = call(&cli.socket, &req)?;
    let json = cli.json;
    match req {
        Request::SelfInfo => show(reply, json, table::self_info),
        Request::Peers => show(reply, json, |p: &Vec<PeerInfo>| table::peers(p)),
        Request::Status => show(reply, json, table::status),
        Request::PeerAdd { .. } => show(reply, json, table::added),
        Request::PeerRemove { .. } => show(reply, json, table::removed),
        Request::Tree => show(reply, json, table::tree),
        Request::NetworkChanged => show(reply, json, |n: &api::NetworkChanged| {
            format!(
                "sockets bound again: {}; peers told: {}\n",
                n.sockets, n.peers_told
            )
        }),
        Request::Routes => show(reply, json, |r: &Vec<RouteInfo>| table::routes(r)),
        Request::Sessions => show(reply, json, |s: &Vec<SessionInfo>| table::sessions(s)),
        Request::PolicyShow | Request::PolicyReload => show(reply, json, policy::info),
        Request::PolicyExplain { .. } => {
            show(reply, json, |r: &Vec<ExplainRow>| policy::explain(r))
        }
        Request::CircleList => show(reply, json, |c: &Vec<CircleInfo>| policy::circles(c)),
        Request::CircleShow { .. } => show(reply, json, policy::circle),
        Request::CircleAdd { .. } | Request::CircleRemove { .. } => {
            show(reply, json, |e: &CircleEdited| format!("{}\n", e.done))
        }
        Request::ZnetList => show(reply, json, |z: &Vec<ZnetInfo>| znet::list(z)),
        Request::ZnetShow { .. } | Request::ZnetJoin { .. } => show(reply, json, znet::show),
        Request::ZnetAttach { .. } => show(reply, json, znet::attached),
        Request::ZnetDetach { .. } => show(reply, json, |_: &Attachment| "detached\n".into()),
        Request::ZnetLeave { .. } => show(reply, json, |l: &ZnetLeft| format!("left {}\n", l.left)),
        Request::Publish(_) => show(reply, json, gateway::published),
        Request::Unpublish { .. } => show(reply, json, gateway::unpublished),
        Request::Services => show(reply, json, |s: &Vec<api::ServiceInfo>| {
            gateway::services(s)
        }),
        Request::GatewayStatus => show(reply, json, gateway::status),
        Request::GatewayRelease { .. } => show(reply, json, |r: &api::NameReleased| {
            format!("{} released (it was held by {})\n", r.name, r.was_held_by)
        }),
        Request::NameClaim { .. } => show(reply, json, names::claimed),
        Request::NameRelease { .. } => show(reply, json, names::released),
        Request::NameResolve { .. } => show(reply, json, names::resolved),
        Request::NameList => show(reply, json, |n: &Vec<api::NameInfo>| names::list(n)),
        Request::NameDelegate { .. } => show(reply, json, names::delegated),
        Request::NamePublish { .. } => show(reply, json, names::published),
        // Answered above.
        Request::Ping { .. } | Request::ZnetCreate { .. } => Ok(()),
    }
}

/// Reads the reply's data as a `T` (or its error), and prints it: as JSON with `--json`, else
/// as `text` makes it.
fn show<T: DeserializeOwned + Serialize>(
    reply: Reply,
    json: bool,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    let data: T = reply.decode()?;
    if json {
        print(&pretty(&data)?)
    } else {
        print(&text(&data))
    }
}

/// Indented JSON with the keys in order, and a newline.
fn pretty(v: &impl Serialize) -> anyhow::Result<String> {
    // Through a `Value`, whose keys are sorted: the order `--json` always printed.
    Ok(format!(
        "{}\n",
        serde_json::to_string_pretty(&serde_json::to_value(v)?)?
    ))
}

/// Prints to stdout; a reader that went away (`meshctl peers | head -1`) is not an error.
fn print(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(e).context("cannot write to stdout"),
        _ => Ok(()),
    }
}

/// Overlay pings, one a second; prints each, then a summary (or a JSON list).
fn ping(socket: &Path, addr: &std::net::Ipv6Addr, count: u32, json: bool) -> anyhow::Result<()> {
    let mut results = Vec::new();
    let mut ok = 0;
    for i in 0..count {
        if i > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        let outcome: PingOutcome = call(
            socket,
            &Request::Ping {
                address: addr.to_string(),
            },
        )?
        .decode()?;
        let line = match &outcome {
            PingOutcome::Reply {
                hops,
                rtt_us,
                direct,
            } => {
                ok += 1;
                let rtt = *rtt_us as f64 / 1000.0;
                let path = match direct {
                    Some(via) => format!("direct via {via}"),
                    None => "relayed".to_string(),
                };
                format!("reply from {addr}: hops={hops} time={rtt:.3} ms, {path}")
            }
            PingOutcome::Unreachable => format!("{addr}: no node owns this address"),
            PingOutcome::Timeout => format!("{addr}: no answer within 3 s"),
        };
        if json {
            results.push(outcome);
        } else {
            print(&format!("{line}\n"))?;
        }
    }
    if json {
        print(&pretty(&results)?)?;
    } else {
        print(&format!("{count} sent, {ok} answered\n"))?;
    }
    if ok == 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// The longest answer read from meshd (a `status` or `peers` of a large node is well under).
const MAX_ANSWER: u64 = 16 << 20;

/// Sends one request and reads one reply.
fn call(socket: &Path, req: &Request) -> anyhow::Result<Reply> {
    let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => anyhow::anyhow!(
            "meshd is not running (nothing answers on {}); start it with `sudo meshd`, \
             or point --socket at its admin_socket",
            socket.display()
        ),
        ErrorKind::PermissionDenied => anyhow::anyhow!(
            "permission denied on {}: run as root, or as a member of meshd's admin_group",
            socket.display()
        ),
        _ => anyhow::anyhow!("cannot connect to meshd at {}: {e}", socket.display()),
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    (&stream)
        .write_all(&line)
        .context("cannot send the request to meshd")?;
    let mut answer = String::new();
    BufReader::new((&stream).take(MAX_ANSWER))
        .read_line(&mut answer)
        .context("meshd did not answer (timed out or closed the connection)")?;
    if answer.is_empty() {
        bail!("meshd closed the connection without answering");
    }
    serde_json::from_str(&answer).context("meshd sent an answer meshctl does not understand")
}

fn verify(address: &std::net::Ipv6Addr, key: &str, json: bool) -> anyhow::Result<()> {
    let v = verify::check(address, key).map_err(|e| anyhow::anyhow!("public key: {e}"))?;
    let text = if json {
        format!("{}\n", serde_json::to_value(&v)?)
    } else if v.belongs {
        format!("{address} belongs to {}\n", v.public_key)
    } else {
        format!(
            "{address} does NOT belong to {} (its address is {}, its subnet {})\n",
            v.public_key, v.node_address, v.subnet
        )
    };
    print(&text)?;
    if !v.belongs {
        std::process::exit(2);
    }
    Ok(())
}
