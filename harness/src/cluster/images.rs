//! Container images built locally from our own binaries: `FROM scratch`, the binary,
//! and the shared libraries it links (as `ldd` lists them). No registry is needed.

use std::collections::BTreeSet;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::process::Command;

use testcontainers::runners::AsyncBuilder;
use testcontainers::GenericBuildableImage;

use super::runtime::RuntimeError;

/// Where a binary sits inside its image.
pub const APP_DIR: &str = "/app";

/// An image ready to run: `name:tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalImage {
    pub name: String,
    pub tag: String,
}

/// Builds (once per binary content) the image of `binary`.
pub async fn image_for(binary: &Path) -> Result<LocalImage, RuntimeError> {
    let file = binary.file_name().and_then(|f| f.to_str()).unwrap_or("app").to_string();
    let bytes = std::fs::read(binary).map_err(RuntimeError::io(format!("reading {}", binary.display())))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(&bytes);
    let image = LocalImage { name: format!("gauntlet/{file}"), tag: format!("{:016x}", h.finish()) };
    if exists(&image) {
        return Ok(image);
    }
    let libs = shared_libraries(binary)?;
    let dockerfile =
        format!("FROM scratch\nCOPY rootfs/ /\nENV SQLITE_TMPDIR=/data\nENTRYPOINT [\"{APP_DIR}/{file}\"]\n");
    let mut build = GenericBuildableImage::new(image.name.clone(), image.tag.clone())
        .with_dockerfile_string(dockerfile)
        .with_file(binary.to_path_buf(), format!("rootfs{APP_DIR}/{file}"));
    for lib in libs {
        let target = format!("rootfs{}", lib.display());
        let real = std::fs::canonicalize(&lib).map_err(RuntimeError::io(format!("resolving {}", lib.display())))?;
        build = build.with_file(real, target);
    }
    let options = testcontainers::core::BuildImageOptions::new().with_no_cache(true);
    let _built = build.build_image_with(options).await.map_err(|e| RuntimeError::Build {
        what: format!("image {}:{}", image.name, image.tag),
        detail: e.to_string(),
    })?;
    remove_older_tags(&image);
    Ok(image)
}

/// Removes the other tags of `image`'s name: each is a binary that no longer exists,
/// and a debug binary's image is a few hundred megabytes.
fn remove_older_tags(image: &LocalImage) {
    let Ok(out) = Command::new("docker").args(["images", "--format", "{{.Tag}}", &image.name]).output() else { return };
    for tag in String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|t| !t.is_empty() && *t != image.tag)
    {
        let _ = Command::new("docker").args(["rmi", &format!("{}:{tag}", image.name)]).output();
    }
}

fn exists(image: &LocalImage) -> bool {
    Command::new("docker")
        .args(["image", "inspect", &format!("{}:{}", image.name, image.tag)])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The shared libraries `binary` loads, the dynamic loader included.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
    let out = Command::new("ldd").arg(binary).output().map_err(RuntimeError::io("running ldd"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    let mut libs = BTreeSet::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.insert(PathBuf::from(p));
        }
    }
    Ok(libs.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_finds_libc_and_the_loader() {
        let libs = shared_libraries(Path::new("/bin/ls")).unwrap();
        assert!(libs.iter().any(|l| l.to_string_lossy().contains("libc.so")), "{libs:?}");
        assert!(libs.iter().any(|l| l.to_string_lossy().contains("ld-linux")), "{libs:?}");
    }
}
