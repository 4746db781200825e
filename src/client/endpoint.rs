//! A server's address parsed once with a URL parser: the root every
//! OpenAI route hangs off (a trailing `/v1` is the API base, not part of
//! the root), its host and its port. Never split URLs by hand.

use reqwest::Url;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to parse the server URL {url:?}: {message}; give it as http://host:port")]
pub(crate) struct BadUrl {
    pub url: String,
    pub message: String,
}

/// A server root such as `http://127.0.0.1:8000` or
/// `https://gateway.example/llm`, without `/v1` and without a trailing
/// slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    root: Url,
}

impl Endpoint {
    pub(crate) fn parse(url: &str) -> Result<Self, BadUrl> {
        let bad = |message: String| BadUrl {
            url: url.to_string(),
            message,
        };
        let mut root = Url::parse(url.trim()).map_err(|e| bad(e.to_string()))?;
        if !matches!(root.scheme(), "http" | "https") {
            return Err(bad(format!(
                "scheme `{}` is not http or https",
                root.scheme()
            )));
        }
        if root.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host".to_string()));
        }
        if root.query().is_some() || root.fragment().is_some() {
            return Err(bad("a server root takes no query or fragment".to_string()));
        }
        let path = root.path().trim_end_matches('/');
        let path = path.strip_suffix("/v1").unwrap_or(path).to_string();
        root.set_path(&path);
        Ok(Self { root })
    }

    /// The root as text, without a trailing slash.
    pub(crate) fn root(&self) -> String {
        self.root.as_str().trim_end_matches('/').to_string()
    }

    /// `path` (starting with `/`) under the root.
    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.root())
    }

    /// Host as a socket address takes it (IPv6 without brackets).
    pub(crate) fn host(&self) -> String {
        let host = self.root.host_str().unwrap_or_default();
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    }

    /// The explicit port, or the scheme's default.
    pub(crate) fn port(&self) -> u16 {
        self.root.port_or_known_default().unwrap_or(80)
    }

    /// The same server root on another port (a service's HTTP side).
    pub(crate) fn with_port(&self, port: u16) -> Self {
        let mut root = self.root.clone();
        let _ = root.set_port(Some(port));
        Self { root }
    }

    /// Plain `http://host:port` with nothing under it: what tools that
    /// take `--host`/`--port` can address.
    pub(crate) fn is_plain_host_port(&self) -> bool {
        self.root.scheme() == "http"
            && self.root.port().is_some()
            && self.root.path() == "/"
            && self.root.username().is_empty()
            && self.root.password().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, proptest};

    #[test]
    fn a_trailing_v1_and_slashes_are_not_part_of_the_root() {
        for url in [
            "http://127.0.0.1:8000",
            "http://127.0.0.1:8000/",
            "http://127.0.0.1:8000/v1",
            "http://127.0.0.1:8000/v1/",
        ] {
            let e = Endpoint::parse(url).unwrap();
            assert_eq!(e.root(), "http://127.0.0.1:8000", "{url}");
            assert_eq!(e.at("/v1/models"), "http://127.0.0.1:8000/v1/models");
            assert_eq!((e.host().as_str(), e.port()), ("127.0.0.1", 8000));
            assert!(e.is_plain_host_port());
        }
    }

    #[test]
    fn a_path_prefix_is_kept_and_ports_default_by_scheme() {
        let e = Endpoint::parse("https://gw.example/llm/v1").unwrap();
        assert_eq!(e.root(), "https://gw.example/llm");
        assert_eq!(e.port(), 443);
        assert!(!e.is_plain_host_port());
        let e = Endpoint::parse("http://[::1]:9000/v1").unwrap();
        assert_eq!((e.host().as_str(), e.port()), ("::1", 9000));
        assert_eq!(
            e.with_port(8080).at("/healthcheck"),
            "http://[::1]:8080/healthcheck"
        );
    }

    #[test]
    fn nonsense_is_refused_with_the_url_named() {
        for url in [
            "localhost:8000",
            "ftp://h:1",
            "http://",
            "http://h:99999",
            "http://h:1/?a=b",
        ] {
            let e = Endpoint::parse(url).unwrap_err();
            assert!(e.to_string().contains(url), "{e}");
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in any::<String>()) {
            if let Ok(e) = Endpoint::parse(&s) {
                assert!(!e.root().ends_with("/v1"));
            }
        }
    }
}
