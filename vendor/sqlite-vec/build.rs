fn main() {
    // mcp-platform: upstream's C warnings (-Wall -Wextra) are not ours to fix; quiet, as from
    // the registry (vendor/README.md).
    cc::Build::new().file("sqlite-vec.c").define("SQLITE_CORE", None).warnings(false).compile("sqlite_vec0");
}
