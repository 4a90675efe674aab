#!/usr/bin/env bash
# The release profile candidates side by side, for the README's "Release profile" table:
# build time, binary size, start time and server CPU per turn of each.
#
#   benches/release_profiles.sh                 # default thin fat, 3 load rounds
#   ROUNDS=1 benches/release_profiles.sh fat    # one variant, one round
#
# Each variant builds from scratch in target/profile-NAME (the profile is set through
# CARGO_PROFILE_RELEASE_* variables, Cargo.toml is not touched). Load runs follow the README's
# "Chat under load" set-up (mock provider, benches/loadtest.yaml, 100 connections x 50 turns),
# each on a fresh database, variants interleaved round by round so that the machine's drift
# falls on all of them alike. Needs python3 (to read the JSON reports).
set -euo pipefail
cd "$(dirname "$0")/.."

variants=("${@:-default thin fat}")
read -r -a variants <<<"${variants[*]}"
rounds=${ROUNDS:-3}
starts=${STARTS:-11}

lto() { case $1 in default) echo false ;; thin) echo thin ;; fat | fat-abort) echo fat ;; esac; }
cgu() { case $1 in default | thin) echo 16 ;; fat | fat-abort) echo 1 ;; esac; }
panic_strategy() { case $1 in fat-abort) echo abort ;; *) echo unwind ;; esac; }

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A build_s size stripped
for v in "${variants[@]}"; do
    echo "== building $v (lto=$(lto "$v"), codegen-units=$(cgu "$v"), panic=$(panic_strategy "$v"))" >&2
    begin=$(date +%s)
    CARGO_PROFILE_RELEASE_LTO=$(lto "$v") CARGO_PROFILE_RELEASE_CODEGEN_UNITS=$(cgu "$v") \
        CARGO_PROFILE_RELEASE_PANIC=$(panic_strategy "$v") \
        cargo build --release --locked --bin mcp-platform --target-dir "target/profile-$v" >&2
    build_s[$v]=$(($(date +%s) - begin))
    bin=target/profile-$v/release/mcp-platform
    size[$v]=$(stat -c %s "$bin")
    strip -o "$work/stripped" "$bin"
    stripped[$v]=$(stat -c %s "$work/stripped")
done

# A config like benches/loadtest.yaml with its database in $1.
config_in() {
    sed "s#path: ./data/loadtest.db#path: $1/db.sqlite#; s#port: 8000#port: 8000#" benches/loadtest.yaml >"$1/config.yaml"
    echo "$1/config.yaml"
}

# Exec to accepting, in ms: until the --ready-json line (the database already exists).
start_ms() {
    local bin=$1 dir=$2 begin end
    begin=$(date +%s%N)
    exec 3< <("$bin" serve --config "$dir/config.yaml" --port 0 --ready-json 2>/dev/null)
    local pid=$!
    read -r _ <&3
    end=$(date +%s%N)
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    exec 3<&-
    echo $(((end - begin) / 1000))
}

declare -A start_us
for v in "${variants[@]}"; do
    dir=$(mktemp -d -p "$work")
    config_in "$dir" >/dev/null
    start_ms "target/profile-$v/release/mcp-platform" "$dir" >/dev/null   # creates the database
    start_us[$v]=$(for _ in $(seq "$starts"); do start_ms "target/profile-$v/release/mcp-platform" "$dir"; done | median)
done

mock=target/profile-${variants[0]}/release/mcp-platform
"$mock" mock-provider --port 8081 --chunks 20 >/dev/null 2>&1 &
sleep 1

declare -A cpu tps
for round in $(seq "$rounds"); do
    for v in "${variants[@]}"; do
        bin=target/profile-$v/release/mcp-platform
        dir=$(mktemp -d -p "$work")
        "$bin" --config "$(config_in "$dir")" >/dev/null 2>&1 &
        server=$!
        for _ in $(seq 100); do
            curl -sf http://127.0.0.1:8000/health >/dev/null 2>&1 && break
            sleep 0.05
        done
        "$mock" loadtest --connections 100 --turns 50 --ramp-up 0s --json 2>/dev/null >"$dir/report.json" || true
        kill "$server"
        wait "$server" 2>/dev/null || true
        read -r c t < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["server"]["cpu_ms_per_turn"], r["turns_per_s"])' "$dir/report.json")
        echo "round $round $v: $c ms CPU per turn, $t turns/s" >&2
        cpu[$v]="${cpu[$v]:-} $c"
        tps[$v]="${tps[$v]:-} $t"
    done
done

echo
echo "| profile | build (2 vCPU, from scratch) | binary | stripped | start (median of $starts) | server CPU per turn (median of $rounds) | turns/s |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for v in "${variants[@]}"; do
    c=$(tr ' ' '\n' <<<"${cpu[$v]}" | grep . | median)
    t=$(tr ' ' '\n' <<<"${tps[$v]}" | grep . | median)
    printf '| %s | %d min %02d s | %.1f MB | %.1f MB | %.1f ms | %s ms | %s |\n' "$v" \
        $((build_s[$v] / 60)) $((build_s[$v] % 60)) \
        "$(echo "${size[$v]} / 1000000" | bc -l)" "$(echo "${stripped[$v]} / 1000000" | bc -l)" \
        "$(echo "${start_us[$v]} / 1000" | bc -l)" "$c" "$t"
done
