//! Real third-party MCP peers written in Python (`tests/python/requirements.txt`, pinned),
//! installed from PyPI into a venv under `target/` the first time a test needs them, and
//! reused afterwards. Needs `python3` with `venv` and `pip` (Debian: `python3-venv`); the
//! first run needs PyPI, later runs nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

const REQUIREMENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/requirements.txt");

/// The venv's interpreter, installing the venv first if needed. Panics with what to install
/// when that cannot be done: these tests are part of the suite, never skipped.
pub fn python() -> PathBuf {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match VENV.get_or_init(|| provision(REQUIREMENTS, "python", &[])) {
        Ok(venv) => venv.join("bin").join("python"),
        Err(why) => panic!(
            "the Python MCP peers could not be installed: {why}\n\
             (they need python3 with venv and pip, and PyPI reachable on the first run)"
        ),
    }
}

/// A venv for `requirements`, named `name-HASH` under the tests' temporary directory: one per
/// version of the file, built aside and moved into place when complete, so an interrupted
/// install is never mistaken for a finished one.
/// `env` is given to pip (a build's options).
pub fn provision(requirements: &str, name: &str, env: &[(&str, &str)]) -> Result<PathBuf, String> {
    let venv = venv_path(requirements, name)?;
    if venv.join("installed").exists() {
        return Ok(venv);
    }
    let staging = venv.with_extension(format!("staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    run(Command::new("python3").arg("-m").arg("venv").arg(&staging))?;
    run(Command::new(staging.join("bin").join("python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-input", "--require-virtualenv", "-r", requirements])
        .envs(env.iter().copied()))?;
    std::fs::write(staging.join("installed"), "")
        .map_err(|e| format!("cannot write to {}: {e}", staging.display()))?;
    if let Err(error) = std::fs::rename(&staging, &venv) {
        let _ = std::fs::remove_dir_all(&staging);
        // Another test binary may have finished first; its venv is as good.
        if !venv.join("installed").exists() {
            return Err(format!(
                "cannot move the venv to {}: {error}",
                venv.display()
            ));
        }
    }
    Ok(venv)
}

/// Where the venv of `requirements` lives (its name carries the file's hash).
pub fn venv_path(requirements: &str, name: &str) -> Result<PathBuf, String> {
    let text =
        std::fs::read(requirements).map_err(|e| format!("cannot read {requirements}: {e}"))?;
    let digest = Sha256::digest(&text);
    let key = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    Ok(Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{key:016x}")))
}

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
