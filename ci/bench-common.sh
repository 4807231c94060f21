# Sourced by the bench scripts: their arguments [CONNECTIONS] [SECONDS] [ROUNDS], the
# release binaries they measure (built unless BENCH_NO_BUILD=1), and `calc`.
connections=${1:-32}
seconds=${2:-5}
rounds=${3:-3}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    cargo build --release -q -p gauntlet --bin gauntlet --example load_target
fi
gauntlet="$root/target/release/gauntlet"
target="$root/target/release/examples/load_target"

calc() { awk "BEGIN { print $1 }"; }

# Builds ci/NAME.c (a floor reference: the least a bare C program spends on the same
# job) into DIR/NAME with the system's C compiler; prints nothing, fails loudly.
build_floor() {
    local name=$1 dir=$2
    command -v cc >/dev/null || { echo "bench: a C compiler is needed for the floor reference (apt-get install gcc)" >&2; exit 2; }
    cc -O2 -o "$dir/$name" "$root/ci/$name.c"
}
