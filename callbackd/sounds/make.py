"""Make the shipped recordings from ``prompts.toml`` (run by ``scripts/make-sounds``).

Text to speech with espeak-ng, then sox: leading and trailing silence cut, resampled to
8 kHz 16-bit mono PCM, peak normalised, a short fixed pause appended. Every setting is
fixed here and sox runs in repeatable mode without dither, so the same espeak-ng and sox
give byte-identical files on every run (the WAV header sox writes has no date or
comment).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from callbackd import dialplan_contract
from callbackd.sounds import (
    MAX_SECONDS,
    PROMPT_TEXTS_FILE,
    SAMPLE_RATE,
    SHIPPED_DIR,
    prompt_texts,
    shipped_prompts,
)


@dataclass(frozen=True)
class Voice:
    """espeak-ng settings for one language."""

    name: str
    words_per_minute: int
    pitch: int = 50
    amplitude: int = 100


VOICES: Final = {
    "en": Voice("en-us", words_per_minute=160),
    "ru": Voice("ru", words_per_minute=150),
}
"""A little slower than espeak-ng's 175 words a minute: telephone audio is harder to follow."""

SILENCE_THRESHOLD: Final = "0.5%"
"""Level below which sound at the start and end counts as silence and is cut."""
TAIL_SECONDS: Final = 0.1
"""Pause after each recording, so prompts played one after another do not run together."""
PEAK_DBFS: Final = -3
"""Peak level after normalisation: loud, with headroom for the codecs after Asterisk."""

_TIMEOUT: Final = 60.0


def synthesize(text: str, voice: Voice, target: Path, work_dir: Path) -> None:
    """Speak ``text`` into ``target``: 8 kHz 16-bit mono PCM WAV, trimmed and normalised."""
    raw = work_dir / "espeak.wav"
    _run(
        [
            "espeak-ng",
            "-b",
            "1",  # the text is UTF-8
            "-v",
            voice.name,
            "-s",
            str(voice.words_per_minute),
            "-p",
            str(voice.pitch),
            "-a",
            str(voice.amplitude),
            "-w",
            str(raw),
            text,
        ]
    )
    trim = ["silence", "1", "0.01", SILENCE_THRESHOLD]
    _run(
        [
            "sox",
            "-R",  # repeatable: fixed seeds, no time stamps
            "-D",  # no dither: silence stays digital silence
            str(raw),
            "-r",
            str(SAMPLE_RATE),
            "-b",
            "16",
            "-c",
            "1",
            "-e",
            "signed-integer",
            str(target),
            *trim,
            "reverse",
            *trim,
            "reverse",
            "gain",  # headroom, or the resampler's overshoot clips
            "-n",
            "-6",
            "rate",
            "-v",
            str(SAMPLE_RATE),
            "gain",
            "-n",
            str(PEAK_DBFS),
            "pad",
            "0",
            str(TAIL_SECONDS),
        ]
    )


def duration_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as recording:
        return recording.getnframes() / recording.getframerate()


def make_all(languages: Sequence[str], out_dir: Path = SHIPPED_DIR) -> list[str]:
    """(Re)make every prompt in ``languages``; returns a line per file, or raises."""
    texts = prompt_texts(PROMPT_TEXTS_FILE)
    missing = sorted(set(dialplan_contract.PROMPTS) ^ set(texts))
    if missing:
        raise SystemExit(f"make-sounds: prompts.toml and PROMPTS differ on {missing}")
    lines = []
    with tempfile.TemporaryDirectory(prefix="callbackd-sounds-") as scratch:
        work_dir = Path(scratch)
        for shipped in shipped_prompts(languages):
            voice = VOICES.get(shipped.language)
            if voice is None:
                raise SystemExit(f"make-sounds: no espeak-ng voice set for {shipped.language!r}")
            text = texts[shipped.name].get(shipped.language)
            if not text:
                raise SystemExit(f"make-sounds: [{shipped.name}] has no {shipped.language} text")
            target = out_dir / shipped.path.relative_to(SHIPPED_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            made = work_dir / shipped.file_name
            synthesize(text, voice, made, work_dir)
            seconds = duration_seconds(made)
            limit = MAX_SECONDS.get(shipped.name)
            if limit is not None and seconds > limit:
                raise SystemExit(
                    f"make-sounds: {shipped.language}/{shipped.name} lasts {seconds:.2f} s, "
                    f"more than {limit} s: shorten the text or speak it faster"
                )
            shutil.move(made, target)
            lines.append(f"{shipped.language} {shipped.name}: {seconds:.2f} s")
    return lines


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    if done.returncode != 0 or done.stderr.strip():
        raise SystemExit(
            f"make-sounds: {argv[0]} failed (exit {done.returncode}): {done.stderr.strip()}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make-sounds", description="Make callbackd's prompts from prompts.toml."
    )
    parser.add_argument(
        "--languages",
        default=",".join(dialplan_contract.PROMPT_LANGUAGES),
        help="comma-separated (default: every shipped language)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=SHIPPED_DIR,
        help="where <language>/callbackd/<name>.wav go (default: the package)",
    )
    args = parser.parse_args(argv)
    languages = [code for code in args.languages.split(",") if code]
    for line in make_all(languages, args.out):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
