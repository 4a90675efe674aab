//! What the toolchains for real peers share: an install under the tests' temporary directory,
//! one per version of the file that pins it, built aside and moved into place when complete,
//! so that an interrupted install is never mistaken for a finished one.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// `NAME-HASH` under the tests' temporary directory, HASH that of the file at `pins`.
pub fn dir_for(pins: &str, name: &str) -> Result<PathBuf, String> {
    let text = std::fs::read(pins).map_err(|e| format!("cannot read {pins}: {e}"))?;
    let digest = Sha256::digest(&text);
    let key = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    Ok(Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{key:016x}")))
}

/// `dir`, built by `build` into a staging directory first unless an earlier run finished it.
pub fn install_once(
    dir: PathBuf,
    build: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    if dir.join("installed").exists() {
        return Ok(dir);
    }
    let staging = dir.with_extension(format!("staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    build(&staging)?;
    std::fs::write(staging.join("installed"), "")
        .map_err(|e| format!("cannot write to {}: {e}", staging.display()))?;
    if let Err(error) = std::fs::rename(&staging, &dir) {
        let _ = std::fs::remove_dir_all(&staging);
        // Another test binary may have finished first; its install is as good.
        if !dir.join("installed").exists() {
            return Err(format!(
                "cannot move the install to {}: {error}",
                dir.display()
            ));
        }
    }
    Ok(dir)
}

/// Runs `command` to its end; its stderr in the error when it fails.
pub fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{shown} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}
