"""Pure: Azure Resource Manager resource IDs and resource names.

ARM IDs are case-insensitive (`/resourceGroups/RG-A` and `/resourcegroups/rg-a` name the same
resource), so every comparison in the project goes through `normalize()`. Names are validated
against ARM's naming rules before they reach anything that renders text (guest scripts, NIC
names), so untrusted input can never smuggle characters into a script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "InvalidResourceId",
    "InvalidResourceName",
    "ResourceId",
    "parse",
    "try_parse",
    "normalize",
    "same",
    "build",
    "child",
    "parent_id",
    "name_of",
    "is_valid_name",
    "validate_name",
    "is_subscription_id",
]


class InvalidResourceId(ValueError):
    """The text is not an ARM resource ID."""


class InvalidResourceName(ValueError):
    """The text breaks ARM's naming rules for that kind of resource."""


# Checked with fullmatch: `$` would also match before a trailing newline.
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass(frozen=True, slots=True)
class ResourceId:
    """A parsed ID: `/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/...]`.

    `types` and `names` have the same length; `types[0]` is the top-level type under the
    provider namespace, later entries are child types (subnets, ipConfigurations, ...).
    Subscription- and resource-group-level IDs have an empty `types`.
    """

    subscription: str
    resource_group: str | None = None
    provider: str | None = None
    types: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    @property
    def type(self) -> str | None:
        """Full type as ARM spells it, e.g. `Microsoft.Network/loadBalancers/probes`."""
        if not self.provider or not self.types:
            return None
        return "/".join((self.provider, *self.types))

    @property
    def name(self) -> str | None:
        if self.names:
            return self.names[-1]
        return self.resource_group

    @property
    def is_child(self) -> bool:
        return len(self.types) > 1

    @property
    def parent(self) -> ResourceId | None:
        """The enclosing resource: a subnet's VNet, a VM's group, a group's subscription."""
        if len(self.types) > 1:
            return ResourceId(
                self.subscription,
                self.resource_group,
                self.provider,
                self.types[:-1],
                self.names[:-1],
            )
        if self.types:
            return ResourceId(self.subscription, self.resource_group)
        if self.resource_group is not None:
            return ResourceId(self.subscription)
        return None

    @property
    def top_level(self) -> ResourceId:
        """The top-level resource that holds this one (itself when not a child)."""
        if len(self.types) <= 1:
            return self
        return ResourceId(
            self.subscription, self.resource_group, self.provider, self.types[:1], self.names[:1]
        )

    def __str__(self) -> str:
        parts = ["", "subscriptions", self.subscription]
        if self.resource_group is not None:
            parts += ["resourceGroups", self.resource_group]
        if self.provider is not None:
            parts += ["providers", self.provider]
            for type_, name in zip(self.types, self.names, strict=True):
                parts += [type_, name]
        return "/".join(parts)

    @property
    def key(self) -> str:
        """Normalised form, for dictionary keys and comparisons."""
        return normalize(str(self))

    def is_type(self, full_type: str) -> bool:
        """Case-insensitive type check: `rid.is_type("Microsoft.Network/networkInterfaces")`."""
        own = self.type
        return own is not None and own.lower() == full_type.lower()


def parse(resource_id: str) -> ResourceId:
    """Parse an ID; raise `InvalidResourceId` with the reason when it is not one."""
    if not isinstance(resource_id, str):
        raise InvalidResourceId(f"resource ID must be a string, got {type(resource_id).__name__}")
    text = resource_id.strip()
    if not text.startswith("/"):
        raise InvalidResourceId(f"resource ID must start with '/': {resource_id!r}")
    segments = text.strip("/").split("/")
    if any(s == "" for s in segments):
        raise InvalidResourceId(f"resource ID has an empty segment: {resource_id!r}")
    if len(segments) < 2 or segments[0].lower() != "subscriptions":
        raise InvalidResourceId(
            f"resource ID must begin with /subscriptions/{{id}}: {resource_id!r}"
        )
    subscription = segments[1]
    rest = segments[2:]
    resource_group = None
    if rest[:1] and rest[0].lower() == "resourcegroups":
        if len(rest) < 2:
            raise InvalidResourceId(f"resource group name missing: {resource_id!r}")
        resource_group = rest[1]
        rest = rest[2:]
    if not rest:
        return ResourceId(subscription, resource_group)
    if rest[0].lower() != "providers" or len(rest) < 2:
        raise InvalidResourceId(f"expected /providers/{{namespace}}: {resource_id!r}")
    provider = rest[1]
    pairs = rest[2:]
    if not pairs or len(pairs) % 2:
        raise InvalidResourceId(f"resource type and name must come in pairs: {resource_id!r}")
    return ResourceId(
        subscription, resource_group, provider, tuple(pairs[0::2]), tuple(pairs[1::2])
    )


def try_parse(resource_id: object) -> ResourceId | None:
    """Like `parse`, but `None` for anything that is not an ID (never raises)."""
    try:
        return parse(resource_id)  # type: ignore[arg-type]
    except InvalidResourceId:
        return None


def normalize(resource_id: str) -> str:
    """Canonical comparison key: lowercase, no surrounding whitespace or trailing slash.

    Deliberately cheap (called for every reference in a 20,000-NIC estate); it does not
    validate. Use `parse` when the text comes from a user.
    """
    low = resource_id.lower()
    if low and (low[-1] in "/ \t\r\n" or low[0] in " \t\r\n"):
        low = low.strip().rstrip("/")
    return low


def same(a: str | None, b: str | None) -> bool:
    """Do two IDs name the same resource? `None` never matches anything."""
    if a is None or b is None:
        return False
    return normalize(a) == normalize(b)


def build(subscription: str, resource_group: str, provider: str, *type_name_pairs: str) -> str:
    """`build(sub, "rg", "Microsoft.Network", "loadBalancers", "lb", "probes", "p")` -> ID text."""
    if not type_name_pairs or len(type_name_pairs) % 2:
        raise ValueError("build() needs type/name pairs")
    return str(
        ResourceId(
            subscription,
            resource_group,
            provider,
            tuple(type_name_pairs[0::2]),
            tuple(type_name_pairs[1::2]),
        )
    )


def child(parent: str, child_type: str, name: str) -> str:
    """The ID of a child resource: `child(lb_id, "probes", "p1")`."""
    return f"{parent.rstrip('/')}/{child_type}/{name}"


def parent_id(resource_id: str) -> str | None:
    """The enclosing resource's ID as text (a subnet's VNet, an ipConfiguration's NIC)."""
    parsed = try_parse(resource_id)
    if parsed is None or parsed.parent is None:
        return None
    return str(parsed.parent)


def name_of(resource_id: str) -> str:
    """Last path segment, without parsing (cheap; works on any slash-separated ID)."""
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def is_subscription_id(text: object) -> bool:
    return isinstance(text, str) and _GUID.fullmatch(text) is not None


# ARM naming rules (learn.microsoft.com, "Naming rules and restrictions for Azure resources"),
# restricted to ASCII: resource groups may contain Unicode letters in ARM, but nothing this
# project renders into a script needs them, so they are refused here on purpose.
# kind -> (min length, max length, pattern matched in full)
_ALNUM_START = r"[A-Za-z0-9]"
_NAME_RULES: dict[str, tuple[int, int, re.Pattern[str]]] = {
    # NICs, LBs, VNets, subnets, NSGs, ipConfigurations, pools, rules, probes, frontends:
    # alphanumerics, underscores, periods, hyphens; start alphanumeric; end alphanumeric or _.
    "network": (1, 80, re.compile(rf"{_ALNUM_START}(?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")),
    # Virtual machines: same characters, at most 64 (Windows computer names are shorter,
    # but that is the guest's name, not the ARM resource name).
    "vm": (1, 64, re.compile(rf"{_ALNUM_START}(?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")),
    # Resource groups: alphanumerics, underscores, parentheses, hyphens, periods; not ending in '.'.
    "resource_group": (1, 90, re.compile(r"[A-Za-z0-9_().-]*[A-Za-z0-9_()-]")),
    # Tag names used as keys by this project (NIC "managed" tag, opt-in tag).
    "tag": (1, 512, re.compile(r"[A-Za-z0-9_.:-]+")),
}
_KIND_ALIASES = {
    "virtualmachines": "vm",
    "virtualmachine": "vm",
    "networkinterfaces": "network",
    "nic": "network",
    "loadbalancers": "network",
    "virtualnetworks": "network",
    "subnets": "network",
    "networksecuritygroups": "network",
    "ipconfigurations": "network",
    "resourcegroups": "resource_group",
    "resourcegroup": "resource_group",
}


def _rule(kind: str) -> tuple[int, int, re.Pattern[str]]:
    key = _KIND_ALIASES.get(kind.lower(), kind.lower())
    try:
        return _NAME_RULES[key]
    except KeyError:
        raise ValueError(f"unknown name kind {kind!r}; use one of {sorted(_NAME_RULES)}") from None


def is_valid_name(name: object, kind: str = "network") -> bool:
    """Does `name` follow ARM's rules for `kind` ("network", "vm", "resource_group", "tag")?"""
    if not isinstance(name, str):
        return False
    low, high, pattern = _rule(kind)
    return low <= len(name) <= high and pattern.fullmatch(name) is not None


def validate_name(name: object, kind: str = "network") -> str:
    """Return `name` unchanged when valid, else raise `InvalidResourceName` saying why."""
    if is_valid_name(name, kind):
        return name  # type: ignore[return-value]
    low, high, _ = _rule(kind)
    shown = repr(name)[:100]
    raise InvalidResourceName(
        f"{shown} is not a valid {kind} name: {low}-{high} characters, letters, digits, "
        "'_', '.', '-' only, starting with a letter or digit"
        + (", not ending with '.' or '-'" if kind != "resource_group" else ", not ending with '.'")
    )
