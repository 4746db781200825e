//! The prerequisites check: one table of what a suite needs on this machine,
//! what is present, and how to fix what is missing.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::child::NoSecrets;
use crate::config::{Installer, Suite};

pub(crate) struct Check {
    pub name: String,
    /// What was found, or `None` when missing.
    pub found: Option<String>,
    pub required: bool,
    pub fix: String,
}

impl From<crate::config::preflight::Need> for Check {
    fn from(n: crate::config::preflight::Need) -> Self {
        Self {
            name: format!("{} ({})", n.what, n.key),
            found: n.found,
            required: true,
            fix: n.fix,
        }
    }
}

fn version(program: &str, args: &[&str]) -> Option<String> {
    let path = which::which(program).ok()?;
    let out = Command::new(path).no_secrets().args(args).output().ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.status
        .success()
        .then(|| text.lines().next().unwrap_or("").trim().to_string())
}

fn listening(port: u16) -> Option<String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .ok()
        .map(|_| format!("127.0.0.1:{port} accepts"))
}

/// What `suite` needs, checked on this machine.
pub(crate) fn check(suite: &Suite) -> Vec<Check> {
    let s = &suite.setup;
    // Only a `container` engine may have the table (the loader refuses
    // it elsewhere).
    let containers = suite.engines.values().any(|e| e.container.is_some());
    let gpus = suite
        .engines
        .values()
        .any(|e| e.container.as_ref().is_some_and(|c| c.gpus.is_some()));
    let dynamo = suite.engines.values().any(|e| {
        e.args
            .iter()
            .chain(e.command.iter())
            .any(|a| a.contains("dynamo."))
    });
    let hf = std::env::var("HF_HOME")
        .ok()
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var("HOME")
                .ok()
                .map(|h| std::path::Path::new(&h).join(".cache/huggingface"))
        });
    let mut checks = vec![
        Check { name: "python".into(), found: version(&s.python, &["--version"]), required: true, fix: "install Python 3 (Debian: apt-get install python3 python3-venv) or set setup.python".into() },
        Check { name: "git".into(), found: version("git", &["--version"]), required: !s.repos.is_empty(), fix: "install git (Debian: apt-get install git)".into() },
        Check { name: "uv".into(), found: version("uv", &["--version"]), required: s.installer == Installer::Uv, fix: "pip install uv (optional: pip is used without it)".into() },
        Check {
            name: "docker engine".into(),
            found: version("docker", &["info", "--format", "server {{.ServerVersion}}"]),
            required: containers,
            fix: "install and start a Docker engine (Debian: apt-get install docker.io; dockerd &)".into(),
        },
        Check {
            name: "nvidia-smi".into(),
            found: which::which("nvidia-smi").ok().and_then(|p| Command::new(p).no_secrets().arg("-L").output().ok()).filter(|o| o.status.success()).map(|o| {
                let n = String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("GPU ")).count();
                format!("{n} GPU(s)")
            }),
            required: gpus,
            fix: "run on a GPU agent with the NVIDIA driver (nvidia-smi on PATH)".into(),
        },
        Check {
            name: "HF cache".into(),
            found: hf.as_ref().filter(|p| p.is_dir()).map(|p| p.display().to_string()),
            required: false,
            fix: "set HF_HOME or create ~/.cache/huggingface (models are downloaded there)".into(),
        },
    ];
    if dynamo {
        // Dynamo 1.4 and later find their workers through files when told
        // to (DYN_DISCOVERY_BACKEND=file); older ones need etcd and NATS.
        let by_file = suite.engines.values().all(|e| {
            e.env
                .get("DYN_DISCOVERY_BACKEND")
                .is_some_and(|v| v == "file")
                || e.args
                    .iter()
                    .any(|a| a.contains("--discovery-backend file"))
        });
        let older = if by_file {
            " for Dynamo before 1.4; 1.4 and later discover by file here"
        } else {
            ""
        };
        checks.push(Check {
            name: "nats".into(),
            found: listening(4222),
            required: !by_file,
            fix: format!("start nats-server (Dynamo needs it on 127.0.0.1:4222){older}"),
        });
        checks.push(Check {
            name: "etcd".into(),
            found: listening(2379),
            required: !by_file,
            fix: format!("start etcd (Dynamo needs it on 127.0.0.1:2379){older}"),
        });
    }
    checks
}

/// The table, Markdown, as a person reads it in a CI log.
pub(crate) fn table(checks: &[Check]) -> String {
    let mut s = String::from("| prerequisite | status | detail |\n|---|---|---|\n");
    for c in checks {
        let (status, detail) = match (&c.found, c.required) {
            (Some(found), _) => ("ok", found.clone()),
            (None, true) => ("MISSING", c.fix.clone()),
            (None, false) => ("absent (optional)", c.fix.clone()),
        };
        s.push_str(&format!("| {} | {status} | {detail} |\n", c.name));
    }
    s
}
