//! The supervisor owns every engine process of a run: each in its own
//! process group with its output in a log file, recorded in a state file so
//! another process can clean up; stopping sends SIGTERM to each group, waits
//! a grace period, then SIGKILLs what is left. Dropping it kills everything,
//! so not even a panic leaves an engine behind.

use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::{tail_lines, EngineError, EngineSpec, TAIL_LINES};

/// Set on every engine process, so cleanup can tell our processes from a
/// stranger that reused a PID.
pub(crate) const RUN_ID_ENV: &str = "LMCACHE_E2E_RUN_ID";

struct Tracked {
    name: String,
    /// The process group of the engine, or of a container's log follower.
    pgid: i32,
    child: tokio::process::Child,
    /// For containers: the CLI and the container id.
    container: Option<(PathBuf, String)>,
    log: Option<PathBuf>,
    status: Option<String>,
    /// Deaths are reported once an engine was ready; before that, readiness
    /// reports the exit with its own message.
    ready: bool,
    /// Set once we asked it to stop, so its exit is not reported as a death.
    stopping: bool,
    gone: bool,
}

/// What the state file records: enough for `lmcache-e2e cleanup` to find
/// and stop this run's engines from another process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StateFile {
    pub run_id: String,
    pub owner_pid: u32,
    pub engines: Vec<StateEngine>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StateEngine {
    pub name: String,
    pub pid: u32,
    pub pgid: i32,
    pub log: Option<PathBuf>,
    pub stopped: bool,
    /// For containers: the CLI and the container id.
    #[serde(default)]
    pub container: Option<(PathBuf, String)>,
}

pub(crate) struct Supervisor {
    run_id: String,
    grace: Duration,
    state_path: PathBuf,
    engines: Mutex<Vec<Tracked>>,
}

fn group_alive(pgid: i32) -> bool {
    !matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH))
}

fn signal_group(pgid: i32, sig: Signal) {
    // ESRCH: already gone, which is what we want.
    let _ = killpg(Pid::from_raw(pgid), sig);
}

impl Supervisor {
    pub(crate) fn new(run_id: &str, grace: Duration, results_dir: &Path) -> Self {
        Self {
            run_id: run_id.to_string(),
            grace,
            state_path: results_dir.join("state.json"),
            engines: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Tracked>> {
        // A panic while holding the lock must not stop us from cleaning up.
        self.engines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts an engine in a new process group with stdout and stderr
    /// appended to its log; returns its PID. A container is started with
    /// `docker run -d`, and its log followed by `docker logs -f`, whose exit
    /// says the container stopped.
    pub(crate) async fn spawn(&self, spec: &EngineSpec) -> Result<Option<u32>, EngineError> {
        let Some((program, args)) = &spec.command else {
            return Ok(None);
        };
        let command_line = std::iter::once(program.display().to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut log_file = None;
        if let Some(log) = &spec.log {
            let log_err = |source| EngineError::Log {
                path: log.clone(),
                source,
            };
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(log_err)?;
            writeln!(
                file,
                "# lmcache-e2e: starting engine `{}`: {command_line}",
                spec.name
            )
            .map_err(log_err)?;
            log_file = Some((file, log.clone()));
        }
        let spawn_err = |source| EngineError::Spawn {
            engine: spec.name.clone(),
            command: command_line.clone(),
            source,
        };
        let mut container = None;
        let mut cmd = if spec.container.is_some() {
            let out = tokio::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::null())
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
            container = Some((program.clone(), id.clone()));
            let mut follow = tokio::process::Command::new(program);
            follow.args(["logs", "-f", &id]);
            follow
        } else {
            let mut c = tokio::process::Command::new(program);
            // Engines run code from pull requests and log freely: they get
            // no token that could write to the repository.
            c.args(args)
                .env_remove("GITHUB_TOKEN")
                .env_remove("GH_TOKEN")
                .env(RUN_ID_ENV, &self.run_id)
                .env("PYTHONUNBUFFERED", "1")
                .envs(spec.env.iter().map(|(k, v)| (k, v)));
            c
        };
        cmd.stdin(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        match log_file {
            Some((file, log)) => {
                let out = file.try_clone().map_err(|source| EngineError::Log {
                    path: log.clone(),
                    source,
                })?;
                cmd.stdout(out).stderr(file);
            }
            None => {
                cmd.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
            }
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(source) => {
                if let Some((cli, id)) = &container {
                    remove_containers(cli, std::slice::from_ref(id));
                }
                return Err(spawn_err(source));
            }
        };
        let pid = child.id().unwrap_or(0);
        self.lock().push(Tracked {
            name: spec.name.clone(),
            pgid: pid as i32,
            child,
            container,
            log: spec.log.clone(),
            status: None,
            ready: false,
            stopping: false,
            gone: false,
        });
        self.write_state()?;
        Ok(Some(pid))
    }

    fn write_state(&self) -> Result<(), EngineError> {
        let state = StateFile {
            run_id: self.run_id.clone(),
            owner_pid: std::process::id(),
            engines: self
                .lock()
                .iter()
                .map(|t| StateEngine {
                    name: t.name.clone(),
                    pid: t.pgid as u32,
                    pgid: t.pgid,
                    log: t.log.clone(),
                    stopped: t.gone,
                    container: t.container.clone(),
                })
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&state).expect("state serializes");
        crate::results::write_atomic(&self.state_path, &json).map_err(|e| EngineError::State {
            path: self.state_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// The exit status of an engine whose process has exited.
    pub(crate) fn exit_status(&self, name: &str) -> Option<String> {
        let mut engines = self.lock();
        let t = engines.iter_mut().find(|t| t.name == name)?;
        reap(t);
        t.status.clone()
    }

    pub(crate) fn mark_ready(&self, name: &str) {
        if let Some(t) = self.lock().iter_mut().find(|t| t.name == name) {
            t.ready = true;
        }
    }

    /// Resolves when an engine exits that nobody asked to stop.
    pub(crate) async fn watch_deaths(&self) -> EngineError {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut engines = self.lock();
            for t in engines.iter_mut() {
                reap(t);
                if let (Some(status), true, false) = (&t.status, t.ready, t.stopping) {
                    return EngineError::Died {
                        engine: t.name.clone(),
                        status: status.clone(),
                        log: t.log.clone(),
                        tail: t
                            .log
                            .as_deref()
                            .map(|l| tail_lines(l, TAIL_LINES))
                            .unwrap_or_default(),
                    };
                }
            }
        }
    }

    /// Stops every engine: SIGTERM to each process group, the grace period,
    /// then SIGKILL; `kill_now` resolving (a second signal) skips the rest of
    /// the grace period. Returns the names of engines that had to be killed.
    pub(crate) async fn stop_all(&self, kill_now: impl Future<Output = ()>) -> Vec<String> {
        self.stop(None, kill_now).await
    }

    /// Stops the named engines only (all when `None`), as [`Self::stop_all`].
    pub(crate) async fn stop(
        &self,
        only: Option<&[String]>,
        kill_now: impl Future<Output = ()>,
    ) -> Vec<String> {
        let chosen = |t: &Tracked| only.is_none_or(|names| names.contains(&t.name));
        let grace_secs = self.grace.as_secs_f64().ceil() as u64;
        let pending: Vec<i32> = {
            let mut engines = self.lock();
            engines
                .iter_mut()
                .filter(|t| !t.gone && chosen(t))
                .map(|t| {
                    t.stopping = true;
                    match &t.container {
                        // `docker stop` sends SIGTERM, waits, then SIGKILLs.
                        Some((cli, id)) => {
                            let _ = std::process::Command::new(cli)
                                .args(["stop", "--time", &grace_secs.to_string(), id])
                                .stdout(std::process::Stdio::null())
                                .stderr(std::process::Stdio::null())
                                .spawn();
                        }
                        None => signal_group(t.pgid, Signal::SIGTERM),
                    }
                    t.pgid
                })
                .collect()
        };
        if pending.is_empty() {
            return Vec::new();
        }
        let deadline = Instant::now() + self.grace;
        tokio::pin!(kill_now);
        loop {
            if self.sweep(&chosen) {
                let _ = self.write_state();
                return Vec::new();
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(25)) => {}
                _ = &mut kill_now => break,
            }
        }
        let killed: Vec<String> = {
            let engines = self.lock();
            engines
                .iter()
                .filter(|t| !t.gone && chosen(t))
                .map(|t| {
                    if let Some((cli, id)) = &t.container {
                        remove_containers(cli, std::slice::from_ref(id));
                    }
                    signal_group(t.pgid, Signal::SIGKILL);
                    t.name.clone()
                })
                .collect()
        };
        // SIGKILL cannot be ignored; wait briefly for the kernel to finish.
        let until = Instant::now() + Duration::from_secs(2);
        while !self.sweep(&chosen) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.write_state();
        killed
    }

    /// Reaps exited leaders and marks groups with no process left; true when
    /// every group is gone.
    fn sweep(&self, chosen: &dyn Fn(&Tracked) -> bool) -> bool {
        let mut engines = self.lock();
        for t in engines.iter_mut().filter(|t| !t.gone && chosen(t)) {
            reap(t);
            if t.status.is_some() {
                // A container's log follower ends when the container stops;
                // the container is then removed, logs already on disk.
                if let Some((cli, id)) = &t.container {
                    remove_containers(cli, std::slice::from_ref(id));
                    signal_group(t.pgid, Signal::SIGKILL);
                }
                if !group_alive(t.pgid) {
                    t.gone = true;
                }
            }
        }
        engines.iter().filter(|t| chosen(t)).all(|t| t.gone)
    }
}

fn reap(t: &mut Tracked) {
    if t.status.is_none() {
        if let Ok(Some(status)) = t.child.try_wait() {
            t.status = Some(match &t.container {
                Some((cli, id)) => container_exit(cli, id),
                None => status.to_string(),
            });
        }
    }
}

/// How a container ended, as `docker inspect` tells it.
fn container_exit(cli: &Path, id: &str) -> String {
    let out = std::process::Command::new(cli)
        .args(["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let mut parts = text.split_whitespace();
            let (state, code) = (parts.next().unwrap_or("?"), parts.next().unwrap_or("?"));
            format!("container {state}, exit code {code}")
        }
        _ => "container gone".to_string(),
    }
}

/// `docker rm -f`: stops (SIGKILL) and removes; never fails the caller.
pub(crate) fn remove_containers(cli: &Path, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let _ = std::process::Command::new(cli)
        .arg("rm")
        .arg("-f")
        .args(ids)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for t in self.lock().iter().filter(|t| !t.gone) {
            if let Some((cli, id)) = &t.container {
                remove_containers(cli, std::slice::from_ref(id));
            }
            signal_group(t.pgid, Signal::SIGKILL);
        }
    }
}

/// What `lmcache-e2e cleanup` did to one thing.
#[derive(Debug)]
pub(crate) struct CleanupRecord {
    /// The engine name, or the container's labels when found by label.
    pub name: String,
    /// `process group N` or `container ID`.
    pub what: String,
    pub action: &'static str,
}

/// Stops the engines a state file records, from any process: process
/// groups (only when their leader still carries this run's id, or is gone,
/// so a reused PID is left alone) and containers, then any container that
/// still carries the run's label.
pub(crate) async fn cleanup_from_state(
    path: &Path,
    grace: Duration,
) -> Result<Vec<CleanupRecord>, EngineError> {
    let state_err = |source| EngineError::State {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(state_err)?;
    let state: StateFile = serde_json::from_str(&text)
        .map_err(|e| state_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    let mut records = Vec::new();
    let mut signalled = Vec::new();
    let mut clis = Vec::new();
    for e in &state.engines {
        if let Some((cli, id)) = &e.container {
            let removed = stop_and_remove(cli, std::slice::from_ref(id), grace).await;
            signal_group(e.pgid, Signal::SIGKILL);
            records.push(CleanupRecord {
                name: e.name.clone(),
                what: format!("container {}", short(id)),
                action: if removed.is_empty() {
                    "already removed"
                } else {
                    "removed"
                },
            });
            clis.push(cli.clone());
            continue;
        }
        let action = if !group_alive(e.pgid) {
            "already stopped"
        } else if !belongs_to_run(e.pid, &state.run_id) {
            "left alone (PID now belongs to another process)"
        } else {
            signal_group(e.pgid, Signal::SIGTERM);
            signalled.push(e.pgid);
            "stopped"
        };
        records.push(CleanupRecord {
            name: e.name.clone(),
            what: format!("process group {}", e.pgid),
            action,
        });
    }
    let deadline = Instant::now() + grace;
    while signalled.iter().any(|&g| group_alive(g)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for r in records.iter_mut().filter(|r| {
        signalled
            .iter()
            .any(|g| r.what == format!("process group {g}"))
    }) {
        let g: i32 = r
            .what
            .rsplit(' ')
            .next()
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        if g != 0 && group_alive(g) {
            signal_group(g, Signal::SIGKILL);
            r.action = "killed";
        }
    }
    clis.sort();
    clis.dedup();
    for cli in clis {
        records.extend(cleanup_by_label(&cli, LabelFilter::Run(&state.run_id), grace).await?);
    }
    Ok(records)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
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
        LabelFilter::Run(id) => format!("label={}={id}", super::RUN_LABEL),
        LabelFilter::Stale => format!("label={}", super::RUN_LABEL),
    };
    let format = format!(
        "{{{{.ID}}}} {{{{.Label \"{}\"}}}} {{{{.Names}}}}",
        super::OWNER_LABEL
    );
    let out = tokio::process::Command::new(cli)
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
            what: format!("container {}", short(id)),
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
        .args([
            "stop",
            "--time",
            &(grace.as_secs_f64().ceil() as u64).to_string(),
        ])
        .args(&present)
        .output()
        .await;
    remove_containers(cli, &present);
    present
}

fn belongs_to_run(pid: u32, run_id: &str) -> bool {
    let marker = format!("{RUN_ID_ENV}={run_id}");
    match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(env) => env.split(|&b| b == 0).any(|kv| kv == marker.as_bytes()),
        // The leader is gone but its group lives on: only our children
        // could have joined a group we created.
        Err(_) => true,
    }
}
