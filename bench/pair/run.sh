#!/bin/sh
# Paired A/B of two builds of a kind's inline fast path (see pair_main.c).
#   bench/pair/run.sh KIND INCLUDE_A INCLUDE_B [blocks] [round trips per block] [bytes]
#   bench/pair/run.sh spsc-stream INCLUDE_A INCLUDE_B [blocks] [batch] [records per block] [bytes]
# KIND: pool, spsc, mpmc, bcast (round trips) or spsc-stream (streaming rate, its own driver).
# INCLUDE_A / INCLUDE_B: include directories (holding shmring/) of the
# two builds, e.g. of `git worktree add /tmp/a REV`. The library (src/) is this
# checkout's, built in $BUILD (default build/). An A/A run (the same directory twice)
# gives 1.000.
set -eu
[ $# -ge 3 ] || { sed -n '2,7p' "$0"; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
kind=$1
[ -f "$here/${kind}_pair.c" ] || { echo "no such kind: $kind (pool, spsc, mpmc, bcast, spsc-stream)" >&2; exit 2; }
[ -e "$build/libshmring.so" ] || { echo "no $build/libshmring.so: build the library first" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc="${CC:-cc} -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror"
$cc -DPAIR_PART=a -I"$2" -c "$here/${kind}_pair.c" -o "$out/a.o"
$cc -DPAIR_PART=b -I"$3" -c "$here/${kind}_pair.c" -o "$out/b.o"
$cc -DPAIR_PART_MAIN -I"$root/include" -I"$root/bench" -c "$here/${kind}_pair.c" -o "$out/setup.o"
# a stream has its own driver in the kind file; the round-trip kinds share pair_main.c
driver="$here/pair_main.c"
[ "$kind" = spsc-stream ] && driver=
$cc -I"$root/include" -I"$root/bench" $driver "$root/bench/clock.c" \
	"$root/bench/stats.c" "$root/bench/cpu.c" "$out/a.o" "$out/b.o" "$out/setup.o" \
	-L"$build" -lshmring -Wl,-rpath,"$build" -lm -o "$out/pair"
shift 3
"$out/pair" "$@"
