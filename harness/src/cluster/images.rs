//! Container images built locally from our own binaries: `FROM scratch`, the binary,
//! and the shared libraries it links (as `ldd` lists them). No registry is needed.

use std::collections::BTreeSet;
use std::hash::Hasher;
use std::io::Read as _;
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

/// Builds (once per binary content) the image of `binary`, one of this workspace's.
pub async fn image_for(binary: &Path) -> Result<LocalImage, RuntimeError> {
    build_image(binary, true).await
}

/// Builds (once per content) the image of an installed program such as
/// `/usr/sbin/nats-server`: the same `FROM scratch` image, its tag not remembered beside
/// the program (a system folder is not ours to write in).
pub async fn image_for_program(program: &Path) -> Result<LocalImage, RuntimeError> {
    build_image(program, false).await
}

async fn build_image(binary: &Path, remember: bool) -> Result<LocalImage, RuntimeError> {
    let file = binary.file_name().and_then(|f| f.to_str()).unwrap_or("app").to_string();
    // Off the async threads: hashing and `docker image inspect` block.
    let (path, name) = (binary.to_path_buf(), format!("gauntlet/{file}"));
    let (image, built) = tokio::task::spawn_blocking(move || {
        let image = LocalImage { name, tag: content_tag(&path, remember)? };
        let built = exists(&image);
        Ok::<_, RuntimeError>((image, built))
    })
    .await
    .map_err(|e| RuntimeError::Build { what: format!("the image of {}", binary.display()), detail: e.to_string() })??;
    if built {
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

/// The tag of `binary`'s image: a hash of its content. Hashing a debug binary takes
/// most of a second, so the tag is remembered beside the binary (`.<file>.image-tag`)
/// with the size and modification time it belongs to; a rebuilt binary is hashed anew.
fn content_tag(binary: &Path, remember: bool) -> Result<String, RuntimeError> {
    let context = || format!("reading {}", binary.display());
    let meta = std::fs::metadata(binary).map_err(RuntimeError::io(context()))?;
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let stamp = format!("{} {}", meta.len(), modified.map(|d| d.as_nanos()).unwrap_or_default());
    let file = binary.file_name().and_then(|f| f.to_str()).unwrap_or("app");
    let memo = binary.with_file_name(format!(".{file}.image-tag"));
    let remembered = std::fs::read_to_string(&memo).unwrap_or_default();
    if let Some((at, tag)) = remembered.trim().rsplit_once(' ') {
        if at == stamp && !tag.is_empty() {
            return Ok(tag.to_string());
        }
    }
    let mut reader = std::fs::File::open(binary).map_err(RuntimeError::io(context()))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut chunk).map_err(RuntimeError::io(context()))?;
        if n == 0 {
            break;
        }
        h.write(&chunk[..n]);
    }
    let tag = format!("{:016x}", h.finish());
    // Only a cache: a read-only target folder just means hashing every time.
    if remember {
        let _ = std::fs::write(&memo, format!("{stamp} {tag}\n"));
    }
    Ok(tag)
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
    fn the_tag_follows_the_content_and_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("app-x");
        std::fs::write(&bin, vec![7u8; 3 << 20]).unwrap();
        let tag = content_tag(&bin, true).unwrap();
        assert!(dir.path().join(".app-x.image-tag").exists());
        assert_eq!(content_tag(&bin, true).unwrap(), tag, "remembered");
        std::fs::write(&bin, vec![8u8; (3 << 20) + 1]).unwrap();
        assert_ne!(content_tag(&bin, true).unwrap(), tag, "a rebuilt binary gets a new tag");
        let program = dir.path().join("installed");
        std::fs::write(&program, vec![9u8; 1 << 20]).unwrap();
        assert_eq!(content_tag(&program, false).unwrap(), content_tag(&program, false).unwrap());
        assert!(!dir.path().join(".installed.image-tag").exists(), "nothing written beside an installed program");
    }

    #[test]
    fn ldd_finds_libc_and_the_loader() {
        let libs = shared_libraries(Path::new("/bin/ls")).unwrap();
        assert!(libs.iter().any(|l| l.to_string_lossy().contains("libc.so")), "{libs:?}");
        assert!(libs.iter().any(|l| l.to_string_lossy().contains("ld-linux")), "{libs:?}");
    }
}
