"""Broken desired-state trees, table-driven: each is the real stacks/ tree plus one breakage.

Every case copies the checked-in examples into tmp_path, applies its edits and asserts the exact errors:
file, key path, message and allowed text (and the line where the YAML itself is at fault). The edits assert
that the text they change occurs exactly once, so a change to the examples fails loudly here instead of
silently testing nothing. test_validate_cli.py runs the same table through the command line.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from adp_identity.desired import DesiredStateErrors, load_tree

REPO = Path(__file__).resolve().parents[2]
STACKS = REPO / "stacks"

Edit = Callable[[Path], None]

DEV = "stacks/Pulumi.defradev.yaml"
PROD = "stacks/Pulumi.defra.yaml"
WEB = "stacks/defradev/ffc-pay-web.yaml"
BATCH = "stacks/defradev/ffc-pay-batch.yaml"
AHWR = "stacks/defradev/ahwr-claims.yaml"
PROD_WEB = "stacks/defra/ffc-pay-web.yaml"
TENANT = "config.adp-identity:tenant"
ROLE_NAME = (
    "a Dataverse security role name: 1..100 characters, words separated by single spaces; no tab, no-break space"
    " or invisible character"
)
DNS_LABEL = "a DNS-1123 label: a-z, 0-9 and '-', starting and ending with a letter or digit, at most 63 characters"
DNS_SUBDOMAIN = (
    "a DNS-1123 subdomain: dot-separated labels of a-z, 0-9 and '-', each starting and ending with a letter"
    " or digit, at most 253 characters"
)
KEBAB = "lower-kebab: a-z, 0-9 and single hyphens, starting with a letter, at most 63 characters (e.g. ffc-pay-batch)"
ANCHORS = "plain values; repeat them instead of using anchors"
SECRET_SETTER = "secure: <ciphertext>, written by pulumi config set --secret --stack defradev"
SERVICE_KEYS = "service, team, workload_identity, app_registration, key_vault_secrets, dataverse"
ACCESS_KEYS = "environment, business_unit, security_roles, principal, disabled"
# A small valid service file (the real ffc-pay-web, trimmed); YAML-level cases break a copy of it.
SND2_ISSUER = (
    "https://uksouth.oic.prod-aks.azure.com/6fb17b64-ece9-4b43-8acf-99e8d37b19ad/8e7a2d95-61bf-4c03-b9d4-5f2a7c1e0d36/"
)
WEB_TST = "  - environment: tst\n    business_unit: ffc-payments\n"
PRD_ROLES = "  - environment: prd\n    business_unit: ffc-payments\n    security_roles:\n"
WEB_SECRET_CONFIG = (
    "  adp-identity:secret-ffc-pay-web-session-cookie-password:\n"
    "    secure: AAABAKi1MkkN0krPHGBSGQqr6sF0HUMl5WsZm7vb5tnslZopMsRDM7Z/0AA=\n"
)
SMALL_WEB = "service: ffc-pay-web\nteam: ffc-payments\nkey_vault_secrets:\n  - session-cookie-password\n"


@dataclass(frozen=True)
class Expect:
    file: str
    key_path: str
    message: str
    allowed: str
    line: int | None = None  # asserted when given
    rule: str | None = None  # the platform rule the error enforces (adp_identity.rules)


@dataclass(frozen=True)
class Case:
    id: str
    edits: tuple[Edit, ...]
    expected: tuple[Expect, ...]
    stack: str | None = None
    warning_in_pull_request: bool = False  # an error only with --strict (deploy); a warning in a pull request


def replace(rel: str, old: str, new: str) -> Edit:
    def edit(root: Path) -> None:
        path = root / rel
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{rel}: {old!r} occurs {text.count(old)} times; update this case"
        path.write_text(text.replace(old, new), encoding="utf-8")

    return edit


def write(rel: str, data: str | bytes) -> Edit:
    def edit(root: Path) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)

    return edit


def make_tree(tmp_path: Path, edits: tuple[Edit, ...]) -> Path:
    shutil.copytree(STACKS, tmp_path / "stacks")
    for edit in edits:
        edit(tmp_path)
    return tmp_path / "stacks"


BILLION_LAUGHS = (
    "\n".join(
        ["service: ffc-pay-web", 'lol0: &l0 "lol"']
        + [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    )
    + "\n"
)

CASES: tuple[Case, ...] = (
    # --- YAML itself -------------------------------------------------------------------------------------
    Case(
        "malformed-yaml",
        (write(WEB, "service: ffc-pay-web\nteam: [ffc-payments\nkey_vault_secrets:\n  - session-cookie-password\n"),),
        (Expect(WEB, "(document)", "YAML syntax error: expected ',' or ']', but got ':'", "well-formed YAML", 3),),
    ),
    Case(
        "duplicate-key",
        (write(WEB, SMALL_WEB + "team: ffc-payments-two\n"),),
        (Expect(WEB, "team", "duplicate key 'team' (first at line 2)", "each key once per mapping", 5),),
    ),
    Case(
        "tab-in-indentation",
        (write(WEB, SMALL_WEB.replace("  - session", "\t- session")),),
        (Expect(WEB, "(document)", "tab character in indentation", "spaces for indentation", 4),),
    ),
    Case(
        "empty-file",
        (write(WEB, "# yaml-language-server: $schema=../../schemas/service.schema.json\n\n"),),
        (Expect(WEB, "(document)", "file is empty", "a YAML mapping of keys", 1),),
    ),
    Case(
        "binary-file",
        (write(WEB, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),),
        (Expect(WEB, "(document)", "binary file (NUL byte)", "UTF-8 YAML text", 3),),
    ),
    Case(
        "invalid-utf8",
        (write(WEB, b"service: ffc-pay-web\nteam: ffc-paym\xe9nts\n"),),
        (Expect(WEB, "(document)", "invalid UTF-8 (byte 0xe9)", "UTF-8 YAML text", 2),),
    ),
    Case(
        "alias-bomb",
        (write(WEB, BILLION_LAUGHS),),
        (Expect(WEB, "(document)", "anchor '&l0' (anchors and aliases are refused)", ANCHORS, 2),),
    ),
    Case(
        "alias",
        (write(WEB, SMALL_WEB.replace("team: ffc-payments", "team: *team")),),
        (Expect(WEB, "(document)", "alias '*team' (anchors and aliases are refused)", ANCHORS, 2),),
    ),
    Case(
        "oversized-file",
        (write(WEB, SMALL_WEB + ("# padding" + " " * 90 + "\n") * 3000),),
        (Expect(WEB, "(document)", "file is larger than 256 KiB (300087 bytes)", "at most 256 KiB"),),
    ),
    Case(
        "top-level-list",
        (write(WEB, "- service: ffc-pay-web\n- team: ffc-payments\n"),),
        (Expect(WEB, "(document)", "top level is a list, not a mapping", "a YAML mapping of keys", 1),),
    ),
    Case(
        "explicit-tag",
        (write(WEB, SMALL_WEB.replace("team: ffc-payments", "team: !!str ffc-payments")),),
        (Expect(WEB, "(document)", "explicit tag 'tag:yaml.org,2002:str'", "plain, untagged values", 2),),
    ),
    Case(
        "two-documents",
        (write(WEB, SMALL_WEB + "---\nservice: other\n"),),
        (
            Expect(
                WEB,
                "(document)",
                "YAML syntax error: expected a single document in the stream, but found another document",
                "well-formed YAML",
                5,
            ),
        ),
    ),
    # --- one service file against the schema -------------------------------------------------------------
    Case(
        "unknown-key-with-suggestion",
        (
            replace(
                WEB,
                "  - environment: tst\n    business_unit: ffc-payments\n    security_roles:",
                "  - environment: tst\n    business_unit: ffc-payments\n    security_role:",
            ),
        ),
        (
            Expect(
                WEB,
                "dataverse[1].security_roles",
                "required key is missing: add `security_roles: [<role>, ...]`",
                "Security role names (of that business unit), at least one.",
            ),
            Expect(WEB, "dataverse[1].security_role", "unknown key, did you mean 'security_roles'?", ACCESS_KEYS),
        ),
    ),
    Case(
        "unknown-top-level-key",
        (replace(WEB, "team: ffc-payments\n", "team: ffc-payments\nowner: ffc-payments\n"),),
        (Expect(WEB, "owner", "unknown key", SERVICE_KEYS, 5),),
    ),
    Case(
        "missing-required-key",
        (replace(WEB, "team: ffc-payments\n", ""),),
        (Expect(WEB, "team", "required key is missing: add `team: <owning team>`", KEBAB),),
    ),
    Case(
        "number-instead-of-string",
        (replace(WEB, "team: ffc-payments", "team: 42"),),
        (Expect(WEB, "team", "expected a string, got a number 42", KEBAB, 4),),
    ),
    Case(
        "yes-is-not-a-boolean",
        (replace(AHWR, "disabled: true", "disabled: yes"),),
        (
            Expect(
                AHWR,
                "dataverse[1].disabled",
                "expected true or false, got a string 'yes'",
                "true or false",
            ),
        ),
    ),
    Case(
        "list-instead-of-mapping",
        (replace(WEB, "workload_identity:\n  federations:", "workload_identity:\n  - federations:"),),
        (
            Expect(
                WEB,
                "workload_identity",
                "expected a mapping, got a list",
                "a mapping",
            ),
        ),
    ),
    Case(
        "bad-namespace",
        (replace(AHWR, "namespace: ahwr", "namespace: AHWR_Claims"),),
        (
            Expect(
                AHWR,
                "workload_identity.federations[0].namespace",
                "'AHWR_Claims' is not a Kubernetes namespace (DNS-1123 label); did you mean 'ahwr-claims'?",
                DNS_LABEL,
            ),
        ),
    ),
    Case(
        "namespace-too-long",
        (replace(AHWR, "namespace: ahwr", "namespace: " + "a" * 64),),
        (
            Expect(
                AHWR,
                "workload_identity.federations[0].namespace",
                f"'{'a' * 57}...' is longer than 63 characters",
                DNS_LABEL,
            ),
        ),
    ),
    Case(
        "bad-service-account",
        (replace(AHWR, "service_account: ahwr-claims", "service_account: ahwr-claims-"),),
        (
            Expect(
                AHWR,
                "workload_identity.federations[0].service_account",
                "'ahwr-claims-' is not a Kubernetes service account name (DNS-1123 subdomain); did you mean"
                " 'ahwr-claims'?",
                DNS_SUBDOMAIN,
            ),
        ),
    ),
    Case(
        "validity-over-12-months",
        (replace(BATCH, "validity_months: 6", "validity_months: 13"),),
        (
            Expect(
                BATCH,
                "app_registration.certificate.validity_months",
                "a certificate valid 13 months",
                "1..12 months (certificates are valid at most a year)",
                rule="certificate-lifetime",
            ),
        ),
    ),
    Case(
        "renewal-window-not-inside-validity",
        (replace(BATCH, "validity_months: 6", "validity_months: 1"),),
        (
            Expect(
                BATCH,
                "app_registration.certificate.renew_before_days",
                "renewal 30 days before expiry is not inside the certificate validity (1 month)",
                "1..27 days (validity_months x 27, Key Vault's limit)",
                rule="certificate-lifetime",
            ),
        ),
    ),
    Case(
        "empty-security-roles",
        (
            replace(
                WEB,
                WEB_TST + "    security_roles:\n      - Basic User\n      - FFC Payments Reader\n",
                WEB_TST + "    security_roles: []\n",
            ),
        ),
        (
            Expect(
                WEB,
                "dataverse[1].security_roles",
                "must not be empty",
                "Security role names (of that business unit), at least one.",
            ),
        ),
    ),
    Case(
        "role-with-surrounding-spaces",
        (
            replace(
                WEB,
                "  - environment: tst\n    business_unit: ffc-payments\n    security_roles:\n      - Basic User",
                "  - environment: tst\n    business_unit: ffc-payments\n    security_roles:\n      - ' Basic User'",
            ),
        ),
        (Expect(WEB, "dataverse[1].security_roles[0]", "' Basic User' has leading or trailing spaces", ROLE_NAME),),
    ),
    Case(
        "bad-principal",
        (
            replace(
                BATCH,
                "      - FFC Payments Writer\n    principal: app_registration\n  - environment: tst",
                "      - FFC Payments Writer\n    principal: service_principal\n  - environment: tst",
            ),
        ),
        (
            Expect(
                BATCH,
                "dataverse[0].principal",
                "'service_principal' is not allowed",
                "'managed_identity' or 'app_registration'",
            ),
        ),
    ),
    Case(
        "bad-secret-name",
        (replace(WEB, "  - session-cookie-password", "  - Session_Cookie"),),
        (
            Expect(
                WEB,
                "key_vault_secrets[0]",
                "'Session_Cookie' is not a lower-kebab name; did you mean 'session-cookie'?",
                KEBAB,
            ),
        ),
    ),
    # --- a service against its stack and its neighbours ---------------------------------------------------
    Case(
        "unknown-environment",
        (replace(WEB, "  - environment: tst", "  - environment: uat"),),
        (
            Expect(
                WEB,
                "dataverse[1].environment",
                "unknown Dataverse environment 'uat'",
                "environments of stack 'defradev': dev, tst",
            ),
        ),
    ),
    Case(
        "same-environment-twice",
        (replace(WEB, "  - environment: tst", "  - environment: dev"),),
        (
            Expect(
                WEB,
                "dataverse[1].environment",
                "environment 'dev' already has an entry: dataverse[0]",
                "one entry per environment",
            ),
        ),
    ),
    Case(
        "role-listed-twice",
        (
            replace(
                WEB, "      - FFC Payments Reader\n  - environment: tst", "      - basic user\n  - environment: tst"
            ),
        ),
        (Expect(WEB, "dataverse[0].security_roles[1]", "role 'basic user' is listed twice", "each role once"),),
    ),
    Case(
        "name-does-not-match-file",
        (replace(WEB, "service: ffc-pay-web", "service: ffc-pay-website"),),
        (
            Expect(
                WEB,
                "service",
                "'ffc-pay-website' does not match the file name 'ffc-pay-web.yaml'",
                "'ffc-pay-web' (the file name without .yaml)",
            ),
        ),
    ),
    Case(
        "duplicate-service",
        (write("stacks/defradev/ffc-pay-web-v2.yaml", "service: ffc-pay-web\nteam: ffc-payments\n"),),
        (
            Expect(
                "stacks/defradev/ffc-pay-web-v2.yaml",
                "service",
                f"service 'ffc-pay-web' is already declared in {WEB}",
                "one file per service",
            ),
            Expect(
                "stacks/defradev/ffc-pay-web-v2.yaml",
                "service",
                "'ffc-pay-web' does not match the file name 'ffc-pay-web-v2.yaml'",
                "'ffc-pay-web-v2' (the file name without .yaml)",
            ),
        ),
    ),
    Case(
        "app-registration-principal-without-app-registration",
        (
            replace(
                WEB,
                "      - FFC Payments Reader\n  - environment: tst",
                "      - FFC Payments Reader\n    principal: app_registration\n  - environment: tst",
            ),
        ),
        (
            Expect(
                WEB,
                "dataverse[0].principal",
                "app_registration, but the service declares no app_registration: the application user would be"
                " bound to an identity the stack does not declare",
                "managed_identity, or add an app_registration block to the service",
                rule="application-user-identity-in-tenant",
            ),
        ),
    ),
    Case(
        "forbidden-role-in-production",
        (
            replace(
                PROD_WEB,
                PRD_ROLES + "      - Basic User",
                PRD_ROLES + "      - System Administrator",
            ),
        ),
        (
            Expect(
                PROD_WEB,
                "dataverse[1].security_roles[0]",
                "role 'System Administrator' is forbidden in production environment 'prd'",
                "roles other than System Administrator, System Customizer (policy.forbidden_roles_in_production)",
                rule="no-privileged-role-in-production",
            ),
        ),
    ),
    Case(
        "unknown-cluster",
        (replace(AHWR, "        - DEVADPINFAK1401", "        - DEVADPINFAK1409"),),
        (
            Expect(
                AHWR,
                "workload_identity.federations[0].clusters[1]",
                "unknown AKS cluster 'DEVADPINFAK1409': no issuer of stack 'defradev' would trust it; did you mean"
                " 'DEVADPINFAK1401'?",
                "clusters of stack 'defradev': SNDADPINFAK1401, SNDADPINFAK1402, DEVADPINFAK1401",
                rule="federated-credential-subject",
            ),
        ),
    ),
    Case(
        "app-config-federation-declared-twice",
        (
            replace(
                WEB,
                "      service_account: ffc-pay-web\n",
                "      service_account: ffc-pay-web\n"
                "    - namespace: app-config-service\n      service_account: az-appconfig-k8s-provider\n",
            ),
        ),
        (
            Expect(
                WEB,
                "workload_identity.federations[1]",
                "'app-config-service/az-appconfig-k8s-provider' is already federated by app_config_provider: true",
                "remove this entry, or set app_config_provider: false",
            ),
        ),
    ),
    Case(
        "too-many-federated-credentials",
        (
            replace(
                WEB,
                "      service_account: ffc-pay-web\n",
                "      service_account: ffc-pay-web\n"
                + "".join(f"    - namespace: ffc-pay\n      service_account: ffc-pay-web-{i}\n" for i in range(6)),
            ),
        ),
        (
            Expect(
                WEB,
                "workload_identity",
                "24 federated credentials (service accounts x clusters)",
                "at most 20 per managed identity (Entra limit)",
            ),
        ),
    ),
    Case(
        "secret-without-secure-config",
        (
            replace(
                DEV,
                WEB_SECRET_CONFIG,
                "",
            ),
        ),
        (
            Expect(
                WEB,
                "key_vault_secrets[0]",
                f"no secure config value 'adp-identity:secret-ffc-pay-web-session-cookie-password' in {DEV} yet:"
                " the platform team (or the pipeline's deployer) sets it on this branch, and deploy (validate"
                " --strict) refuses the tree until then",
                "an encrypted value, set with `pulumi config set --secret --stack defradev"
                " secret-ffc-pay-web-session-cookie-password`",
                rule="key-vault-secret-from-secret-config",
            ),
        ),
        warning_in_pull_request=True,
    ),
    Case(
        "plaintext-secret",
        (
            replace(
                DEV,
                WEB_SECRET_CONFIG,
                "  adp-identity:secret-ffc-pay-web-session-cookie-password: correct-horse-battery-staple\n",
            ),
        ),
        (
            Expect(
                DEV,
                "config.adp-identity:secret-ffc-pay-web-session-cookie-password",
                "plaintext value; secret values must be encrypted",
                f"{SECRET_SETTER} secret-ffc-pay-web-session-cookie-password",
                rule="key-vault-secret-from-secret-config",
            ),
        ),
    ),
    Case(
        "secret-config-nobody-declares",
        (
            replace(
                DEV,
                "  adp-identity:secret-ahwr-claims-notify-api-key:",
                "  adp-identity:secret-ahwr-claims-sms-api-key:\n    secure: AAABAHL39L/0H98ql7y4ADXMomR5\n"
                "  adp-identity:secret-ahwr-claims-notify-api-key:",
            ),
        ),
        (
            Expect(
                DEV,
                "config.adp-identity:secret-ahwr-claims-sms-api-key",
                "no service declares this secret; did you mean 'adp-identity:secret-ahwr-claims-notify-api-key'?",
                "secret-<service>-<name> for a name listed in that service's key_vault_secrets",
            ),
        ),
    ),
    # --- stack settings ----------------------------------------------------------------------------------
    Case(
        "bad-guid",
        (
            replace(
                DEV,
                "    tenant_id: 6fb17b64-ece9-4b43-8acf-99e8d37b19ad",
                "    tenant_id: 6fb17b64-ece9-4b43-8acf-99e8d37b19zz",
            ),
        ),
        (
            Expect(
                DEV,
                f"{TENANT}.tenant_id",
                "'6fb17b64-ece9-4b43-8acf-99e8d37b19zz' is not a GUID",
                "a GUID like 3f2b9c4e-8a51-4d7e-9b0a-6c1d2e3f4a5b",
                11,
            ),
        ),
    ),
    Case(
        "http-dataverse-url",
        (replace(DEV, "url: https://defradev-tst.crm11.dynamics.com", "url: http://defradev-tst.crm11.dynamics.com"),),
        (
            Expect(
                DEV,
                f"{TENANT}.dataverse_environments.tst.url",
                "'http://defradev-tst.crm11.dynamics.com' uses http, not https",
                "https://<org>.crm<N>.dynamics.com (the origin only, no path), or a loopback https origin for the"
                " local emulator",
            ),
        ),
    ),
    Case(
        "http-oidc-issuer",
        (replace(DEV, f"SNDADPINFAK1402: {SND2_ISSUER}", f"SNDADPINFAK1402: {SND2_ISSUER.replace('https', 'http')}"),),
        (
            Expect(
                DEV,
                f"{TENANT}.aks_clusters.SNDADPINFAK1402",
                f"'{SND2_ISSUER.replace('https', 'http')[:57]}...' uses http, not https",
                "an https URL without query or fragment (an AKS OIDC issuer URL)",
            ),
        ),
    ),
    Case(
        "bad-tenant-name",
        (replace(DEV, "    name: DefraDev", "    name: DefraDevelopment"),),
        (Expect(DEV, f"{TENANT}.name", "'DefraDevelopment' is not allowed", "'Defra' or 'DefraDev'", 10),),
    ),
    Case(
        "region-id-not-quoted",
        (replace(DEV, 'region_id: "14"', "region_id: 14"),),
        (
            Expect(
                DEV,
                f"{TENANT}.naming.region_id",
                "expected a string, got a number 14",
                "two digits in quotes (e.g. '14'); a bare 14 is a number, not text",
            ),
        ),
    ),
    Case(
        "production-flag-missing",
        (
            replace(
                DEV,
                "      tst:\n        url: https://defradev-tst.crm11.dynamics.com\n        production: false\n",
                "      tst:\n        url: https://defradev-tst.crm11.dynamics.com\n",
            ),
        ),
        (
            Expect(
                DEV,
                f"{TENANT}.dataverse_environments.tst.production",
                "required key is missing",
                "true for production environments: the policy's forbidden roles apply there.",
            ),
        ),
    ),
    Case(
        "key-vault-uri-of-another-vault",
        (replace(DEV, "uri: https://sndadpinfkv1401.vault.azure.net", "uri: https://sndadpinfkv1402.vault.azure.net"),),
        (
            Expect(
                DEV,
                f"{TENANT}.key_vault.uri",
                "'https://sndadpinfkv1402.vault.azure.net' is not the URI of Key Vault 'sndadpinfkv1401'",
                "https://sndadpinfkv1401.vault.azure.net, or a loopback origin for the local emulator",
            ),
        ),
    ),
    Case(
        "missing-tenant-settings-key",
        (replace(DEV, "  adp-identity:tenant:\n", "  adp-identity:tenants:\n"),),
        (
            Expect(
                DEV,
                "config.adp-identity:tenants",
                "unknown config key, did you mean 'adp-identity:tenant'?",
                "adp-identity:tenant, adp-identity:secret-<service>-<name>",
            ),
            Expect(
                DEV,
                f"{TENANT}",
                "required key is missing",
                "the tenant settings mapping (schemas/tenant-settings.schema.json)",
            ),
        ),
    ),
    Case(
        "provider-location-disagrees",
        (replace(DEV, "  azure-native:location: uksouth", "  azure-native:location: ukwest"),),
        (
            Expect(
                DEV,
                "config.azure-native:location",
                "'ukwest' differs from adp-identity:tenant location 'uksouth'",
                "'uksouth', or remove the key",
                6,
            ),
        ),
    ),
    Case(
        "unknown-stack-file-key",
        (
            replace(
                DEV,
                "config:\n",
                "secretprovider: azurekeyvault://sndadpinfkv1401.vault.azure.net/keys/pulumi\nconfig:\n",
            ),
        ),
        (
            Expect(
                DEV,
                "secretprovider",
                "unknown key, did you mean 'secretsprovider'?",
                "config, secretsprovider, encryptedkey, encryptionsalt, environment",
                5,
            ),
        ),
    ),
    # --- the tree ----------------------------------------------------------------------------------------
    Case(
        "unknown-stack",
        (),
        (
            Expect(
                "stacks/Pulumi.production.yaml",
                "(document)",
                "unknown stack 'production' (no such stack settings file)",
                "stacks: defra, defradev",
            ),
        ),
        stack="production",
    ),
    Case(
        "service-directory-without-stack",
        (write("stacks/defratest/ffc-pay-web.yaml", SMALL_WEB),),
        (
            Expect(
                "stacks/defratest/",
                "(document)",
                "service directory without a stack settings file stacks/Pulumi.defratest.yaml",
                "stacks: defra, defradev",
            ),
        ),
    ),
    Case(
        "yml-extension",
        (write("stacks/defradev/ffc-pay-admin.yml", "service: ffc-pay-admin\nteam: ffc-payments\n"),),
        (Expect("stacks/defradev/ffc-pay-admin.yml", "(document)", "service file ends in .yml", "<service>.yaml"),),
    ),
)


def test_there_are_at_least_30_distinct_cases() -> None:
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_broken_tree_is_refused_with_exactly_the_expected_errors(case: Case, tmp_path: Path) -> None:
    stacks = make_tree(tmp_path, case.edits)
    with pytest.raises(DesiredStateErrors) as raised:
        load_tree(stacks, case.stack)
    errors = raised.value.errors
    assert [(e.file, e.key_path, e.message, e.allowed, e.rule) for e in errors] == [
        (x.file, x.key_path, x.message, x.allowed, x.rule) for x in case.expected
    ]
    for error, expected in zip(errors, case.expected, strict=True):
        if expected.line is not None:
            assert error.line == expected.line
        rendered = str(error)
        assert "\n" not in rendered
        where = f"{error.file}:{error.line}" if error.line else error.file
        rule = f" [rule {error.rule}]" if error.rule else ""
        assert rendered == f"{where}: {error.key_path}: {error.message}; allowed: {error.allowed}{rule}"
    assert str(raised.value).splitlines() == [str(e) for e in errors]


def test_plaintext_secret_value_never_appears_in_errors(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == "plaintext-secret")
    stacks = make_tree(tmp_path, case.edits)
    with pytest.raises(DesiredStateErrors) as raised:
        load_tree(stacks)
    assert "correct-horse-battery-staple" not in str(raised.value)
