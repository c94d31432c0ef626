# lib.sh - the step runner shared by demo.sh (host) and guest.sh (in the VM).
# `step "title" fn args...` runs fn with its output in a log of its own, prints one line
# with the duration, appends "seconds<TAB>title" to $DEMO_SUMMARY, and on failure prints
# the log's tail and exits 1. Lines start with [demo] so the host can pick the guest's
# out of the serial console.
DEMO_N=${DEMO_N:-0}
step() {
  local title=$1; shift
  DEMO_N=$((DEMO_N + 1))
  local log
  log=$DEMO_LOGS/$(printf '%02d' "$DEMO_N")-$(tr -c 'a-zA-Z0-9\n' '-' <<<"${title%% (*}" | head -c 40).log
  local t0=$EPOCHREALTIME rc=0
  DEMO_SHOW=$log.show
  # in the background and waited for: a function called as `f || rc=$?` would run
  # with set -e off, and each step relies on it
  "$@" >"$log" 2>&1 &
  wait $! || rc=$?
  local took
  took=$(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $t0}")
  if ((rc != 0)); then
    printf '[demo] FAIL %6s s  %s (exit %d)\n' "$took" "$title" "$rc"
    printf '%s\tFAIL %s\n' "$took" "$title" >>"$DEMO_SUMMARY"
    echo "[demo] --- last lines of $log:"
    tail -n 25 "$log" | sed 's/^/[demo] | /'
    exit 1
  fi
  printf '[demo] ok   %6s s  %s\n' "$took" "$title"
  printf '%s\t%s\n' "$took" "$title" >>"$DEMO_SUMMARY"
  # a step may leave one line worth showing (a checksum, a plan)
  if [[ -s $log.show ]]; then sed 's/^/[demo]               /' "$log.show"; fi
}
# show LINE...: lines printed under the running step's result
show() { printf '%s\n' "$@" >>"$DEMO_SHOW"; }
