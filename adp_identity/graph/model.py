"""Who can reach what, as a graph: services, their identities, and the roles those hold in each environment.

Three columns, drawn left to right by every renderer:

1. services (``stacks/<stack>/<service>.yaml``), with their team;
2. identities: each service's managed identity and, where it has one, its app registration; with ``--live``,
   also the application users that map to no service ("unmanaged"), in a group of their own;
3. Dataverse environments (one group each, production marked), holding the security roles held there.

An edge runs from a service to each of its identities, and from an identity to each role its application user
holds in an environment (the edge says the business unit when it is not the root one, and is dashed when the
user is disabled). Privileged roles (System Administrator, System Customizer and the stack's
``forbidden_roles_in_production``, compared as Dataverse compares names) are marked.

`from_desired` draws what the service files declare; `from_live` what the environments hold, read by
application user (never written). No renderer imports anything but this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from adp_identity.desired.schema import DesiredState, ServiceSpec
from adp_identity.drift import ServiceIdentity, privileged_roles
from providers.dataverse.models import ActualUser, name_key

Kind = Literal["service", "managed_identity", "app_registration", "unmanaged_user", "role", "note"]
Column = Literal[0, 1, 2]
COLUMN_OF: Mapping[Kind, Column] = {
    "service": 0,
    "managed_identity": 1,
    "app_registration": 1,
    "unmanaged_user": 1,
    "role": 2,
    "note": 2,
}
KIND_CAPTION: Mapping[Kind, str] = {
    "service": "service",
    "managed_identity": "managed identity",
    "app_registration": "app registration",
    "unmanaged_user": "application user",
    "role": "security role",
    "note": "",
}


@dataclass(frozen=True)
class Node:
    id: str  # stable within one graph: used by every renderer (and by tests)
    kind: Kind
    label: str
    detail: str = ""  # a second line (team, identity name, application id)
    group: str = ""  # the id of the Group that holds it ("" = its column's default group)
    privileged: bool = False

    @property
    def column(self) -> Column:
        return COLUMN_OF[self.kind]


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""
    disabled: bool = False  # drawn dashed: the application user exists but is disabled


@dataclass(frozen=True)
class Group:
    id: str
    label: str
    column: Column
    production: bool = False  # an environment whose roles the production policy covers
    unmanaged: bool = False  # application users no service of the stack declares (``--live``)


@dataclass
class Graph:
    title: str
    groups: list[Group] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def node(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def in_group(self, group_id: str) -> list[Node]:
        return [node for node in self.nodes if node.group == group_id]

    @property
    def privileged(self) -> list[Node]:
        return [node for node in self.nodes if node.privileged]


def caption(node: Node) -> str:
    """A node's second line: what it is, then its detail (a service shows only its team)."""
    if node.kind == "service":
        return node.detail
    what = KIND_CAPTION[node.kind]
    return " \u00b7 ".join(part for part in (what, node.detail) if part)


def edge_text(edge: Edge) -> str:
    """An edge's words: the business unit (when not the root one), and "disabled" for a disabled user."""
    return ", ".join(part for part in (edge.label, "disabled" if edge.disabled else "") if part)


SERVICES = Group("services", "Services", 0)
IDENTITIES = Group("identities", "Identities", 1)
UNMANAGED = Group("unmanaged", "Unmanaged application users", 1, unmanaged=True)


class _Builder:
    """Adds nodes once each, with ids that are stable and safe in every output format."""

    def __init__(self, state: DesiredState, title: str) -> None:
        self.state = state
        self.graph = Graph(title, [SERVICES, IDENTITIES])
        self.privileged = privileged_roles(state)
        self._roles: dict[tuple[str, str], str] = {}
        self._environment_groups: dict[str, str] = {}
        for index, (name, environment) in enumerate(state.tenant.dataverse_environments.items(), start=1):
            group = f"env{index}"
            label = f"{name}: production" if environment.production else name
            self.graph.groups.append(Group(group, label, 2, production=environment.production))
            self._environment_groups[name] = group

    def services(self) -> None:
        for index, name in enumerate(sorted(self.state.services), start=1):
            spec = self.state.services[name]
            self.graph.nodes.append(Node(f"s{index}", "service", name, f"team {spec.team}", SERVICES.id))
            self.graph.nodes.append(
                Node(f"mi{index}", "managed_identity", self.state.identity_name(name), _owner(spec), IDENTITIES.id)
            )
            self.graph.edges.append(Edge(f"s{index}", f"mi{index}"))
            display = spec.app_registration_display_name
            if display is not None:
                self.graph.nodes.append(
                    Node(f"app{index}", "app_registration", display, "certificate in Key Vault", IDENTITIES.id)
                )
                self.graph.edges.append(Edge(f"s{index}", f"app{index}"))

    def principal_id(self, service: str, principal: str) -> str:
        index = sorted(self.state.services).index(service) + 1
        return f"app{index}" if principal == "app_registration" else f"mi{index}"

    def role(self, environment: str, name: str) -> str:
        key = (environment, name_key(name))
        found = self._roles.get(key)
        if found is None:
            found = f"r{len(self._roles) + 1}"
            self._roles[key] = found
            privileged = name_key(name) in self.privileged
            self.graph.nodes.append(
                Node(
                    found,
                    "role",
                    name,
                    "privileged" if privileged else "",
                    self._environment_groups[environment],
                    privileged,
                )
            )
        return found

    def grant(
        self, source: str, environment: str, roles: Iterable[str], business_unit: str | None, disabled: bool
    ) -> None:
        label = f"BU {business_unit}" if business_unit else ""
        for name in sorted(roles, key=name_key):
            self.graph.edges.append(Edge(source, self.role(environment, name), label, disabled))

    def finish(self) -> Graph:
        for group in self._environment_groups.values():
            if not self.graph.in_group(group):
                self.graph.nodes.append(Node(f"{group}-empty", "note", "no application users", "", group))
        order = {group.id: index for index, group in enumerate(self.graph.groups)}
        placed = {node.id: index for index, node in enumerate(self.graph.nodes)}

        def key(node: Node) -> tuple[int, int, str, int]:
            # columns, then groups in order; roles by name, everything else in the order it was added
            by_name = name_key(node.label) if node.kind == "role" else ""
            return (node.column, order.get(node.group, len(order)), by_name, placed[node.id])

        self.graph.nodes.sort(key=key)
        return self.graph


def _owner(spec: ServiceSpec) -> str:
    return "owned by the platform" if spec.workload_identity.owner == "platform" else ""


def from_desired(state: DesiredState) -> Graph:
    """What the service files declare."""
    builder = _Builder(state, f"adp-identity: stack {state.stack}, as declared")
    builder.services()
    for name in sorted(state.services):
        for access in state.services[name].dataverse:
            builder.grant(
                builder.principal_id(name, access.principal),
                access.environment,
                access.security_roles,
                access.business_unit,
                access.disabled,
            )
    return builder.finish()


@dataclass(frozen=True)
class LiveEnvironment:
    """One environment as read: its application users (``DataverseClient.application_users()``)."""

    name: str
    users: Sequence[ActualUser]


def from_live(
    state: DesiredState,
    environments: Iterable[LiveEnvironment],
    identities: Mapping[str, ServiceIdentity] | None = None,
) -> Graph:
    """What the environments hold. A user belongs to a service by client id when ``identities`` (the stack
    outputs) are given, else by ADP's naming: its full name is the service's identity name (managed identity)
    or app registration display name. Users that map to no service are drawn apart, as unmanaged."""
    builder = _Builder(state, f"adp-identity: stack {state.stack}, as the environments hold it")
    builder.services()
    by_application: dict[str, str] = {}
    by_name: dict[str, str] = {}
    for name in sorted(state.services):
        spec = state.services[name]
        by_name[name_key(state.identity_name(name))] = builder.principal_id(name, "managed_identity")
        if spec.app_registration_display_name is not None:
            by_name[name_key(spec.app_registration_display_name)] = builder.principal_id(name, "app_registration")
        ids = (identities or {}).get(name)
        if ids is not None:
            by_application[ids.client_id.lower()] = builder.principal_id(name, "managed_identity")
            if ids.app_registration_client_id:
                by_application[ids.app_registration_client_id.lower()] = builder.principal_id(name, "app_registration")
    unmanaged: dict[str, str] = {}
    for environment in environments:
        for user in sorted(environment.users, key=lambda u: (name_key(u.full_name or ""), u.systemuser_id)):
            application = (user.application_id or "").lower()
            source = (
                by_application.get(application)
                if identities is not None
                else by_name.get(name_key(user.full_name or ""))
            )
            if source is None:
                key = application or user.systemuser_id
                source = unmanaged.get(key)
                if source is None:
                    source = f"u{len(unmanaged) + 1}"
                    unmanaged[key] = source
                    builder.graph.nodes.append(
                        Node(
                            source,
                            "unmanaged_user",
                            user.full_name or "(no name)",
                            user.application_id or "",
                            UNMANAGED.id,
                        )
                    )
            unit = None if user.business_unit_is_root else user.business_unit_name
            builder.grant(source, environment.name, user.roles.values(), unit, user.disabled)
    if unmanaged:
        builder.graph.groups.insert(2, UNMANAGED)
    return builder.finish()
