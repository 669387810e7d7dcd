#!/bin/sh
# Runs the redo benchmark harness (redobench.py, kept outside this
# repository) against the redors installed in .venv, on the shapes recorded
# in BENCHMARKS.md, and writes the raw results to bench/results/.
# usage: bench/run.sh PATH/TO/redobench.py [SHAPE:N ...]
# default shapes: flat:100 flat:1000 tree:1000 deep:500 cfiles:200
set -eu
cd "$(dirname "$0")/.."
harness=${1:?usage: bench/run.sh PATH/TO/redobench.py [SHAPE:N ...]}
shift
[ $# -gt 0 ] || set -- flat:100 flat:1000 tree:1000 deep:500 cfiles:200
mkdir -p bench/results
for spec in "$@"; do
	shape=${spec%%:*}
	n=${spec#*:}
	python3 "$harness" run --impl "redors=$PWD/.venv/bin" --shape "$shape" --n "$n" \
		--jobs 2 --repeat "${REPEAT:-3}" --out "bench/results/$shape-$n"
done
python3 "$harness" summary bench/results/*.json
