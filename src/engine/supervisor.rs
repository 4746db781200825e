//! The supervisor owns every engine of a run: started through its backend,
//! recorded in a state file so another process can clean up, and watched by
//! one task per engine that awaits its exit (no polling, no lock held across
//! a wait). Stopping asks every engine to stop, waits the grace period, then
//! kills what is left. Dropping it kills everything, so not even a panic
//! leaves an engine behind.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::backend::{open_log, CleanupRecord, Handle};
use super::kinds::container::LabelFilter;
use super::kinds::process::command_line;
use super::kinds::{backend, owner};
use super::spec::{EngineError, EngineSpec, Launch, TAIL_LINES};
use crate::config::EngineKind;
use crate::results::tail_lines;

struct Tracked {
    name: String,
    kind: EngineKind,
    handle: Handle,
    log: Option<PathBuf>,
    /// Set by the engine's own task when it exits: how it ended.
    exit: watch::Receiver<Option<String>>,
    /// Deaths are reported once an engine was ready; before that, readiness
    /// reports the exit with its own message.
    ready: bool,
    /// Set once we asked it to stop, so its exit is not reported as a death.
    stopping: bool,
    gone: bool,
}

impl Tracked {
    fn status(&self) -> Option<String> {
        self.exit.borrow().clone()
    }
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
    pub kind: EngineKind,
    pub log: Option<PathBuf>,
    pub stopped: bool,
    /// What to signal or remove.
    #[serde(flatten)]
    pub handle: Handle,
}

pub(crate) struct Supervisor {
    run_id: String,
    grace: Duration,
    state_path: PathBuf,
    /// Held only to read or flip fields, never across an await.
    engines: Mutex<Vec<Tracked>>,
    /// Bumped by every engine's task when it exits.
    exits: watch::Sender<u64>,
}

impl Supervisor {
    pub(crate) fn new(run_id: &str, grace: Duration, results_dir: &Path) -> Self {
        Self {
            run_id: run_id.to_string(),
            grace,
            state_path: results_dir.join("state.json"),
            engines: Mutex::new(Vec::new()),
            exits: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Tracked>> {
        // A panic while holding the lock must not stop us from cleaning up.
        self.engines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts an engine through its backend, with stdout and stderr
    /// appended to its log; returns its PID (none for an external engine).
    pub(crate) async fn spawn(&self, spec: &EngineSpec) -> Result<Option<u32>, EngineError> {
        let shown = match &spec.launch {
            Launch::External => return Ok(None),
            Launch::Process { program, args, .. } => command_line(program, args),
            Launch::Container { cli, run_args, .. } => command_line(cli, run_args),
        };
        port_free(spec).await?;
        let log = open_log(spec, &shown)?;
        let b = backend(spec.kind);
        let Some(started) = b.start(spec, log, &self.run_id).await? else {
            return Ok(None);
        };
        let pid = started.child.id();
        let (tx, rx) = watch::channel(None);
        let (handle, mut child) = (started.handle.clone(), started.child);
        let exits = self.exits.clone();
        tokio::spawn(async move {
            let how = match child.wait().await {
                Ok(status) => owner(&handle).describe_exit(&handle, status).await,
                Err(e) => format!("lost track of it: {e}"),
            };
            let _ = tx.send(Some(how));
            exits.send_modify(|n| *n += 1);
        });
        self.lock().push(Tracked {
            name: spec.name.clone(),
            kind: spec.kind,
            handle: started.handle,
            log: spec.log.clone(),
            exit: rx,
            ready: false,
            stopping: false,
            gone: false,
        });
        self.write_state()?;
        Ok(pid)
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
                    kind: t.kind,
                    log: t.log.clone(),
                    stopped: t.gone,
                    handle: t.handle.clone(),
                })
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&state).expect("state serializes");
        crate::results::write_atomic(&self.state_path, &json).map_err(|e| EngineError::State {
            path: self.state_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// How an engine ended, once it has.
    pub(crate) fn exit_status(&self, name: &str) -> Option<String> {
        // The newest of that name: a restarted service has an older, gone entry.
        self.lock().iter().rev().find(|t| t.name == name)?.status()
    }

    pub(crate) fn mark_ready(&self, name: &str) {
        if let Some(t) = self.lock().iter_mut().rev().find(|t| t.name == name) {
            t.ready = true;
        }
    }

    /// The first engine that was ready and exited without being asked to.
    fn died(&self) -> Option<EngineError> {
        let engines = self.lock();
        let t = engines
            .iter()
            .find(|t| t.ready && !t.stopping && t.status().is_some())?;
        Some(EngineError::Died {
            engine: t.name.clone(),
            status: t.status().unwrap_or_default(),
            log: t.log.clone(),
            tail: t
                .log
                .as_deref()
                .map(|l| tail_lines(l, TAIL_LINES))
                .unwrap_or_default(),
        })
    }

    /// Resolves when an engine exits that nobody asked to stop.
    pub(crate) async fn watch_deaths(&self) -> EngineError {
        let mut exits = self.exits.subscribe();
        loop {
            if let Some(e) = self.died() {
                return e;
            }
            if exits.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Stops every engine: each asked to stop (SIGTERM to its group, `docker
    /// stop`), the grace period, then killed; `kill_now` resolving (a second
    /// signal) skips the rest of the grace period. Returns the names of
    /// engines that had to be killed.
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
        let pending: Vec<Handle> = {
            let mut engines = self.lock();
            engines
                .iter_mut()
                .filter(|t| !t.gone && chosen(t))
                .map(|t| {
                    t.stopping = true;
                    t.handle.clone()
                })
                .collect()
        };
        if pending.is_empty() {
            return Vec::new();
        }
        for h in &pending {
            owner(h).stop(h, self.grace).await;
        }
        let deadline = Instant::now() + self.grace;
        let mut exits = self.exits.subscribe();
        tokio::pin!(kill_now);
        let mut killed = Vec::new();
        loop {
            if self.sweep(&chosen) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let cut_short = left.is_zero()
                || tokio::select! {
                    // An exit wakes us at once; a group that outlives its
                    // leader has no event of its own, so look again shortly.
                    _ = exits.changed() => false,
                    _ = tokio::time::sleep(left.min(Duration::from_millis(25))) => false,
                    _ = &mut kill_now => true,
                };
            if cut_short {
                killed = self.kill_left(&chosen).await;
                // A kill cannot be ignored; give the kernel a moment.
                let until = Instant::now() + Duration::from_secs(2);
                while !self.sweep(&chosen) && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                break;
            }
        }
        // A stopped container is removed; its log is already on disk.
        for h in pending
            .iter()
            .filter(|h| matches!(h, Handle::Container { .. }))
        {
            owner(h).kill(h).await;
        }
        let _ = self.write_state();
        killed
    }

    async fn kill_left(&self, chosen: &(dyn Fn(&Tracked) -> bool + Sync)) -> Vec<String> {
        let left: Vec<(String, Handle)> = self
            .lock()
            .iter()
            .filter(|t| !t.gone && chosen(t))
            .map(|t| (t.name.clone(), t.handle.clone()))
            .collect();
        for (_, h) in &left {
            owner(h).kill(h).await;
        }
        left.into_iter().map(|(name, _)| name).collect()
    }

    /// Marks engines whose process (and group) is gone; true when every
    /// chosen one is.
    fn sweep(&self, chosen: &(dyn Fn(&Tracked) -> bool + Sync)) -> bool {
        let mut engines = self.lock();
        for t in engines.iter_mut().filter(|t| !t.gone && chosen(t)) {
            if t.status().is_some() && !owner(&t.handle).alive(&t.handle) {
                t.gone = true;
            }
        }
        engines.iter().filter(|t| chosen(t)).all(|t| t.gone)
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for t in self.lock().iter().filter(|t| !t.gone) {
            owner(&t.handle).kill_now(&t.handle);
        }
    }
}

/// Stops the engines a state file records, from any process, all at once:
/// process groups (only when they still belong to the run) and containers,
/// then any container that still carries the run's label.
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
    let mut records = futures_util::future::join_all(
        state
            .engines
            .iter()
            .map(|e| owner(&e.handle).cleanup(&e.name, &e.handle, &state.run_id, grace)),
    )
    .await;
    let mut clis: Vec<PathBuf> = state
        .engines
        .iter()
        .filter_map(|e| match &e.handle {
            Handle::Container { cli, .. } => Some(cli.clone()),
            Handle::ProcessGroup { .. } => None,
        })
        .collect();
    clis.sort();
    clis.dedup();
    for cli in clis {
        records.extend(
            super::kinds::container::cleanup_by_label(&cli, LabelFilter::Run(&state.run_id), grace)
                .await?,
        );
    }
    Ok(records)
}

/// Records in the state file that every engine of it was stopped (by
/// `cleanup`), so a later look does not take them for running.
pub(crate) fn mark_stopped(path: &Path) -> Result<(), EngineError> {
    let state_err = |source| EngineError::State {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(state_err)?;
    let mut state: StateFile = serde_json::from_str(&text)
        .map_err(|e| state_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    for e in &mut state.engines {
        e.stopped = true;
    }
    let json = serde_json::to_string_pretty(&state).expect("state serializes");
    crate::results::write_atomic(path, json.as_bytes())
        .map_err(|e| state_err(std::io::Error::other(e.to_string())))
}

/// An engine's ports must be free before it starts: a server already there
/// (a vLLM left over from a killed job) would answer its readiness probe
/// and every request, and the run would measure a stranger.
async fn port_free(spec: &EngineSpec) -> Result<(), EngineError> {
    let Ok(url) = reqwest::Url::parse(&spec.url) else {
        return Ok(());
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Ok(());
    };
    for port in std::iter::once(port).chain(spec.health_port) {
        let connect = tokio::net::TcpStream::connect((host, port));
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
            return Err(EngineError::PortTaken {
                engine: spec.name.clone(),
                address: format!("{host}:{port}"),
                answering: what_answers(host, port).await,
            });
        }
    }
    Ok(())
}

/// What a server found on a port says it is, in a few words.
async fn what_answers(host: &str, port: u16) -> String {
    let Ok(client) =
        crate::client::OpenAiClient::new(&format!("http://{host}:{port}"), Duration::from_secs(3))
    else {
        return "something".into();
    };
    let version = client.server_version().await;
    let models = client
        .models(Duration::from_secs(3))
        .await
        .unwrap_or_default();
    match (version, models.first()) {
        (Some(v), Some(m)) => format!("a server of version {v} serving `{m}`"),
        (None, Some(m)) => format!("an OpenAI server serving `{m}`"),
        (Some(v), None) => format!("a server of version {v}"),
        (None, None) => "something that accepts connections".into(),
    }
}
