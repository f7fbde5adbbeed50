"""callbackd's own prompts: where the shipped recordings are and how they reach Asterisk.

The recordings are made from ``prompts.toml`` by ``scripts/make-sounds`` and ship inside the
package as ``<language>/callbackd/<name>.wav``. :func:`install_prompts` copies them into an
Asterisk sounds directory, where Asterisk plays ``callbackd/<name>`` in the channel's
language; ``callbackd install-sounds`` and the lab PBX both use it.
"""

from __future__ import annotations

import errno
import os
import tempfile
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from callbackd import dialplan_contract

SHIPPED_DIR: Final = Path(__file__).resolve().parent
"""The package's sounds directory: ``prompts.toml`` and ``<language>/callbackd/*.wav``."""

PROMPT_TEXTS_FILE: Final = SHIPPED_DIR / "prompts.toml"

PROMPT_FORMAT: Final = "wav"
"""The recordings' file format (the extension Asterisk picks format_wav by)."""

SAMPLE_RATE: Final = 8000
"""Hz; Asterisk's format_wav reads 8 kHz 16-bit mono PCM."""

MAX_SECONDS: Final = {"callback-request": 1.5}
"""Longest a prompt may last, in every language: the operator's whisper is heard on every
callback, and the operator's time is what a callback costs."""

DEFAULT_SOUNDS_DIR: Final = PurePosixPath("/usr/share/asterisk/sounds")
"""Debian's and Asterisk's own sounds directory (FreePBX: /var/lib/asterisk/sounds)."""

_MAX_SYMLINKS: Final = 40
"""As many links as Linux follows in one path before it says ELOOP."""


class PromptInstallError(Exception):
    """The prompts cannot be installed where asked; the message says where and why."""


@dataclass(frozen=True)
class ShippedPrompt:
    """One recording in the package."""

    name: str
    language: str
    path: Path

    @property
    def file_name(self) -> str:
        return f"{self.name}.{PROMPT_FORMAT}"


@dataclass(frozen=True)
class LanguageInstall:
    """What :func:`install_prompts` did for one language."""

    language: str
    directory: PurePosixPath
    """Where the prompts are, as Asterisk sees it (``<sounds dir>/<language>/callbackd``)."""
    installed: int
    unchanged: int
    new_language_dir: bool
    """The sounds directory had no directory for this language: Asterisk has no core sounds
    (digits, numbers) in it there."""


def prompt_texts(path: Path = PROMPT_TEXTS_FILE) -> dict[str, dict[str, str]]:
    """Every prompt's text per language, as ``prompts.toml`` has it: name -> language -> text."""
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    texts: dict[str, dict[str, str]] = {}
    for name, per_language in data.items():
        if not isinstance(per_language, dict) or not all(
            isinstance(text, str) for text in per_language.values()
        ):
            raise ValueError(f"{path}: [{name}] must map languages to texts")
        texts[name] = dict(per_language)
    return texts


def shipped_prompts(
    languages: Iterable[str] = dialplan_contract.PROMPT_LANGUAGES,
) -> list[ShippedPrompt]:
    """The package's recording of every prompt in each language, whether or not it exists."""
    prompts = []
    for language in languages:
        if language not in dialplan_contract.PROMPT_LANGUAGES:
            raise ValueError(f"callbackd ships no prompts in {language!r}")
        for name in dialplan_contract.PROMPTS:
            path = SHIPPED_DIR / language / dialplan_contract.PROMPT_DIR / f"{name}.{PROMPT_FORMAT}"
            prompts.append(ShippedPrompt(name=name, language=language, path=path))
    return prompts


def install_prompts(
    sounds_dir: PurePosixPath | str,
    languages: Iterable[str],
    *,
    root: Path | None = None,
) -> list[LanguageInstall]:
    """Copy the shipped prompts to ``<sounds_dir>/<language>/callbackd/<name>.wav``.

    ``sounds_dir`` is the path as Asterisk sees it; ``root`` is the directory Asterisk runs
    chrooted in (None: this machine's ``/``). Symbolic links on the way (Debian makes each
    language directory a link through /etc/alternatives) are followed inside ``root``,
    never into the host's own files. Each file is written to a temporary file beside it
    and renamed, so Asterisk (or another installer running at the same time) never sees
    half a file; files already identical are left alone.

    Raises :class:`PromptInstallError` when ``sounds_dir``, a language's link or the
    prompts' directory is not a directory, and OSError when a file cannot be written.
    """
    base = (root or Path("/")).resolve()
    inner = PurePosixPath(sounds_dir)
    if not inner.is_absolute():
        if root is not None:
            raise PromptInstallError(f"sounds directory {inner} must be absolute inside {base}")
        inner = PurePosixPath(Path.cwd()) / inner
    sounds_host = resolve_inside(base, inner)
    if not sounds_host.is_dir():
        raise PromptInstallError(f"{_shown(base, inner)} is not a directory")
    by_language: dict[str, list[ShippedPrompt]] = {}
    for shipped in shipped_prompts(dict.fromkeys(languages)):
        by_language.setdefault(shipped.language, []).append(shipped)
    results = []
    for language, prompts in by_language.items():
        language_host = resolve_inside(base, inner / language)
        if (sounds_host / language).is_symlink() and not language_host.exists():
            raise PromptInstallError(
                f"{_shown(base, inner / language)} is a symbolic link to nothing"
            )
        new_language_dir = not language_host.is_dir()
        target_dir = language_host / dialplan_contract.PROMPT_DIR
        shown_dir = inner / language / dialplan_contract.PROMPT_DIR
        if target_dir.exists() and not target_dir.is_dir():
            raise PromptInstallError(f"{_shown(base, shown_dir)} is not a directory")
        target_dir.mkdir(parents=True, exist_ok=True)
        installed = unchanged = 0
        for shipped in prompts:
            if _copy_if_changed(shipped.path.read_bytes(), target_dir / shipped.file_name):
                installed += 1
            else:
                unchanged += 1
        results.append(
            LanguageInstall(
                language=language,
                directory=shown_dir,
                installed=installed,
                unchanged=unchanged,
                new_language_dir=new_language_dir,
            )
        )
    return results


def resolve_inside(root: Path, path: PurePosixPath) -> Path:
    """The host path of absolute ``path`` as a process chrooted in ``root`` reaches it.

    Every symbolic link is followed as the chrooted process would: an absolute target
    starts again at ``root``, and ``..`` never climbs above it. Parts that do not exist
    yet are appended as they are.
    """
    if not path.is_absolute():
        raise ValueError(f"{path} is not absolute")
    pending = list(path.parts[1:])
    current = root
    depth: list[Path] = []
    """Directories entered below root, so '..' can go back out of a followed link."""
    links = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            current = depth.pop() if depth else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            links += 1
            if links > _MAX_SYMLINKS:
                raise OSError(errno.ELOOP, "too many symbolic links", str(path))
            target = PurePosixPath(os.readlink(candidate))
            if target.is_absolute():
                current, depth = root, []
                pending[:0] = target.parts[1:]
            else:
                pending[:0] = target.parts
            continue
        depth.append(current)
        current = candidate
    return current


def _copy_if_changed(content: bytes, target: Path) -> bool:
    """Write ``content`` to ``target`` by an atomic rename, unless it already holds it."""
    try:
        if target.stat().st_size == len(content) and target.read_bytes() == content:
            return False
    except FileNotFoundError:
        pass
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


def _shown(root: Path, inner: PurePosixPath) -> str:
    return str(inner) if root == Path("/") else f"{inner} (inside {root})"
