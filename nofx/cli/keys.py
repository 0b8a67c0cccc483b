"""`nofx keys`: API keys, and the local admin key `nofx up` hands out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from nofx.cli.shared import console, fail, open_store
from nofx.errors import NofxError
from nofx.settings import Settings
from nofx.store import EventStore

keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="what the key is for, e.g. ci-pipeline")],
    scope: Annotated[list[str], typer.Option(help="read, write or admin (repeat for several)")],
    tenant: Annotated[str, typer.Option()] = "default",
    rate: Annotated[float, typer.Option(help="requests per second")] = 50.0,
    burst: Annotated[float, typer.Option(help="requests allowed at once")] = 100.0,
) -> None:
    """Create an API key. The secret is printed once and stored only as a hash."""
    from nofx.security import ApiKeyService, Scope

    _, store = open_store()
    try:
        scopes = {Scope(s) for s in scope}
    except ValueError:
        raise fail(f"unknown scope in {scope}: use read, write or admin") from None
    try:
        issued = ApiKeyService(store).create(tenant, name, scopes, rate_per_s=rate, burst=burst)
    except NofxError as exc:
        raise fail(str(exc)) from None
    console.print(
        f"key {issued.key.key_id} for tenant {tenant} ({', '.join(sorted(scope))}); store it now:"
    )
    console.print(issued.plaintext, soft_wrap=True, highlight=False)


@keys_app.command("list")
def keys_list(tenant: Annotated[str | None, typer.Option()] = None) -> None:
    """List keys (never their secrets)."""
    from nofx.security import ApiKeyService

    _, store = open_store()
    table = Table(title="API keys")
    table.add_column("id", no_wrap=True)
    for col in ("tenant", "name", "scopes", "rate/s", "created", "revoked"):
        table.add_column(col)
    for k in ApiKeyService(store).list(tenant):
        table.add_row(
            k.key_id,
            k.tenant_id,
            k.name,
            ",".join(sorted(s.value for s in k.scopes)),
            f"{k.rate_per_s:g}",
            k.created_at.strftime("%Y-%m-%d %H:%M"),
            k.revoked_at.strftime("%Y-%m-%d %H:%M") if k.revoked_at else "",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key; requests with it are refused at once."""
    from nofx.security import ApiKeyService

    _, store = open_store()
    try:
        ApiKeyService(store).revoke(key_id)
    except NofxError as exc:
        raise fail(str(exc)) from None
    console.print(f"revoked {key_id}")


def local_admin_key(settings: Settings, store: EventStore) -> Path:
    """For `nofx up` on the embedded default: one admin key in NOFX_HOME (mode 600)."""
    from nofx.security import ApiKeyService, Scope

    path = settings.home / "admin-api-key"
    if not path.exists():
        issued = ApiKeyService(store).create(
            "default", "local-admin", {Scope.ADMIN}, rate_per_s=1000, burst=2000
        )
        path.write_text(issued.plaintext + "\n")
        path.chmod(0o600)
    return path
