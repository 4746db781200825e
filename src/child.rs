//! How this tool starts a child program: without credentials. Every program
//! it starts (engines, `vllm bench`, `lm_eval`, setup's git/uv/pip, the
//! container CLI, `buildkite-agent`, `nvidia-smi`) runs without them, so a
//! pull request's code or a third-party tool cannot read or log them. A
//! layer of its own at the bottom, so every layer that starts one may use it.

/// The variables that carry credentials in the CIs this tool runs in.
const SECRET_ENV: &[&str] = &[
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
];

/// `cmd.no_secrets()`: the child gets the environment without
/// [`SECRET_ENV`].
pub(crate) trait NoSecrets {
    fn no_secrets(&mut self) -> &mut Self;
}

impl NoSecrets for std::process::Command {
    fn no_secrets(&mut self) -> &mut Self {
        for v in SECRET_ENV {
            self.env_remove(v);
        }
        self
    }
}

impl NoSecrets for tokio::process::Command {
    fn no_secrets(&mut self) -> &mut Self {
        for v in SECRET_ENV {
            self.env_remove(v);
        }
        self
    }
}
