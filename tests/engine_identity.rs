//! The engine measured is the one launched: a server already on an
//! engine's port stops the run (exit 4, naming the port and what answers
//! there) instead of being measured in the engine's place.

mod common;

use std::time::Duration;

use common::{bin, ci_sim, free_port, run, tempdir, text, wait_until};

#[test]
fn a_stale_server_on_an_engines_port_is_refused_with_exit_4() {
    let port = free_port();
    let mut stale = bin()
        .args([
            "sim",
            "serve",
            "--port",
            &port.to_string(),
            "--served-model-name",
            "stale/model",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(20), "the stale sim listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let dir = tempdir();
    let out = run(
        &mut ci_sim(dir.path(), &[&format!("engines.baseline.port={port}")]),
        Duration::from_secs(120),
    );
    let _ = stale.kill();
    let _ = stale.wait();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port} is taken by")),
        "{stderr}"
    );
    assert!(stderr.contains("serving `stale/model`"), "{stderr}");
    let r = common::results(dir.path());
    assert_eq!(r["status"], "error", "{r}");
}
