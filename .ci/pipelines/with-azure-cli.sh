#!/usr/bin/env bash
# Azure DevOps: run one of these scripts inside the AzureCLI@2 task, signed in as the task's service connection.
#
# The service connections use workload identity federation: the task exchanges the pipeline's OIDC token for an
# Entra token and signs the Azure CLI in; no secret exists anywhere. The federated token itself lives minutes
# (AADSTS700024 after that), and refreshing it needs System.AccessToken, which these jobs never get; so every tool
# signs in through the Azure CLI session instead, which the task keeps alive (keepAzSessionActive):
#   azure-identity (the Dataverse and Key Vault providers, adp-identity plan/audit) and the Pulumi CLI's Go SDK
#   (azblob state, azurekeyvault secrets) through AZURE_TOKEN_CREDENTIALS=AzureCliCredential;
#   the azure-native and azuread providers through their Azure CLI authentication (no ARM_* credential set).
# The task's own variables (AZURE_CONFIG_DIR) keep the session private to this step.
# Usage: with-azure-cli.sh <script in .ci/pipelines> [arguments...]
set -euo pipefail
script="${1:?usage: with-azure-cli.sh <script> [arguments...]}"
shift
case "$script" in
  */* | "") echo "with-azure-cli.sh: '$script' is not a script of .ci/pipelines" >&2; exit 2 ;;
esac
for variable in ARM_USE_OIDC ARM_OIDC_TOKEN ARM_OIDC_TOKEN_FILE_PATH ARM_CLIENT_SECRET AZURE_CLIENT_SECRET \
  AZURE_FEDERATED_TOKEN_FILE idToken servicePrincipalKey; do
  unset "$variable"
done
export AZURE_TOKEN_CREDENTIALS=AzureCliCredential
: "${PULUMI_BACKEND_URL:?the stack's variable group must set PULUMI_BACKEND_URL (azblob://pulumi-state)}"
: "${AZURE_STORAGE_ACCOUNT:?the stack's variable group must set AZURE_STORAGE_ACCOUNT}"
exec "$(dirname "$0")/$script" "$@"
