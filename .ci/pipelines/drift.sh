#!/usr/bin/env bash
# Drift check of one stack, with the stack's READ-ONLY identity; changes nothing.
#   1. pulumi refresh --preview-only --expect-no-changes: every Pulumi-managed resource against the stored state
#      (exit 7 = drift)
#   2. adp-identity audit --identities <pulumi stack output --json>: every Dataverse environment of the stack against
#      the service files, including application users Pulumi does not manage (exit 2 = drift)
# Each check's output and exit code go to $OUT_DIR; drift-report.sh turns them into the verdict. This script fails
# only when it cannot run a check at all (the report then says "not run").
# Environment: STACK, OUT_DIR; Azure sign-in and the Pulumi backend as the pipeline sets them.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mkdir -p "${OUT_DIR:?}"
: "${STACK:?}"

status=0
pulumi refresh --stack "$STACK" --preview-only --expect-no-changes --diff \
  --non-interactive --color never --suppress-progress > "$OUT_DIR/refresh.txt" 2>&1 || status=$?
cat "$OUT_DIR/refresh.txt"
record refresh "$status"

stack_outputs "$OUT_DIR/outputs.json"

status=0
adp-identity audit --stack "$STACK" --identities "$OUT_DIR/outputs.json" > "$OUT_DIR/audit.txt" 2>&1 || status=$?
cat "$OUT_DIR/audit.txt"
record audit "$status"
