"""Resource options shared by the components: aliases on rename, and children parented to their component."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi


def with_previous_names(opts: pulumi.ResourceOptions | None, previous_names: Sequence[str]) -> pulumi.ResourceOptions:
    """The caller's options plus one alias per earlier name of the component.

    Only the component itself carries the aliases. The engine derives each child's old URN from its parent's
    aliases, replacing the parent's name at the start of the child's name; that is why every child is named
    ``f"{name}-..."`` and parented to its component: a rename then keeps every child instead of replacing it.
    """
    aliases: list[pulumi.Input[str | pulumi.Alias]] = [pulumi.Alias(name=previous) for previous in previous_names]
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(aliases=aliases or None))


def child_of(
    parent: pulumi.Resource,
    *depends_on: pulumi.Resource,
    import_id: str | None = None,
    retain_on_delete: bool = False,
) -> pulumi.ResourceOptions:
    """Options of a child resource: parented to the component, optionally ordered after siblings.

    ``import_id``: adopt the existing Azure resource with that id (Pulumi's ``import`` option) instead of creating
    it; ``retain_on_delete``: when the resource leaves the stack, keep it in Azure (the owner moves to the
    platform). Both are left unset otherwise, so a service that is not moving registers exactly as before.
    """
    return pulumi.ResourceOptions(
        parent=parent,
        depends_on=list(depends_on) or None,
        import_=import_id,
        retain_on_delete=True if retain_on_delete else None,
    )
