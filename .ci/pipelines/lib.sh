# Shared by the scripts in .ci/pipelines/ (sourced, never run): the GitHub workflows and the Azure DevOps pipelines
# run the same scripts, so a preview, a plan or a drift check means the same thing on both CI systems.
# Nothing here prints a credential; values arrive in the environment, never pasted into the script text.

# The CI system this runs on: Azure DevOps sets TF_BUILD=True, GitHub Actions GITHUB_ACTIONS=true.
ci_system() {
  if [ "${TF_BUILD:-}" = "True" ]; then echo azure-devops
  elif [ "${GITHUB_ACTIONS:-}" = "true" ]; then echo github
  else echo local
  fi
}

# error_line <title> <message>: one error the CI system shows on the run (and the log line everywhere).
error_line() {
  case "$(ci_system)" in
    azure-devops) printf '##vso[task.logissue type=error]%s: %s\n' "$1" "$2" ;;
    github) printf '::error title=%s::%s\n' "$1" "$2" ;;
    *) printf 'error: %s: %s\n' "$1" "$2" >&2 ;;
  esac
}

# publish_summary <markdown file>: the file becomes part of the run's summary page.
publish_summary() {
  case "$(ci_system)" in
    azure-devops) printf '##vso[task.uploadsummary]%s\n' "$1" ;;
    github) cat "$1" >> "${GITHUB_STEP_SUMMARY:?}" ;;
    *) printf 'summary written to %s\n' "$1" ;;
  esac
}

# record <name> <exit code>: keep a check's exit code beside its output, for the report step.
record() {
  printf '%s\n' "$2" > "${OUT_DIR:?}/$1.exit"
}

# recorded <name>: the exit code record() kept, or nothing when the check never ran.
recorded() {
  if [ -s "${OUT_DIR:?}/$1.exit" ]; then tr -d '[:space:]' < "$OUT_DIR/$1.exit"; fi
}

# section <title> <file> <details attributes>: a command's own output, at most SECTION_LIMIT (60 000) characters.
section() {
  local limit="${SECTION_LIMIT:-60000}"
  printf '\n<details%s><summary>%s</summary>\n\n````text\n' "$3" "$1"
  if [ -s "$2" ]; then
    head -c "$limit" "$2"
    if [ "$(wc -c < "$2")" -gt "$limit" ]; then printf '\n[... cut: the full output is in the step log]'; fi
  else
    printf '(no output)'
  fi
  printf '\n````\n\n</details>\n'
}

# stack_outputs <file>: `pulumi stack output --json` of $STACK; "{}" for a stack that has no state yet, so that
# `adp-identity plan` reports every service as to be created. Any other failure stops the caller.
stack_outputs() {
  local status=0
  pulumi stack output --stack "${STACK:?}" --json > "$1" 2> "$1.err" || status=$?
  if [ "$status" -ne 0 ]; then
    if grep -q "no stack named" "$1.err"; then
      printf '{}\n' > "$1"
    else
      cat "$1.err" >&2
      return "$status"
    fi
  fi
}
