#!/usr/bin/env bash
# The drift verdict of one stack, from what drift.sh left in $OUT_DIR: a Markdown report on the run's summary page
# (how to read it: docs/onboarding.md, "Reading a drift report"), and exit 1 on drift or on a check that did not run.
# Environment: STACK, OUT_DIR.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
: "${STACK:?}" "${OUT_DIR:?}"
mkdir -p "$OUT_DIR"

# verdict <exit code> <the code that means drift>
verdict() {
  case "$1" in
    "") echo "not run" ;;
    0) echo "clean" ;;
    "$2") echo "DRIFT" ;;
    *) echo "check failed (exit $1)" ;;
  esac
}
unfolded() { if [ "$1" = clean ]; then echo ""; else echo " open"; fi; }

refresh=$(verdict "$(recorded refresh)" 7)
audit=$(verdict "$(recorded audit)" 2)
report="$OUT_DIR/drift-report.md"
# shellcheck disable=SC2016 # the backquotes are Markdown, not command substitution
{
  printf '## Drift check of stack `%s`\n\n' "$STACK"
  printf '| check | result |\n| --- | --- |\n'
  printf '| Pulumi-managed resources vs stored state (`pulumi refresh --preview-only --expect-no-changes`) | %s |\n' "$refresh"
  printf '| Dataverse application users and roles vs the service files (`adp-identity audit`) | %s |\n' "$audit"
  section "pulumi refresh --preview-only" "$OUT_DIR/refresh.txt" "$(unfolded "$refresh")"
  section "adp-identity audit" "$OUT_DIR/audit.txt" "$(unfolded "$audit")"
  printf '\nHow to read this report and what to do: docs/onboarding.md, "Reading a drift report".\n'
} > "$report"
publish_summary "$report"
if [ "$refresh" != clean ] || [ "$audit" != clean ]; then
  error_line "drift in stack $STACK" "refresh: $refresh; audit: $audit (details in the run summary)"
  exit 1
fi
echo "stack $STACK: no drift"
