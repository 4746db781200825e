//! Engines: a suite's engine entries resolved through their kind's backend
//! (external, process, sim, container) into things that run, waiting until
//! they serve, and the supervisor that stops them. Knows nothing of
//! workloads.

mod backend;
pub(crate) mod fault;
pub(crate) mod gpu;
pub(crate) mod image;
mod kinds;
pub(crate) mod logscan;
mod readiness;
mod spec;
pub(crate) mod startlog;
mod supervisor;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Suite;

pub(crate) use crate::results::tail_lines;
pub(crate) use backend::Planned;
use backend::Resolve;
use kinds::backend;
pub(crate) use kinds::container::{cleanup_by_label, LabelFilter};
pub(crate) use readiness::{wait_ready, Starting};
pub(crate) use spec::{EngineError, EngineSpec, TAIL_LINES};
pub(crate) use supervisor::{cleanup_from_state, mark_stopped, Supervisor};

/// How `ci --dry-run` shows the engine `e`.
pub(crate) fn planned(e: &crate::config::EngineConfig) -> Planned {
    backend(e.kind).planned(e)
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

/// Resolves every engine of the suite for `model` through its backend:
/// finds programs, picks free ports, substitutes `{port}`, `{host}` and
/// `{model}` in arguments. With a `label` (one run of several models),
/// engine names and logs carry it.
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
        let readiness_timeout = Duration::from_secs_f64(
            e.readiness_timeout_secs
                .unwrap_or(suite.run.readiness_timeout_secs),
        );
        let external = !e.kind.started();
        let port = match e.port {
            _ if external => 0,
            Some(p) if p != 0 => p,
            _ => free_port(&e.host).map_err(|source| EngineError::Port {
                engine: name.clone(),
                host: e.host.clone(),
                source,
            })?,
        };
        let files_dir = write_files(e, name, logs_dir)?;
        let e = &*fault::inject(e, &files_dir)?;
        let launch = backend(e.kind).resolve(
            e,
            &Resolve {
                suite,
                name,
                model,
                run_id,
                port,
                chosen_gpus,
                files_dir: &files_dir,
            },
        )?;
        let connect_host = if e.host == "0.0.0.0" {
            "127.0.0.1"
        } else {
            e.host.as_str()
        };
        let url = match &e.url {
            Some(u) if external => u.trim_end_matches('/').to_string(),
            _ => format!("http://{connect_host}:{port}"),
        };
        specs.push(EngineSpec {
            name: name.clone(),
            role: e.role,
            kind: e.kind,
            launch,
            url,
            readiness_timeout,
            log: (!external).then(|| logs_dir.join(format!("{}.log", name.replace('@', "-")))),
            readiness: e.readiness,
            health_path: e.health_path.clone(),
            health_port: e.health_port,
        });
    }
    Ok(specs)
}

/// Writes the engine's `[engines.NAME.files]` (e.g. SGLang's LMCache
/// config) into `RESULTS_DIR/engines/<engine>/`, where `{file:NAME}` in
/// its arguments points, and kept with the results.
fn write_files(
    e: &crate::config::EngineConfig,
    name: &str,
    logs_dir: &Path,
) -> Result<PathBuf, EngineError> {
    let results = logs_dir.parent().unwrap_or(logs_dir);
    let dir = results.join("engines").join(name.replace(['@', '/'], "-"));
    for (file, body) in &e.files {
        let path = dir.join(file);
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, body))
            .map_err(|source| EngineError::State { path, source })?;
    }
    Ok(dir)
}

fn free_port(host: &str) -> std::io::Result<u16> {
    let host = if host == "0.0.0.0" { "127.0.0.1" } else { host };
    Ok(std::net::TcpListener::bind((host, 0))?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::spec::Launch;
    use super::*;

    fn args_of(specs: &[EngineSpec], name: &str) -> String {
        match &specs.iter().find(|s| s.name == name).unwrap().launch {
            Launch::Container { run_args, .. } => run_args.join(" "),
            Launch::Process { args, .. } => args.join(" "),
            Launch::External => String::new(),
        }
    }

    fn mp_preset() -> crate::config::Loaded {
        if which::which("docker").is_err() {
            panic!("the docker CLI is needed (scripts/test.sh installs docker.io)");
        }
        let lookup = |_: &str| None;
        crate::config::load(&crate::config::LoadRequest {
            overlays: &[],
            preset: Some("mp"),
            file: None,
            sets: &[],
            env: &lookup,
            kinds: &crate::workload::test_kinds(),
        })
        .unwrap()
    }

    fn gpu(index: u32, total: u64) -> gpu::GpuState {
        gpu::GpuState {
            index,
            memory_total_mib: Some(total),
            memory_free_mib: total,
            memory_used_mib: None,
            utilization_pct: 0,
            name: None,
        }
    }

    #[test]
    fn the_mp_preset_runs_the_reference_containers_on_the_chosen_gpus() {
        let loaded = mp_preset();
        assert_eq!(auto_gpus_needed(&loaded.suite), 2);
        let specs = resolve(
            &loaded.suite,
            Path::new("/r/logs"),
            "Qwen/Qwen3-14B",
            None,
            "run1",
            &[gpu(3, 81_559), gpu(1, 81_559)],
        )
        .unwrap();
        let line = |name: &str| args_of(&specs, name);
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
        assert!(specs
            .iter()
            .all(|s| matches!(s.launch, Launch::Container { .. })));
        assert!(
            !lm.contains("--gpu-memory-utilization"),
            "80 GB GPUs keep vLLM's default"
        );
    }

    #[test]
    fn the_mp_preset_wants_two_gpus_and_gives_vllm_half_of_a_big_one() {
        let loaded = mp_preset();
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
        let args = |name: &str| args_of(&specs, name);
        assert!(
            args("vllm-lmcache").ends_with("--port 8000 --gpu-memory-utilization 0.5"),
            "{}",
            args("vllm-lmcache")
        );
        assert!(!args("vllm-baseline").contains("--gpu-memory-utilization"));
    }
}
