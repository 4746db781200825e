//! An engine entry of a suite (`[engines.NAME]`) and the engine kinds:
//! each kind declares here which keys it reads, what it cannot do without,
//! what it needs on the machine, whether the run starts it, whether it
//! takes a GPU and how a fault reaches it. Its backend lives in
//! `engine/kinds/`. The rest of the tool asks the row, or reads a kind's
//! own option table (a container's image and CLI), never the kind's name.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::wants::Wants;
use crate::results::Role;
use crate::sim::{KvFault, SimOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EngineKind {
    /// A command we start, e.g. `vllm serve`.
    Process,
    /// This binary's simulated engine, started as a child process.
    Sim,
    /// A server that is already running at `url`; never started or stopped.
    External,
    /// A container run with the `docker` (or `podman`) CLI.
    Container,
    /// A kind that exists only in the unit tests, to show what adding one
    /// takes (`engine/kinds/toy.rs`).
    #[cfg(test)]
    Toy,
}

/// The keys of `[engines.NAME]` that some kinds use and others refuse.
const KIND_KEYS: &[&str] = &["command", "url", "sim", "container", "port", "args"];

/// How a KV fault (a control's `fault`) reaches an engine of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultRoute {
    /// Its own option (`[engines.NAME.sim] kv_fault`).
    SimOption,
    /// A Python start-up hook on its `PYTHONPATH` that patches LMCache.
    PythonHook,
    /// None: a fault cannot be injected into it.
    Refused,
}

/// What the rest of the tool asks of an engine kind, declared by the kind
/// in [`EngineKind::row`] rather than matched on wherever it matters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KindRow {
    /// Which of [`KIND_KEYS`] it reads; a suite that sets another is
    /// refused, since that key was surely meant to do something.
    pub uses: &'static [&'static str],
    /// The run starts and stops it; `false`: a server it only reaches.
    pub started: bool,
    /// Placement gives it a GPU (`CUDA_VISIBLE_DEVICES`, `auto:N`).
    pub takes_gpu: bool,
    pub fault: FaultRoute,
}

impl EngineKind {
    /// As the suite writes it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EngineKind::Process => "process",
            EngineKind::Sim => "sim",
            EngineKind::External => "external",
            EngineKind::Container => "container",
            #[cfg(test)]
            EngineKind::Toy => "toy",
        }
    }

    /// The kind's declaration: one row per kind, so a new kind says all
    /// of it here (with [`EngineConfig::lacks`] and [`EngineConfig::wants`])
    /// and its backend in `engine/kinds/`.
    pub(crate) fn row(self) -> KindRow {
        match self {
            EngineKind::Process => KindRow {
                uses: &["command", "port", "args"],
                started: true,
                takes_gpu: true,
                fault: FaultRoute::PythonHook,
            },
            EngineKind::Sim => KindRow {
                uses: &["sim", "port", "args"],
                started: true,
                takes_gpu: true,
                fault: FaultRoute::SimOption,
            },
            EngineKind::External => KindRow {
                uses: &["url"],
                started: false,
                takes_gpu: false,
                fault: FaultRoute::Refused,
            },
            // Its GPUs are its own option (`container.gpus`, `auto:N`).
            EngineKind::Container => KindRow {
                uses: &["container", "port", "args"],
                started: true,
                takes_gpu: false,
                fault: FaultRoute::Refused,
            },
            #[cfg(test)]
            EngineKind::Toy => KindRow {
                uses: &["command", "port", "args"],
                started: true,
                takes_gpu: false,
                fault: FaultRoute::Refused,
            },
        }
    }

    /// The run starts and stops engines of this kind.
    pub(crate) fn started(self) -> bool {
        self.row().started
    }
}

/// How an engine is known to be ready.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Readiness {
    /// `GET /health`, then `GET /v1/models`, answer 2xx.
    #[default]
    Http,
    /// The port accepts connections (e.g. the LMCache server).
    Tcp,
    /// The health route alone answers 2xx: a service that is no OpenAI
    /// server (LMCache's MP server answers `/healthcheck` on its HTTP port).
    Health,
}

/// How a `container` engine is run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContainerOptions {
    pub image: String,
    /// Container name; default `lmcache-e2e-<engine>-<run>`.
    pub name: Option<String>,
    pub entrypoint: Option<String>,
    /// `host:container[:options]`; `~` is the home directory.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// `docker run --network`; `host` by default, as the reference runs.
    #[serde(default = "host_network")]
    pub network: String,
    /// `-p` mappings, for networks other than `host`.
    #[serde(default)]
    pub publish: Vec<String>,
    #[serde(default)]
    pub ipc_host: bool,
    /// GPU devices, e.g. "0" or "0,1", or `auto:N` for the N-th GPU chosen
    /// under `run.gpus`: `--gpus device=...` and `--runtime nvidia`.
    pub gpus: Option<String>,
    /// `docker` or `podman` (or a path).
    #[serde(default = "docker_cli")]
    pub cli: String,
    /// Build the image first (else it must exist, or be pullable).
    pub build: Option<BuildOptions>,
}

/// `docker build` of an engine's image, as the multiprocessing suite does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuildOptions {
    /// Build context, relative to the suite file (or the working directory).
    #[serde(default = "dot")]
    pub context: String,
    /// Dockerfile, relative to the context.
    pub file: Option<String>,
    pub target: Option<String>,
    #[serde(default)]
    pub args: IndexMap<String, String>,
}

fn dot() -> String {
    ".".to_string()
}

fn host_network() -> String {
    "host".to_string()
}

fn docker_cli() -> String {
    "docker".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EngineConfig {
    pub role: Role,
    pub kind: EngineKind,
    /// Program to run (kind `process`); found on PATH.
    pub command: Option<String>,
    /// Arguments; `{port}`, `{host}` and `{model}` are substituted.
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: IndexMap<String, String>,
    #[serde(default = "default_host")]
    pub host: String,
    /// Port to serve on; a free one is picked when absent.
    pub port: Option<u16>,
    /// Base URL of an already running server (kind `external`).
    pub url: Option<String>,
    /// Overrides `run.readiness_timeout_secs` for this engine.
    pub readiness_timeout_secs: Option<f64>,
    /// Simulated engine options (kind `sim`).
    pub sim: Option<SimOptions>,
    /// Container options (kind `container`).
    pub container: Option<ContainerOptions>,
    #[serde(default)]
    pub readiness: Readiness,
    /// The route `readiness = "http"` polls before `/v1/models`. Unset:
    /// `/health`, falling back to `/v1/models` alone when the server has
    /// no such route (404, 405, 501), as llama-cpp-python's does not.
    /// `""`: `/v1/models` alone.
    pub health_path: Option<String>,
    /// The port the health route is served on when it is not `port` (the
    /// LMCache MP server: ZMQ on 6555, HTTP on 8080).
    pub health_port: Option<u16>,
    /// Files the engine reads, written into `RESULTS_DIR/engines/<engine>/`
    /// before it starts: name → contents; `{file:NAME}` in `args` is the
    /// path (SGLang takes its LMCache config as a file).
    #[serde(default)]
    pub files: IndexMap<String, String>,
    /// Appended to `args` when the engine's chosen GPU (`auto:N`) has more
    /// than `run.gpus.large_gpu_mib` of memory.
    #[serde(default)]
    pub large_gpu_args: Vec<String>,
    /// A fault injected into the KV this engine's connector restores, to
    /// prove that a check can fail (a positive control): `corrupt-kv`,
    /// `drop-first-chunk` or `slow-retrieve`. A sim models it; a process
    /// engine gets a Python start-up hook on its `PYTHONPATH` that patches
    /// LMCache as it is imported (LMCache's files stay untouched).
    pub fault: Option<KvFault>,
}

fn default_host() -> String {
    "127.0.0.1".to_string()
}

impl EngineConfig {
    /// What the engine's kind cannot run without, if the suite left it
    /// out: the key and what to give. Every kind says, so a new one must.
    pub(crate) fn lacks(&self) -> Option<(&'static str, &'static str)> {
        let empty = |s: Option<&str>| s.is_none_or(|s| s.trim().is_empty());
        match self.kind {
            EngineKind::Process => empty(self.command.as_deref())
                .then_some(("command", "kind `process` needs a command")),
            EngineKind::Container => empty(self.container.as_ref().map(|c| c.image.as_str()))
                .then_some((
                    "container.image",
                    "kind `container` needs [engines.NAME.container] with an image",
                )),
            EngineKind::External => self.url.is_none().then_some((
                "url",
                "kind `external` needs a url, e.g. \"http://127.0.0.1:8000\"",
            )),
            // Every option of the sim has a default.
            EngineKind::Sim => None,
            #[cfg(test)]
            EngineKind::Toy => {
                empty(self.command.as_deref()).then_some(("command", "kind `toy` needs a command"))
            }
        }
    }

    /// A key that means nothing for the engine's kind (a `[container]`
    /// table on a process, a `url` on a sim), with why it is refused.
    pub(crate) fn misplaced(&self) -> Option<(&'static str, String)> {
        let set = |key: &str| match key {
            "command" => self.command.is_some(),
            "url" => self.url.is_some(),
            "sim" => self.sim.is_some(),
            "container" => self.container.is_some(),
            "port" => self.port.is_some(),
            "args" => !self.args.is_empty(),
            _ => false,
        };
        let kind = self.kind.as_str();
        KIND_KEYS
            .iter()
            .find(|key| set(key) && !self.kind.row().uses.contains(key))
            .map(|key| {
                (
                    *key,
                    format!(
                        "kind `{kind}` does not use `{key}`; remove it, or set the kind that uses it"
                    ),
                )
            })
    }

    /// The programs and files it needs on this machine (keys under
    /// `engines.NAME`), for the preflight.
    pub(crate) fn wants(&self) -> Vec<Wants> {
        let program = |key, name: &str, fix| Wants::Program {
            key,
            name: name.to_string(),
            fix,
        };
        match self.kind {
            EngineKind::Process => self
                .command
                .as_deref()
                .filter(|c| !c.is_empty())
                .map(|c| program("command", c, "install it in the job's environment, or give its path"))
                .into_iter()
                .collect(),
            EngineKind::Container => self
                .container
                .as_ref()
                .map(|c| program("container.cli", &c.cli, "install Docker (Debian: apt-get install docker.io) or set the cli to podman"))
                .into_iter()
                .collect(),
            EngineKind::Sim => self
                .sim
                .as_ref()
                .and_then(|s| s.answer_key.as_ref())
                .map(|key| Wants::File {
                    key: "sim.answer_key",
                    path: key.display().to_string(),
                    fix: "point it at a directory of MMLU CSV files",
                })
                .into_iter()
                .collect(),
            EngineKind::External => Vec::new(),
            #[cfg(test)]
            EngineKind::Toy => Vec::new(),
        }
    }
}
