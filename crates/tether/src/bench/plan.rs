//! What a `tether bench` run is asked to do: the [`Scenario`] and the
//! validated [`Plan`] that [`Plan::from_args`] builds from the command line
//! (every flag checked, and the connections asked for checked against the
//! open-files limit and the ephemeral ports), plus what follows from it: the
//! connections in all, each sender's quota, the run's hard deadline.
//!
//! Not here: the socket-level checks it calls ([`super::net`]), the memory
//! reading it uses to check `--server-pid` ([`super::rss`]), running the
//! plan ([`super::run`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::net::{raise_open_files_limit, source_addresses, CONNECT_TIMEOUT};
use super::rss::vm_rss_kib;
use super::DRAIN_LIMIT;
use crate::cli::{BenchArgs, BenchCommonArgs, BenchLoadArgs, BenchPeerArgs, BenchProtocol, BenchScenario, UsageError};

/// File descriptors kept free for the runtime, stdio and the like.
const SPARE_FILES: u64 = 64;
/// Largest `--payload-size` accepted (the gateway's own limit is usually lower).
const MAX_PAYLOAD: usize = 16 << 20;
/// Longest `--duration` or `--hold`.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Publish,
    Fanout,
    Connections,
    Rpc,
}

impl Scenario {
    pub(super) fn name(self) -> &'static str {
        match self {
            Scenario::Publish => "publish",
            Scenario::Fanout => "fanout",
            Scenario::Connections => "connections",
            Scenario::Rpc => "rpc",
        }
    }
}

/// The server's protocol (see [`BenchProtocol`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    Tether,
    Broadcast,
    Pusher(PusherApp),
}

/// A Pusher app's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherApp {
    pub id: String,
    pub key: String,
    pub secret: String,
}

impl Protocol {
    fn from_args(a: BenchPeerArgs) -> Protocol {
        match a.protocol {
            BenchProtocol::Tether => Protocol::Tether,
            BenchProtocol::Broadcast => Protocol::Broadcast,
            BenchProtocol::Pusher => Protocol::Pusher(PusherApp {
                id: a.pusher_app_id,
                key: a.pusher_key,
                secret: a.pusher_secret,
            }),
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Protocol::Tether => "tether",
            Protocol::Broadcast => "broadcast",
            Protocol::Pusher(_) => "pusher",
        }
    }
}

/// A validated `tether bench` invocation.
#[derive(Debug)]
pub struct Plan {
    pub scenario: Scenario,
    pub protocol: Protocol,
    pub url: String,
    pub token: Option<String>,
    /// 0 for `connections` and `rpc`.
    pub publishers: usize,
    /// 0 except for `fanout`.
    pub subscribers: usize,
    /// Idle connections (`connections`), 0 otherwise.
    pub idle: usize,
    /// Loopback addresses the idle connections are opened from, in turn
    /// (empty: the system picks).
    pub source_addrs: Vec<Ipv4Addr>,
    /// `--url`'s address, resolved, when connecting from `source_addrs`.
    pub target: Option<SocketAddr>,
    /// How long `connections` holds them once all are open.
    pub hold: Duration,
    /// Agent connections (`rpc`), 0 otherwise.
    pub agents: usize,
    /// Client connections sending commands (`rpc`), 0 otherwise.
    pub clients: usize,
    /// Publishes (`--window`) or commands (`--concurrency`) each sender keeps
    /// in flight.
    pub window: usize,
    /// Bytes of each publish's (or command's) `data` JSON.
    pub payload: usize,
    /// Target publishes per second across all publishers; `None`: as fast as
    /// the windows allow.
    pub rate: Option<f64>,
    pub duration: Duration,
    /// Publishes (or commands) in all, split across the senders; `None`: until
    /// `duration`.
    pub count: Option<u64>,
    pub server_pid: Option<u32>,
    pub json: bool,
    /// Random per run: channel names, command types and ids, so that runs
    /// never collide with each other or with deduplication.
    pub run_id: String,
}

impl Plan {
    /// A plan with nothing to do, to fill in.
    fn empty(scenario: Scenario) -> Plan {
        Plan {
            scenario,
            protocol: Protocol::Tether,
            url: String::new(),
            token: None,
            publishers: 0,
            subscribers: 0,
            idle: 0,
            source_addrs: Vec::new(),
            target: None,
            hold: Duration::ZERO,
            agents: 0,
            clients: 0,
            window: 1,
            payload: 0,
            rate: None,
            duration: Duration::ZERO,
            count: None,
            server_pid: None,
            json: false,
            run_id: String::new(),
        }
    }

    /// Checks the flags, raises the soft open-files limit to the hard one, and
    /// checks that the connections asked for fit under it.
    pub fn from_args(args: BenchArgs) -> Result<Plan, UsageError> {
        let usage = |msg: &str| Err(UsageError(msg.to_owned()));
        let (mut plan, common, load, source_addrs) = match args.scenario {
            BenchScenario::Publish(a) => {
                if a.publishers == 0 {
                    return usage("--publishers must be at least 1");
                }
                if a.window == 0 {
                    return usage("--window must be at least 1");
                }
                let plan = Plan {
                    publishers: a.publishers,
                    window: a.window,
                    ..Plan::empty(Scenario::Publish)
                };
                (plan, a.common, Some(a.load), None)
            }
            BenchScenario::Fanout(a) => {
                if a.publishers == 0 {
                    return usage("--publishers must be at least 1");
                }
                if a.subscribers == 0 {
                    return usage("--subscribers must be at least 1");
                }
                if a.window == 0 {
                    return usage("--window must be at least 1");
                }
                if let Some(r) = a.rate {
                    if !(r.is_finite() && r > 0.0) {
                        return Err(UsageError(format!(
                            "invalid value '{r}' for --rate: publishes per second, more than 0 (leave it out for as fast as possible)"
                        )));
                    }
                }
                let protocol = Protocol::from_args(a.peer);
                if protocol != Protocol::Tether && a.publishers != 1 {
                    return usage("--publishers must be 1 with --protocol broadcast or pusher (one seq stream)");
                }
                let plan = Plan {
                    protocol,
                    publishers: a.publishers,
                    subscribers: a.subscribers,
                    window: a.window,
                    rate: a.rate,
                    ..Plan::empty(Scenario::Fanout)
                };
                (plan, a.common, Some(a.load), None)
            }
            BenchScenario::Connections(a) => {
                if a.connections == 0 {
                    return usage("--connections must be at least 1");
                }
                if a.hold > MAX_DURATION {
                    return usage("--hold must be at most 24h");
                }
                let plan = Plan {
                    protocol: Protocol::from_args(a.peer),
                    idle: a.connections,
                    hold: a.hold,
                    ..Plan::empty(Scenario::Connections)
                };
                (plan, a.common, None, Some(a.source_addrs))
            }
            BenchScenario::Rpc(a) => {
                if a.agents == 0 {
                    return usage("--agents must be at least 1");
                }
                if a.clients == 0 {
                    return usage("--clients must be at least 1");
                }
                if a.concurrency == 0 {
                    return usage("--concurrency must be at least 1");
                }
                let plan = Plan {
                    agents: a.agents,
                    clients: a.clients,
                    window: a.concurrency,
                    ..Plan::empty(Scenario::Rpc)
                };
                (plan, a.common, Some(a.load), None)
            }
        };
        let BenchCommonArgs {
            url,
            token,
            server_pid,
            json,
        } = common;
        let url = match plan.protocol {
            Protocol::Tether => crate::client::ws_url(&url).map_err(|e| UsageError(e.to_string()))?,
            _ if url.starts_with("ws://") => url.trim_end_matches('/').to_owned(),
            _ => {
                return Err(UsageError(format!(
                    "--protocol {} needs a ws:// --url, not {url}",
                    plan.protocol.name()
                )))
            }
        };
        if url.starts_with("wss://") {
            return usage(
                "tether bench speaks plain ws:// only (run it on the gateway's machine, against a ws:// listener)",
            );
        }
        if let Some(BenchLoadArgs {
            duration,
            count,
            payload_size,
        }) = load
        {
            if duration.is_zero() {
                return usage("--duration must be more than 0");
            }
            if duration > MAX_DURATION {
                return usage("--duration must be at most 24h");
            }
            if count == Some(0) {
                return usage("--count must be at least 1");
            }
            if payload_size > MAX_PAYLOAD {
                return Err(UsageError(format!("--payload-size must be at most {MAX_PAYLOAD}")));
            }
            (plan.duration, plan.count, plan.payload) = (duration, count, payload_size);
        }
        if let Some(asked) = source_addrs {
            (plan.source_addrs, plan.target) = source_addresses(&url, asked, plan.idle)?;
        }
        if let Some(pid) = server_pid {
            if let Err(e) = vm_rss_kib(pid) {
                return Err(UsageError(format!("invalid value '{pid}' for --server-pid: {e:#}")));
            }
        }
        let connections = plan.connections() as u64;
        let (soft, hard) = raise_open_files_limit();
        if connections + SPARE_FILES > soft {
            return Err(UsageError(format!(
                "{connections} connections need about {} open files, but this process may open only {soft} \
                 (soft limit, raised to the hard limit {hard}); ask for fewer, or raise the hard limit \
                 (ulimit -Hn, /etc/security/limits.conf)",
                connections + SPARE_FILES
            )));
        }
        plan.url = url;
        plan.token = token;
        plan.server_pid = server_pid;
        plan.json = json;
        plan.run_id = tether_gateway::clock::random_id("")[..8].to_owned();
        Ok(plan)
    }

    pub(super) fn connections(&self) -> usize {
        self.publishers + self.subscribers + self.idle + self.agents + self.clients
    }

    /// The connections that send publishes or commands.
    fn senders(&self) -> usize {
        self.publishers + self.clients
    }

    /// Everything must be over by then: connecting (generously), sending (or
    /// holding) and closing, draining acks, deliveries and results, and some
    /// slack.
    pub(super) fn hard_deadline(&self) -> Duration {
        let setup = Duration::from_secs(30) + Duration::from_millis(10) * self.connections() as u32;
        match self.scenario {
            Scenario::Connections => setup + self.hold + CONNECT_TIMEOUT + Duration::from_secs(10),
            _ => setup + self.duration + 2 * DRAIN_LIMIT + Duration::from_secs(10),
        }
    }

    /// Publishes (or commands) sender `i` sends at most.
    pub(super) fn quota(&self, i: usize) -> Option<u64> {
        self.count.map(|c| {
            let p = self.senders().max(1) as u64;
            c / p + u64::from((i as u64) < c % p)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_split_across_publishers() {
        let args = |count| Plan {
            publishers: 3,
            subscribers: 1,
            duration: Duration::from_secs(1),
            count,
            ..Plan::empty(Scenario::Fanout)
        };
        let plan = args(Some(10));
        assert_eq!(
            (0..3).map(|i| plan.quota(i).expect("quota")).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        assert_eq!(args(None).quota(0), None);
        // Rpc: split across the clients.
        let rpc = Plan {
            agents: 5,
            clients: 2,
            count: Some(5),
            ..Plan::empty(Scenario::Rpc)
        };
        assert_eq!((rpc.quota(0), rpc.quota(1)), (Some(3), Some(2)));
        assert_eq!(rpc.connections(), 7);
    }
}
