//! Traffic between the lab's nodes: every helper sends a bounded number of packets and
//! gives up after a bounded time. Servers are started first and report `ready`.

use std::fmt::Display;
use std::net::IpAddr;
use std::time::Duration;

use crate::exec::{Bg, LabError, Output};
use crate::{Lab, Node};

// The TCP servers' scripts begin with accept.py, which holds their listening code.
const TCP_PY: &str = concat!(
    include_str!("scripts/accept.py"),
    include_str!("scripts/tcp.py")
);
const UDP_PY: &str = include_str!("scripts/udp.py");
const RAW_PY: &str = include_str!("scripts/raw.py");
const FTP_PY: &str = concat!(
    include_str!("scripts/accept.py"),
    include_str!("scripts/ftp.py")
);
const ACKS_PY: &str = include_str!("scripts/acks.py");

/// How long a server may take to say `ready`. Generous: in the kernel matrix's emulated
/// VMs on a loaded host, starting python3 in a namespace has taken over 5 s.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// A one-connection server whose client is done exits at once; this bounds the wait.
const SERVER_EXIT_TIMEOUT: Duration = Duration::from_secs(5);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(12);

/// What the TCP client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpClientResult {
    /// The client's source port.
    pub sport: u16,
    /// The echo came back intact.
    pub echoed: bool,
}

/// What the UDP client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpClientResult {
    pub sport: u16,
    /// One of `reply`, `refused` (ICMP port unreachable), `timeout` per datagram.
    pub outcomes: Vec<String>,
}

/// The verification tags of a hand-made SCTP association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SctpHandshake {
    /// The client's tag (its INIT's initiate tag): what the server's packets carry.
    pub client_tag: u32,
    /// The server's tag (its INIT-ACK's initiate tag): what the client's packets carry.
    pub server_tag: u32,
}

/// The source port a client script printed (its line `sport N`).
fn sport_of(out: &Output, what: &str) -> Result<u16, LabError> {
    out.stdout
        .lines()
        .find(|l| l.starts_with("sport "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| LabError(format!("{what}: no source port in output:\n{}", out.stdout)))
}

impl Lab {
    /// Runs `script` with `args` in `node` and requires it to succeed.
    fn python(&self, node: Node, script: &str, args: &[&dyn Display]) -> Result<Output, LabError> {
        let args: Vec<String> = args.iter().map(ToString::to_string).collect();
        let mut all = vec!["python3", "-c", script];
        all.extend(args.iter().map(String::as_str));
        self.exec_timeout(node, &all, CLIENT_TIMEOUT)
    }

    /// Starts `script` with `args` in `node` and waits until it is `ready`.
    fn python_server(
        &self,
        node: Node,
        script: &str,
        args: &[&dyn Display],
    ) -> Result<Bg, LabError> {
        let args: Vec<String> = args.iter().map(ToString::to_string).collect();
        let mut all = vec!["python3", "-c", script];
        all.extend(args.iter().map(String::as_str));
        let mut bg = self.spawn(node, &all)?;
        bg.wait_for_line("ready", READY_TIMEOUT)?;
        Ok(bg)
    }

    /// `count` echo requests from `from` to `to`, 0.2 s apart, waiting at most 1 s for each
    /// reply. Returns ping's output whatever the loss (check `success()` if it matters).
    pub fn ping(&self, from: Node, to: IpAddr, count: u32) -> Result<Output, LabError> {
        let count_s = count.to_string();
        let to_s = to.to_string();
        let family = if to.is_ipv6() { "-6" } else { "-4" };
        self.exec_timeout(
            from,
            &[
                "ping", family, "-n", "-q", "-c", &count_s, "-i", "0.2", "-W", "1", &to_s,
            ],
            Duration::from_secs(u64::from(count) + 5),
        )
    }

    /// Starts a one-connection TCP echo server in `node`, bound to `bind:port`.
    pub fn tcp_server(&self, node: Node, bind: IpAddr, port: u16) -> Result<Bg, LabError> {
        self.python_server(node, TCP_PY, &[&"server", &bind, &port])
    }

    /// Connects from `node` to `dst:port`, sends a few bytes, reads the echo and closes
    /// first (so the router's entry goes FIN_WAIT ... TIME_WAIT).
    pub fn tcp_client(
        &self,
        node: Node,
        dst: IpAddr,
        port: u16,
    ) -> Result<TcpClientResult, LabError> {
        let out = self.python(node, TCP_PY, &[&"client", &dst, &port])?;
        let sport = sport_of(&out, "tcp client")?;
        Ok(TcpClientResult {
            sport,
            echoed: out.stdout.lines().any(|l| l == "echo ok"),
        })
    }

    /// One TCP connection from the client to `dst:dport`, answered by an echo server
    /// started on the server at `listen:lport` (the same as `dst:dport` unless NAT on the
    /// router rewrites one into the other). Returns the client's source port; an error
    /// unless the echo came back.
    pub fn tcp_exchange(
        &self,
        listen: IpAddr,
        lport: u16,
        dst: IpAddr,
        dport: u16,
    ) -> Result<u16, LabError> {
        let mut server = self.tcp_server(Node::Server, listen, lport)?;
        let client = self.tcp_client(Node::Client, dst, dport)?;
        if !client.echoed {
            return Err(LabError::new(format!(
                "tcp client to {dst}:{dport} (server at {listen}:{lport}): no echo came back"
            )));
        }
        // The client read the server's FIN before it closed: the server is done.
        server.finish(SERVER_EXIT_TIMEOUT)?.ok()?;
        Ok(client.sport)
    }

    /// `count` UDP datagrams from the client to `dst:dport`, each answered by an echo
    /// server started on the server at `listen:lport` (as [`tcp_exchange`](Self::tcp_exchange)
    /// for NAT). Returns the client's source port; an error unless every answer came back.
    pub fn udp_exchange(
        &self,
        listen: IpAddr,
        lport: u16,
        dst: IpAddr,
        dport: u16,
        count: u32,
    ) -> Result<u16, LabError> {
        let _server = self.udp_server(Node::Server, listen, lport, count)?;
        let wait = Duration::from_secs(2);
        let client = self.udp_client(Node::Client, dst, dport, count, wait)?;
        if client.outcomes.len() != count as usize || client.outcomes.iter().any(|o| o != "reply") {
            return Err(LabError::new(format!(
                "udp client to {dst}:{dport} (server at {listen}:{lport}): {:?}",
                client.outcomes
            )));
        }
        Ok(client.sport)
    }

    /// Starts a UDP echo server in `node` answering `count` datagrams.
    pub fn udp_server(
        &self,
        node: Node,
        bind: IpAddr,
        port: u16,
        count: u32,
    ) -> Result<Bg, LabError> {
        self.python_server(node, UDP_PY, &[&"server", &bind, &port, &count])
    }

    /// Sends `count` datagrams from `node` to `dst:port`, one at a time, waiting up to
    /// `wait` for each answer.
    pub fn udp_client(
        &self,
        node: Node,
        dst: IpAddr,
        port: u16,
        count: u32,
        wait: Duration,
    ) -> Result<UdpClientResult, LabError> {
        let out = self.python(
            node,
            UDP_PY,
            &[&"client", &dst, &port, &count, &wait.as_secs_f64()],
        )?;
        let sport = sport_of(&out, "udp client")?;
        Ok(UdpClientResult {
            sport,
            outcomes: out
                .stdout
                .lines()
                .filter(|l| matches!(*l, "reply" | "refused" | "timeout"))
                .map(str::to_owned)
                .collect(),
        })
    }

    /// Starts, in `node`, a raw-socket responder that answers one packet of IP protocol
    /// `proto` from `peer` (IPv4).
    pub fn raw_server(&self, node: Node, proto: u8, peer: IpAddr) -> Result<Bg, LabError> {
        self.python_server(node, RAW_PY, &[&"gen-serve", &proto, &peer])
    }

    /// Sends one packet of IP protocol `proto` from `node` to `dst` and waits for the
    /// answer (from [`raw_server`](Self::raw_server)).
    pub fn raw_exchange(&self, node: Node, proto: u8, dst: IpAddr) -> Result<Output, LabError> {
        self.python(node, RAW_PY, &[&"gen-send", &proto, &dst])
    }

    /// Sends `count` bare TCP ACKs, of no connection, from `node` to `dst:port` (source
    /// ports 40000 and up): what conntrack calls invalid with `nf_conntrack_tcp_loose=0`.
    pub fn bare_acks(
        &self,
        node: Node,
        dst: IpAddr,
        port: u16,
        count: u32,
    ) -> Result<Output, LabError> {
        self.python(node, ACKS_PY, &[&dst, &port, &count])
    }

    /// Starts, in `node`, the SCTP side that answers INIT with INIT-ACK and COOKIE-ECHO
    /// with COOKIE-ACK, for packets from `peer`.
    pub fn sctp_server(&self, node: Node, peer: IpAddr) -> Result<Bg, LabError> {
        self.python_server(node, RAW_PY, &[&"sctp-serve", &peer])
    }

    /// A hand-made SCTP four-way handshake from `node` to `dst` (INIT with initiate tag
    /// `tag`, INIT-ACK, COOKIE-ECHO, COOKIE-ACK).
    pub fn sctp_handshake(
        &self,
        node: Node,
        dst: IpAddr,
        sport: u16,
        dport: u16,
        tag: u32,
    ) -> Result<SctpHandshake, LabError> {
        let out = self.python(node, RAW_PY, &[&"sctp-connect", &dst, &sport, &dport, &tag])?;
        let tags: Vec<u32> = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("tags "))
            .map(|t| {
                t.split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        match tags[..] {
            [client_tag, server_tag] => Ok(SctpHandshake {
                client_tag,
                server_tag,
            }),
            _ => Err(LabError(format!(
                "sctp handshake: no tags in:\n{}",
                out.stdout
            ))),
        }
    }

    /// Starts a one-session passive-mode FTP server in `node` on `bind:port`.
    pub fn ftp_server(&self, node: Node, bind: IpAddr, port: u16) -> Result<Bg, LabError> {
        self.python_server(node, FTP_PY, &[&"server", &bind, &port])
    }

    /// Logs in from `node` to the FTP server at `host:port` (Python's ftplib) and
    /// retrieves one file over a PASV data connection. Returns the control connection's
    /// source port.
    pub fn ftp_client(&self, node: Node, host: IpAddr, port: u16) -> Result<u16, LabError> {
        let out = self.python(node, FTP_PY, &[&"client", &host, &port])?;
        if !out.stdout.contains("data ct-lab data") {
            return Err(LabError(format!(
                "ftp client got no data ({}):\n{}{}",
                out.status, out.stdout, out.stderr
            )));
        }
        sport_of(&out, "ftp client")
    }
}
