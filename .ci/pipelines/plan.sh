#!/usr/bin/env bash
# adp-identity plan of one stack, with the stack's READ-ONLY identity: every declared application user resolved
# against its Dataverse environment (an unknown role or business unit fails here, in the pull request). A service,
# or a whole stack, without stack outputs yet is planned as "to be created".
# Output and exit code go to $OUT_DIR (plan.txt, plan.exit); the script exits with plan's own code.
# Environment: STACK, OUT_DIR; Azure sign-in and the Pulumi backend as the pipeline sets them.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mkdir -p "${OUT_DIR:?}"
: "${STACK:?}"
printf '%s\n' "$STACK" > "$OUT_DIR/stack"

stack_outputs "$OUT_DIR/outputs.json"
status=0
adp-identity plan --stack "$STACK" --identities "$OUT_DIR/outputs.json" > "$OUT_DIR/plan.txt" 2>&1 || status=$?
cat "$OUT_DIR/plan.txt"
record plan "$status"
exit "$status"
