//! Kind `container`: `docker run -d` (or podman) on the host network as the
//! multiprocessing suite runs its containers, labelled with the run, its log
//! followed by `docker logs -f` into the engine's log; stopped with `docker
//! stop --time <grace>`, then `docker rm -f`. Every docker call here is
//! async, so none blocks the runtime's threads.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures_util::future::BoxFuture;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::process::{command_line, group_alive, signal_group};
use crate::child::NoSecrets;
use crate::config::{ContainerOptions, EngineConfig};
use crate::engine::backend::{
    redirect, Backend, Cleaned, CleanupRecord, Handle, Owner, Planned, Resolve, Started,
};
use crate::engine::spec::{EngineError, EngineSpec, Launch, RUN_ID_ENV};

pub(crate) struct Container;

/// Labels on everything a run starts, so cleanup finds it even without
/// the state file.
pub(crate) const RUN_LABEL: &str = "lmcache-e2e.run";
pub(crate) const OWNER_LABEL: &str = "lmcache-e2e.owner-pid";

/// A valid, unique container name: `lmcache-e2e-<engine>-<run>`.
fn container_name(engine: &str, run_id: &str) -> String {
    let raw = format!("lmcache-e2e-{engine}-{run_id}");
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// `docker run -d ...` as the multiprocessing suite runs its containers,
/// plus this run's labels.
fn docker_run_args(
    e: &EngineConfig,
    c: &ContainerOptions,
    cname: &str,
    engine: &str,
    run_id: &str,
    port: u16,
    command_args: Vec<String>,
) -> Vec<String> {
    let (role, env) = (
        e.role,
        crate::engine::gpu::engine_env(&e.env, &|k| std::env::var(k).ok()),
    );
    let mut a: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), cname.into()];
    for (k, v) in [
        (RUN_LABEL, run_id.to_string()),
        ("lmcache-e2e.role", role.to_string()),
        ("lmcache-e2e.engine", engine.to_string()),
        (OWNER_LABEL, std::process::id().to_string()),
    ] {
        a.extend(["--label".into(), format!("{k}={v}")]);
    }
    a.extend(["--network".into(), c.network.clone()]);
    if c.ipc_host {
        a.extend(["--ipc".into(), "host".into()]);
    }
    if let Some(gpus) = c.gpus.as_deref().filter(|g| !g.is_empty()) {
        // Quoted: docker reads `--gpus` as CSV, and a device list has commas.
        a.extend([
            "--runtime".into(),
            "nvidia".into(),
            "--gpus".into(),
            format!("\"device={gpus}\""),
        ]);
    }
    for p in &c.publish {
        a.extend(["-p".into(), p.replace("{port}", &port.to_string())]);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    for v in &c.volumes {
        let v = match v.strip_prefix("~/") {
            Some(rest) => format!("{home}/{rest}"),
            None => v.clone(),
        };
        a.extend(["--volume".into(), v]);
    }
    a.extend(["-e".into(), format!("{}={run_id}", RUN_ID_ENV)]);
    for (k, v) in &env {
        a.extend(["-e".into(), format!("{k}={v}")]);
    }
    if let Some(ep) = &c.entrypoint {
        a.extend(["--entrypoint".into(), ep.clone()]);
    }
    a.push(c.image.clone());
    a.extend(command_args);
    a
}

impl Backend for Container {
    fn planned(&self, e: &EngineConfig) -> Planned {
        Planned::Command(match &e.container {
            Some(c) => format!("{} run … {}", c.cli, c.image),
            None => "container".into(),
        })
    }

    fn resolve(&self, e: &EngineConfig, r: &Resolve<'_>) -> Result<Launch, EngineError> {
        let Some(c) = &e.container else {
            // Config validation refuses a container engine without its table.
            return Err(EngineError::ContainerStart {
                engine: r.name.to_string(),
                message: "no [container] table".into(),
            });
        };
        let cli = which::which(&c.cli).map_err(|source| EngineError::NotFound {
            engine: r.name.to_string(),
            command: c.cli.clone(),
            source,
        })?;
        let mut args = e.args.clone();
        r.substitute(e, &mut args);
        let name = c
            .name
            .clone()
            .unwrap_or_else(|| container_name(r.name, r.run_id));
        let mut c = c.clone();
        if let Some(i) = c.gpus.as_deref().and_then(|g| g.strip_prefix("auto:")) {
            let i: usize = i.parse().unwrap_or(usize::MAX);
            let gpu = r
                .chosen_gpus
                .get(i)
                .ok_or_else(|| EngineError::ContainerStart {
                    engine: r.name.to_string(),
                    message: format!(
                        "gpus = \"auto:{i}\" but only {} GPU(s) were chosen; raise run.gpus.count",
                        r.chosen_gpus.len()
                    ),
                })?;
            c.gpus = Some(gpu.index.to_string());
            if gpu
                .memory_total_mib
                .is_some_and(|t| t > r.suite.run.gpus.large_gpu_mib)
            {
                args.extend(e.large_gpu_args.iter().cloned());
            }
        }
        let run_args = docker_run_args(e, &c, &name, r.name, r.run_id, r.port, args);
        Ok(Launch::Container { cli, run_args })
    }

    /// `docker run -d`, then `docker logs -f` into the log: the follower's
    /// exit says the container stopped.
    fn start<'a>(
        &'a self,
        spec: &'a EngineSpec,
        log: Option<std::fs::File>,
        _run_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Started>, EngineError>> {
        Box::pin(async move {
            let Launch::Container { cli, run_args, .. } = &spec.launch else {
                return Ok(None);
            };
            let spawn_err = |source| EngineError::Spawn {
                engine: spec.name.clone(),
                command: command_line(cli, run_args),
                source,
            };
            let out = tokio::process::Command::new(cli)
                .no_secrets()
                .args(run_args)
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(spawn_err)?;
            if !out.status.success() {
                return Err(EngineError::ContainerStart {
                    engine: spec.name.clone(),
                    message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let mut follow = tokio::process::Command::new(cli);
            follow.no_secrets();
            follow
                .args(["logs", "-f", &id])
                .stdin(Stdio::null())
                .process_group(0)
                .kill_on_drop(false);
            redirect(&mut follow, log, spec.log.as_deref())?;
            let child = match follow.spawn() {
                Ok(c) => c,
                Err(source) => {
                    remove(cli, std::slice::from_ref(&id)).await;
                    return Err(spawn_err(source));
                }
            };
            let pgid = child.id().unwrap_or(0) as i32;
            Ok(Some(Started {
                child,
                handle: Handle::Container {
                    cli: cli.clone(),
                    id,
                    pgid,
                },
            }))
        })
    }
}

impl Owner for Container {
    /// `docker stop` sends SIGTERM, waits the grace period, then SIGKILLs.
    fn stop<'a>(&'a self, h: &'a Handle, grace: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Handle::Container { cli, id, .. } = h else {
                return;
            };
            let secs = grace.as_secs_f64().ceil() as u64;
            // Not awaited to the end: the supervisor waits for the log
            // follower, which ends when the container does.
            let _ = tokio::process::Command::new(cli)
                .no_secrets()
                .args(["stop", "--time", &secs.to_string(), id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
        })
    }

    fn kill<'a>(&'a self, h: &'a Handle) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Handle::Container { cli, id, pgid } = h {
                remove(cli, std::slice::from_ref(id)).await;
                signal_group(*pgid, Signal::SIGKILL);
            }
        })
    }

    fn kill_now(&self, h: &Handle) {
        if let Handle::Container { cli, id, pgid } = h {
            // Only from Drop, when the runtime may be gone: a blocking call
            // is the last resort that still removes the container.
            let _ = std::process::Command::new(cli)
                .no_secrets()
                .args(["rm", "-f", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            signal_group(*pgid, Signal::SIGKILL);
        }
    }

    /// How the container ended, as `docker inspect` tells it.
    fn describe_exit<'a>(&'a self, h: &'a Handle, _status: ExitStatus) -> BoxFuture<'a, String> {
        Box::pin(async move {
            let Handle::Container { cli, id, .. } = h else {
                return "container gone".to_string();
            };
            let out = tokio::process::Command::new(cli)
                .no_secrets()
                .args(["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id])
                .output()
                .await;
            match out {
                Ok(o) if o.status.success() => {
                    let text = String::from_utf8_lossy(&o.stdout);
                    let mut parts = text.split_whitespace();
                    let (state, code) = (parts.next().unwrap_or("?"), parts.next().unwrap_or("?"));
                    format!("container {state}, exit code {code}")
                }
                _ => "container gone".to_string(),
            }
        })
    }

    fn alive(&self, h: &Handle) -> bool {
        match h {
            Handle::Container { pgid, .. } | Handle::ProcessGroup { pgid, .. } => {
                group_alive(*pgid)
            }
        }
    }

    fn cleanup<'a>(
        &'a self,
        name: &'a str,
        h: &'a Handle,
        _run_id: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, CleanupRecord> {
        Box::pin(async move {
            let Handle::Container { cli, id, pgid } = h else {
                return CleanupRecord {
                    name: name.to_string(),
                    what: Cleaned::ProcessGroup(0),
                    action: "left alone (not a container)",
                };
            };
            let removed = stop_and_remove(cli, std::slice::from_ref(id), grace).await;
            signal_group(*pgid, Signal::SIGKILL);
            CleanupRecord {
                name: name.to_string(),
                what: Cleaned::Container(id.clone()),
                action: if removed.is_empty() {
                    "already removed"
                } else {
                    "removed"
                },
            }
        })
    }
}

/// `docker rm -f`: stops (SIGKILL) and removes; never fails the caller.
async fn remove(cli: &Path, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let _ = tokio::process::Command::new(cli)
        .no_secrets()
        .arg("rm")
        .arg("-f")
        .args(ids)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// Which labelled containers to remove.
pub(crate) enum LabelFilter<'a> {
    /// Those of one run.
    Run(&'a str),
    /// Those of any run whose owning `lmcache-e2e` process is gone.
    Stale,
}

/// Finds containers by label and stops and removes them.
pub(crate) async fn cleanup_by_label(
    cli: &Path,
    filter: LabelFilter<'_>,
    grace: Duration,
) -> Result<Vec<CleanupRecord>, EngineError> {
    let label = match filter {
        LabelFilter::Run(id) => format!("label={RUN_LABEL}={id}"),
        LabelFilter::Stale => format!("label={RUN_LABEL}"),
    };
    let format = format!("{{{{.ID}}}} {{{{.Label \"{OWNER_LABEL}\"}}}} {{{{.Names}}}}");
    let out = tokio::process::Command::new(cli)
        .no_secrets()
        .args(["ps", "-a", "--filter", &label, "--format", &format])
        .output()
        .await
        .map_err(|e| EngineError::ContainerStart {
            engine: "cleanup".into(),
            message: format!("failed to run {} ps: {e}", cli.display()),
        })?;
    if !out.status.success() {
        return Err(EngineError::ContainerStart {
            engine: "cleanup".into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let mut ids = Vec::new();
    let mut names = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split_whitespace();
        let (Some(id), owner, name) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let owner_alive = owner.and_then(|p| p.parse::<i32>().ok()).is_some_and(|p| {
            !matches!(
                nix::sys::signal::kill(Pid::from_raw(p), None),
                Err(Errno::ESRCH)
            )
        });
        if matches!(filter, LabelFilter::Stale) && owner_alive {
            continue;
        }
        ids.push(id.to_string());
        names.push(name.unwrap_or(id).to_string());
    }
    let removed = stop_and_remove(cli, &ids, grace).await;
    Ok(ids
        .iter()
        .zip(names)
        .filter(|(id, _)| removed.contains(id))
        .map(|(id, name)| CleanupRecord {
            name,
            what: Cleaned::Container(id.clone()),
            action: "removed (found by label)",
        })
        .collect())
}

/// `docker stop --time T` then `docker rm -f`, for all at once; returns the
/// ids that existed.
async fn stop_and_remove(cli: &Path, ids: &[String], grace: Duration) -> Vec<String> {
    if ids.is_empty() {
        return Vec::new();
    }
    let exists = tokio::process::Command::new(cli)
        .no_secrets()
        .arg("inspect")
        .arg("-f")
        .arg("{{.Id}}")
        .args(ids)
        .output()
        .await;
    let present: Vec<String> = match exists {
        Ok(o) => {
            let found = String::from_utf8_lossy(&o.stdout).to_string();
            ids.iter()
                .filter(|id| found.lines().any(|l| l.starts_with(id.as_str())))
                .cloned()
                .collect()
        }
        Err(_) => Vec::new(),
    };
    if present.is_empty() {
        return present;
    }
    let _ = tokio::process::Command::new(cli)
        .no_secrets()
        .args([
            "stop",
            "--time",
            &(grace.as_secs_f64().ceil() as u64).to_string(),
        ])
        .args(&present)
        .output()
        .await;
    remove(cli, &present).await;
    present
}
