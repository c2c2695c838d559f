"""`adapt keys create|list|revoke` (the admin API, /v1/admin/keys)."""
from __future__ import annotations

from typing import Optional

import typer

from adapt.cli._common import JsonOption, client, console, emit_json, table

app = typer.Typer(no_args_is_help=True, help="API keys (needs an admin key when auth is on).")


@app.command()
def create(tenant: str = typer.Option(..., help="The tenant the key acts for."),
           name: str = typer.Option("", help="A label for the key."),
           admin: bool = typer.Option(False, "--admin", help="May manage keys."),
           as_json: bool = JsonOption) -> None:
    """Create a key; the secret is printed this once."""
    key = client().keys.create(tenant, name=name, admin=admin)
    if as_json:
        return emit_json(key)
    console.print(f"{key.id} for tenant {key.tenant}{' (admin)' if key.admin else ''}")
    console.print(key.key, markup=False)


@app.command("list")
def list_(tenant: Optional[str] = typer.Option(None, help="Only this tenant's keys."),
          as_json: bool = JsonOption) -> None:
    """Keys (never their secrets)."""
    keys = client().keys.list(tenant=tenant)
    if as_json:
        return emit_json(keys)
    table(None, ("id", "tenant", "name", "admin", "created", "revoked"),
          ((k.id, k.tenant, k.name, "yes" if k.admin else "",
            k.created_at.strftime("%Y-%m-%d %H:%M"),
            k.revoked_at.strftime("%Y-%m-%d %H:%M") if k.revoked_at else "") for k in keys))


@app.command()
def revoke(key_id: str, as_json: bool = JsonOption) -> None:
    """Revoke a key: it answers 401 from now on."""
    key = client().keys.revoke(key_id)
    emit_json(key) if as_json else typer.echo(f"revoked {key.id}")
