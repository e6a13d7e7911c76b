#!/usr/bin/env bash
# pulumi preview|up of one stack, reading live state first (--refresh) so that drift shows, or is put back, too.
#   pulumi.sh preview   what merging would change (read-only identity)
#   pulumi.sh up        apply it (deploying identity; the pipeline holds the stack's exclusive lock)
# Output and exit code go to $OUT_DIR (<command>.txt, <command>.exit); with SUMMARY=1 the output is also put on the
# run's summary page. Exits with pulumi's own code.
# Environment: STACK, OUT_DIR, SUMMARY (optional), SOURCE_VERSION (up: the commit, for the update's message).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mkdir -p "${OUT_DIR:?}"
: "${STACK:?}"
command="${1:?usage: pulumi.sh preview|up}"
case "$command" in
  preview) extra=() ;;
  up) extra=(--yes --message "deploy ${SOURCE_VERSION:?}") ;;
  *) echo "pulumi.sh: unknown command '$command'; allowed: preview, up" >&2; exit 2 ;;
esac
printf '%s\n' "$STACK" > "$OUT_DIR/stack"

status=0
pulumi "$command" --stack "$STACK" --refresh --diff "${extra[@]}" \
  --non-interactive --color never --suppress-progress > "$OUT_DIR/$command.txt" 2>&1 || status=$?
cat "$OUT_DIR/$command.txt"
record "$command" "$status"

if [ "${SUMMARY:-0}" = 1 ]; then
  report="$OUT_DIR/$command-report.md"
  result=$([ "$status" -eq 0 ] && echo "succeeded" || echo "FAILED (exit $status)")
  # shellcheck disable=SC2016 # the backquotes are Markdown
  {
    printf '## `pulumi %s --refresh` of stack `%s`: %s\n' "$command" "$STACK" "$result"
    section "pulumi $command --stack $STACK --refresh --diff" "$OUT_DIR/$command.txt" " open"
  } > "$report"
  publish_summary "$report"
fi
exit "$status"
