//! The providers file: how each provider under contract verification runs, where its
//! provider states and messages are asked for, and where the pacts come from. Any
//! team's providers are described here; the sample shop's are `contracts/providers.toml`.
//!
//! ```toml
//! pacts = "pacts"                  # a folder of pact files, relative to this file
//! matrix = "verifications.json"    # the verification matrix (written by verify)
//!
//! [defaults]                       # what every provider inherits
//! env = { LOG_LEVEL = "warn" }
//! env_names = { port = "PORT", bind = "HOST", database = "DB" }
//! ready = "/health"                # answered 2xx once it serves (default /ready)
//!
//! [providers.todo-api]
//! command = ["python3", "provider.py", "--port", "{port}"]   # or binary = "...", or url = "http://..."
//! states = "/_pact/provider-states"   # POSTed {"state", "params", "action": "setup"|"teardown"}
//! teardown = true                  # also post the teardown of each state (default true)
//! messages = "/_pact/messages"     # where a message provider is asked for a message
//! version_from = ["todo"]          # the files whose hash is its version in the matrix
//! ```
//!
//! A provider is a `binary` of the cargo workspace holding this file (built when
//! missing; it runs as a process or, with `--runtime docker`, as a container of it), a
//! `command` (a process; `{port}` is filled in), or a `url` already serving (nothing is
//! started). Every mistake is reported at file:line:column with what to do.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::cluster::spec::{line_col, EnvNames};

use super::ContractError;

/// Where the providers file is, relative to the workspace, when `--providers` is not given.
pub const DEFAULT_FILE: &str = "contracts/providers.toml";

/// How a provider runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderRun {
    /// A binary of the cargo workspace holding the file.
    Binary(String),
    /// Any program, `{port}` filled in; its relative paths are the file's folder's.
    Command(Vec<String>),
    /// A provider already serving at this base URL.
    Url(String),
}

/// What the matrix records as a provider's version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Version {
    /// A hash of the files under these paths (git's view of them: tracked and new files).
    Sources(Vec<PathBuf>),
    /// A version given as is.
    Fixed(String),
}

/// One provider, ready to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderSpec {
    pub name: String,
    pub run: ProviderRun,
    /// Its environment (the defaults', then its own).
    pub env: BTreeMap<String, String>,
    /// The variables of its own port, bind address and database file.
    pub env_names: EnvNames,
    /// The path answered 2xx once it serves.
    pub ready: String,
    /// Its provider-state change URL's path, if it has provider states.
    pub states: Option<String>,
    /// Whether each state is also torn down after its interaction.
    pub teardown: bool,
    /// Its message endpoint's path, if it produces messages.
    pub messages: Option<String>,
    /// Prefixes of gauntlet's own variables passed to a container (a process inherits them).
    pub pass_env: Vec<String>,
    pub version: Version,
}

/// A providers file, read and checked.
#[derive(Clone, Debug)]
pub struct ProvidersFile {
    pub file: PathBuf,
    /// The file's folder: relative paths in it are relative to this.
    pub dir: PathBuf,
    /// The folder of pact files.
    pub pacts: PathBuf,
    /// The verification matrix.
    pub matrix: PathBuf,
    pub providers: BTreeMap<String, ProviderSpec>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    binary: Option<String>,
    command: Option<Vec<String>>,
    url: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    env_names: Option<EnvNames>,
    ready: Option<String>,
    states: Option<String>,
    teardown: Option<bool>,
    messages: Option<String>,
    pass_env: Option<Vec<String>>,
    version_from: Option<Vec<String>>,
    version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProviders {
    pacts: Option<String>,
    matrix: Option<String>,
    #[serde(default)]
    defaults: RawProvider,
    #[serde(default)]
    providers: BTreeMap<String, Spanned<RawProvider>>,
}

fn path_ok(p: &str) -> bool {
    p.starts_with('/')
}

impl ProvidersFile {
    /// Reads and checks the providers file at `path`.
    pub fn load(path: &Path) -> Result<Self, ContractError> {
        let text = std::fs::read_to_string(path).map_err(|e| ContractError::Io {
            what: format!(
                "reading the providers file {} (it says how each provider runs: see `gauntlet contracts verify --help`)",
                path.display()
            ),
            source: e,
        })?;
        Self::parse(&text, path)
    }

    /// Parses a providers file's text; `path` names it and anchors its relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ContractError> {
        let at = |span: Range<usize>, reason: String| {
            let (line, column) = line_col(text, span.start);
            ContractError::BadFile {
                path: PathBuf::from(format!("{}:{line}:{column}", path.display())),
                reason,
                hint: "see the providers file's format in `gauntlet contracts verify --help`".into(),
            }
        };
        let raw: RawProviders = toml::from_str(text).map_err(|e| at(e.span().unwrap_or(0..0), e.message().into()))?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        let d = &raw.defaults;
        if d.binary.is_some() || d.command.is_some() || d.url.is_some() {
            return Err(at(
                0..0,
                "[defaults] cannot say how a provider runs: give each its `binary`, `command` or `url`".into(),
            ));
        }
        let mut providers = BTreeMap::new();
        for (name, raw_p) in raw.providers {
            let span = raw_p.span();
            let p = raw_p.into_inner();
            let run = match (p.binary, p.command, p.url) {
                (Some(b), None, None) if !b.is_empty() => ProviderRun::Binary(b),
                (None, Some(c), None) if c.first().is_some_and(|p| !p.trim().is_empty()) => ProviderRun::Command(c),
                (None, None, Some(u)) if u.starts_with("http://") || u.starts_with("https://") => {
                    ProviderRun::Url(u.trim_end_matches('/').to_string())
                }
                (None, None, Some(u)) => {
                    return Err(at(span, format!("provider `{name}`: url {u:?} is not an http:// or https:// URL")))
                }
                _ => {
                    return Err(at(
                        span,
                        format!(
                            "provider `{name}` needs exactly one of `binary` (a binary of this workspace), \
                             `command` (a program and its arguments) or `url` (already serving)"
                        ),
                    ))
                }
            };
            let mut env = d.env.clone();
            env.extend(p.env);
            let ready = p.ready.or_else(|| d.ready.clone()).unwrap_or_else(|| "/ready".into());
            let states = p.states.or_else(|| d.states.clone());
            let messages = p.messages.or_else(|| d.messages.clone());
            for (what, v) in [("ready", Some(&ready)), ("states", states.as_ref()), ("messages", messages.as_ref())] {
                if let Some(v) = v.filter(|v| !path_ok(v)) {
                    return Err(at(
                        span.clone(),
                        format!("provider `{name}`: `{what}` is a path starting with /, not {v:?}"),
                    ));
                }
            }
            let version =
                match (p.version.or_else(|| d.version.clone()), p.version_from.or_else(|| d.version_from.clone())) {
                    (Some(_), Some(_)) => {
                        return Err(at(span, format!("provider `{name}`: give `version` or `version_from`, not both")))
                    }
                    (Some(v), None) => Version::Fixed(v),
                    (None, Some(paths)) => Version::Sources(paths.into_iter().map(PathBuf::from).collect()),
                    // Its own folder's files, where it has one of its name; else the file's folder.
                    (None, None) => Version::Sources(vec![PathBuf::from(".")]),
                };
            let env_names = d.env_names.clone().unwrap_or_default();
            let env_names = match p.env_names {
                Some(own) => EnvNames {
                    port: own.port.or(env_names.port),
                    bind: own.bind.or(env_names.bind),
                    database: own.database.or(env_names.database),
                },
                None => env_names,
            };
            providers.insert(
                name.clone(),
                ProviderSpec {
                    name,
                    run,
                    env,
                    env_names,
                    ready,
                    states,
                    teardown: p.teardown.or(d.teardown).unwrap_or(true),
                    messages,
                    pass_env: p.pass_env.or_else(|| d.pass_env.clone()).unwrap_or_default(),
                    version,
                },
            );
        }
        Ok(Self {
            file: path.to_path_buf(),
            pacts: dir.join(raw.pacts.unwrap_or_else(|| "pacts".into())),
            matrix: dir.join(raw.matrix.unwrap_or_else(|| "verifications.json".into())),
            dir,
            providers,
        })
    }

    /// The provider named `name`, or an error naming the ones the file declares.
    pub fn provider(&self, name: &str) -> Result<&ProviderSpec, ContractError> {
        self.providers.get(name).ok_or_else(|| ContractError::BadFile {
            path: self.file.clone(),
            reason: format!(
                "it declares no provider `{name}` (it declares: {})",
                self.providers.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            hint: format!("add [providers.{name}] saying how it runs (binary, command or url)"),
        })
    }

    /// The version the matrix records for provider `name`: a hash of its sources as
    /// they are now, or the version the file gives; `unversioned` for one it does not declare.
    pub fn version(&self, name: &str) -> String {
        match self.providers.get(name).map(|p| &p.version) {
            Some(Version::Fixed(v)) => v.clone(),
            Some(Version::Sources(paths)) => source_version(&self.dir, paths, name),
            None => format!("{name}@unversioned"),
        }
    }
}

/// A hash of the files under `paths` (relative to `dir`) as git sees them, tracked or
/// new and not ignored: `src-<12 hex digits>`. Outside a git work tree, the crate version.
pub fn source_version(dir: &Path, paths: &[PathBuf], name: &str) -> String {
    let mut args: Vec<String> =
        ["ls-files", "--cached", "--others", "--exclude-standard", "-z", "--"].map(String::from).to_vec();
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let listed = std::process::Command::new("git").args(&args).current_dir(dir).output();
    let files = match listed {
        Ok(out) if out.status.success() && !out.stdout.is_empty() => out.stdout,
        _ => return format!("{}@{}", name, env!("CARGO_PKG_VERSION")),
    };
    let mut names: Vec<&[u8]> = files.split(|b| *b == 0).filter(|f| !f.is_empty()).collect();
    names.sort();
    names.dedup();
    let mut h = Sha256::new();
    for file in names {
        let path = dir.join(String::from_utf8_lossy(file).as_ref());
        // A tracked file deleted in the work tree hashes as absent.
        let content = std::fs::read(&path).unwrap_or_default();
        h.update(file);
        h.update((content.len() as u64).to_le_bytes());
        h.update(&content);
    }
    let digest: String = h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("src-{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
pacts = "p"
[defaults]
env = { LOG = "warn" }
env_names = { port = "PORT" }
states = "/_pact/state"
[providers.api]
binary = "my-api"
env = { LOG = "debug", MODE = "test" }
env_names = { database = "DB" }
teardown = false
[providers.todo]
command = ["python3", "p.py", "{port}"]
ready = "/health"
version = "1.2.3"
[providers.far]
url = "http://127.0.0.1:8000/"
"#;

    #[test]
    fn providers_inherit_the_defaults_and_say_how_they_run() {
        let f = ProvidersFile::parse(FILE, Path::new("c/providers.toml")).unwrap();
        assert_eq!((f.pacts.as_path(), f.matrix.as_path()), (Path::new("c/p"), Path::new("c/verifications.json")));
        let api = f.provider("api").unwrap();
        assert_eq!(api.run, ProviderRun::Binary("my-api".into()));
        assert_eq!((api.env["LOG"].as_str(), api.env["MODE"].as_str()), ("debug", "test"));
        assert_eq!((api.env_names.port.as_deref(), api.env_names.database.as_deref()), (Some("PORT"), Some("DB")));
        assert_eq!((api.states.as_deref(), api.teardown, api.ready.as_str()), (Some("/_pact/state"), false, "/ready"));
        let todo = f.provider("todo").unwrap();
        assert_eq!((todo.ready.as_str(), todo.teardown), ("/health", true));
        assert_eq!(f.version("todo"), "1.2.3");
        assert_eq!(f.provider("far").unwrap().run, ProviderRun::Url("http://127.0.0.1:8000".into()));
        let e = f.provider("nope").unwrap_err().to_string();
        assert!(e.contains("declares no provider `nope`") && e.contains("api, far, todo"), "{e}");
    }

    #[test]
    fn mistakes_are_named_where_they_are() {
        for (text, line, what) in [
            ("[providers.a]\nbinary = \"x\"\nurl = \"http://h\"\n", 1, "exactly one of"),
            ("[providers.a]\nurl = \"ftp://h\"\n", 1, "not an http"),
            ("[providers.a]\nbinary = \"x\"\nstates = \"state\"\n", 1, "path starting with /"),
            ("[providers.a]\nbinary = \"x\"\nversion = \"1\"\nversion_from = [\".\"]\n", 1, "not both"),
            ("[providers.a]\nbinary = \"x\"\nport = 3\n", 3, "unknown field"),
        ] {
            let e = ProvidersFile::parse(text, Path::new("providers.toml")).unwrap_err().to_string();
            assert!(e.starts_with(&format!("providers.toml:{line}:")) && e.contains(what), "{e}");
        }
    }
}
