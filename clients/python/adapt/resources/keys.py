from __future__ import annotations

from adapt._http import HTTP
from adapt.types import ApiKey, CreatedApiKey


class Keys:
    """API keys (admin keys only; with auth off, the single user is the admin)."""

    def __init__(self, http: HTTP):
        self._http = http

    def create(self, tenant: str, *, name: str = "", admin: bool = False) -> CreatedApiKey:
        """A new key for `tenant`; `.key` is the secret, shown this once."""
        return CreatedApiKey.model_validate(self._http.json(
            "POST", "/v1/admin/keys", json={"tenant": tenant, "name": name, "admin": admin}))

    def list(self, *, tenant: str | None = None) -> list[ApiKey]:
        body = self._http.json("GET", "/v1/admin/keys",
                               params={"tenant": tenant} if tenant else None)
        return [ApiKey.model_validate(item) for item in body["data"]]

    def revoke(self, key_id: str) -> ApiKey:
        return ApiKey.model_validate(self._http.json("DELETE", f"/v1/admin/keys/{key_id}"))
