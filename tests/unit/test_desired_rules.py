"""The platform rules on the validate front end: what each one refuses in the service files, before any resource.

The same rules as the CrossGuard policy pack (adp_identity.rules; tests/unit/test_policy_pack.py fires each one
through pulumi_policy). Here each fires from the files a team writes, with its rule id on the line; the tests on
disguised names fail on the code before issue 10 (which compared with casefold and accepted any printable name).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from adp_identity.desired import check_tree, load_tree
from adp_identity.desired.errors import DesiredStateError

from .test_desired_cases import AHWR, BATCH, DEV, PROD, PROD_WEB, WEB, make_tree, replace, write

PRD_ROLES = "  - environment: prd\n    business_unit: ffc-payments\n    security_roles:\n      - Basic User\n"
TODAY = dt.date(2026, 6, 1)


def findings(tmp_path: Path, *edits: object, strict: bool = True) -> list[DesiredStateError]:
    report = check_tree(make_tree(tmp_path, tuple(edits)), strict=strict, today=TODAY)  # type: ignore[arg-type]
    return report.errors


def one(tmp_path: Path, *edits: object) -> DesiredStateError:
    (error,) = findings(tmp_path, *edits)
    return error


def prd_role(role: str) -> object:
    return replace(
        PROD_WEB, PRD_ROLES, PRD_ROLES.replace("      - Basic User\n", f"      - Basic User\n      - {role}\n")
    )


# --- names compared one way (issue 10, High) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_role", "reason"),
    [
        ('"System\\u00a0Administrator"', "'System\\u00a0Administrator' holds U+00A0 (NO-BREAK SPACE) at position 7"),
        ("System  Customizer", "'System  Customizer' holds two spaces in a row"),
        ('"System\\tAdministrator"', "'System\\u0009Administrator' holds U+0009 (Cc) at position 7"),
        ('"System\\u200bAdministrator"', "'System\\u200bAdministrator' holds U+200B (ZERO WIDTH SPACE) at position 7"),
    ],
    ids=["no-break-space", "two-spaces", "tab", "zero-width-space"],
)
def test_disguised_role_names_are_refused(tmp_path: Path, yaml_role: str, reason: str) -> None:
    error = one(tmp_path, prd_role(yaml_role))
    assert (error.file, error.key_path, error.message) == (PROD_WEB, "dataverse[1].security_roles[1]", reason)
    assert "no tab, no-break space or invisible character" in error.allowed
    assert "\u00a0" not in str(error) and "\u200b" not in str(error) and "\t" not in str(error)


def test_a_disguised_business_unit_name_is_refused(tmp_path: Path) -> None:
    dev = "  - environment: dev\n    business_unit: "
    error = one(tmp_path, replace(WEB, dev + "ffc-payments", dev + '"ffc\\u2007payments"'))
    assert error.key_path == "dataverse[0].business_unit"
    assert error.message == "'ffc\\u2007payments' holds U+2007 (FIGURE SPACE) at position 4"


@pytest.mark.parametrize("role", ["system administrator", "SYSTEM CUSTOMIZER", "System Administrator"])
def test_a_privileged_role_in_any_case_is_caught_by_the_production_policy(tmp_path: Path, role: str) -> None:
    error = one(tmp_path, prd_role(role))
    assert (error.key_path, error.message, error.rule) == (
        "dataverse[1].security_roles[1]",
        f"role '{role}' is forbidden in production environment 'prd'",
        "no-privileged-role-in-production",
    )
    assert error.subject == "ffc-pay-web/prd" and error.waivable


def test_an_unknown_environment_no_longer_hides_the_policy(tmp_path: Path) -> None:
    edit = replace(
        PROD_WEB,
        PRD_ROLES,
        PRD_ROLES.replace("environment: prd", "environment: prod").replace("Basic User", "System Administrator"),
    )
    assert [(e.key_path, e.message) for e in findings(tmp_path, edit)] == [
        ("dataverse[1].environment", "unknown Dataverse environment 'prod'; did you mean 'prd'?"),
        (
            "dataverse[1].security_roles[0]",
            "role 'System Administrator' is forbidden in environment 'prod', which the stack does not declare"
            " (treated as production)",
        ),
    ]


# --- every rule fires in validate -------------------------------------------------------------------------------


def test_no_password_credentials(tmp_path: Path) -> None:
    errors = findings(
        tmp_path,
        replace(BATCH, "app_registration:\n", "app_registration:\n  client_secret: true\n"),
        replace(WEB, "team: ffc-payments\n", "team: ffc-payments\npassword: rotate-me\n"),
    )
    assert [(e.file, e.key_path, e.rule) for e in errors] == [
        (BATCH, "app_registration.client_secret", "no-password-credentials"),
        (WEB, "password", "no-password-credentials"),
    ]
    assert errors[0].message.startswith("a password credential (client secret) for the app registration")
    assert "rotate-me" not in str(errors[1])
    assert not errors[0].waivable  # the program never creates a password: no exception can add one


def test_certificate_lifetime(tmp_path: Path) -> None:
    error = one(tmp_path, replace(BATCH, "validity_months: 6", "validity_months: 24"))
    assert (error.key_path, error.rule) == ("app_registration.certificate.validity_months", "certificate-lifetime")


def test_application_user_identity_in_tenant(tmp_path: Path) -> None:
    dev = "  - environment: dev\n"
    error = one(tmp_path, replace(WEB, dev, dev + "    principal: app_registration\n"))
    assert (error.key_path, error.rule) == ("dataverse[0].principal", "application-user-identity-in-tenant")
    # an environment of one tenant declared in the other tenant's stack
    (tmp_path / "cross").mkdir()
    cross = one(
        tmp_path / "cross",
        replace(DEV, "url: https://defradev-tst.crm11.dynamics.com", "url: https://defra-prd.crm11.dynamics.com"),
    )
    assert (cross.file, cross.key_path, cross.rule) == (
        DEV,
        "config.adp-identity:tenant.dataverse_environments.tst.url",
        "application-user-identity-in-tenant",
    )
    assert cross.message.startswith("https://defra-prd.crm11.dynamics.com is also environment 'prd' of stack 'defra'")


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("namespace: ahwr", "namespace: '*'", "workload_identity.federations[0].namespace"),
        (
            "service_account: ahwr-claims\n",
            "service_account: ahwr-*\n",
            "workload_identity.federations[0].service_account",
        ),
        ("        - DEVADPINFAK1401", "        - PRDADPINFAK1401", "workload_identity.federations[0].clusters[1]"),
    ],
    ids=["wildcard-namespace", "wildcard-service-account", "cluster-of-another-stack"],
)
def test_federated_credential_subject(tmp_path: Path, old: str, new: str, key: str) -> None:
    error = one(tmp_path, replace(AHWR, old, new))
    assert (error.key_path, error.rule, error.waivable) == (key, "federated-credential-subject", False)


def test_key_vault_secret_from_secret_config(tmp_path: Path) -> None:
    error = one(
        tmp_path,
        replace(
            PROD,
            "  adp-identity:secret-ffc-pay-web-session-cookie-password:\n    secure: ",
            "  adp-identity:secret-ffc-pay-web-session-cookie-password:\n    plain: ",
        ),
    )
    assert (error.file, error.message, error.rule) == (
        PROD,
        "expected a mapping 'secure: <ciphertext>'",
        "key-vault-secret-from-secret-config",
    )


def test_platform_tags(tmp_path: Path) -> None:
    error = one(tmp_path, replace(PROD, "      Environment: PRD\n", ""))
    assert (error.file, error.key_path, error.rule, error.subject) == (
        PROD,
        "config.adp-identity:tenant.tags",
        "platform-tags",
        "*",
    )
    assert error.message == "tag Environment is missing (every Azure resource of the stack carries these tags)"


def test_role_assignment_one_secret(tmp_path: Path) -> None:
    error = one(tmp_path, replace(WEB, "  - session-cookie-password", "  - '*'"))
    assert (error.key_path, error.rule) == ("key_vault_secrets[0]", "role-assignment-one-secret")
    assert (
        error.message == "'*' holds a wildcard: access is granted to one secret at a time, never to the whole Key Vault"
    )


# --- secrets in a team's pull request (issue 11 §3) ----------------------------------------------------------


def test_a_declared_secret_without_its_value_is_a_warning_unless_strict(tmp_path: Path) -> None:
    value = (
        "  adp-identity:secret-ffc-pay-web-session-cookie-password:\n"
        "    secure: AAABAKi1MkkN0krPHGBSGQqr6sF0HUMl5WsZm7vb5tnslZopMsRDM7Z/0AA=\n"
    )
    stacks = make_tree(tmp_path, (replace(DEV, value, ""),))
    relaxed = check_tree(stacks, today=TODAY)
    assert relaxed.errors == [] and sorted(relaxed.states) == ["defra", "defradev"]
    (warning,) = relaxed.warnings
    assert warning.severity == "warning" and warning.rule == "key-vault-secret-from-secret-config"
    assert str(warning) == (
        f"{WEB}:10: key_vault_secrets[0]: warning: no secure config value"
        " 'adp-identity:secret-ffc-pay-web-session-cookie-password' in stacks/Pulumi.defradev.yaml yet: the platform"
        " team (or the pipeline's deployer) sets it on this branch, and deploy (validate --strict) refuses the tree"
        " until then; allowed: an encrypted value, set with `pulumi config set --secret --stack defradev"
        " secret-ffc-pay-web-session-cookie-password` [rule key-vault-secret-from-secret-config]"
    )
    strict = check_tree(stacks, strict=True, today=TODAY)
    assert [e.severity for e in strict.errors] == ["error"] and strict.warnings == []
    assert "defradev" not in strict.states


# --- exceptions -------------------------------------------------------------------------------------------


def _exception(
    expires: str, subject: str = "ffc-pay-web/prd", rule: str = "no-privileged-role-in-production"
) -> object:
    return write(
        "stacks/policy-exceptions.yaml",
        "exceptions:\n"
        f"  - rule: {rule}\n"
        "    stack: defra\n"
        f"    subject: {subject}\n"
        "    approved_by: jane.doe@defra.gov.uk\n"
        f"    expires: {expires}\n"
        "    reason: one-off data migration (ADP-1234)\n",
    )


def test_an_approved_exception_waives_a_finding_and_validate_says_so(tmp_path: Path) -> None:
    report = check_tree(make_tree(tmp_path, (prd_role("System Administrator"), _exception("2026-09-30"))), today=TODAY)  # type: ignore[arg-type]
    assert report.errors == [] and report.warnings == []
    (waived,) = report.waived
    assert str(waived) == (
        f"{PROD_WEB}:21: dataverse[1].security_roles[1]: waived: role 'System Administrator' is forbidden in"
        " production environment 'prd'; allowed: roles other than System Administrator, System Customizer"
        " (policy.forbidden_roles_in_production) [rule no-privileged-role-in-production] (exception"
        " stacks/policy-exceptions.yaml:2, approved by jane.doe@defra.gov.uk until 2026-09-30: one-off data"
        " migration (ADP-1234))"
    )
    assert "defra" in report.states  # the program deploys what the exception allows


def test_an_expired_exception_is_an_error_and_its_finding_comes_back(tmp_path: Path) -> None:
    errors = check_tree(
        make_tree(tmp_path, (prd_role("System Administrator"), _exception("2026-05-31"))),  # type: ignore[arg-type]
        today=TODAY,
    ).errors
    assert [(e.file, e.key_path) for e in errors] == [
        ("stacks/policy-exceptions.yaml", "exceptions[0].expires"),
        (PROD_WEB, "dataverse[1].security_roles[1]"),
    ]
    assert errors[0].message == (
        "exception for no-privileged-role-in-production on ffc-pay-web/prd in defra expired on 2026-05-31"
    )
    assert errors[1].message.endswith("(its exception expired on 2026-05-31)")


def test_an_exception_that_waives_nothing_is_a_warning(tmp_path: Path) -> None:
    report = check_tree(make_tree(tmp_path, (_exception("2026-09-30", subject="ffc-pay-webb"),)), today=TODAY)  # type: ignore[arg-type]
    assert report.errors == []
    (warning,) = report.warnings
    assert (warning.file, warning.key_path, warning.line) == ("stacks/policy-exceptions.yaml", "exceptions[0]", 2)
    assert warning.message == (
        "exception for no-privileged-role-in-production on ffc-pay-webb in defra waives nothing; did you mean"
        " 'ffc-pay-web'?"
    )


def test_an_exception_cannot_waive_what_the_program_could_not_build(tmp_path: Path) -> None:
    edits = (
        replace(AHWR, "namespace: ahwr", "namespace: '*'"),
        write(
            "stacks/policy-exceptions.yaml",
            "exceptions:\n  - rule: federated-credential-subject\n    stack: defradev\n    subject: '*'\n"
            "    approved_by: '@platform-lead'\n    expires: 2026-09-30\n    reason: testing\n",
        ),
    )
    report = check_tree(make_tree(tmp_path, edits), today=TODAY)  # type: ignore[arg-type]
    assert [e.rule for e in report.errors] == ["federated-credential-subject"]


def test_the_checked_in_exceptions_file_is_valid_and_empty() -> None:
    report = check_tree(Path(__file__).resolve().parents[2] / "stacks")
    assert report.errors == [] and report.warnings == [] and report.exceptions.exceptions == ()
    assert load_tree(Path(__file__).resolve().parents[2] / "stacks")


def test_another_stacks_expired_exception_does_not_block_this_stack(tmp_path: Path) -> None:
    """The program of stack defra (one stack) is not refused for an exception of stack defradev."""
    entry = (
        "exceptions:\n  - rule: platform-tags\n    stack: defradev\n    subject: '*'\n"
        "    approved_by: '@platform-lead'\n    expires: 2026-01-31\n    reason: old\n"
    )
    stacks = make_tree(tmp_path, (write("stacks/policy-exceptions.yaml", entry),))
    assert check_tree(stacks, "defra", today=TODAY).errors == []
    assert [e.key_path for e in check_tree(stacks, "defradev", today=TODAY).errors] == ["exceptions[0].expires"]
    assert [e.key_path for e in check_tree(stacks, today=TODAY).errors] == ["exceptions[0].expires"]
