#!/usr/bin/env bash
# One report of a pull request's preview: for every stack, `adp-identity plan` and `pulumi preview --refresh`, as
# plan.sh and pulumi.sh left them in $REPORT_DIR/<any>/ (one directory per stack, e.g. downloaded artifacts).
# Writes $REPORT_FILE (Markdown, first line a marker pr-comment.sh finds its own comment by) and puts it on the run's
# summary page. Exits 0: the preview jobs themselves fail the run when a check failed.
# Environment: REPORT_DIR, REPORT_FILE, SOURCE_VERSION (optional: the commit previewed).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
: "${REPORT_DIR:?}" "${REPORT_FILE:?}"
MARKER='<!-- adp-identity:preview -->'
export SECTION_LIMIT=25000 # four sections stay within a pull-request comment (150 000 characters)

result() { # <dir> <check>
  local code
  code=$(OUT_DIR="$1" recorded "$2")
  case "$code" in
    "") echo "not run" ;;
    0) echo "ok" ;;
    *) echo "FAILED (exit $code)" ;;
  esac
}

shopt -s nullglob
dirs=()
for dir in "$REPORT_DIR"/*/; do
  if [ -s "$dir/stack" ]; then dirs+=("${dir%/}"); fi
done
# shellcheck disable=SC2016 # the backquotes are Markdown
{
  printf '%s\n' "$MARKER"
  printf '## adp-identity preview%s\n\n' "${SOURCE_VERSION:+ of ${SOURCE_VERSION:0:12}}"
  if [ "${#dirs[@]}" -eq 0 ]; then
    printf 'No stack was previewed: an earlier stage failed (see the run).\n'
  else
    printf '| stack | `adp-identity plan` | `pulumi preview --refresh` |\n| --- | --- | --- |\n'
    for dir in "${dirs[@]}"; do
      printf '| `%s` | %s | %s |\n' "$(cat "$dir/stack")" "$(result "$dir" plan)" "$(result "$dir" preview)"
    done
    for dir in "${dirs[@]}"; do
      stack=$(cat "$dir/stack")
      section "$stack: adp-identity plan" "$dir/plan.txt" " open"
      section "$stack: pulumi preview --refresh --diff" "$dir/preview.txt" " open"
    done
  fi
} > "$REPORT_FILE"
publish_summary "$REPORT_FILE"
