//! Finding the services' binaries, and building the ones that are missing; finding the
//! programs of `command` services.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::runtime::RuntimeError;
use super::{ClusterSpec, RunSpec};

/// Where `program` is: itself if it has a folder, else the first executable of that
/// name on PATH.
pub fn find_program(program: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.components().count() > 1 {
        return executable(program).then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| executable(p))
}

/// A command's program: a path with a folder is relative to the cluster file's; a bare
/// name is looked up on PATH when the node starts.
pub fn command_program(spec: &ClusterSpec, program: &str) -> PathBuf {
    let base = spec.file.parent().unwrap_or(Path::new("."));
    let prog = PathBuf::from(program);
    if prog.components().count() > 1 && prog.is_relative() {
        // Absolute: a node runs in its own data folder, where a relative path means nothing.
        std::path::absolute(base.join(&prog)).unwrap_or_else(|_| base.join(prog))
    } else {
        prog
    }
}

/// Every command's program exists, or the error names it and what to install: checked
/// before anything starts, so a missing `nats-server` is one clear line, not a
/// half-started cluster. With `images`, a service that names an `image` needs no
/// program (the docker runtime runs the image).
pub fn check_programs(spec: &ClusterSpec, images: bool) -> Result<(), RuntimeError> {
    for s in &spec.services {
        let RunSpec::Command(c) = &s.run else { continue };
        if images && s.image.is_some() {
            continue;
        }
        let prog = command_program(spec, &c[0]);
        if find_program(&prog).is_some() {
            continue;
        }
        let what = if prog.components().count() > 1 {
            format!("{} does not exist or is not executable", prog.display())
        } else {
            format!("program `{}` is not on PATH", prog.display())
        };
        let hint = match &s.install {
            Some(i) => format!("; install it: {i}"),
            None => String::new(),
        };
        return Err(RuntimeError::Start { node: s.name.clone(), detail: format!("{what}{hint}") });
    }
    Ok(())
}

/// Where a workspace's binaries are, and with which cargo profile they are built.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub workspace: PathBuf,
    pub target_dir: PathBuf,
    /// `release` or `debug` (cargo's `dev`).
    pub profile: String,
}

impl Binaries {
    /// Where the binaries of `spec`'s services are, looked up from `dir`: the cargo
    /// workspace that holds it when a service is a `binary`; none is needed (or asked
    /// of cargo) when every service is a `command` or external.
    pub fn for_cluster(spec: &super::ClusterSpec, dir: &Path, profile: &str) -> Result<Self, RuntimeError> {
        if spec.services.iter().any(|s| matches!(s.run, super::RunSpec::Binary(_))) {
            return Self::for_dir(dir, profile);
        }
        Ok(Self { workspace: dir.to_path_buf(), target_dir: dir.join("target"), profile: profile.to_string() })
    }

    /// The cargo workspace that holds `dir` (its `target` folder, or `CARGO_TARGET_DIR`).
    pub fn for_dir(dir: &Path, profile: &str) -> Result<Self, RuntimeError> {
        let out = Command::new("cargo")
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .current_dir(dir)
            .output()
            .map_err(RuntimeError::io("running `cargo metadata` (is cargo installed?)"))?;
        if !out.status.success() {
            return Err(RuntimeError::Build {
                what: "the workspace metadata".into(),
                detail: format!(
                    "`cargo metadata` in {} failed: {}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| RuntimeError::Build { what: "the workspace metadata".into(), detail: e.to_string() })?;
        let path = |k: &str| meta.get(k).and_then(|v| v.as_str()).map(PathBuf::from);
        Ok(Self {
            workspace: path("workspace_root").unwrap_or_else(|| dir.to_path_buf()),
            target_dir: path("target_directory").unwrap_or_else(|| dir.join("target")),
            profile: profile.to_string(),
        })
    }

    /// Where binary `name` is (or will be).
    pub fn path(&self, name: &str) -> PathBuf {
        self.target_dir.join(&self.profile).join(name)
    }

    /// Builds every binary of `names` that does not exist yet, saying so on `progress`.
    pub fn ensure(&self, names: &[String], progress: &(dyn Fn(&str) + Sync)) -> Result<(), RuntimeError> {
        let missing: Vec<&String> = names.iter().filter(|n| !self.path(n).exists()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let list = missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        progress(&format!("building {list} ({} profile; the first build takes a few minutes)", self.profile));
        let mut cmd = Command::new("cargo");
        cmd.arg("build").current_dir(&self.workspace);
        match self.profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        for m in &missing {
            cmd.args(["--bin", m]);
        }
        let status = cmd.status().map_err(RuntimeError::io("running `cargo build`"))?;
        if !status.success() {
            return Err(RuntimeError::Build { what: list, detail: format!("`cargo build` exited with {status}") });
        }
        for m in missing {
            if !self.path(m).exists() {
                return Err(RuntimeError::Build {
                    what: m.clone(),
                    detail: format!(
                        "cargo built, but {} does not exist: is `{m}` a binary of this workspace?",
                        self.path(m).display()
                    ),
                });
            }
        }
        Ok(())
    }
}
