//! Shared by the benches: a simulated engine on a free loopback port.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_lmcache-e2e");

/// A `sim serve` child, killed when dropped.
pub struct Sim {
    child: Child,
    pub url: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sim(args: &[&str]) -> Sim {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(BIN)
        .args(["sim", "serve", "--port", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "sim did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Sim {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// A sim that costs nothing: what is left is the driver and HTTP.
pub fn zero_latency_sim() -> Sim {
    sim(&[
        "--prefill-us-per-token",
        "0",
        "--cached-prefill-us-per-token",
        "0",
        "--decode-ms-per-token",
        "0",
    ])
}

/// A suite of two external engines at the given URLs plus `tests`.
pub fn external_suite(baseline: &str, lmcache: &str, tests: &str) -> String {
    format!(
        "[engines.b]\nrole = \"baseline\"\nkind = \"external\"\nurl = \"{baseline}\"\n\
         [engines.l]\nrole = \"lmcache\"\nkind = \"external\"\nurl = \"{lmcache}\"\n{tests}"
    )
}
