//! Where the client's settings come from: the caller's [`HubOptions`] first, then the same
//! environment variables huggingface_hub reads (`HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE`,
//! ...), then defaults. The environment is passed in as a lookup function so that tests can
//! inject one instead of mutating the process environment.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::retry::RetryPolicy;
use super::url::Origin;
use crate::error::{Error, Result};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What the caller may set; `None` means "from the environment, else the default".
#[derive(Clone, Default)]
pub struct HubOptions {
    /// Hub base URL; else `HF_ENDPOINT`, else `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// Access token; else `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, then the token file
    /// (`HF_TOKEN_PATH`, default `$HF_HOME/token`). `Some("")` means "send no token".
    pub token: Option<String>,
    /// Make no request at all; else `HF_HUB_OFFLINE` (1/true/yes/on).
    pub offline: Option<bool>,
    /// Time to establish a connection (TCP and TLS). Default 10 s.
    pub connect_timeout: Option<Duration>,
    /// Stall timeout: the connection is cut when no byte arrives for this long (while waiting
    /// for headers or reading a body). Else `HF_HUB_DOWNLOAD_TIMEOUT` seconds, else 30 s.
    pub read_timeout: Option<Duration>,
    /// Retries of a transient failure (connection fault, 408, 429, 5xx). Default 5.
    pub max_retries: Option<u32>,
    /// Default `tabcache/<version>`.
    pub user_agent: Option<String>,
    /// First backoff between retries, doubled each time (with jitter). Default 1 s.
    pub retry_base_delay: Option<Duration>,
    /// Cap on any single wait between retries, including one the server asks for with
    /// `Retry-After` or `RateLimit`. Default 60 s.
    pub max_retry_wait: Option<Duration>,
    /// Fetch Xet-backed files natively from the Hub's Xet storage (chunk-level dedup,
    /// verified by the Xet hash); false streams them whole through the bridge like any LFS
    /// file. Else off when `HF_HUB_DISABLE_XET` is true (as huggingface_hub reads it), else on.
    pub xet: Option<bool>,
}

impl fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubOptions")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| Redacted))
            .field("offline", &self.offline)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_retries", &self.max_retries)
            .field("user_agent", &self.user_agent)
            .field("retry_base_delay", &self.retry_base_delay)
            .field("max_retry_wait", &self.max_retry_wait)
            .field("xet", &self.xet)
            .finish()
    }
}

/// Stands in for a secret in Debug output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The settings in force, every one decided.
#[derive(Clone)]
pub struct HubConfig {
    /// Without a trailing `/`.
    pub endpoint: String,
    pub endpoint_origin: Origin,
    pub token: Option<String>,
    pub offline: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub user_agent: String,
    pub retry: RetryPolicy,
    /// Xet-backed files are fetched natively.
    pub xet: bool,
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| Redacted))
            .field("offline", &self.offline)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("user_agent", &self.user_agent)
            .field("retry", &self.retry)
            .field("xet", &self.xet)
            .finish()
    }
}

impl HubConfig {
    /// Decide every setting from `options`, then `env` (a variable lookup), then defaults.
    ///
    /// Long but flat: one setting after another, each option > environment > default.
    pub fn resolve(options: HubOptions, env: &dyn Fn(&str) -> Option<String>) -> Result<HubConfig> {
        let env_nonempty = |name: &str| {
            env(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let endpoint = options
            .endpoint
            .or_else(|| env_nonempty("HF_ENDPOINT"))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let endpoint = endpoint.trim().trim_end_matches('/').to_string();
        let endpoint_origin = Origin::of(&endpoint)
            .filter(|_| !endpoint.contains(['?', '#']))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "invalid hub endpoint {endpoint:?} (from the endpoint option or HF_ENDPOINT): expected an http(s) URL such as {DEFAULT_ENDPOINT}"
                ))
            })?;

        let token = match options.token {
            Some(token) => Some(token),
            None => env_nonempty("HF_TOKEN")
                .or_else(|| env_nonempty("HUGGING_FACE_HUB_TOKEN"))
                .or_else(|| read_token_file(&token_file_path(env)?)),
        };
        let token = token
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        if let Some(token) = &token {
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::invalid(
                    "the access token contains spaces or non-printable characters; copy it again from your Hub settings (Access Tokens)",
                ));
            }
        }

        let offline = match options.offline {
            Some(offline) => offline,
            None => env_nonempty("HF_HUB_OFFLINE").is_some_and(|v| is_true(&v)),
        };

        let read_timeout = match options.read_timeout {
            Some(timeout) => timeout,
            None => match env_nonempty("HF_HUB_DOWNLOAD_TIMEOUT") {
                Some(v) => parse_seconds(&v).ok_or_else(|| {
                    Error::invalid(format!("HF_HUB_DOWNLOAD_TIMEOUT={v:?} is not a number of seconds; set it to e.g. 30"))
                })?,
                None => DEFAULT_READ_TIMEOUT,
            },
        };

        let xet = match options.xet {
            Some(xet) => xet,
            None => !env_nonempty("HF_HUB_DISABLE_XET").is_some_and(|v| is_true(&v)),
        };

        let defaults = RetryPolicy::default();
        let retry = RetryPolicy {
            max_retries: options.max_retries.unwrap_or(defaults.max_retries),
            base: options.retry_base_delay.unwrap_or(defaults.base),
            max_server_wait: options.max_retry_wait.unwrap_or(defaults.max_server_wait),
            ..defaults
        };

        let user_agent = options
            .user_agent
            .unwrap_or_else(|| format!("tabcache/{}", env!("CARGO_PKG_VERSION")));
        if !user_agent
            .bytes()
            .all(|b| b == b' ' || b.is_ascii_graphic())
        {
            return Err(Error::invalid("the user agent must be printable ASCII"));
        }

        Ok(HubConfig {
            endpoint,
            endpoint_origin,
            token,
            offline,
            connect_timeout: options.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            read_timeout,
            user_agent,
            retry,
            xet,
        })
    }
}

/// `HF_TOKEN_PATH`, else `$HF_HOME/token`, with `HF_HOME` defaulting to
/// `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface` (as huggingface_hub does).
fn token_file_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(path) = var("HF_TOKEN_PATH") {
        return Some(expand_home(&path, env));
    }
    let hf_home = match var("HF_HOME") {
        Some(home) => expand_home(&home, env),
        None => match var("XDG_CACHE_HOME") {
            Some(cache) => PathBuf::from(cache).join("huggingface"),
            None => home_dir(env)?.join(".cache").join("huggingface"),
        },
    };
    Some(hf_home.join("token"))
}

fn home_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("HOME")
        .or_else(|| env("USERPROFILE"))
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn expand_home(path: &str, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match (path.strip_prefix("~/"), home_dir(env)) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// A missing or unreadable token file simply means "no token", as for huggingface_hub.
fn read_token_file(path: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// huggingface_hub's truthy values for boolean environment variables.
pub fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

fn parse_seconds(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(options: HubOptions, vars: &[(&str, &str)]) -> Result<HubConfig> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubConfig::resolve(options, &|name| map.get(name).cloned())
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tabcache-hubcfg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn defaults_without_environment() {
        let config = resolve(HubOptions::default(), &[]).unwrap();
        assert_eq!(config.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(config.token, None);
        assert!(!config.offline);
        assert_eq!(config.retry, RetryPolicy::default());
        assert_eq!(config.read_timeout, DEFAULT_READ_TIMEOUT);
        assert!(config.user_agent.starts_with("tabcache/"));
    }

    #[test]
    fn endpoint_option_beats_environment() {
        let env = [("HF_ENDPOINT", "http://mirror.local:8080/")];
        assert_eq!(
            resolve(HubOptions::default(), &env).unwrap().endpoint,
            "http://mirror.local:8080"
        );
        let options = HubOptions {
            endpoint: Some("https://other".into()),
            ..Default::default()
        };
        assert_eq!(resolve(options, &env).unwrap().endpoint, "https://other");
        for bad in ["ftp://x", "huggingface.co", "http://h/?q"] {
            let options = HubOptions {
                endpoint: Some(bad.into()),
                ..Default::default()
            };
            let err = resolve(options, &[]).unwrap_err();
            assert!(err.message().contains("invalid hub endpoint"), "{err}");
        }
    }

    #[test]
    fn token_precedence() {
        let dir = temp_dir("token");
        std::fs::write(dir.join("token"), "hf_file\n").unwrap();
        let home = dir.to_str().unwrap();
        let all = [
            ("HF_TOKEN", "hf_env"),
            ("HUGGING_FACE_HUB_TOKEN", "hf_legacy"),
            ("HF_HOME", home),
        ];
        let token =
            |options: HubOptions, env: &[(&str, &str)]| resolve(options, env).unwrap().token;
        let with = |t: &str| HubOptions {
            token: Some(t.into()),
            ..Default::default()
        };
        assert_eq!(token(with("hf_opt"), &all).as_deref(), Some("hf_opt"));
        assert_eq!(
            token(with(""), &all),
            None,
            "an empty token option disables the token"
        );
        assert_eq!(
            token(HubOptions::default(), &all).as_deref(),
            Some("hf_env")
        );
        assert_eq!(
            token(HubOptions::default(), &all[1..]).as_deref(),
            Some("hf_legacy")
        );
        assert_eq!(
            token(HubOptions::default(), &all[2..]).as_deref(),
            Some("hf_file")
        );
        std::fs::write(dir.join("other"), "  hf_path  ").unwrap();
        let other = dir.join("other");
        let env = [
            ("HF_HOME", home),
            ("HF_TOKEN_PATH", other.to_str().unwrap()),
        ];
        assert_eq!(
            token(HubOptions::default(), &env).as_deref(),
            Some("hf_path")
        );
        let env = [("HOME", home)];
        assert_eq!(
            token(HubOptions::default(), &env),
            None,
            "~/.cache/huggingface/token is absent"
        );
        std::fs::create_dir_all(dir.join(".cache/huggingface")).unwrap();
        std::fs::write(dir.join(".cache/huggingface/token"), "hf_home").unwrap();
        assert_eq!(
            token(HubOptions::default(), &env).as_deref(),
            Some("hf_home")
        );
        assert_eq!(token(HubOptions::default(), &[("HF_TOKEN", " ")]), None);
        assert!(resolve(with("hf_a b"), &[]).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn offline_values() {
        for (value, offline) in [
            ("1", true),
            ("true", true),
            ("YES", true),
            ("On", true),
            ("0", false),
            ("false", false),
            ("", false),
        ] {
            assert_eq!(
                resolve(HubOptions::default(), &[("HF_HUB_OFFLINE", value)])
                    .unwrap()
                    .offline,
                offline,
                "{value}"
            );
        }
        let options = HubOptions {
            offline: Some(false),
            ..Default::default()
        };
        assert!(
            !resolve(options, &[("HF_HUB_OFFLINE", "1")])
                .unwrap()
                .offline
        );
    }

    #[test]
    fn timeouts_and_retry_options() {
        let config = resolve(HubOptions::default(), &[("HF_HUB_DOWNLOAD_TIMEOUT", "2.5")]).unwrap();
        assert_eq!(config.read_timeout, Duration::from_millis(2500));
        assert!(resolve(
            HubOptions::default(),
            &[("HF_HUB_DOWNLOAD_TIMEOUT", "soon")]
        )
        .is_err());
        let options = HubOptions {
            read_timeout: Some(Duration::from_secs(1)),
            max_retries: Some(2),
            retry_base_delay: Some(Duration::from_millis(5)),
            max_retry_wait: Some(Duration::from_millis(50)),
            ..Default::default()
        };
        let config = resolve(options, &[("HF_HUB_DOWNLOAD_TIMEOUT", "9")]).unwrap();
        assert_eq!(config.read_timeout, Duration::from_secs(1));
        assert_eq!(
            (config.retry.max_retries, config.retry.base),
            (2, Duration::from_millis(5))
        );
        assert_eq!(config.retry.max_server_wait, Duration::from_millis(50));
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let options = HubOptions {
            token: Some("hf_secret_value".into()),
            ..Default::default()
        };
        assert!(!format!("{options:?}").contains("hf_secret_value"));
        let config = resolve(options, &[]).unwrap();
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hf_secret_value") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
