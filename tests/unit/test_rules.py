"""Each rule's validate function, called directly with resource inputs shaped as the engine passes them.

Shapes: the provider schema's property names (camelCase for azuread and azure-native, the Python keys for the
project's dynamic resources), numbers as floats (every number crosses the gRPC wire as a double), values unknown
during preview as ``UNKNOWN``. The context is the real Defra stack of ``stacks/``, as the policy pack loads it.
tests/unit/test_policy_pack*.py send the same shapes through pulumi_policy's own machinery.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from adp_identity.desired import load_stack, stack_context
from adp_identity.rules import RULES, RULES_BY_ID, UNKNOWN, Resource, StackContext, check_all, subject_of
from adp_identity.rules import resources as t
from adp_identity.rules.catalog import privileged_role, secret_scope_problem, service_account_subject_problem
from adp_identity.rules.exceptions import ExceptionSet, parse_exceptions

REPO = Path(__file__).resolve().parents[2]
STACKS = REPO / "stacks"
TENANT = "549741a4-5f5a-45bd-bc5b-930ebc1c669d"
PRD = "https://defra-prd.crm11.dynamics.com"
PRE = "https://defra-pre.crm11.dynamics.com"
PRD_ISSUER = (
    "https://uksouth.oic.prod-aks.azure.com/549741a4-5f5a-45bd-bc5b-930ebc1c669d/a93f1c27-6b58-4e0d-8c14-2f7b9e05d6a3/"
)
DEV_ISSUER = (
    "https://uksouth.oic.prod-aks.azure.com/6fb17b64-ece9-4b43-8acf-99e8d37b19ad/3b1c6f0e-2d4a-4f8e-9a57-0c6e1d2b8f41/"
)
VAULT_ID = (
    "/subscriptions/458a549b-fbd3-4560-93aa-96b106877bed/resourceGroups/PRDADPINFRG1401"
    "/providers/Microsoft.KeyVault/vaults/prdadpinfkv1401"
)
SECRET_KEY = "adp-identity:secret-ffc-pay-web-session-cookie-password"
SECRET_VALUE = "a-value-only-config-holds-7f3a"
TAGS = {
    "ManagedBy": "adp-identity",
    "Restriction": "AUTOMATED CHANGES ONLY",
    "ServiceCode": "ADP",
    "ServiceType": "Dedicated",
    "Environment": "PRD",
    "ServiceName": "ffc-pay-web",
    "Team": "ffc-payments",
}


@pytest.fixture(scope="module")
def context() -> StackContext:
    return stack_context(load_stack(STACKS, "defra"), {SECRET_KEY: SECRET_VALUE})


def check(rule: str, resource: Resource, context: StackContext | None) -> list[str]:
    return RULES_BY_ID[rule].validate(resource, context)


def user(url: str, roles: list[object], **extra: object) -> Resource:
    props = {"environment_url": url, "application_id": UNKNOWN, "security_roles": roles, **extra}
    return Resource(t.APPLICATION_USER, "ffc-pay-web-dataverse-prd", props)


def test_there_are_eight_rules_with_a_message_a_fix_and_types() -> None:
    assert [rule.id for rule in RULES] == [
        "no-password-credentials",
        "certificate-lifetime",
        "no-privileged-role-in-production",
        "application-user-identity-in-tenant",
        "federated-credential-subject",
        "key-vault-secret-from-secret-config",
        "platform-tags",
        "role-assignment-one-secret",
    ]
    for rule in RULES:
        assert rule.title.endswith(".") and rule.fix and rule.why and rule.resource_types
        assert "stacks/policy-exceptions.yaml" in rule.description


# --- no-password-credentials ---------------------------------------------------------------------------------


def test_application_password_and_service_principal_password_are_refused(context: StackContext) -> None:
    password = Resource(
        t.APPLICATION_PASSWORD, "legacy-secret", {"applicationId": "/applications/0f1e", "displayName": "x"}
    )
    sp_password = Resource(t.SERVICE_PRINCIPAL_PASSWORD, "sp-secret", {"servicePrincipalId": "/servicePrincipals/1"})
    assert check("no-password-credentials", password, context) == [
        "ApplicationPassword 'legacy-secret' adds a client secret to an application"
    ]
    assert check("no-password-credentials", sp_password, context) == [
        "ServicePrincipalPassword 'sp-secret' adds a client secret to a service principal"
    ]


def test_an_application_with_a_password_block_is_refused_one_without_passes(context: StackContext) -> None:
    with_password = Resource(
        t.APPLICATION,
        "ffc-pay-batch-app-application",
        {"displayName": "ADP-FFC-PayBatch", "password": {"displayName": "x"}},
    )
    without = Resource(t.APPLICATION, "ffc-pay-batch-app-application", {"displayName": "ADP-FFC-PayBatch"})
    assert check("no-password-credentials", with_password, context) == [
        "application 'ffc-pay-batch-app-application' declares a password credential (its password block)"
    ]
    assert check("no-password-credentials", without, context) == []
    # a password whose contents are not known yet during preview is a password all the same
    unknown = Resource(t.APPLICATION, "a", {"password": UNKNOWN})
    assert len(check("no-password-credentials", unknown, context)) == 1


# --- certificate-lifetime -----------------------------------------------------------------------------------


def certificate(months: object, days: object, type_: str = t.KEY_VAULT_CERTIFICATE) -> Resource:
    props = {
        "vault_url": "https://prdadpinfkv1401.vault.azure.net",
        "certificate_name": "ffc-pay-batch-app-cert",
        "subject": "CN=ADP-FFC-PayBatch",
        "validity_months": months,
        "renew_before_days": days,
    }
    return Resource(type_, "ffc-pay-batch-app-cert", props)


def test_key_vault_certificate_lifetime_and_renewal_window(context: StackContext) -> None:
    assert check("certificate-lifetime", certificate(12.0, 30.0), context) == []
    assert check("certificate-lifetime", certificate(13.0, 30.0), context) == [
        "a certificate valid 13 months; allowed: 1..12 months (certificates are valid at most a year)"
    ]
    assert check("certificate-lifetime", certificate(1.0, 30.0), context) == [
        "renewal 30 days before expiry is not inside the certificate validity (1 month); allowed: 1..27 days"
        " (validity_months x 27, Key Vault's limit)"
    ]
    assert check("certificate-lifetime", certificate(12.5, 30.0), context) == [
        "validity_months 12.5 / renew_before_days 30.0 are not whole numbers"
    ]
    assert check("certificate-lifetime", certificate(UNKNOWN, 30.0), context) == []  # preview: not known yet
    # a plain dynamic resource of the same shape (a program built another way) is held to the same rule
    assert len(check("certificate-lifetime", certificate(24.0, 30.0, t.DYNAMIC_RESOURCE), context)) == 1


def test_application_certificate_valid_at_most_12_months(context: StackContext) -> None:
    def registered(**props: object) -> Resource:
        return Resource(
            t.APPLICATION_CERTIFICATE, "ffc-pay-batch-app-cert-slot-a", {"type": "AsymmetricX509Cert", **props}
        )

    year = registered(startDate="2026-01-31T10:00:00Z", endDate="2027-01-31T10:00:00Z")
    two_years = registered(startDate="2026-01-01T00:00:00Z", endDate="2028-01-01T00:00:00Z")
    assert check("certificate-lifetime", year, context) == []
    assert check("certificate-lifetime", two_years, context) == [
        "certificate valid from 2026-01-01 to 2028-01-01, longer than 12 months"
    ]
    assert check("certificate-lifetime", registered(endDateRelative="8760h"), context) == []
    assert len(check("certificate-lifetime", registered(endDateRelative="17520h"), context)) == 1
    assert check("certificate-lifetime", registered(startDate=UNKNOWN, endDate=UNKNOWN), context) == []


# --- no-privileged-role-in-production -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("System Administrator", "role 'System Administrator' (System Administrator) is privileged"),
        ("system administrator", "role 'system administrator' (System Administrator) is privileged"),
        ("SYSTEM CUSTOMIZER", "role 'SYSTEM CUSTOMIZER' (System Customizer) is privileged"),
        ("System\u00a0Administrator", "role 'System\\u00a0Administrator' holds U+00A0 (NO-BREAK SPACE) at position 7"),
        ("System  Customizer", "role 'System  Customizer' holds two spaces in a row"),
        ("System\tAdministrator", "role 'System\\u0009Administrator' holds U+0009"),
        ("System\u200bAdministrator", "role 'System\\u200bAdministrator' holds U+200B (ZERO WIDTH SPACE)"),
    ],
)
def test_privileged_or_disguised_roles_in_production(context: StackContext, role: str, expected: str) -> None:
    (message,) = check("no-privileged-role-in-production", user(PRD, ["Basic User", role]), context)
    assert message.startswith(expected)


def test_privileged_roles_outside_production_pass_and_undeclared_environments_count_as_production(
    context: StackContext,
) -> None:
    assert check("no-privileged-role-in-production", user(PRE, ["System Administrator"]), context) == []
    assert check("no-privileged-role-in-production", user(PRD, ["FFC Payments Reader"]), context) == []
    (message,) = check(
        "no-privileged-role-in-production", user("https://elsewhere.crm11.dynamics.com", ["System Customizer"]), context
    )
    assert "may not be held in an undeclared environment" in message
    # without the stack's settings: the default list, every environment treated as production
    assert len(check("no-privileged-role-in-production", user(PRE, ["System Customizer"]), None)) == 1
    # a disguised name is refused outside production too: it would also mislead the audit
    assert len(check("no-privileged-role-in-production", user(PRE, ["Basic\u00a0User"]), context)) == 1


def test_privileged_role_comparison_is_the_clients_name_key() -> None:
    assert privileged_role("  system   administrator ", ("System Administrator",)) == "System Administrator"
    assert privileged_role("System Administrators", ("System Administrator",)) is None


# --- application-user-identity-in-tenant ---------------------------------------------------------------------


def test_application_user_in_an_environment_and_tenant_of_the_stack(context: StackContext) -> None:
    rule = "application-user-identity-in-tenant"
    assert check(rule, user(PRD, ["Basic User"], tenant_id=TENANT), context) == []
    (other,) = check(rule, user("https://defradev-dev.crm11.dynamics.com", ["Basic User"]), context)
    assert other.startswith(
        "environment 'https://defradev-dev.crm11.dynamics.com' is not an environment of stack 'defra'"
    )
    (tenant,) = check(rule, user(PRD, ["Basic User"], tenant_id="6fb17b64-ece9-4b43-8acf-99e8d37b19ad"), context)
    assert tenant == f"tenant_id '6fb17b64-ece9-4b43-8acf-99e8d37b19ad' is not the stack's tenant {TENANT}"
    assert check(rule, user(PRD, ["Basic User"]), None)[0].startswith("cannot check")


def test_application_users_are_bound_to_an_identity_of_the_stack(context: StackContext) -> None:
    rule = RULES_BY_ID["application-user-identity-in-tenant"]
    assert rule.validate_stack is not None
    identity = Resource(
        t.USER_ASSIGNED_IDENTITY,
        "ffc-pay-web-identity-mi",
        {"clientId": "0a1b2c3d-0000-4000-8000-000000000001"},
        "urn:mi",
    )
    by_value = Resource(
        t.APPLICATION_USER,
        "ffc-pay-web-dataverse-prd",
        {"environment_url": PRD, "application_id": "0A1B2C3D-0000-4000-8000-000000000001"},
    )
    by_dependency = Resource(
        t.APPLICATION_USER,
        "ffc-pay-web-dataverse-pre",
        {"environment_url": PRE, "application_id": UNKNOWN},
        property_dependencies={"application_id": ("urn:mi",)},
    )
    foreign = Resource(
        t.APPLICATION_USER,
        "ffc-pay-web-dataverse-prd2",
        {"environment_url": PRD, "application_id": "99999999-0000-4000-8000-000000000009"},
    )
    found = rule.validate_stack([identity, by_value, by_dependency, foreign], context)
    assert [(r.name, m.split(":")[0]) for r, m in found] == [
        (
            "ffc-pay-web-dataverse-prd2",
            "application_id '99999999-0000-4000-8000-000000000009' is the client id of no"
            " managed identity or app registration of stack 'defra'",
        )
    ]


# --- federated-credential-subject ---------------------------------------------------------------------------


def credential(subject: object, issuer: object = PRD_ISSUER, audiences: object = None, type_: str = "") -> Resource:
    props = {
        "federatedIdentityCredentialResourceName": "prdadpinfmi1401-ffc-pay-web-fic-0",
        "resourceName": "prdadpinfmi1401-ffc-pay-web",
        "resourceGroupName": "PRDADPINFRG1401",
        "issuer": issuer,
        "subject": subject,
        "audiences": ["api://AzureADTokenExchange"] if audiences is None else audiences,
    }
    return Resource(type_ or t.FEDERATED_IDENTITY_CREDENTIAL, "ffc-pay-web-identity-fic-0", props)


def test_federated_credentials_trust_one_service_account_of_one_of_the_stacks_clusters(context: StackContext) -> None:
    rule = "federated-credential-subject"
    assert check(rule, credential("system:serviceaccount:ffc-pay:ffc-pay-web"), context) == []
    assert check(rule, credential("system:serviceaccount:ffc-pay:*"), context) == [
        "subject 'system:serviceaccount:ffc-pay:*' holds a wildcard: it would trust every matching service account"
    ]
    assert check(rule, credential("repo:DEFRA/adp-identity:ref:refs/heads/main"), context) == [
        "subject 'repo:DEFRA/adp-identity:ref:refs/heads/main' is not"
        " system:serviceaccount:<namespace>:<service account>"
    ]
    (issuer,) = check(rule, credential("system:serviceaccount:ffc-pay:ffc-pay-web", issuer=DEV_ISSUER), context)
    assert issuer.startswith(f"issuer '{DEV_ISSUER[:57]}...' is not the OIDC issuer of a cluster of stack 'defra'")
    assert check(rule, credential("system:serviceaccount:a:b", audiences=["api://other"]), context) == [
        "audiences are api://other, not exactly api://AzureADTokenExchange"
    ]
    assert check(rule, credential(UNKNOWN, issuer=UNKNOWN, audiences=UNKNOWN), context) == []
    app = credential("repo:DEFRA/x:environment:prd", type_=t.APPLICATION_FEDERATED_CREDENTIAL)
    assert len(check(rule, app, context)) == 1
    flexible = Resource(t.APPLICATION_FLEXIBLE_FEDERATED_CREDENTIAL, "flex", {"claimsMatchingExpression": "x"})
    assert check(rule, flexible, context) == [
        "flexible federated credential 'flex' matches subjects by expression (wildcards)"
    ]


def test_subject_predicate_bounds() -> None:
    assert service_account_subject_problem("system:serviceaccount:ns:sa.with.dots") is None
    assert service_account_subject_problem("system:serviceaccount:NS:sa") is not None
    assert service_account_subject_problem("system:serviceaccount:ns:") is not None
    assert service_account_subject_problem("system:serviceaccount:ns:sa?") is not None


# --- key-vault-secret-from-secret-config ---------------------------------------------------------------------


def secret(name: object, value: object) -> Resource:
    props = {
        "secretName": name,
        "vaultName": "prdadpinfkv1401",
        "resourceGroupName": "PRDADPINFRG1401",
        "properties": {"value": value},
        "tags": TAGS,
    }
    return Resource(t.KEY_VAULT_SECRET, "ffc-pay-web-secrets-session-cookie-password", props)


def test_key_vault_secrets_hold_the_secret_config_value_under_a_declared_name(context: StackContext) -> None:
    rule = "key-vault-secret-from-secret-config"
    assert check(rule, secret("ffc-pay-web-session-cookie-password", SECRET_VALUE), context) == []
    (other_value,) = check(rule, secret("ffc-pay-web-session-cookie-password", "typed-in-elsewhere"), context)
    assert other_value == f"its value is not the value of the Pulumi secret config key {SECRET_KEY}"
    assert "typed-in-elsewhere" not in other_value and SECRET_VALUE not in other_value
    undeclared = check(rule, secret("ffc-pay-web-api-key", "x"), context)
    assert undeclared == [
        "Key Vault secret 'ffc-pay-web-api-key' is not <service>-<name> for a secret a service file of stack 'defra'"
        " declares in key_vault_secrets",
        "its value has no encrypted Pulumi config value adp-identity:secret-ffc-pay-web-api-key (a secure: value in"
        " Pulumi.<stack>.yaml)",
    ]
    assert check(rule, secret("ffc-pay-web-session-cookie-password", UNKNOWN), context) == []
    assert check(rule, secret(UNKNOWN, UNKNOWN), context) == []


# --- platform-tags ---------------------------------------------------------------------------------------


def test_taggable_resources_carry_adps_tags(context: StackContext) -> None:
    def identity(tags: object) -> Resource:
        return Resource(t.USER_ASSIGNED_IDENTITY, "ffc-pay-web-identity-mi", {"resourceName": "x", "tags": tags})

    assert check("platform-tags", identity(TAGS), context) == []
    without = {k: v for k, v in TAGS.items() if k not in ("Environment", "ServiceType")}
    assert check("platform-tags", identity(without), context) == [
        "tag Environment is missing; tag ServiceType is missing"
    ]
    assert check("platform-tags", identity({**TAGS, "Restriction": "none"}), context) == [
        "tag Restriction is 'none', not 'AUTOMATED CHANGES ONLY'"
    ]
    untagged = Resource(t.KEY_VAULT_SECRET, "s", {"secretName": "x"})
    assert check("platform-tags", untagged, context) == [
        "tag Environment is missing; tag ManagedBy is missing; tag Restriction is missing; tag ServiceCode is missing;"
        " tag ServiceName is missing; tag ServiceType is missing; tag Team is missing"
    ]
    other_azure = Resource("azure-native:storage:StorageAccount", "sa", {"tags": {"Team": "x"}})
    assert len(check("platform-tags", other_azure, context)) == 1
    not_taggable = Resource(t.FEDERATED_IDENTITY_CREDENTIAL, "f", {"subject": "x"})
    assert check("platform-tags", not_taggable, context) == []
    assert check("platform-tags", identity(UNKNOWN), context) == []


# --- role-assignment-one-secret ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (f"{VAULT_ID}/secrets/ffc-pay-web-session-cookie-password", None),
        (VAULT_ID, "is a whole Key Vault"),
        (f"{VAULT_ID}/", "is a whole Key Vault"),
        (
            "/subscriptions/458a549b-fbd3-4560-93aa-96b106877bed/resourceGroups/PRDADPINFRG1401",
            "is a whole resource group",
        ),
        ("/subscriptions/458a549b-fbd3-4560-93aa-96b106877bed", "is a whole subscription"),
        (f"{VAULT_ID}/secrets/a/versions/1", "is not one Key Vault secret"),
        (f"{VAULT_ID}/keys/a", "is not one Key Vault secret"),
    ],
)
def test_role_assignments_are_scoped_to_one_secret(context: StackContext, scope: str, expected: str | None) -> None:
    assignment = Resource(
        t.ROLE_ASSIGNMENT,
        "ffc-pay-web-secrets-session-cookie-password-reader",
        {"scope": scope, "roleDefinitionId": "x", "principalId": UNKNOWN, "principalType": "ServicePrincipal"},
    )
    messages = check("role-assignment-one-secret", assignment, context)
    if expected is None:
        assert messages == []
        assert secret_scope_problem(scope) is None
    else:
        (message,) = messages
        assert message.endswith(expected)


# --- subjects and exceptions --------------------------------------------------------------------------------


def test_subjects_name_the_service_and_environment(context: StackContext) -> None:
    assert subject_of(user(PRD, []), context) == "ffc-pay-web/prd"
    assert subject_of(Resource(t.ROLE_ASSIGNMENT, "ffc-pay-batch-app-cert-reader", {}), context) == "ffc-pay-batch"
    assert subject_of(Resource(t.APPLICATION_PASSWORD, "legacy-secret", {}), context) == "legacy-secret"
    assert subject_of(Resource(t.APPLICATION_PASSWORD, "legacy-secret", {}), None) == "legacy-secret"


def exceptions_of(entries: list[dict[str, object]], today: dt.date) -> tuple[ExceptionSet, list[str]]:
    found, problems = parse_exceptions(
        {"exceptions": entries},
        lambda path: None,
        today=today,
        rules=[r.id for r in RULES],
        stacks=["defra", "defradev"],
    )
    return found, [f"{p.key_path}: {p.message}" for p in problems]


ENTRY: dict[str, object] = {
    "rule": "no-privileged-role-in-production",
    "stack": "defra",
    "subject": "ffc-pay-web/prd",
    "approved_by": "jane.doe@defra.gov.uk",
    "expires": "2026-09-30",
    "reason": "one-off data migration (ADP-1234)",
}


def test_an_exception_waives_its_rule_for_its_subject_until_it_expires(context: StackContext) -> None:
    today = dt.date(2026, 6, 1)
    found, problems = exceptions_of([ENTRY], today)
    assert problems == []
    privileged = user(PRD, ["System Administrator"])
    (finding,) = [f for f in check_all([privileged], context, found) if f.rule == "no-privileged-role-in-production"]
    assert not finding.reported and finding.waived_by is not None
    assert finding.waived_by.describe() == (
        "approved by jane.doe@defra.gov.uk until 2026-09-30: one-off data migration (ADP-1234)"
    )
    # another environment of the same service, another rule, another stack: not covered
    assert not found.exceptions[0].covers("no-privileged-role-in-production", "defra", "ffc-pay-web/pre")
    assert not found.exceptions[0].covers("platform-tags", "defra", "ffc-pay-web/prd")
    assert not found.exceptions[0].covers("no-privileged-role-in-production", "defradev", "ffc-pay-web/prd")

    expired, problems = exceptions_of([ENTRY], dt.date(2026, 10, 1))
    assert problems == [
        "('exceptions', 0, 'expires'): exception for no-privileged-role-in-production on ffc-pay-web/prd in defra"
        " expired on 2026-09-30"
    ]
    (finding,) = [f for f in check_all([privileged], context, expired) if f.rule == "no-privileged-role-in-production"]
    assert finding.reported and finding.text().endswith("(the exception for ffc-pay-web/prd expired on 2026-09-30)")


def test_exception_entries_are_checked() -> None:
    today = dt.date(2026, 6, 1)
    _, problems = exceptions_of(
        [
            {**ENTRY, "rule": "no-privileged-roles-in-production"},
            {**ENTRY, "approved_by": "the team"},
            {**ENTRY, "expires": "2028-01-01"},
            {**ENTRY, "expires": "30/09/2026"},
            {key: value for key, value in ENTRY.items() if key != "reason"},
            {**ENTRY, "stack": "Defra", "aproved": "x"},
            ENTRY,
            ENTRY,
        ],
        today,
    )
    assert problems == [
        "('exceptions', 0, 'rule'): unknown rule 'no-privileged-roles-in-production', did you mean"
        " 'no-privileged-role-in-production'?",
        "('exceptions', 1, 'approved_by'): 'the team' names nobody",
        "('exceptions', 2, 'expires'): 2028-01-01 is more than a year ahead",
        "('exceptions', 3, 'expires'): '30/09/2026' is not a date",
        "('exceptions', 4, 'reason'): required key is missing",
        "('exceptions', 5, 'aproved'): unknown key, did you mean 'approved_by'?",
        "('exceptions', 5, 'stack'): unknown stack 'Defra', did you mean 'defra'?",
        "('exceptions', 7): the same rule, stack and subject as exceptions[6]",
    ]


def test_the_rules_and_the_desired_state_import_no_pulumi() -> None:
    """One rule set with no engine dependency: importing it (and the loader) loads neither pulumi nor pulumi_policy."""
    import subprocess
    import sys

    code = (
        "import sys, adp_identity.rules, adp_identity.desired, adp_identity.commands.validate\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_policy')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"
