"""`adapt-admin`: manage API keys directly in the database (run where the service's settings are).

    adapt-admin keys create --tenant acme --name ci [--admin]   # prints the key once
    adapt-admin keys list [--tenant acme]
    adapt-admin keys revoke key_…
"""
import argparse
import json
import sys

from app.config import get_settings
from app.db import session_scope
from app.keys import service
from app.migrate import upgrade


def _row(k) -> dict:
    return {"id": k.id, "tenant": k.tenant_id, "name": k.name, "admin": k.is_admin,
            "prefix": f"adapt_{k.prefix}_…", "created_at": k.created_at.isoformat(),
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="adapt-admin", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    keys = sub.add_parser("keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="")
    create.add_argument("--admin", action="store_true")
    lst = keys.add_parser("list")
    lst.add_argument("--tenant")
    revoke = keys.add_parser("revoke")
    revoke.add_argument("id")
    args = p.parse_args(argv)

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    try:
        with session_scope() as s:
            if args.action == "create":
                row, key = service.create(s, args.tenant, args.name, args.admin)
                out = {**_row(row), "key": key}
            elif args.action == "list":
                out = [_row(k) for k in service.list_keys(s, args.tenant)]
            else:
                out = _row(service.revoke(s, args.id))
    except Exception as exc:  # noqa: BLE001 - an admin tool reports and exits non-zero
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
