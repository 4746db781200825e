//! Engines: turning a suite's engine entries into things that run (a child
//! process per engine, or a server that already runs), waiting until they
//! serve, and stopping them. Knows nothing of workloads.

pub(crate) mod gpu;
pub(crate) mod image;
mod readiness;
pub(crate) mod signals;

mod supervisor;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use crate::config::EngineKind;
use crate::config::{ContainerOptions, Readiness, Role, Suite};

pub(crate) use crate::results::tail_lines;
pub(crate) use readiness::wait_ready;
pub(crate) use supervisor::{cleanup_by_label, cleanup_from_state, LabelFilter, Supervisor};

/// Lines of an engine's log shown when it fails.
pub(crate) const TAIL_LINES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub(crate) enum EngineError {
    #[error("failed to find `{command}` for engine `{engine}` on PATH: {source}")]
    NotFound {
        engine: String,
        command: String,
        source: which::Error,
    },
    #[error("failed to pick a free port for engine `{engine}` on {host}: {source}")]
    Port {
        engine: String,
        host: String,
        source: std::io::Error,
    },
    #[error("failed to create log file {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to start engine `{engine}` (`{command}`): {source}")]
    Spawn {
        engine: String,
        command: String,
        source: std::io::Error,
    },
    #[error("engine `{engine}` exited ({status}) before it was ready{}", tail_block(.log, .tail))]
    ExitedEarly {
        engine: String,
        status: String,
        log: Option<PathBuf>,
        tail: Vec<String>,
    },
    #[error("engine `{engine}` was not ready at {url} after {waited:.0} s (last: {last}); raise MAX_WAIT_SECONDS or run.readiness_timeout_secs if it is only slow{}", tail_block(.log, .tail))]
    NotReady {
        engine: String,
        url: String,
        waited: f64,
        last: String,
        log: Option<PathBuf>,
        tail: Vec<String>,
    },
    #[error("engine `{engine}` died during the run ({status}){}", tail_block(.log, .tail))]
    Died {
        engine: String,
        status: String,
        log: Option<PathBuf>,
        tail: Vec<String>,
    },
    #[error("failed to start the container of engine `{engine}`: {message}")]
    ContainerStart { engine: String, message: String },
    #[error("failed to write the state file {path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn tail_block(log: &Option<PathBuf>, tail: &[String]) -> String {
    let Some(log) = log else {
        return String::new();
    };
    let mut s = format!("\n--- last {} lines of {} ---\n", tail.len(), log.display());
    for line in tail {
        let _ = writeln!(s, "{line}");
    }
    s.push_str("--- end of log ---");
    s
}

/// An engine resolved for this run: what to start and where it will serve.
#[derive(Debug, Clone)]
pub(crate) struct EngineSpec {
    pub name: String,
    pub role: Role,
    pub kind: EngineKind,
    /// The program and its arguments; `None` for external engines.
    pub command: Option<(PathBuf, Vec<String>)>,
    pub env: Vec<(String, String)>,
    pub url: String,
    pub readiness_timeout: Duration,
    pub log: Option<PathBuf>,
    pub readiness: Readiness,
    /// For containers: the name given to `docker run`, whose arguments
    /// `command` holds.
    pub container: Option<String>,
}

/// How many GPUs the suite's `auto:N` containers need chosen (0: none).
pub(crate) fn auto_gpus_needed(suite: &Suite) -> usize {
    suite
        .engines
        .values()
        .filter_map(|e| {
            e.container
                .as_ref()?
                .gpus
                .as_deref()?
                .strip_prefix("auto:")?
                .parse::<usize>()
                .ok()
        })
        .map(|i| i + 1)
        .max()
        .map_or(0, |n| n.max(suite.run.gpus.count))
}

/// Resolves every engine of the suite for `model`: finds programs, picks
/// free ports, substitutes `{port}`, `{host}` and `{model}` in arguments.
/// With a `label` (one run of several models), engine names and logs carry it.
pub(crate) fn resolve(
    suite: &Suite,
    logs_dir: &Path,
    model: &str,
    label: Option<&str>,
    run_id: &str,
    chosen_gpus: &[gpu::GpuState],
) -> Result<Vec<EngineSpec>, EngineError> {
    let mut specs = Vec::new();
    for (base_name, e) in &suite.engines {
        let name = &match label {
            Some(l) => format!("{base_name}@{l}"),
            None => base_name.clone(),
        };
        let timeout = Duration::from_secs_f64(
            e.readiness_timeout_secs
                .unwrap_or(suite.run.readiness_timeout_secs),
        );
        if e.kind == EngineKind::External {
            specs.push(EngineSpec {
                name: name.clone(),
                role: e.role,
                kind: e.kind,
                command: None,
                env: Vec::new(),
                url: e
                    .url
                    .clone()
                    .unwrap_or_default()
                    .trim_end_matches('/')
                    .to_string(),
                readiness_timeout: timeout,
                log: None,
                readiness: e.readiness,
                container: None,
            });
            continue;
        }
        let port = match e.port {
            Some(p) if p != 0 => p,
            _ => free_port(&e.host).map_err(|source| EngineError::Port {
                engine: name.clone(),
                host: e.host.clone(),
                source,
            })?,
        };
        let (program, mut args) = match e.kind {
            EngineKind::Container => {
                let cli = e.container.as_ref().map_or("docker", |c| c.cli.as_str());
                let program = which::which(cli).map_err(|source| EngineError::NotFound {
                    engine: name.clone(),
                    command: cli.to_string(),
                    source,
                })?;
                (program, e.args.clone())
            }
            EngineKind::Sim => {
                let exe = std::env::current_exe().map_err(|source| EngineError::Spawn {
                    engine: name.clone(),
                    command: "lmcache-e2e sim serve".into(),
                    source,
                })?;
                let mut opts = e.sim.clone().unwrap_or_default();
                if model != "auto" {
                    opts.served_model_name = model.to_string();
                }
                let mut args: Vec<String> =
                    ["sim", "serve", "--host", "{host}", "--port", "{port}"]
                        .iter()
                        .map(|s| s.to_string())
                        .collect();
                args.extend(opts.to_args());
                args.extend(e.args.iter().cloned());
                (exe, args)
            }
            _ => {
                let command = e.command.clone().unwrap_or_default();
                let program = which::which(&command).map_err(|source| EngineError::NotFound {
                    engine: name.clone(),
                    command: command.clone(),
                    source,
                })?;
                (program, e.args.clone())
            }
        };
        for a in &mut args {
            *a = a
                .replace("{port}", &port.to_string())
                .replace("{host}", &e.host)
                .replace("{model}", model);
        }
        let mut container = None;
        if let (EngineKind::Container, Some(c)) = (e.kind, &e.container) {
            let cname = c
                .name
                .clone()
                .unwrap_or_else(|| container_name(name, run_id));
            let mut c = c.clone();
            if let Some(i) = c.gpus.as_deref().and_then(|g| g.strip_prefix("auto:")) {
                let i: usize = i.parse().unwrap_or(usize::MAX);
                let gpu = chosen_gpus.get(i).ok_or_else(|| EngineError::ContainerStart {
                    engine: name.clone(),
                    message: format!("gpus = \"auto:{i}\" but only {} GPU(s) were chosen; raise run.gpus.count", chosen_gpus.len()),
                })?;
                c.gpus = Some(gpu.index.to_string());
                if gpu
                    .memory_total_mib
                    .is_some_and(|t| t > suite.run.gpus.large_gpu_mib)
                {
                    args.extend(e.large_gpu_args.iter().cloned());
                }
            }
            let c = &c;
            args = docker_run_args(e, c, &cname, name, run_id, port, args);
            container = Some(cname);
        }
        let connect_host = if e.host == "0.0.0.0" {
            "127.0.0.1"
        } else {
            e.host.as_str()
        };
        specs.push(EngineSpec {
            name: name.clone(),
            role: e.role,
            kind: e.kind,
            command: Some((program, args)),
            env: e.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            url: format!("http://{connect_host}:{port}"),
            readiness_timeout: timeout,
            log: Some(logs_dir.join(format!("{}.log", name.replace('@', "-")))),
            readiness: e.readiness,
            container,
        });
    }
    Ok(specs)
}

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
    e: &crate::config::EngineConfig,
    c: &ContainerOptions,
    cname: &str,
    engine: &str,
    run_id: &str,
    port: u16,
    command_args: Vec<String>,
) -> Vec<String> {
    let (role, env) = (e.role, &e.env);
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
    a.extend(["-e".into(), format!("{}={run_id}", supervisor::RUN_ID_ENV)]);
    for (k, v) in env {
        a.extend(["-e".into(), format!("{k}={v}")]);
    }
    if let Some(ep) = &c.entrypoint {
        a.extend(["--entrypoint".into(), ep.clone()]);
    }
    a.push(c.image.clone());
    a.extend(command_args);
    a
}

fn free_port(host: &str) -> std::io::Result<u16> {
    let host = if host == "0.0.0.0" { "127.0.0.1" } else { host };
    Ok(std::net::TcpListener::bind((host, 0))?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mp_preset_runs_the_reference_containers_on_the_chosen_gpus() {
        if which::which("docker").is_err() {
            panic!("the docker CLI is needed (scripts/test.sh installs docker.io)");
        }
        let lookup = |_: &str| None;
        let loaded = crate::config::load(&crate::config::LoadRequest {
            overlays: &[],
            preset: Some("mp"),
            file: None,
            sets: &[],
            env: &lookup,
        })
        .unwrap();
        assert_eq!(auto_gpus_needed(&loaded.suite), 2);
        let gpu = |index, total| gpu::GpuState {
            index,
            memory_total_mib: Some(total),
            memory_free_mib: total,
            utilization_pct: 0,
        };
        let specs = resolve(
            &loaded.suite,
            Path::new("/r/logs"),
            "Qwen/Qwen3-14B",
            None,
            "run1",
            &[gpu(3, 81_559), gpu(1, 81_559)],
        )
        .unwrap();
        let line = |name: &str| {
            let s = specs.iter().find(|s| s.name == name).unwrap();
            s.command.as_ref().unwrap().1.join(" ")
        };
        let server = line("lmcache-server");
        assert!(server.starts_with("run -d --name lmcache-e2e-lmcache-server-run1 --label lmcache-e2e.run=run1 --label lmcache-e2e.role=service"), "{server}");
        assert!(
            server.contains("--network host --ipc host --runtime nvidia --gpus \"device=3\""),
            "{server}"
        );
        assert!(server.ends_with(
            "--entrypoint /opt/venv/bin/python3 lmcache/vllm-openai:test -m lmcache.v1.multiprocess.server --l1-size-gb 80 --eviction-policy LRU --max-workers 4 --port 6555"
        ), "{server}");
        let lm = line("vllm-lmcache");
        assert!(
            lm.contains("--gpus \"device=3\""),
            "same GPU as the server: {lm}"
        );
        assert!(lm.contains("/.cache/huggingface:/root/.cache/huggingface"));
        for env in [
            "VLLM_ENABLE_V1_MULTIPROCESSING=0",
            "VLLM_BATCH_INVARIANT=1",
            "PYTHONHASHSEED=0",
        ] {
            assert!(lm.contains(&format!("-e {env}")), "{env}: {lm}");
        }
        assert!(lm.ends_with(
            r#"lmcache/vllm-openai:test Qwen/Qwen3-14B --kv-transfer-config {"kv_connector":"LMCacheMPConnector","kv_role":"kv_both","kv_connector_extra_config":{"lmcache.mp.port":6555}} --attention-backend FLASH_ATTN --port 8000"#
        ), "{lm}");
        let base = line("vllm-baseline");
        assert!(
            base.contains("--gpus \"device=1\"")
                && !base.contains("kv-transfer-config")
                && base.ends_with("--port 9000"),
            "{base}"
        );
        assert!(specs.iter().all(|s| s.container.is_some()));
        assert!(
            !lm.contains("--gpu-memory-utilization"),
            "80 GB GPUs keep vLLM's default"
        );
        let err = resolve(
            &loaded.suite,
            Path::new("/r"),
            "m",
            None,
            "run1",
            &[gpu(0, 81_559)],
        )
        .unwrap_err();
        assert!(err.to_string().contains("auto:1"), "{err}");
        // An H200-class GPU: vLLM gets half of it, as the scripts do.
        let specs = resolve(
            &loaded.suite,
            Path::new("/r"),
            "m",
            None,
            "run1",
            &[gpu(0, 143_771), gpu(1, 81_559)],
        )
        .unwrap();
        let args = |name: &str| {
            specs
                .iter()
                .find(|s| s.name == name)
                .unwrap()
                .command
                .as_ref()
                .unwrap()
                .1
                .join(" ")
        };
        assert!(
            args("vllm-lmcache").ends_with("--port 8000 --gpu-memory-utilization 0.5"),
            "{}",
            args("vllm-lmcache")
        );
        assert!(!args("vllm-baseline").contains("--gpu-memory-utilization"));
    }
}
