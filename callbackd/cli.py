"""The ``callbackd`` command: one entry point for the daemon and its administration.

Exit codes: 0 success, 1 the work failed (database unreachable, migration refused),
2 the configuration or the command line is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from callbackd import __version__
from callbackd.settings import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    Settings,
    load_settings,
    render_effective_config,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"TOML configuration file (default {DEFAULT_CONFIG_PATH} if it exists); "
        "CALLBACKD_* environment variables override it",
    )
    parser = argparse.ArgumentParser(
        prog="callbackd",
        description="Calls back callers who gave up waiting in an Asterisk queue.",
    )
    parser.add_argument("--version", action="version", version=f"callbackd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "check-config",
        parents=[common],
        help="validate the configuration and print it with secrets redacted",
    )
    commands.add_parser(
        "run", parents=[common], help="run the daemon in the foreground until SIGTERM/SIGINT"
    )
    migrate = commands.add_parser(
        "migrate", parents=[common], help="apply pending database migrations"
    )
    migrate.add_argument(
        "--lock-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for another migrating process (default 60)",
    )
    _add_management_commands(commands, common)
    _add_install_sounds(commands)
    return parser


def _add_install_sounds(commands: Any) -> None:
    """``install-sounds`` (callbackd/commands/install_sounds.py); needs no configuration."""
    from callbackd import dialplan_contract
    from callbackd.sounds import DEFAULT_SOUNDS_DIR

    install = commands.add_parser(
        "install-sounds",
        help="copy callbackd's prompts (English, Russian) into Asterisk's sounds directory",
        description="Copy callbackd's shipped prompts to <dir>/<language>/callbackd/<name>.wav, "
        "where Asterisk plays them as callbackd/<name> in the channel's language. "
        "Files already identical are left alone; run it again after every upgrade.",
    )
    install.add_argument(
        "--dir",
        type=PurePosixPath,
        default=DEFAULT_SOUNDS_DIR,
        metavar="PATH",
        help=f"Asterisk's sounds directory (default {DEFAULT_SOUNDS_DIR}, as Debian and "
        "Asterisk install it; FreePBX uses /var/lib/asterisk/sounds)",
    )
    install.add_argument(
        "--languages",
        type=_prompt_languages,
        default=dialplan_contract.PROMPT_LANGUAGES,
        metavar="LIST",
        help="comma-separated languages to install "
        f"(default and choices: {','.join(dialplan_contract.PROMPT_LANGUAGES)})",
    )


def _prompt_languages(text: str) -> tuple[str, ...]:
    from callbackd import dialplan_contract

    languages = tuple(dict.fromkeys(code.strip() for code in text.split(",") if code.strip()))
    unknown = [code for code in languages if code not in dialplan_contract.PROMPT_LANGUAGES]
    if unknown or not languages:
        raise argparse.ArgumentTypeError(
            f"{text!r}: callbackd ships prompts in "
            f"{', '.join(dialplan_contract.PROMPT_LANGUAGES)} only"
        )
    return languages


def _add_management_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Requests, customers and API tokens (callbackd/commands/manage.py)."""
    from callbackd.commands.manage_args import add_parsers

    add_parsers(commands, common)
    hash_token = commands.add_parser(
        "hash-token",
        help="print the SHA-256 of an API token read from stdin, for [[http.tokens]] sha256",
    )
    hash_token.add_argument(
        "--generate", action="store_true", help="make a new random token and print it too"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "hash-token":
        return _hash_token(generate=args.generate)
    if args.command == "install-sounds":
        from callbackd.commands.install_sounds import run_install_sounds

        return run_install_sounds(args.dir, args.languages, sys.stdout, sys.stderr)
    try:
        settings = load_settings(args.config)
    except ConfigError as err:
        print(f"callbackd: config error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        return _check_config(settings)
    if args.command == "run":
        import uvloop

        from callbackd.commands.run import run_daemon

        # libuv's loop: each hop of an abandon's path (AMI read, database round trip, Originate
        # write) costs less than on asyncio's own loop (bench figures in the README).
        return uvloop.run(run_daemon(settings))
    if args.command == "migrate":
        from callbackd.commands.migrate import run_migrate

        return asyncio.run(run_migrate(settings, lock_timeout=args.lock_timeout))
    from callbackd.commands.manage_args import REQUEST_COMMANDS

    if args.command in (*REQUEST_COMMANDS, "customers"):
        from callbackd.commands.manage import run_manage

        return asyncio.run(run_manage(settings, args, sys.stdout))
    raise AssertionError(f"unhandled command {args.command}")


def _check_config(settings: Settings) -> int:
    sys.stdout.write(render_effective_config(settings))
    print("callbackd: configuration is valid", file=sys.stderr)
    return EXIT_OK


def _hash_token(*, generate: bool) -> int:
    """The hash the configuration stores; the token itself is never written to a file."""
    import secrets

    from callbackd.domain.api import hash_token

    if generate:
        token = secrets.token_urlsafe(32)
        print(f"token:  {token}")
        print(f"sha256: {hash_token(token)}")
        return EXIT_OK
    token = sys.stdin.readline().strip()
    if not token:
        print("callbackd: give the token on stdin (or use --generate)", file=sys.stderr)
        return EXIT_CONFIG
    print(hash_token(token))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
