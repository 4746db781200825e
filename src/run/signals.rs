//! Termination signals turned into events the run can select on. Installed
//! before any engine starts, so no signal can slip past cleanup.

use tokio::signal::unix::{signal, Signal, SignalKind};

pub(crate) struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

/// A received signal: its name and number (exit code is 128 + number).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    pub name: &'static str,
    pub number: i32,
}

impl Signals {
    pub(crate) fn install() -> std::io::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    pub(crate) async fn recv(&mut self) -> Received {
        tokio::select! {
            _ = self.int.recv() => Received { name: "SIGINT", number: 2 },
            _ = self.term.recv() => Received { name: "SIGTERM", number: 15 },
            _ = self.hup.recv() => Received { name: "SIGHUP", number: 1 },
        }
    }
}
