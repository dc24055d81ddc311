#!/usr/bin/env bash
# Mutation testing of the core sync logic, as a measure of the tests (not a
# gate, and not part of scripts/test.sh): cargo-mutants changes one thing at
# a time (an operator, a return value, a match guard) and checks that some
# test fails. The score is caught / (caught + missed + timed out).
#
#   scripts/mutants.sh                          # every file below
#   scripts/mutants.sh src/hlc.rs src/retry.rs  # some of them
#   TIDESYNC_MUTANTS_BUDGET=900 scripts/mutants.sh src/policy.rs
#
# Needs cargo-mutants (cargo install cargo-mutants --locked). Each file runs
# under the shared cargo lock, one at a time, in a copy of the tree built
# with its own profile (`mutants`) in the shared target dir: a mutated
# libtidesync never lands among the artifacts other builds use. Results:
# $TIDESYNC_MUTANTS_OUT/<file>/mutants.out (caught.txt, missed.txt, ...).
#
# Cost: each mutant rebuilds every test target of the package (about 50 s on
# 2 cores), so src/outbox.rs (52 mutants) needs about 45 minutes. Its unit
# tests alone catch all 46 viable ones; to check that quickly, run
# cargo-mutants by hand with --cargo-arg=--lib in place of the test args
# below (about 8 s a mutant).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"
export CARGO_PROFILE_MUTANTS_INHERITS=test
export CARGO_TERM_COLOR=never
# A short simulation per mutant: the lane check needs the 10k run, the
# invariants do not (the seeds that caught planted bugs run in any case).
export TIDESYNC_SIM_SEEDS="${TIDESYNC_SIM_SEEDS:-300}"
budget="${TIDESYNC_MUTANTS_BUDGET:-3600}"   # seconds, for the whole run
test_timeout="${TIDESYNC_MUTANTS_TEST_TIMEOUT:-60}"
out="${TIDESYNC_MUTANTS_OUT:-$CARGO_TARGET_DIR/mutants}"
lock=/tmp/tidesync-cargo.lock

command -v cargo-mutants >/dev/null || {
  echo "cargo-mutants is missing: cargo install cargo-mutants --locked" >&2
  exit 2
}

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=(src/outbox.rs src/retry.rs src/policy.rs src/hlc.rs
         src/engine/push.rs src/engine/pull.rs server/src/service.rs)
fi

deadline=$(( $(date +%s) + budget ))
total_caught=0 total_missed=0 total_timeout=0 total_unviable=0
for file in "${files[@]}"; do
  left=$(( deadline - $(date +%s) ))
  if [ "$left" -le 0 ]; then
    echo "== $file: skipped, the time budget is spent"
    continue
  fi
  case "$file" in
    server/src/service.rs)
      # The server's push only: its own tests and the simulation, which drives it.
      scope=(--package tidesync-server --test-package tidesync-server --test-package tidesync
             --re 'SyncService<S>::(push|precheck)') ;;
    server/*)
      scope=(--package tidesync-server --test-package tidesync-server --test-package tidesync) ;;
    *)
      scope=(--package tidesync --test-package tidesync
             --cargo-test-arg=--lib --cargo-test-arg=--test=engine
             --cargo-test-arg=--test=simulation) ;;
  esac
  dir="$out/$(echo "$file" | tr / _)"
  mkdir -p "$dir"
  echo "== $file (budget left: ${left}s)"
  # cargo-mutants exits non-zero when a mutant is missed; the score says it.
  timeout --foreground "$left" flock "$lock" \
    cargo mutants --file "$file" "${scope[@]}" \
      --exclude-re 'tests::' \
      --profile mutants --baseline run --jobs 1 \
      --timeout "$test_timeout" --build-timeout 600 \
      --output "$dir" --no-shuffle || true
  count() { if [ -f "$dir/mutants.out/$1.txt" ]; then wc -l < "$dir/mutants.out/$1.txt"; else echo 0; fi; }
  c=$(count caught) m=$(count missed) t=$(count timeout) u=$(count unviable)
  total_caught=$((total_caught + c)) total_missed=$((total_missed + m))
  total_timeout=$((total_timeout + t)) total_unviable=$((total_unviable + u))
  echo "   $file: caught $c, missed $m, timed out $t, unviable $u"
  if [ "$m" -gt 0 ]; then sed 's/^/   missed: /' "$dir/mutants.out/missed.txt"; fi
done
tested=$((total_caught + total_missed + total_timeout))
if [ "$tested" -gt 0 ]; then
  echo "mutation score: $total_caught / $tested caught ($(( 100 * total_caught / tested ))%), $total_unviable unviable"
fi
