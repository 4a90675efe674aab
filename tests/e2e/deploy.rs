//! The files of `deploy/`: the systemd unit (hardening present; `systemd-analyze verify` where
//! the machine has it), the Dockerfile (multi-stage, non-root, /data volume, a health check that
//! works without curl), the deployed config (it loads and validates), and the `healthcheck`
//! command the image relies on.

use std::collections::HashMap;
use std::path::Path;

use crate::support::BIN;

fn deploy(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `[Section] Key=Value` lines of a unit file (comments and blank lines left out).
fn unit_entries(text: &str) -> HashMap<(String, String), Vec<String>> {
    let mut entries: HashMap<(String, String), Vec<String>> = HashMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not Key=Value: {line}"));
        entries
            .entry((section.clone(), key.trim().to_string()))
            .or_default()
            .push(value.trim().to_string());
    }
    entries
}

/// What both deployments set in the server's environment (docs/decisions/0008): glibc's
/// per-thread cache of freed blocks off, so that memory goes back after a burst.
const TUNABLES: &str = "GLIBC_TUNABLES=glibc.malloc.tcache_count=0";

#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let text = deploy("mcp-platform.service");
    let entries = unit_entries(&text);
    let value = |key: &str| {
        entries
            .get(&("Service".to_string(), key.to_string()))
            .and_then(|v| v.last().cloned())
            .unwrap_or_else(|| panic!("[Service] {key} is missing"))
    };
    assert_eq!(value("DynamicUser"), "yes");
    assert_eq!(value("StateDirectory"), "mcp-platform");
    assert_eq!(value("WorkingDirectory"), "/var/lib/mcp-platform");
    assert_eq!(value("ProtectSystem"), "strict");
    assert_eq!(value("NoNewPrivileges"), "yes");
    assert_eq!(value("ProtectHome"), "yes");
    assert_eq!(value("PrivateTmp"), "yes");
    assert_eq!(value("CapabilityBoundingSet"), "");
    assert_eq!(value("KillSignal"), "SIGTERM");
    let environment = &entries[&("Service".to_string(), "Environment".to_string())];
    assert!(environment.iter().any(|e| e == TUNABLES), "{environment:?}");
    assert!(
        value("ExecStart").starts_with(
            "/usr/local/bin/mcp-platform serve --config /etc/mcp-platform/config.yaml"
        )
    );
    assert!(entries.contains_key(&("Install".to_string(), "WantedBy".to_string())));

    // systemd's own check, where the machine has it (the binary path made real for it).
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("systemd-analyze is not installed: the unit was checked by parsing only");
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let unit = dir.path().join("mcp-platform.service");
    std::fs::write(&unit, text.replace("/usr/local/bin/mcp-platform", BIN)).expect("unit");
    let output = std::process::Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze runs");
    let said = String::from_utf8_lossy(&output.stderr).to_string();
    // Without a running systemd (containers, CI) verify cannot load the manager: only the
    // unit's own problems count.
    let unit_problems: Vec<&str> = said
        .lines()
        .filter(|line| line.contains("mcp-platform.service"))
        .collect();
    assert!(unit_problems.is_empty(), "{said}");
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|path| path.is_file())
        })
        .ok_or(())
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_unprivileged_in_another() {
    let text = deploy("Dockerfile");
    // Instructions, continuation lines joined.
    let joined = text.replace("\\\n", " ");
    let instructions: Vec<(String, String)> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (op, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (op.to_ascii_uppercase(), rest.trim().to_string())
        })
        .collect();
    let known = [
        "FROM",
        "RUN",
        "COPY",
        "WORKDIR",
        "ENV",
        "VOLUME",
        "USER",
        "EXPOSE",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "ENTRYPOINT",
        "CMD",
    ];
    for (op, _) in &instructions {
        assert!(known.contains(&op.as_str()), "unexpected instruction {op}");
    }
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let runtime = &instructions[stages[1]..];
    assert!(instructions[stages[0]].1.contains(" AS build"));
    assert!(runtime[0].1.starts_with("debian:") && runtime[0].1.contains("slim"));
    let find = |op: &str| {
        runtime
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, rest)| rest.clone())
            .collect::<Vec<_>>()
    };
    let user = find("USER");
    assert_eq!(user.len(), 1);
    assert!(
        !user[0].starts_with("root") && !user[0].starts_with('0'),
        "{user:?}"
    );
    assert_eq!(find("VOLUME"), [r#"["/data"]"#]);
    assert_eq!(find("WORKDIR"), ["/data"]);
    assert_eq!(find("EXPOSE"), ["8000"]);
    assert_eq!(find("ENV"), [TUNABLES]);
    assert!(find("COPY").iter().any(|c| c.starts_with("--from=build")));
    let health = find("HEALTHCHECK");
    assert!(health[0].contains(r#""healthcheck""#), "{health:?}");
    assert!(find("CMD")[0].contains(r#""--host", "0.0.0.0""#));
    // What the image copies exists.
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/config.yaml")
            .is_file()
    );
}

#[test]
fn the_deployed_config_loads_with_relative_state_paths() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config.yaml");
    let output = std::process::Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("check-config runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("configuration OK"), "{stderr}");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("url: sqlite:./chat.db"), "{printed}");
    let caddy = deploy("Caddyfile");
    assert!(caddy.contains("reverse_proxy 127.0.0.1:8000"));
    let nginx = deploy("nginx.conf");
    assert!(nginx.contains("proxy_set_header Upgrade") && nginx.contains("X-Forwarded-Proto"));
}

#[tokio::test]
async fn the_healthcheck_command_says_whether_the_server_answers() {
    let app = crate::support::spawn_app().await;
    let url = app.url("/health");
    let healthy = tokio::process::Command::new(BIN)
        .args(["healthcheck", "--url", &url])
        .output()
        .await
        .expect("runs");
    assert!(healthy.status.success(), "{healthy:?}");
    app.shutdown().await;
    let down = tokio::process::Command::new(BIN)
        .args(["healthcheck", "--url", &url])
        .output()
        .await
        .expect("runs");
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
}
