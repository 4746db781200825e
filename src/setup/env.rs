//! The job's Python environment: a venv (uv when there is one, else
//! `python -m venv` and pip), repositories fetched at a ref, editable
//! installs and extra packages, each behind a stamp so that a second run
//! with nothing changed installs nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::child::NoSecrets;
use crate::config::{Installer, RepoConfig, SetupConfig};
use crate::results::ErrorClass;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    #[error("failed to find `{0}` on PATH; install it (Debian: apt-get install python3 python3-venv) or set setup.python")]
    NoPython(String),
    #[error(
        "failed to find `uv` on PATH; install it (pip install uv) or set setup.installer = \"pip\""
    )]
    NoUv,
    #[error("failed to find `git` on PATH; install it (Debian: apt-get install git)")]
    NoGit,
    #[error("failed to run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}); last lines of its output:\n{tail}")]
    Failed {
        command: String,
        status: String,
        tail: String,
    },
    #[error(
        "failed to fetch `{git_ref}` of {url}: no such branch, tag or commit; last lines:\n{tail}"
    )]
    NoRef {
        url: String,
        git_ref: String,
        tail: String,
    },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("missing prerequisites: {0} (the table above says how to fix each)")]
    Missing(String),
    #[error("{0}")]
    Data(String),
    #[error("{venv} runs Python {got}, but setup.python asks for {wanted}; remove the venv or change setup.python")]
    WrongPython {
        wanted: String,
        got: String,
        venv: String,
    },
}

impl SetupError {
    /// The job's environment.
    pub(crate) fn class(&self) -> ErrorClass {
        ErrorClass::Setup
    }
}

/// One step's outcome, as printed and returned.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub name: String,
    pub outcome: String,
    /// Whether the step changed anything (installed, created, fetched).
    pub changed: bool,
    pub secs: f64,
}

fn run(cmd: &mut Command) -> Result<String, SetupError> {
    let command = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = cmd.output().map_err(|source| SetupError::Spawn {
        command: command.clone(),
        source,
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let lines: Vec<&str> = text.lines().collect();
        Err(SetupError::Failed {
            command,
            status: out.status.to_string(),
            tail: lines[lines.len().saturating_sub(20)..].join("\n"),
        })
    }
}

/// What an install was made from; a different one means reinstall.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Stamp {
    what: String,
    installer: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

struct Env<'a> {
    cfg: &'a SetupConfig,
    venv: PathBuf,
    uv: Option<PathBuf>,
}

impl Env<'_> {
    fn python(&self) -> PathBuf {
        self.venv.join("bin/python")
    }

    fn stamp_path(&self, name: &str) -> PathBuf {
        self.venv.join(".lmcache-e2e").join(format!("{name}.json"))
    }

    fn stamp(&self, what: String) -> Stamp {
        Stamp {
            what,
            installer: if self.uv.is_some() { "uv" } else { "pip" }.into(),
            args: self.cfg.install_args.clone(),
            env: self
                .cfg
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    fn up_to_date(&self, name: &str, stamp: &Stamp) -> bool {
        std::fs::read_to_string(self.stamp_path(name))
            .ok()
            .and_then(|t| serde_json::from_str::<Stamp>(&t).ok())
            .is_some_and(|s| &s == stamp)
    }

    fn save(&self, name: &str, stamp: &Stamp) -> Result<(), SetupError> {
        let path = self.stamp_path(name);
        let err = |source| SetupError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(path.parent().expect("stamp dir")).map_err(err)?;
        std::fs::write(&path, serde_json::to_vec(stamp).expect("stamp")).map_err(err)
    }

    /// `uv pip install` or `python -m pip install`, with the suite's env.
    fn install(&self, what: &[String]) -> Result<(), SetupError> {
        let mut cmd = match &self.uv {
            Some(uv) => {
                let mut c = Command::new(uv);
                c.no_secrets();
                c.args(["pip", "install", "--python"]).arg(self.python());
                c
            }
            None => {
                let mut c = Command::new(self.python());
                c.no_secrets();
                c.args(["-m", "pip", "install", "--disable-pip-version-check"]);
                c
            }
        };
        cmd.args(&self.cfg.install_args)
            .args(what)
            .envs(&self.cfg.env);
        run(&mut cmd).map(|_| ())
    }
}

/// Told when each setup step starts and ends (the console shows a spinner
/// on a terminal and one line per step).
pub(crate) trait StepObserver {
    fn started(&self, name: &str);
    fn finished(&self, step: Option<&Step>);
}

fn timed(
    obs: &dyn StepObserver,
    name: String,
    f: impl FnOnce() -> Result<(String, bool), SetupError>,
) -> Result<Step, SetupError> {
    let t = Instant::now();
    obs.started(&name);
    let result = f();
    let step = result.map(|(outcome, changed)| Step {
        name,
        outcome,
        changed,
        secs: t.elapsed().as_secs_f64(),
    });
    obs.finished(step.as_ref().ok());
    step
}

/// The venv's interpreter is the version the suite asked for.
fn check_version(python: &Path, wanted: Option<&str>) -> Result<(), SetupError> {
    let Some(wanted) = wanted else { return Ok(()) };
    let got = run(Command::new(python)
        .no_secrets()
        .args(["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"]))?;
    if got == wanted || got.starts_with(&format!("{wanted}.")) {
        Ok(())
    } else {
        Err(SetupError::WrongPython {
            wanted: wanted.into(),
            got,
            venv: python.display().to_string(),
        })
    }
}

/// Checks out `repo` at its ref under `dir`; returns the commit and
/// whether it changed.
fn checkout(git: &Path, repo: &RepoConfig, dir: &Path) -> Result<(String, bool), SetupError> {
    let g = |args: &[&str]| {
        let mut c = Command::new(git);
        c.no_secrets();
        c.arg("-C").arg(dir).args(args);
        c
    };
    // The job's own checkout: `dir` already points at it; use it as it is.
    if repo.git_ref.starts_with("checkout:") {
        let mut c = Command::new(git);
        c.no_secrets();
        c.arg("-C").arg(dir).args(["rev-parse", "HEAD"]);
        return Ok((run(&mut c)?, false));
    }
    if !dir.join(".git").exists() {
        std::fs::create_dir_all(dir).map_err(|source| SetupError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        run(&mut g(&["init", "-q"]))?;
        run(&mut g(&["remote", "add", "origin", &repo.url]))?;
    } else {
        run(&mut g(&["remote", "set-url", "origin", &repo.url]))?;
    }
    let before = run(&mut g(&["rev-parse", "-q", "--verify", "HEAD"])).ok();
    // Shallow where the server allows it; a commit id may need a full fetch.
    let shallow = run(&mut g(&[
        "fetch",
        "-q",
        "--depth",
        "1",
        "origin",
        &repo.git_ref,
    ]));
    if let Err(e) = shallow {
        let looks_like_commit =
            repo.git_ref.len() >= 7 && repo.git_ref.chars().all(|c| c.is_ascii_hexdigit());
        let tail = match &e {
            SetupError::Failed { tail, .. } => tail.clone(),
            other => other.to_string(),
        };
        if !looks_like_commit
            || run(&mut g(&["fetch", "-q", "origin"])).is_err()
            || run(&mut g(&[
                "rev-parse",
                "--verify",
                &format!("{}^{{commit}}", repo.git_ref),
            ]))
            .is_err()
        {
            return Err(SetupError::NoRef {
                url: repo.url.clone(),
                git_ref: repo.git_ref.clone(),
                tail,
            });
        }
        run(&mut g(&[
            "checkout",
            "-q",
            "--force",
            "--detach",
            &repo.git_ref,
        ]))?;
    } else {
        run(&mut g(&[
            "checkout",
            "-q",
            "--force",
            "--detach",
            "FETCH_HEAD",
        ]))?;
    }
    let after = run(&mut g(&["rev-parse", "HEAD"]))?;
    let changed = before.as_deref() != Some(after.as_str());
    Ok((after, changed))
}

/// Runs every setup step; `base` is where relative paths start.
pub(crate) fn setup(
    cfg: &SetupConfig,
    base: &Path,
    obs: &dyn StepObserver,
) -> Result<Vec<Step>, SetupError> {
    let uv = match cfg.installer {
        Installer::Pip => None,
        Installer::Uv => Some(which::which("uv").map_err(|_| SetupError::NoUv)?),
        Installer::Auto => which::which("uv").ok(),
    };
    let env = Env {
        cfg,
        venv: base.join(&cfg.venv),
        uv,
    };
    let mut steps = vec![venv_step(&env, obs)?];
    // Extra packages first: build dependencies of the editable installs
    // (e.g. `wheel`) are among them.
    if !cfg.packages.is_empty() {
        steps.push(packages_step(&env, obs)?);
    }
    if !cfg.repos.is_empty() {
        let git = which::which("git").map_err(|_| SetupError::NoGit)?;
        for (name, repo) in &cfg.repos {
            steps.extend(repo_steps(&env, obs, &git, base, name, repo)?);
        }
    }
    if let Some(archive) = &cfg.mmlu_archive {
        steps.push(mmlu_step(cfg, obs, base, archive)?);
    }
    Ok(steps)
}

/// The venv, created with uv or `python -m venv` unless it exists; a
/// `python = "3.11"` asks for a version (`python3.11`), checked after.
fn venv_step(env: &Env<'_>, obs: &dyn StepObserver) -> Result<Step, SetupError> {
    let cfg = env.cfg;
    let wanted = cfg
        .python
        .chars()
        .next()
        .filter(char::is_ascii_digit)
        .map(|_| cfg.python.clone());
    let interpreter = match &wanted {
        Some(v) => format!("python{v}"),
        None => cfg.python.clone(),
    };
    timed(obs, format!("venv {}", cfg.venv.display()), || {
        if env.python().exists() {
            check_version(&env.python(), wanted.as_deref())?;
            return Ok(("up to date".into(), false));
        }
        match &env.uv {
            Some(uv) => run(Command::new(uv)
                .no_secrets()
                .args(["venv", "--quiet", "--seed", "--python", &cfg.python])
                .arg(&env.venv))?,
            None => {
                let python = which::which(&interpreter)
                    .map_err(|_| SetupError::NoPython(interpreter.clone()))?;
                run(Command::new(python)
                    .no_secrets()
                    .args(["-m", "venv"])
                    .arg(&env.venv))?
            }
        };
        check_version(&env.python(), wanted.as_deref())?;
        let with = if env.uv.is_some() {
            "uv"
        } else {
            "python -m venv"
        };
        Ok((format!("created with {with}"), true))
    })
}

/// The suite's extra packages, installed once per set of them.
fn packages_step(env: &Env<'_>, obs: &dyn StepObserver) -> Result<Step, SetupError> {
    let mut sorted = env.cfg.packages.clone();
    sorted.sort();
    let stamp = env.stamp(sorted.join(" "));
    timed(obs, format!("packages {}", sorted.join(" ")), || {
        if env.up_to_date("packages", &stamp) {
            return Ok(("up to date".into(), false));
        }
        env.install(&env.cfg.packages)?;
        env.save("packages", &stamp)?;
        Ok(("installed".into(), true))
    })
}

/// A repository at its ref, then (if editable) installed at that commit.
fn repo_steps(
    env: &Env<'_>,
    obs: &dyn StepObserver,
    git: &Path,
    base: &Path,
    name: &str,
    repo: &RepoConfig,
) -> Result<Vec<Step>, SetupError> {
    let dir = match repo.git_ref.strip_prefix("checkout:") {
        Some(path) => base.join(path),
        None => base.join(&env.cfg.repos_dir).join(name),
    };
    let mut commit = String::new();
    let mut steps = vec![timed(obs, format!("{name} at {}", repo.git_ref), || {
        let (c, changed) = checkout(git, repo, &dir)?;
        commit = c;
        Ok((
            format!("commit {}", &commit[..commit.len().min(12)]),
            changed,
        ))
    })?];
    if repo.editable {
        let stamp = env.stamp(format!("{} @ {commit}", dir.display()));
        steps.push(timed(obs, format!("install {name} (editable)"), || {
            if env.up_to_date(name, &stamp) {
                return Ok(("up to date".into(), false));
            }
            env.install(&["-e".to_string(), dir.display().to_string()])?;
            env.save(name, &stamp)?;
            Ok((
                format!("installed commit {}", &commit[..commit.len().min(12)]),
                true,
            ))
        })?);
    }
    Ok(steps)
}

/// MMLU's archive extracted where the suite's tests read it.
fn mmlu_step(
    cfg: &SetupConfig,
    obs: &dyn StepObserver,
    base: &Path,
    archive: &Path,
) -> Result<Step, SetupError> {
    timed(obs, format!("MMLU data {}", archive.display()), || {
        let p =
            crate::workload::mmlu::data::prepare(&base.join(archive), &base.join(&cfg.mmlu_into))
                .map_err(|e| SetupError::Data(e.to_string()))?;
        let what = if p.extracted {
            "extracted"
        } else {
            "up to date"
        };
        Ok((
            format!(
                "{what}: {} subjects in {}",
                p.subjects,
                p.data_dir.display()
            ),
            p.extracted,
        ))
    })
}
