"""ARM error responses: `{"error": {"code", "message"}}` with an HTTP status."""


class ArmError(Exception):
    """Raised anywhere in a handler; the server turns it into ARM's error body."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def not_found(resource_id: str) -> ArmError:
    # ARM's wording for an unknown resource inside an existing resource group.
    parts = resource_id.strip("/").split("/")
    rtype = "/".join(parts[5:6] + parts[6::2]) if len(parts) > 6 else resource_id
    name = parts[-1]
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{rtype}/{name}' under resource group "
        f"'{parts[3] if len(parts) > 3 else ''}' was not found.",
    )


def rg_not_found(rg: str) -> ArmError:
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")


def bad_request(code: str, message: str) -> ArmError:
    return ArmError(400, code, message)


def conflict(code: str, message: str) -> ArmError:
    return ArmError(409, code, message)
