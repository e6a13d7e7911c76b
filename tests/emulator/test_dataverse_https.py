"""The Dataverse slice behind the real emulator: TLS on 127.0.0.1, tokens from the emulated Entra ID token
endpoint (client secret, via azure-identity), the request log filled with a batch's inner requests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from adp_identity_sandbox.clients import web_api_session
from tests.emulator.dataverse_helpers import Op, batch_body, parse_batch_reply

pytestmark = pytest.mark.emulator

emulator_module = pytest.importorskip("adp_identity_emulator")


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with emulator_module.Emulator(
        emulator_module.load_seed(emulator_module.DEFAULT_SEED), state_dir=tmp_path_factory.mktemp("emulator")
    ) as running:
        yield running


def _session(emu: Any, application: str) -> tuple[requests.Session, str]:
    """A requests session carrying a token the emulated Entra ID issued to ``application`` (secret credential)."""
    url = emu.environment_url("defradev-dev")
    return web_api_session(emu, "DefraDev", application, "defradev-dev"), f"{url}/api/data/v9.2/"


def test_find_the_deploying_user_over_https(emu: Any) -> None:
    session, api = _session(emu, "adp-identity-pipeline")
    pipeline = emu.identity("DefraDev")
    reply = session.get(
        f"{api}systemusers",
        params={"$filter": f"applicationid eq {pipeline['client_id']}", "$select": "systemuserid,isdisabled"},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    (row,) = reply.json()["value"]
    state = emu.dataverse("defradev-dev")
    assert row["systemuserid"] == state.user_by_application_id(pipeline["client_id"]).id
    assert row["isdisabled"] is False


def test_unauthenticated_request_gets_the_challenge(emu: Any) -> None:
    url = emu.environment_url("defradev-dev")
    reply = requests.get(f"{url}/api/data/v9.2/WhoAmI", verify=emu.ca_bundle, timeout=10)
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"].startswith(f"Bearer authorization_uri={emu.authority_host}/")
    assert f"resource_id={url}/" in reply.headers["WWW-Authenticate"]


def test_token_for_another_environment_is_refused(emu: Any) -> None:
    session, _ = _session(emu, "adp-identity-pipeline")
    other = emu.environment_url("defradev-tst")
    reply = session.get(f"{other}/api/data/v9.2/WhoAmI", timeout=10)
    assert reply.status_code == 401


def test_batch_over_https_is_logged_with_its_inner_requests(emu: Any) -> None:
    session, api = _session(emu, "adp-platform-admin")
    state = emu.dataverse("defradev-dev")
    target = next(a for a in emu.tenant("DefraDev").applications if a.name == "sndadpinfmi1401-ahwr-claims")
    assert state.user_by_application_id(target.client_id) is None
    unit = state.business_unit_id("animal-health")
    role = state.role_id("Basic User", "animal-health")
    content_type, body = batch_body(
        [
            [
                Op(
                    "POST",
                    "systemusers",
                    {"applicationid": target.client_id, "businessunitid@odata.bind": f"/businessunits({unit})"},
                    content_id="1",
                ),
                Op("POST", "$1/systemuserroles_association/$ref", {"@odata.id": f"{api}roles({role})"}),
            ]
        ]
    )
    emu.log.clear()
    reply = session.post(f"{api}$batch", data=body, headers={"Content-Type": content_type}, timeout=10)
    assert reply.status_code == 200, reply.text
    (change_set,) = parse_batch_reply(reply.headers["Content-Type"], reply.content)
    assert isinstance(change_set, list) and [r.status for r in change_set] == [204, 204]
    user = state.user_by_application_id(target.client_id)
    assert user is not None and state.role_names(user.id) == ["Basic User"]
    (entry,) = [e for e in emu.log.entries if e.service == "dataverse" and e.path.endswith("$batch")]
    assert entry.env == "defradev-dev"
    assert [(m, s) for m, _, s in entry.operations] == [("POST", 204), ("POST", 204)]
