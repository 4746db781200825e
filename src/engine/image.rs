//! The image build step: `docker build` for every container engine whose
//! suite asks for one, before anything starts; output to a log, a failure
//! with its tail.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::child::NoSecrets;
use crate::config::Suite;
use crate::results::ErrorClass;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ImageError {
    #[error("failed to find `{cli}` on PATH to build {image}: {source}")]
    NotFound {
        cli: String,
        image: String,
        source: which::Error,
    },
    #[error("failed to run `{cli} build` for {image}: {source}")]
    Spawn {
        cli: String,
        image: String,
        source: std::io::Error,
    },
    #[error("failed to build image {image} ({status}); last lines of {log}:\n{tail}")]
    Build {
        image: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
}

impl ImageError {
    /// The container CLI or the image build on this machine.
    pub(crate) fn class(&self) -> ErrorClass {
        ErrorClass::Setup
    }
}

/// The `build` arguments for one image.
pub(crate) fn build_args(
    b: &crate::config::BuildOptions,
    image: &str,
    context: &Path,
) -> Vec<String> {
    let mut a = vec!["build".to_string()];
    for (k, v) in &b.args {
        a.extend(["--build-arg".into(), format!("{k}={v}")]);
    }
    if let Some(t) = &b.target {
        a.extend(["--target".into(), t.clone()]);
    }
    if let Some(f) = &b.file {
        a.extend(["--file".into(), context.join(f).display().to_string()]);
    }
    a.extend([
        "--tag".into(),
        image.to_string(),
        context.display().to_string(),
    ]);
    a
}

/// Builds each image once, in suite order; returns the images built.
pub(crate) async fn build_images(
    suite: &Suite,
    suite_dir: &Path,
    logs_dir: &Path,
    say: &dyn Fn(String),
) -> Result<Vec<String>, ImageError> {
    let mut built: Vec<String> = Vec::new();
    // Only a `container` engine may have the table (the loader refuses
    // it elsewhere).
    for e in suite.engines.values() {
        let Some(c) = &e.container else { continue };
        let Some(b) = &c.build else { continue };
        if built.contains(&c.image) {
            continue;
        }
        let cli = which::which(&c.cli).map_err(|source| ImageError::NotFound {
            cli: c.cli.clone(),
            image: c.image.clone(),
            source,
        })?;
        let spawn = |source| ImageError::Spawn {
            cli: c.cli.clone(),
            image: c.image.clone(),
            source,
        };
        let safe: String = c
            .image
            .chars()
            .map(|ch| {
                if ch.is_ascii_alphanumeric() || "-_.".contains(ch) {
                    ch
                } else {
                    '_'
                }
            })
            .collect();
        let log = logs_dir.join(format!("build-{safe}.log"));
        let file = std::fs::File::create(&log).map_err(spawn)?;
        say(format!(
            "building image {} (log {})",
            c.image,
            log.display()
        ));
        let started = std::time::Instant::now();
        let status = tokio::process::Command::new(cli)
            .no_secrets()
            .args(build_args(b, &c.image, &suite_dir.join(&b.context)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(spawn)?)
            .stderr(file)
            // Interrupted with the run: no build outlives it.
            .kill_on_drop(true)
            .status()
            .await
            .map_err(spawn)?;
        if !status.success() {
            let tail = crate::results::tail_lines(&log, 30).join("\n");
            return Err(ImageError::Build {
                image: c.image.clone(),
                status: status.to_string(),
                log,
                tail,
            });
        }
        say(format!(
            "built image {} in {:.1} s",
            c.image,
            started.elapsed().as_secs_f64()
        ));
        built.push(c.image.clone());
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_build_command() {
        let b = crate::config::BuildOptions {
            context: ".".into(),
            file: Some("docker/Dockerfile".into()),
            target: Some("image-build".into()),
            args: [
                ("CUDA_VERSION", "12.8"),
                ("UBUNTU_VERSION", "24.04"),
                ("VLLM_VERSION", "nightly"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        };
        assert_eq!(
            build_args(&b, "lmcache/vllm-openai:test", Path::new("/src/LMCache")).join(" "),
            "build --build-arg CUDA_VERSION=12.8 --build-arg UBUNTU_VERSION=24.04 --build-arg VLLM_VERSION=nightly \
             --target image-build --file /src/LMCache/docker/Dockerfile --tag lmcache/vllm-openai:test /src/LMCache"
        );
    }
}
