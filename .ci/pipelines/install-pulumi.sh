#!/usr/bin/env bash
# Install the pinned Pulumi CLI ($PULUMI_VERSION) and put it on PATH for the job's later steps (Azure DevOps).
# The archive comes from Pulumi's release host; it is checked against the SHA-256 in the release's checksums file
# on GitHub (a second origin), and nothing is extracted or run before that check passes. No `curl | sh`.
# Environment: PULUMI_VERSION, AGENT_TOOLSDIRECTORY, AGENT_TEMPDIRECTORY (set by the agent).
set -euo pipefail
version="${PULUMI_VERSION:?}"
if ! [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  echo "##vso[task.logissue type=error]PULUMI_VERSION '$version' is not an exact version (x.y.z)"
  exit 1
fi
archive="pulumi-v${version}-linux-x64.tar.gz"
dest="${AGENT_TOOLSDIRECTORY:?}/pulumi/$version"
if [ ! -x "$dest/pulumi/pulumi" ]; then
  work=$(mktemp -d "${AGENT_TEMPDIRECTORY:?}/pulumi-cli.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  fetch() { curl --fail --silent --show-error --location --retry 3 --max-time 300 --output "$1" "$2"; }
  fetch "$work/$archive" "https://get.pulumi.com/releases/sdk/$archive"
  fetch "$work/checksums.txt" "https://github.com/pulumi/pulumi/releases/download/v${version}/pulumi-${version}-checksums.txt"
  awk -v name="$archive" '$2 == name' "$work/checksums.txt" > "$work/expected.txt"
  if [ "$(wc -l < "$work/expected.txt")" -ne 1 ]; then
    echo "##vso[task.logissue type=error]the checksums of Pulumi $version do not list $archive exactly once"
    exit 1
  fi
  if ! (cd "$work" && sha256sum --check --strict --status expected.txt); then
    echo "##vso[task.logissue type=error]$archive does not match its published SHA-256: not installed"
    exit 1
  fi
  mkdir -p "$dest"
  tar -xzf "$work/$archive" -C "$dest"
fi
installed=$("$dest/pulumi/pulumi" version)
if [ "$installed" != "v$version" ]; then
  echo "##vso[task.logissue type=error]the Pulumi CLI in $dest reports $installed, not v$version"
  exit 1
fi
echo "Pulumi CLI $installed"
echo "##vso[task.prependpath]$dest/pulumi"
