//! For tests of nodes and their bus: a TCP proxy to Redis that a test can cut.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

/// A TCP proxy to a Redis that the test can cut (every connection dropped, new ones refused at
/// once) and restore: a node connected through it loses Redis as it would on a real network.
pub struct CutProxy {
    port: u16,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accepting: JoinHandle<()>,
    mute: watch::Sender<u64>,
}

impl CutProxy {
    /// A proxy on a free loopback port to the Redis of `redis_url` (`redis://host:port`).
    pub async fn start(redis_url: &str) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("its address").port();
        let target = redis_url
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (c, l) = (cut.clone(), links.clone());
        let (mute, muted) = watch::channel(0u64);
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let target = target.clone();
                let mut muted = muted.clone();
                let born = *muted.borrow();
                l.lock().await.push(tokio::spawn(async move {
                    let Ok(mut redis) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut redis) => {}
                        () = async { drop(muted.wait_for(|m| *m != born).await) } => {
                            // Redis's side goes; the client's stays open, and hears nothing.
                            drop(redis);
                            std::future::pending::<()>().await;
                        }
                    }
                }));
            }
        });
        CutProxy {
            port,
            cut,
            links,
            accepting,
            mute,
        }
    }

    /// Silences the connections open now without closing them (as a firewall that dropped
    /// the idle flow would): nothing more passes either way, and the client is not told.
    /// New connections pass as before.
    pub fn mute(&self) {
        self.mute.send_modify(|m| *m += 1);
    }

    /// The URL to reach Redis through the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Drops every connection, and refuses new ones until [`CutProxy::restore`].
    pub async fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accepting.abort();
        if let Ok(mut links) = self.links.try_lock() {
            for link in links.drain(..) {
                link.abort();
            }
        }
    }
}
