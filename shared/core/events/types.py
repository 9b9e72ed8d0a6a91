"""The Event Grid events this product handles: one source of truth for the trigger's filter,
the deployment template's event subscription (checked by tests) and the docs."""

WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
ACTION_SUCCESS = "Microsoft.Resources.ResourceActionSuccess"
DELETE_SUCCESS = "Microsoft.Resources.ResourceDeleteSuccess"

# ARM raises a child resource's write or delete with the child as subject and the child's own
# operation (`.../loadBalancers/{lb}/backendAddressPools/{pool}`, operation
# `Microsoft.Network/loadBalancers/backendAddressPools/write`), not as a write of the parent:
# these are re-evaluated as a change of the parent load balancer or virtual network.
LB_CHILDREN = ("backendAddressPools", "loadBalancingRules", "frontendIPConfigurations",
               "inboundNatRules")

# event type -> the `data.operationName` values that matter for it (case-insensitive in Azure).
HANDLED_OPERATIONS: dict[str, tuple[str, ...]] = {
    WRITE_SUCCESS: (
        "Microsoft.Compute/virtualMachines/write",
        "Microsoft.Network/networkInterfaces/write",
        "Microsoft.Network/loadBalancers/write",
        *(f"Microsoft.Network/loadBalancers/{child}/write" for child in LB_CHILDREN),
        # A subnet's prefix decides the gateway and the addresses of the fix.
        "Microsoft.Network/virtualNetworks/subnets/write",
    ),
    ACTION_SUCCESS: (
        # The guest may have lost non-persistent routes: re-check it.
        "Microsoft.Compute/virtualMachines/start/action",
        "Microsoft.Compute/virtualMachines/restart/action",
        "Microsoft.Compute/virtualMachines/redeploy/action",
        "Microsoft.Compute/virtualMachines/reapply/action",
    ),
    DELETE_SUCCESS: (
        # A managed NIC deleted by someone, or a frontend/LB removed: routes to clean up.
        "Microsoft.Network/networkInterfaces/delete",
        "Microsoft.Network/loadBalancers/delete",
        *(f"Microsoft.Network/loadBalancers/{child}/delete" for child in LB_CHILDREN),
    ),
}

HANDLED_EVENT_TYPES: tuple[str, ...] = tuple(HANDLED_OPERATIONS)
ALL_HANDLED_OPERATIONS: tuple[str, ...] = tuple(
    op for ops in HANDLED_OPERATIONS.values() for op in ops
)
