//! Choosing the database from outside: `--database` over `MCPP_DATABASE_URL` over
//! `database.url` (or the deprecated `chat.service.repository.path`, never both); a PostgreSQL
//! URL shown without its password and, until its backend exists, refused with one clear line.

use std::path::Path;

use crate::support::{run_with_env, write_config};

fn sqlite_url(path: &Path) -> String {
    format!("sqlite:{}", path.display())
}

#[tokio::test]
async fn the_flag_wins_over_the_variable_which_wins_over_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "");
    let config = config.to_str().expect("utf-8");
    let (from_env, from_flag) = (dir.path().join("env.db"), dir.path().join("flag.db"));
    let env = [("MCPP_DATABASE_URL", sqlite_url(&from_env))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let (code, stdout, stderr) = run_with_env(&["check-config", "--config", config], &env).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&sqlite_url(&from_env)), "{stdout}");

    let flag = sqlite_url(&from_flag);
    let args = ["check-config", "--config", config, "--database", &flag];
    let (code, stdout, stderr) = run_with_env(&args, &env).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&flag) && !stdout.contains("env.db"),
        "{stdout}"
    );

    // The flag wins without the variable being read at all, even when it is not a URL.
    let (code, stdout, stderr) = run_with_env(&args, &[("MCPP_DATABASE_URL", "not a url")]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&flag), "{stdout}");

    // A command that opens the database opens the one the flag names, and only that one.
    let args = [
        "keys",
        "create",
        "--name",
        "ops",
        "--config",
        config,
        "--database",
        &flag,
    ];
    let (code, _, stderr) = run_with_env(&args, &env).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(from_flag.exists());
    assert!(!from_env.exists() && !dir.path().join("data/chat.db").exists());
    let args = ["keys", "list", "--config", config, "--database", &flag];
    let (code, stdout, stderr) = run_with_env(&args, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ops"), "{stdout}");
}

#[tokio::test]
async fn a_postgres_url_is_refused_in_one_line_that_hides_its_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "");
    let config = config.to_str().expect("utf-8");
    let url = "postgres://chat:hunter2@127.0.0.1:1/chat?sslmode=disable";

    let (code, stdout, stderr) = run_with_env(
        &["check-config", "--config", config, "--database", url],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("postgres://chat:redacted@127.0.0.1:1/chat"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"));
    assert!(stderr.contains("warning: database: "), "{stderr}");

    for args in [
        vec![
            "serve",
            "--config",
            config,
            "--port",
            "0",
            "--database",
            url,
        ],
        vec!["keys", "list", "--config", config, "--database", url],
    ] {
        let (code, stdout, stderr) = run_with_env(&args, &[]).await;
        assert_eq!(code, 2, "{args:?}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: ") && last.contains("PostgreSQL"),
            "{args:?}: {stderr}"
        );
        assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"));
    }
    let target = dir.path().join("copy.db");
    let target = target.to_str().expect("utf-8");
    let (code, _, stderr) = run_with_env(
        &["backup", target, "--config", config, "--database", url],
        &[],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("pg_dump") && !stderr.contains("hunter2"),
        "{stderr}"
    );
    // Nothing was created where the file points.
    assert!(!dir.path().join("data/chat.db").exists());
}

#[tokio::test]
async fn the_old_repository_path_still_works_and_says_what_to_write_instead() {
    let dir = tempfile::tempdir().expect("temp dir");
    let old = dir.path().join("old.db");
    let config = dir.path().join("config.yaml");
    let text = format!(
        "chat:\n  service:\n    repository:\n      path: {}\n",
        old.display()
    );
    std::fs::write(&config, text).expect("write config");
    let config = config.to_str().expect("utf-8");
    let (code, stdout, stderr) = run_with_env(&["check-config", "--config", config], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "warning: chat.service.repository.path is deprecated: write database.url: {}",
            sqlite_url(&old)
        )),
        "{stderr}"
    );
    assert!(stdout.contains(&sqlite_url(&old)), "{stdout}");
    let args = ["keys", "create", "--name", "ops", "--config", config];
    let (code, _, stderr) = run_with_env(&args, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(old.exists());
}
