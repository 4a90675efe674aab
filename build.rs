//! Names the commit in `mcp-platform --version` (`unknown` outside a git checkout), and writes
//! the token tables of tiktoken's `o200k_base` and `cl100k_base` into the build's output
//! directory, laid out as `src/tokens/layout.rs` says, for the binary to hold them.

use std::path::Path;

use tiktoken_rs::tokenizer::Tokenizer;

#[allow(dead_code)] // the reading half is the server's
#[path = "src/tokens/layout.rs"]
mod layout;

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .filter(|commit| !commit.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MCPP_COMMIT={commit}");
    // A new commit moves HEAD or the branch it points to.
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/tokens/layout.rs");

    let out = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    write_token_tables(Path::new(&out));
}

/// Writes each encoding's tables, unless this build script wrote them already (it reruns on
/// every commit; the stamp names the sources that shape the tables).
fn write_token_tables(out: &Path) {
    let stamp = format!(
        "{:x}",
        layout::hash(
            concat!(
                include_str!("build.rs"),
                include_str!("src/tokens/layout.rs")
            )
            .as_bytes()
        )
    );
    let stamp_path = out.join("token_tables.stamp");
    if std::fs::read_to_string(&stamp_path).is_ok_and(|written| written == stamp) {
        return;
    }
    let encodings = [
        ("o200k_base", Tokenizer::O200kBase),
        ("cl100k_base", Tokenizer::Cl100kBase),
    ];
    for (name, tokenizer) in encodings {
        let core = tiktoken_rs::bpe_for_tokenizer(tokenizer)
            .expect("tiktoken-rs's compiled-in tables parse");
        let tables = layout::encode(&ordinary_tokens(core)).expect("tables fit u32 offsets");
        for (part, data) in ["bytes", "starts", "slots"].iter().zip(tables) {
            std::fs::write(out.join(format!("{name}.{part}")), data).expect("OUT_DIR is writable");
        }
    }
    std::fs::write(stamp_path, stamp).expect("OUT_DIR is writable");
}

/// Every token's bytes by rank. Ordinary ranks are contiguous from 0; the first rank that does
/// not decode, or decodes to a special token, ends them (the special tokens come after a gap).
fn ordinary_tokens(core: &tiktoken_rs::CoreBPE) -> Vec<Vec<u8>> {
    let special = core.special_tokens();
    let mut tokens = Vec::new();
    for rank in 0.. {
        match core.decode_bytes(&[rank]) {
            Ok(bytes) if !std::str::from_utf8(&bytes).is_ok_and(|s| special.contains(s)) => {
                tokens.push(bytes);
            }
            _ => break,
        }
    }
    tokens
}
