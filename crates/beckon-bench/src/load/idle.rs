//! Idle visitors: each opens a WebSocket, sends one page view, waits for its acknowledgement
//! and then stays connected, silent, as a visitor reading a page does.
//!
//! Tens of thousands of sockets do not fit in one client process or behind one source
//! address: a process may hold only so many open files (`RLIMIT_NOFILE`), and one source
//! address reaches about 28,000 ephemeral ports towards one server port. So the visitors are
//! spread over child processes (the same binary, re-executed with [`ChildPlan::to_args`]),
//! each bound to its own loopback source address (127.0.0.2, 127.0.0.3, …: Linux routes all
//! of 127/8 to `lo`). A child reports on its standard output, one line at a time, and exits
//! when its standard input closes, so a parent that dies takes its children with it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;
use tokio::process::{Child, ChildStdin};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use super::Target;
use super::drive::{AckWait, Seen, wait_for_ack, ws_handshake};
use super::visit::Visit;

/// The longest one visitor may take to connect, upgrade and have its page view acknowledged.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a child reports its progress.
const REPORT_EVERY: Duration = Duration::from_millis(500);
/// Ephemeral ports one source address has towards one server port, with a margin
/// (`net.ipv4.ip_local_port_range` is 32768–60999 by default).
pub const PORTS_PER_SOURCE: usize = 27_000;

/// What one child process does.
#[derive(Clone, Debug)]
pub struct ChildPlan {
    /// The server.
    pub target: Target,
    /// The loopback address its sockets are bound to.
    pub source: IpAddr,
    /// Idle visitors to connect.
    pub count: usize,
    /// Visitors setting up at once.
    pub parallel: usize,
    /// Seed of the visitors' ids.
    pub seed: u64,
}

impl ChildPlan {
    /// The command-line arguments that make `load-report` run this plan.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--idle-child".into(),
            "--connect".into(),
            self.target.addr.to_string(),
            "--site".into(),
            self.target.site.clone(),
            "--origin".into(),
            self.target.origin.clone(),
            "--source".into(),
            self.source.to_string(),
            "--count".into(),
            self.count.to_string(),
            "--parallel".into(),
            self.parallel.to_string(),
            "--seed".into(),
            self.seed.to_string(),
        ]
    }

    /// Reads the arguments [`ChildPlan::to_args`] wrote (after `--idle-child`).
    pub fn from_args(args: &[String]) -> Result<ChildPlan, String> {
        let get = |name: &str| -> Result<&str, String> {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .map(String::as_str)
                .ok_or(format!("--idle-child needs {name}"))
        };
        let parse = |name: &str| -> Result<u64, String> {
            get(name)?
                .parse()
                .map_err(|_| format!("{name} must be a number"))
        };
        let addr: SocketAddr = get("--connect")?
            .parse()
            .map_err(|_| "--connect must be an address".to_owned())?;
        Ok(ChildPlan {
            target: Target {
                addr,
                site: get("--site")?.to_owned(),
                origin: get("--origin")?.to_owned(),
            },
            source: get("--source")?
                .parse()
                .map_err(|_| "--source must be an IP address".to_owned())?,
            count: parse("--count")? as usize,
            parallel: parse("--parallel")?.max(1) as usize,
            seed: parse("--seed")?,
        })
    }
}

/// A child's counts, as last reported.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// Visitors connected and acknowledged, and still connected.
    pub connected: u64,
    /// Visitors that could not connect or were not acknowledged.
    pub failed: u64,
    /// Visitors connected once whose socket has since closed.
    pub dropped: u64,
    /// Every visitor has succeeded or failed.
    pub ready: bool,
    /// The first failure, as the child saw it.
    pub first_error: Option<String>,
    /// The child has exited (or its output ended).
    pub gone: bool,
}

impl Progress {
    fn line(&self, ready: bool) -> String {
        format!(
            "{} {} {} {}\t{}",
            if ready { "ready" } else { "progress" },
            self.connected,
            self.failed,
            self.dropped,
            self.first_error.as_deref().unwrap_or("")
        )
    }

    fn parse(line: &str) -> Option<Progress> {
        let (counts, error) = line.split_once('\t').unwrap_or((line, ""));
        let mut f = counts.split_whitespace();
        let ready = match f.next()? {
            "ready" => true,
            "progress" => false,
            _ => return None,
        };
        Some(Progress {
            connected: f.next()?.parse().ok()?,
            failed: f.next()?.parse().ok()?,
            dropped: f.next()?.parse().ok()?,
            ready,
            first_error: (!error.is_empty()).then(|| error.to_owned()),
            gone: false,
        })
    }
}

/// The child's side: connects the plan's visitors, reports, and holds them until standard
/// input closes.
pub async fn run_child(plan: ChildPlan) {
    let counts = Arc::new(Counts::default());
    let first_error = Arc::new(Mutex::new(None::<String>));
    let limit = Arc::new(Semaphore::new(plan.parallel));
    let target = Arc::new(plan.target.clone());
    let reporter = {
        let counts = counts.clone();
        let first_error = first_error.clone();
        let total = plan.count as u64;
        tokio::spawn(async move {
            let mut out = tokio::io::stdout();
            loop {
                let p = counts.progress(&first_error);
                let ready = p.connected + p.failed + p.dropped >= total;
                let _ = out
                    .write_all(format!("{}\n", p.line(ready)).as_bytes())
                    .await;
                let _ = out.flush().await;
                if ready {
                    break;
                }
                tokio::time::sleep(REPORT_EVERY).await;
            }
        })
    };
    for i in 0..plan.count as u64 {
        let permit = limit.clone().acquire_owned().await.expect("never closed");
        let (target, counts, first_error) = (target.clone(), counts.clone(), first_error.clone());
        let (source, seed) = (plan.source, plan.seed);
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let setup =
                tokio::time::timeout(SETUP_TIMEOUT, idle_visitor(&target, source, &mut rng));
            let ws = match setup.await {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => return counts.fail(&first_error, e),
                Err(_) => {
                    return counts.fail(&first_error, "no acknowledgement within 30 s".into());
                }
            };
            counts.connected.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            hold(ws).await;
            counts.connected.fetch_sub(1, Ordering::Relaxed);
            counts.dropped.fetch_add(1, Ordering::Relaxed);
        });
    }
    let _ = reporter.await;
    // Hold the sockets until the parent closes our standard input.
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
}

#[derive(Default)]
struct Counts {
    connected: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

impl Counts {
    fn progress(&self, first_error: &Mutex<Option<String>>) -> Progress {
        Progress {
            connected: self.connected.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            ready: false,
            first_error: first_error.lock().expect("not poisoned").clone(),
            gone: false,
        }
    }

    fn fail(&self, first_error: &Mutex<Option<String>>, e: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        first_error
            .lock()
            .expect("not poisoned")
            .get_or_insert(e.replace(['\t', '\n'], " "));
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Connects from `source`, sends one page view and waits for its acknowledgement.
async fn idle_visitor(
    target: &Target,
    source: IpAddr,
    rng: &mut fastrand::Rng,
) -> Result<Socket, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let stream = socket
        .connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut visit = Visit::new(rng, 1, super::CHROME.to_owned());
    let mut ws = ws_handshake(target, &visit, stream).await?;
    let batch = visit.next_batch(rng, 1);
    ws.send(Message::Text(visit.ws_frame(&batch, true).into()))
        .await
        .map_err(|e| format!("send: {e}"))?;
    match wait_for_ack(&mut ws, &mut visit, &batch.ids, &mut Seen::default()).await {
        AckWait::Acked => Ok(ws),
        AckWait::Refused(why) | AckWait::Broken(why) => Err(why),
    }
}

/// Reads until the socket closes: nothing is sent, but pings are answered, since tungstenite
/// queues the pong while reading and writes it on the next read.
async fn hold(mut ws: Socket) {
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_close() {
            break;
        }
    }
}

/// How to spread idle visitors over processes and addresses.
#[derive(Clone, Copy, Debug)]
pub struct IdlePlan {
    /// Idle visitors in all.
    pub visitors: usize,
    /// The most one child process holds (below its open-file limit and the ports of one
    /// source address).
    pub per_process: usize,
    /// Visitors setting up at once, per child.
    pub parallel: usize,
    /// Seed of the visitors' ids.
    pub seed: u64,
}

/// The children holding the idle visitors.
pub struct IdleFleet {
    children: Vec<Running>,
}

struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    progress: Arc<Mutex<Progress>>,
    /// The loopback address of its sockets.
    source: IpAddr,
}

impl IdleFleet {
    /// Starts the children of `plan` against `target`; `exe` is the `load-report` binary.
    pub fn spawn(exe: &Path, target: &Target, plan: &IdlePlan) -> io::Result<IdleFleet> {
        let per = plan.per_process.clamp(1, PORTS_PER_SOURCE);
        let mut children = Vec::new();
        let mut left = plan.visitors;
        let mut i = 0u64;
        while left > 0 {
            let count = left.min(per);
            left -= count;
            // 127.0.0.2, 127.0.0.3, …, then on into 127.0.1.x: all of 127/8 is loopback.
            let n = 2 + i as u32;
            let source = IpAddr::V4(Ipv4Addr::from(0x7F00_0000 | n));
            let child_plan = ChildPlan {
                target: target.clone(),
                source,
                count,
                parallel: plan.parallel,
                seed: plan
                    .seed
                    .wrapping_add(i.wrapping_mul(0xA076_1D64_78BD_642F)),
            };
            let mut child = tokio::process::Command::new(exe)
                .args(child_plan.to_args())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()?;
            let stdin = child.stdin.take();
            let stdout = child.stdout.take().expect("piped");
            let progress = Arc::new(Mutex::new(Progress::default()));
            let p = progress.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(now) = Progress::parse(&line) {
                        *p.lock().expect("not poisoned") = now;
                    }
                }
                p.lock().expect("not poisoned").gone = true;
            });
            children.push(Running {
                child,
                stdin,
                progress,
                source,
            });
            i += 1;
        }
        Ok(IdleFleet { children })
    }

    /// The client processes and their source addresses.
    pub fn processes(&self) -> Vec<(Option<u32>, IpAddr)> {
        self.children
            .iter()
            .map(|c| (c.child.id(), c.source))
            .collect()
    }

    /// The children's counts, added up; `ready` once every child is, `gone` if any is.
    pub fn progress(&self) -> Progress {
        let mut sum = Progress {
            ready: true,
            ..Progress::default()
        };
        for c in &self.children {
            let p = c.progress.lock().expect("not poisoned");
            sum.connected += p.connected;
            sum.failed += p.failed;
            sum.dropped += p.dropped;
            sum.ready &= p.ready;
            sum.gone |= p.gone;
            if sum.first_error.is_none() {
                sum.first_error.clone_from(&p.first_error);
            }
        }
        sum
    }

    /// Waits until every child is ready, one has gone, or nothing has moved for `stall`;
    /// `tick` sees the progress every second.
    pub async fn wait_ready(&self, stall: Duration, mut tick: impl FnMut(&Progress)) -> Progress {
        let mut last = (u64::MAX, Instant::now());
        let mut next_tick = Instant::now();
        loop {
            let p = self.progress();
            if p.ready || p.gone {
                return p;
            }
            let moved = p.connected + p.failed + p.dropped;
            if moved != last.0 {
                last = (moved, Instant::now());
            } else if last.1.elapsed() > stall {
                return p;
            }
            if Instant::now() >= next_tick {
                tick(&p);
                next_tick += Duration::from_secs(1);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Closes the children's standard input, so they exit and their sockets close, and waits
    /// for them.
    pub async fn close(mut self) {
        for c in &mut self.children {
            c.stdin = None;
        }
        for c in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(10), c.child.wait())
                .await
                .is_err()
            {
                let _ = c.child.kill().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_plan_survives_its_command_line() {
        let plan = ChildPlan {
            target: Target::new("127.0.0.1:9000".parse().unwrap()),
            source: "127.0.0.3".parse().unwrap(),
            count: 19_000,
            parallel: 64,
            seed: 42,
        };
        let args = plan.to_args();
        let back = ChildPlan::from_args(&args[1..]).unwrap();
        assert_eq!(back.target.addr, plan.target.addr);
        assert_eq!(back.source, plan.source);
        assert_eq!((back.count, back.parallel, back.seed), (19_000, 64, 42));
    }

    #[test]
    fn progress_lines_read_back() {
        let p = Progress {
            connected: 5,
            failed: 1,
            dropped: 0,
            first_error: Some("connect: refused".into()),
            ..Progress::default()
        };
        let back = Progress::parse(&p.line(true)).unwrap();
        assert!(back.ready);
        assert_eq!((back.connected, back.failed), (5, 1));
        assert_eq!(back.first_error.as_deref(), Some("connect: refused"));
    }
}
