//! A TCP forwarder in front of a real service that a test can cut (drop every connection and
//! refuse new ones) and restore: an outage without stopping the shared service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    epoch: watch::Sender<u64>,
}

impl TcpProxy {
    /// Forwards a new loopback port to `upstream` (`host:port`; for a list, the first entry).
    pub async fn start(upstream: &str) -> TcpProxy {
        let upstream = upstream
            .split(',')
            .next()
            .unwrap_or(upstream)
            .trim()
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let cut = Arc::new(AtomicBool::new(false));
        let (epoch, _) = watch::channel(0u64);
        let refused = Arc::new(AtomicUsize::new(0));
        let (accept_cut, accept_epoch, accept_refused) =
            (cut.clone(), epoch.clone(), refused.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if accept_cut.load(Ordering::SeqCst) {
                    accept_refused.fetch_add(1, Ordering::SeqCst);
                    continue; // dropping the socket refuses the connection
                }
                let upstream = upstream.clone();
                let mut killed = accept_epoch.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut server) => {}
                        _ = killed.changed() => {}
                    }
                });
            }
        });
        TcpProxy {
            addr,
            cut,
            refused,
            epoch,
        }
    }

    /// How many connections were refused while cut: a client's attempts to reach the service.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Drops every open connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.epoch.send_modify(|epoch| *epoch += 1);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}
