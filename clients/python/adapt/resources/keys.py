from __future__ import annotations

from adapt._http import Call
from adapt.resources._upload import data_of
from adapt.types import ApiKey, CreatedApiKey


class Keys:
    """API keys (admin keys only; with auth off, the single user is the admin)."""

    def __init__(self, http):
        self._http = http

    def create(self, tenant: str, *, name: str = "", admin: bool = False) -> CreatedApiKey:
        """A new key for `tenant`; `.key` is the secret, shown this once."""
        return self._http.call(Call("POST", "/v1/admin/keys",
                                    json={"tenant": tenant, "name": name, "admin": admin},
                                    into=CreatedApiKey.model_validate))

    def list(self, *, tenant: str | None = None) -> list[ApiKey]:
        return self._http.call(Call("GET", "/v1/admin/keys",
                                    params={"tenant": tenant} if tenant else None,
                                    into=data_of(ApiKey.model_validate)))

    def revoke(self, key_id: str) -> ApiKey:
        return self._http.call(Call("DELETE", f"/v1/admin/keys/{key_id}",
                                    into=ApiKey.model_validate))
