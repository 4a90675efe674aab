//! A real headless Chromium for the page tests: Debian's `chromium`, installed with apt the
//! first time a test needs it, driven by Playwright for Python (pinned in
//! tests/python/requirements.txt, in the venv of `python.rs`) through the scripts in
//! tests/browser/. Playwright never downloads a browser of its own: the scripts launch this one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::support::python::python;

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");

/// Wall-clock limit of one page script, enforced from outside by coreutils' `timeout`; the
/// harness's own watchdog (`WATCHDOG_SECONDS`) ends it sooner, with a message.
const SCRIPT_LIMIT_SECONDS: u64 = 180;
const WATCHDOG_SECONDS: u64 = 150;

/// The Chromium binary: `$CHROMIUM` when set, else /usr/bin/chromium or a `chromium` on
/// PATH, else Debian's package installed now (once per process; a lock keeps two test
/// processes from running apt together). Panics with what to install when that fails: these
/// tests are part of the suite, never skipped.
pub fn chromium() -> PathBuf {
    static CHROMIUM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match CHROMIUM.get_or_init(provision) {
        Ok(path) => path.clone(),
        Err(why) => panic!(
            "headless Chromium, needed by the page tests, could not be installed: {why}\n\
             (install Debian's package as root: `apt-get install --no-install-recommends \
             chromium`, or put a `chromium` on PATH, or set CHROMIUM to a Chromium binary)"
        ),
    }
}

fn find() -> Option<PathBuf> {
    let system = Path::new("/usr/bin/chromium");
    if system.is_file() {
        return Some(system.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("chromium"))
        .find(|path| path.is_file())
}

fn provision() -> Result<PathBuf, String> {
    if let Some(chosen) = std::env::var_os("CHROMIUM").filter(|path| !path.is_empty()) {
        let chosen = PathBuf::from(chosen);
        return if chosen.is_file() {
            Ok(chosen)
        } else {
            Err(format!("CHROMIUM={} is not a file", chosen.display()))
        };
    }
    if let Some(found) = find() {
        return Ok(found);
    }
    // flock(1) (util-linux, always on Debian): one install at a time on this machine; the
    // process that waited finds the browser there and installs nothing. The kernel drops the
    // lock if the holder dies. apt-get waits for another apt user (dpkg's lock) too.
    let lock = std::env::temp_dir().join("mcp-platform-chromium-install.lock");
    let install = "test -x /usr/bin/chromium || { apt-get update -q; \
                   apt-get install -y -q --no-install-recommends \
                   -o DPkg::Lock::Timeout=600 chromium; }";
    let mut command = Command::new("flock");
    command
        .args(["--wait", "1200"])
        .arg(&lock)
        .args(["sh", "-c", install])
        .env("DEBIAN_FRONTEND", "noninteractive");
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed ({}): {}",
            output.status,
            tail(&String::from_utf8_lossy(&output.stderr), 3000)
        ));
    }
    find().ok_or_else(|| "apt-get installed chromium, yet no /usr/bin/chromium".to_owned())
}

/// Runs `tests/browser/<script>` (a Playwright script using harness.py) against `base_url`
/// and returns the JSON object it printed on its last line. The script gets CHROMIUM,
/// BASE_URL, SCENARIO, SCREENSHOT_DIR (target/screenshots/<script>-<scenario>/) and `env`.
/// Panics with the script's stderr and stdout when it fails.
///
/// Async, since the app under test usually runs on the test's own single-threaded runtime:
/// a blocking wait here would stall the server the page is talking to.
pub async fn run_page_script(
    script: &str,
    base_url: &str,
    scenario: &str,
    env: &[(&str, &str)],
) -> Value {
    // One browser at a time: several Chromiums at once on a 2-core machine make every page
    // slow, and the tests wait on the page.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    // Provisioning blocks (apt, pip) the first time: off the runtime's thread.
    let (chromium, python) = tokio::task::spawn_blocking(|| (chromium(), python()))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let path = Path::new(SCRIPTS).join(script);
    let stem = Path::new(script)
        .file_stem()
        .map_or_else(|| script.into(), |s| s.to_string_lossy());
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")))
        .join("screenshots")
        .join(format!("{stem}-{scenario}"));
    let output = tokio::process::Command::new("timeout")
        .arg("--kill-after=10")
        .arg(SCRIPT_LIMIT_SECONDS.to_string())
        .arg(&python)
        .arg(&path)
        .env("CHROMIUM", &chromium)
        .env("BASE_URL", base_url)
        .env("SCENARIO", scenario)
        .env("SCREENSHOT_DIR", &screenshots)
        .env("WATCHDOG_SECONDS", WATCHDOG_SECONDS.to_string())
        // No __pycache__ in tests/browser/ from importing harness.py.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let shown = format!(
        "{script} (scenario {scenario:?}, screenshots in {})",
        screenshots.display()
    );
    if !output.status.success() {
        let why = if output.status.code() == Some(124) {
            format!("ran past {SCRIPT_LIMIT_SECONDS} s and was killed")
        } else {
            format!("failed ({})", output.status)
        };
        panic!(
            "{shown} {why}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            tail(&stderr, 8000),
            tail(&stdout, 4000)
        );
    }
    let last = stdout.lines().rev().find(|line| !line.trim().is_empty());
    last.and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!(
                "{shown} printed no JSON on its last line\n--- stdout ---\n{}\n--- stderr ---\n{}",
                tail(&stdout, 4000),
                tail(&stderr, 8000)
            )
        })
}

/// The end of `text`, at most about `max` bytes, cut on a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let text = text.trim();
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
