"""Arguments of the management commands (kept apart so ``callbackd --help`` stays light).

The commands themselves run in :mod:`callbackd.commands.manage`.
"""

from __future__ import annotations

import argparse
from typing import Any

from callbackd.db.models import RequestStatus

REQUEST_COMMANDS = ("list", "show", "add", "cancel", "call-now", "stats")


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register the management subcommands on the ``callbackd`` parser."""
    out = argparse.ArgumentParser(add_help=False)
    out.add_argument("--json", action="store_true", help="print JSON instead of a table")

    listing = commands.add_parser(
        "list", parents=[common, out], help="list callback requests, newest first"
    )
    listing.add_argument(
        "--status",
        action="append",
        choices=[str(s) for s in RequestStatus],
        help="only this status (repeatable)",
    )
    listing.add_argument("--campaign", help="only this campaign")
    listing.add_argument("--number", help="only this number")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (max 200)")
    listing.add_argument("--before-id", type=int, help="only requests with a smaller id (paging)")

    show = commands.add_parser("show", parents=[common, out], help="one request with attempts")
    show.add_argument("id", type=int)

    add = commands.add_parser("add", parents=[common, out], help="create a callback request")
    add.add_argument("number")
    target = add.add_mutually_exclusive_group(required=True)
    target.add_argument("--campaign")
    target.add_argument("--queue")
    add.add_argument("--at", help="preferred time, ISO 8601 (with offset, or use --timezone)")
    add.add_argument("--timezone", help="IANA zone of a --at without offset")
    add.add_argument("--priority", type=int)
    add.add_argument("--note")
    add.add_argument("--external-id")

    cancel = commands.add_parser("cancel", parents=[common, out], help="cancel a pending request")
    cancel.add_argument("id", type=int)
    cancel.add_argument("--reason")

    now = commands.add_parser(
        "call-now", parents=[common, out], help="call a pending request now (operator first)"
    )
    now.add_argument("id", type=int)
    now.add_argument("--operator", help="queue-member interface to ring, e.g. PJSIP/101")

    commands.add_parser("stats", parents=[common, out], help="requests per campaign and status")

    customers = commands.add_parser("customers", help="customer categories and priorities")
    actions = customers.add_subparsers(dest="customers_command", required=True, metavar="ACTION")
    put = actions.add_parser("set", parents=[common, out], help="create or replace a customer")
    put.add_argument("number")
    put.add_argument("--category", default="regular")
    put.add_argument("--priority", type=int, default=0)
    put.add_argument("--skip-queue", action=argparse.BooleanOptionalAction, default=False)
    put.add_argument("--note")
    get = actions.add_parser("show", parents=[common, out], help="one customer")
    get.add_argument("number")
    lst = actions.add_parser("list", parents=[common, out], help="customers by number")
    lst.add_argument("--category")
    lst.add_argument("--limit", type=int, default=200)
    lst.add_argument("--after", help="only numbers after this one (paging)")
    delete = actions.add_parser("delete", parents=[common, out], help="delete a customer")
    delete.add_argument("number")
