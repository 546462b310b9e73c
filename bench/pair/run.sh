#!/bin/sh
# Paired A/B of two builds of include/shmring/pool.h (see pool_pair.c).
#   bench/pair/run.sh INCLUDE_A INCLUDE_B [frame bytes] [blocks] [round trips per block]
# INCLUDE_A / INCLUDE_B: include directories (holding shmring/pool.h) of the two builds,
# e.g. of `git worktree add /tmp/a REV`. The library (src/) is this checkout's, built in
# $BUILD (default build/). An A/A run (the same directory twice) gives 1.000.
set -eu
[ $# -ge 2 ] || { sed -n '2,6p' "$0"; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
[ -e "$build/libshmring.so" ] || { echo "no $build/libshmring.so: build the library first" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc="${CC:-cc} -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror"
$cc -DPAIR_PART=a -I"$1" -c "$here/pool_pair.c" -o "$out/a.o"
$cc -DPAIR_PART=b -I"$2" -c "$here/pool_pair.c" -o "$out/b.o"
$cc -DPAIR_PART=main -I"$root/include" -I"$root/bench" "$here/pool_pair.c" \
	"$root/bench/clock.c" "$root/bench/stats.c" "$root/bench/cpu.c" "$out/a.o" "$out/b.o" \
	-L"$build" -lshmring -Wl,-rpath,"$build" -lm -o "$out/pool_pair"
shift 2
"$out/pool_pair" "$@"
