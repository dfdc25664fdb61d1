#!/usr/bin/env bash
# Runs bench/compare (compare.mjs) with the open-files limit raised to the hard
# limit, so that the servers and the load generator may hold ~19,000
# connections each. Arguments go to compare.mjs (e.g. --smoke, --runs 3,
# --no-write, --servers tether,node-ws).
set -euo pipefail
cd "$(dirname "$0")/../.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec node bench/compare/compare.mjs "$@"
