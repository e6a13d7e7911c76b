"""ADP names derived from the desired state (docs/reference/adp-conventions.md)."""

from __future__ import annotations

from adp_identity.desired import naming


def test_identity_prefix_and_managed_identity_name() -> None:
    prefix = naming.identity_prefix("SNDADPINF", "MI", "14", "01")
    assert prefix == "sndadpinfmi1401"
    assert naming.managed_identity_name(prefix, "FFC-Demo-Web") == "sndadpinfmi1401-ffc-demo-web"


def test_federation_subject_is_lower_cased() -> None:
    assert naming.federation_subject("FFC-Pay", "FFC-Pay-Web") == "system:serviceaccount:ffc-pay:ffc-pay-web"


def test_federated_credentials_are_numbered_cluster_by_cluster() -> None:
    clusters = {"A": "https://issuer/a/", "B": "https://issuer/b/"}
    accounts = [
        naming.ServiceAccountRef("ns", "own"),
        naming.ServiceAccountRef("ns", "only-b", clusters=("B",)),
        naming.ServiceAccountRef(naming.APP_CONFIG_NAMESPACE, naming.APP_CONFIG_SERVICE_ACCOUNT),
    ]
    credentials = naming.federated_credentials("mi-x", clusters, accounts)
    assert [(c.name, c.issuer, c.subject) for c in credentials] == [
        ("mi-x-fic-0", "https://issuer/a/", "system:serviceaccount:ns:own"),
        ("mi-x-fic-1", "https://issuer/a/", "system:serviceaccount:app-config-service:az-appconfig-k8s-provider"),
        ("mi-x-fic-2", "https://issuer/b/", "system:serviceaccount:ns:own"),
        ("mi-x-fic-3", "https://issuer/b/", "system:serviceaccount:ns:only-b"),
        ("mi-x-fic-4", "https://issuer/b/", "system:serviceaccount:app-config-service:az-appconfig-k8s-provider"),
    ]
    assert {c.audience for c in credentials} == {"api://AzureADTokenExchange"}


def test_adding_a_cluster_at_the_end_keeps_existing_names() -> None:
    accounts = [naming.ServiceAccountRef("ns", "own")]
    before = naming.federated_credentials("mi", {"A": "https://a/"}, accounts)
    after = naming.federated_credentials("mi", {"A": "https://a/", "B": "https://b/"}, accounts)
    assert after[: len(before)] == before


def test_secret_and_certificate_names() -> None:
    assert naming.key_vault_secret_name("ffc-pay-web", "session-cookie-password") == (
        "ffc-pay-web-session-cookie-password"
    )
    assert naming.secret_config_key("ffc-pay-web", "session-cookie-password") == (
        "secret-ffc-pay-web-session-cookie-password"
    )
    assert naming.certificate_name("ffc-pay-batch") == "ffc-pay-batch-app-cert"
    assert naming.certificate_subject("ADP-FFC-PayBatch") == "CN=ADP-FFC-PayBatch"


def test_app_registration_display_names_in_adp_style() -> None:
    assert naming.app_registration_display_name("ffc-pay-batch") == "ADP-FFC-PayBatch"
    assert naming.app_registration_display_name("ahwr-claims") == "ADP-AHWR-Claims"
    assert naming.app_registration_display_name("demo") == "ADP-DEMO"
