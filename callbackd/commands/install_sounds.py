"""``callbackd install-sounds``: copy the shipped prompts into Asterisk's sounds directory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import TextIO

from callbackd.sounds import LanguageInstall, PromptInstallError, install_prompts

EXIT_OK = 0
EXIT_FAILED = 1


def run_install_sounds(
    sounds_dir: PurePosixPath, languages: Sequence[str], out: TextIO, err: TextIO
) -> int:
    try:
        results = install_prompts(sounds_dir, languages)
    except PromptInstallError as exc:
        print(f"callbackd: cannot install the prompts: {exc}", file=err)
        return EXIT_FAILED
    except OSError as exc:
        # os.replace names the temporary file first and the prompt's own path second.
        path = exc.filename2 or exc.filename
        where = f": {path}" if path else ""
        print(f"callbackd: cannot install the prompts: {exc.strerror or exc}{where}", file=err)
        return EXIT_FAILED
    for result in results:
        print(summary_line(result), file=out)
    return EXIT_OK


def summary_line(result: LanguageInstall) -> str:
    """One line per language: what was copied, what was already there, and where."""
    line = (
        f"{result.language}: installed {result.installed}, unchanged {result.unchanged} "
        f"in {result.directory}"
    )
    if result.new_language_dir:
        line += (
            f" (a new directory: this Asterisk has no core sounds in {result.language!r}, "
            "so it says numbers and digits in English)"
        )
    return line
