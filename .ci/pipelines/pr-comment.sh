#!/usr/bin/env bash
# Post $REPORT_FILE as the pull request's one adp-identity comment (Azure Repos), or update it when this pipeline
# posted one before: Azure DevOps REST API, Git > Pull Request Threads, api-version 7.1
#   GET   {collection}{project}/_apis/git/repositories/{repo}/pullRequests/{id}/threads
#   POST  .../threads                                 a new thread, status "closed": it never blocks completion
#   PATCH .../threads/{threadId}/comments/{commentId}  the thread whose first comment starts with our marker
# The caller maps System.AccessToken to SYSTEM_ACCESSTOKEN for this step only; the token goes to curl in a header
# file (mode 0600), never on a command line or in the log. GET and PATCH are retried on transient errors; the
# POST is not (a replayed POST would post twice). Any other build, or a repository not in Azure Repos, gets the
# run summary only (preview-report.sh already put it there).
# Environment: REPORT_FILE; Azure DevOps' BUILD_REASON, BUILD_REPOSITORY_PROVIDER, SYSTEM_COLLECTIONURI,
# SYSTEM_TEAMPROJECTID, BUILD_REPOSITORY_ID, SYSTEM_PULLREQUEST_PULLREQUESTID, SYSTEM_ACCESSTOKEN.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
: "${REPORT_FILE:?}"
if [ "${BUILD_REASON:-}" != "PullRequest" ]; then
  echo "not a pull-request build: the report is on the run's summary page only"
  exit 0
fi
if [ "${BUILD_REPOSITORY_PROVIDER:-}" != "TfsGit" ]; then
  echo "the repository is not in Azure Repos (${BUILD_REPOSITORY_PROVIDER:-unknown}): the report is on the run's summary page only"
  exit 0
fi
if [ -z "${SYSTEM_ACCESSTOKEN:-}" ]; then
  error_line "pull-request comment" "SYSTEM_ACCESSTOKEN is not set: map \$(System.AccessToken) into this step's env"
  exit 1
fi
MARKER='<!-- adp-identity:preview -->'
threads="${SYSTEM_COLLECTIONURI:?}"
threads="${threads%/}/${SYSTEM_TEAMPROJECTID:?}/_apis/git/repositories/${BUILD_REPOSITORY_ID:?}"
threads="$threads/pullRequests/${SYSTEM_PULLREQUEST_PULLREQUESTID:?}/threads"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077
printf 'Authorization: Bearer %s\n' "$SYSTEM_ACCESSTOKEN" > "$work/auth"
unset SYSTEM_ACCESSTOKEN
api() { # <method> <url> [body file] [retry]: the response body on stdout; fails on any status but 2xx
  local args=(--silent --show-error --fail-with-body --max-time 60 --header @"$work/auth" --request "$1")
  if [ -n "${3:-}" ]; then args+=(--header "Content-Type: application/json" --data-binary @"$3"); fi
  if [ "${4:-}" = retry ]; then args+=(--retry 3); fi
  curl "${args[@]}" "$2"
}

api GET "$threads?api-version=7.1" "" retry > "$work/threads.json"
found=$(jq -r --arg marker "$MARKER" '
  [.value[] | select((.isDeleted | not) and ((.comments[0].content // "") | startswith($marker)))]
  | first | if . == null then "" else "\(.id) \(.comments[0].id)" end' "$work/threads.json")

if [ -n "$found" ]; then
  read -r thread comment <<< "$found"
  jq -n --rawfile content "$REPORT_FILE" '{content: $content}' > "$work/body.json"
  if api PATCH "$threads/$thread/comments/$comment?api-version=7.1" "$work/body.json" retry > /dev/null; then
    echo "updated the preview comment (thread $thread)"
    exit 0
  fi
  echo "could not update thread $thread's comment; posting a new one"
fi
jq -n --rawfile content "$REPORT_FILE" \
  '{comments: [{parentCommentId: 0, content: $content, commentType: 1}], status: "closed"}' > "$work/body.json"
api POST "$threads?api-version=7.1" "$work/body.json" > "$work/created.json"
echo "posted the preview comment (thread $(jq -r '.id' "$work/created.json"))"
