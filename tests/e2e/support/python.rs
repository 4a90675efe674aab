//! Real third-party MCP peers written in Python (`tests/python/requirements.txt`, pinned),
//! installed from PyPI into a venv under `target/` the first time a test needs them, and
//! reused afterwards. Needs `python3` with `venv` and `pip` (Debian: `python3-venv`); the
//! first run needs PyPI, later runs nothing.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub use super::staged::run;
use super::staged::{dir_for, install_once};

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

/// A venv for `requirements`, named `name-HASH` under the tests' temporary directory: one
/// per version of the file ([`install_once`]). `env` is given to pip (a build's options).
pub fn provision(requirements: &str, name: &str, env: &[(&str, &str)]) -> Result<PathBuf, String> {
    install_once(venv_path(requirements, name)?, |staging| {
        run(Command::new("python3").arg("-m").arg("venv").arg(staging))?;
        run(Command::new(staging.join("bin").join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-input", "--require-virtualenv", "-r", requirements])
            .envs(env.iter().copied()))
    })
}

/// Where the venv of `requirements` lives (its name carries the file's hash).
pub fn venv_path(requirements: &str, name: &str) -> Result<PathBuf, String> {
    dir_for(requirements, name)
}
