"""callbackd's shipped prompts: their texts, the recordings, installing them, and Asterisk
playing each one in each language."""

from __future__ import annotations

import array
import asyncio
import os
import subprocess
import sys
import threading
import uuid
import wave
from pathlib import Path, PurePosixPath

import pytest

from callbackd import dialplan_contract
from callbackd.lab.asterisk import SOUNDS_DIR, LabAsterisk
from callbackd.lab.driver import LabDriver
from callbackd.sounds import (
    MAX_SECONDS,
    SAMPLE_RATE,
    SHIPPED_DIR,
    PromptInstallError,
    install_prompts,
    prompt_texts,
    resolve_inside,
    shipped_prompts,
)

REPO = Path(__file__).resolve().parents[1]
ALL = shipped_prompts()
EN_DIR = "en_US_f_Allison"
RU_DIR = "ru_RU_f_IvrvoiceRU"


def _samples(path: Path) -> tuple[wave._wave_params, array.array[int]]:
    with wave.open(str(path), "rb") as recording:
        params = recording.getparams()
        frames = recording.readframes(params.nframes)
    samples = array.array("h")
    samples.frombytes(frames)
    if sys.byteorder == "big":
        samples.byteswap()
    return params, samples


# --------------------------------------------------------------------- texts


def test_every_prompt_has_a_text_in_every_shipped_language():
    texts = prompt_texts()
    assert list(texts) == list(dialplan_contract.PROMPTS)
    for name, per_language in texts.items():
        assert set(per_language) == set(dialplan_contract.PROMPT_LANGUAGES), name
        for language, text in per_language.items():
            assert text.strip() == text
            assert text, (name, language)


# --------------------------------------------------------------------- recordings


@pytest.mark.parametrize("shipped", ALL, ids=lambda p: f"{p.language}-{p.name}")
def test_recording_is_8khz_mono_16bit_pcm_speech(shipped):
    header = shipped.path.read_bytes()[:44]
    # The plain 44-byte PCM header: RIFF/WAVE, a 16-byte fmt chunk with format 1, then data.
    assert header[:4] == b"RIFF"
    assert header[8:16] == b"WAVEfmt "
    assert int.from_bytes(header[16:20], "little") == 16
    assert int.from_bytes(header[20:22], "little") == 1
    assert header[36:40] == b"data"

    params, samples = _samples(shipped.path)
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, SAMPLE_RATE)
    assert params.comptype == "NONE"
    seconds = params.nframes / SAMPLE_RATE
    assert 0.3 <= seconds <= 15.0
    assert seconds <= MAX_SECONDS.get(shipped.name, 15.0)

    # Speech normalised near -3 dBFS, cut where the sound starts, ending in a short pause.
    peak = max(abs(s) for s in samples)
    assert 0.5 * 32767 <= peak <= 0.75 * 32767
    rms = (sum(s * s for s in samples) / len(samples)) ** 0.5
    assert rms >= 0.03 * 32767
    audible = [i for i, s in enumerate(samples) if abs(s) > 0.005 * 32767]
    assert audible[0] <= 0.01 * SAMPLE_RATE
    assert len(samples) - audible[-1] <= 0.12 * SAMPLE_RATE


def test_the_operators_whisper_is_short_in_every_language():
    for shipped in ALL:
        if shipped.name == "callback-request":
            with wave.open(str(shipped.path), "rb") as recording:
                seconds = recording.getnframes() / recording.getframerate()
            assert seconds <= 1.5, shipped.language


def test_nothing_else_ships_beside_the_recordings():
    shipped = {p.path for p in ALL}
    on_disk = {p for p in SHIPPED_DIR.rglob("*.wav")}
    assert on_disk == shipped


# --------------------------------------------------------------------- installing


def _debian_like_root(tmp_path: Path) -> Path:
    """A root laid out as Debian's asterisk-core-sounds packages leave it."""
    root = tmp_path / "root"
    sounds = root / "usr/share/asterisk/sounds"
    for voice in (EN_DIR, RU_DIR):
        (sounds / voice / "digits").mkdir(parents=True)
        (sounds / voice / "digits" / "7.gsm").write_bytes(voice.encode())
    alternatives = root / "etc/alternatives"
    alternatives.mkdir(parents=True)
    (alternatives / "asterisk-prompt-ru").symlink_to(f"/usr/share/asterisk/sounds/{RU_DIR}")
    (sounds / "ru").symlink_to("/etc/alternatives/asterisk-prompt-ru")
    (sounds / "en").symlink_to(EN_DIR)
    return root


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _expected(language: str) -> dict[str, bytes]:
    return {p.file_name: p.path.read_bytes() for p in ALL if p.language == language}


def test_install_follows_absolute_language_links_inside_the_root(tmp_path: Path):
    root = _debian_like_root(tmp_path)
    first = install_prompts("/usr/share/asterisk/sounds", ["en", "ru"], root=root)

    assert [(r.language, r.installed, r.unchanged, r.new_language_dir) for r in first] == [
        ("en", 18, 0, False),
        ("ru", 18, 0, False),
    ]
    assert first[1].directory == PurePosixPath("/usr/share/asterisk/sounds/ru/callbackd")
    sounds = root / "usr/share/asterisk/sounds"
    assert _files(sounds / EN_DIR / "callbackd") == _expected("en")
    assert _files(sounds / RU_DIR / "callbackd") == _expected("ru")
    # The links are still links; nothing was written beside them.
    assert (sounds / "ru").is_symlink()
    assert (root / "etc/alternatives/asterisk-prompt-ru").is_symlink()
    mode = (sounds / RU_DIR / "callbackd" / "callback-request.wav").stat().st_mode
    assert mode & 0o777 == 0o644

    again = install_prompts("/usr/share/asterisk/sounds", ["en", "ru"], root=root)
    assert [(r.installed, r.unchanged) for r in again] == [(0, 18), (0, 18)]


def test_install_replaces_a_changed_file_and_leaves_no_temporary_files(tmp_path: Path):
    sounds = tmp_path / "sounds"
    (sounds / "en" / "callbackd").mkdir(parents=True)
    stale = sounds / "en" / "callbackd" / "callback-request.wav"
    stale.write_bytes(b"RIFF an older recording")
    inode = stale.stat().st_ino

    [result] = install_prompts(str(sounds), ["en"])

    assert (result.installed, result.unchanged, result.new_language_dir) == (18, 0, False)
    assert _files(sounds / "en" / "callbackd") == _expected("en")
    # Replaced by a rename, not rewritten in place under a reader's feet.
    assert stale.stat().st_ino != inode
    [again] = install_prompts(str(sounds), ["en"])
    assert (again.installed, again.unchanged) == (0, 18)


def test_install_into_a_missing_language_says_so(tmp_path: Path):
    [result] = install_prompts(str(tmp_path), ["ru"])
    assert result.new_language_dir
    assert _files(tmp_path / "ru" / "callbackd") == _expected("ru")


def test_installers_running_at_once_all_succeed(tmp_path: Path):
    root = _debian_like_root(tmp_path)
    failures: list[BaseException] = []

    def install() -> None:
        try:
            install_prompts("/usr/share/asterisk/sounds", ["en", "ru"], root=root)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=install) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    sounds = root / "usr/share/asterisk/sounds"
    assert _files(sounds / RU_DIR / "callbackd") == _expected("ru")
    assert _files(sounds / EN_DIR / "callbackd") == _expected("en")


def test_install_refuses_a_missing_sounds_dir_and_a_broken_language_link(tmp_path: Path):
    with pytest.raises(PromptInstallError, match="is not a directory"):
        install_prompts(str(tmp_path / "nope"), ["en"])
    (tmp_path / "ru").symlink_to("/etc/alternatives/no-such-voice")
    with pytest.raises(PromptInstallError, match="symbolic link to nothing"):
        install_prompts("/", ["ru"], root=tmp_path)


def test_resolve_inside_keeps_links_and_dot_dot_within_the_root(tmp_path: Path):
    root = _debian_like_root(tmp_path)
    sounds = root / "usr/share/asterisk/sounds"
    (root / "usr/local/share/asterisk/sounds").mkdir(parents=True)
    (sounds / "custom").symlink_to("../../../local/share/asterisk/sounds")
    (root / "escape").symlink_to("../../../../..")

    inner = PurePosixPath("/usr/share/asterisk/sounds")
    assert resolve_inside(root, inner / "ru" / "digits") == sounds / RU_DIR / "digits"
    assert resolve_inside(root, inner / "custom") == root / "usr/local/share/asterisk/sounds"
    assert resolve_inside(root, PurePosixPath("/escape/etc")) == root / "etc"
    assert resolve_inside(root, inner / "new" / "x") == sounds / "new" / "x"


# --------------------------------------------------------------------- the command


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKD_")}
    environ["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "callbackd", "install-sounds", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        cwd=REPO,
        check=False,
    )


def test_install_sounds_command_installs_then_changes_nothing(tmp_path: Path):
    (tmp_path / "en").mkdir()
    (tmp_path / "ru").mkdir()
    first = _cli("--dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"en: installed 18, unchanged 0 in {tmp_path}/en/callbackd",
        f"ru: installed 18, unchanged 0 in {tmp_path}/ru/callbackd",
    ]
    second = _cli("--dir", str(tmp_path), "--languages", "ru")
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [
        f"ru: installed 0, unchanged 18 in {tmp_path}/ru/callbackd"
    ]
    assert _files(tmp_path / "ru" / "callbackd") == _expected("ru")


def test_install_sounds_command_failures_are_one_line(tmp_path: Path):
    missing = _cli("--dir", str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"callbackd: cannot install the prompts: {tmp_path}/nope is not a directory"
    ]

    # A file where the prompts' directory should be: the write fails, cleanly.
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "callbackd").write_text("not a directory")
    blocked = _cli("--dir", str(tmp_path), "--languages", "en")
    assert blocked.returncode == 1
    assert blocked.stderr.strip().splitlines() == [
        f"callbackd: cannot install the prompts: {tmp_path}/en/callbackd is not a directory"
    ]
    assert blocked.stdout == ""

    # A directory where one prompt's file should be: that write fails, cleanly.
    (tmp_path / "en" / "callbackd").unlink()
    (tmp_path / "en" / "callbackd" / "press-1-to-connect.wav").mkdir(parents=True)
    failed = _cli("--dir", str(tmp_path), "--languages", "en")
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        "callbackd: cannot install the prompts: Is a directory: "
        f"{tmp_path}/en/callbackd/press-1-to-connect.wav"
    ]
    assert not [p for p in (tmp_path / "en" / "callbackd").iterdir() if p.suffix == ".tmp"]

    unknown = _cli("--dir", str(tmp_path), "--languages", "en,de")
    assert unknown.returncode == 2
    assert "'en,de': callbackd ships prompts in en, ru only" in unknown.stderr


def test_install_sounds_command_warns_when_asterisk_lacks_the_language(tmp_path: Path):
    (tmp_path / "en").mkdir()
    done = _cli("--dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == (
        f"ru: installed 18, unchanged 0 in {tmp_path}/ru/callbackd (a new directory: this "
        "Asterisk has no core sounds in 'ru', so it says numbers and digits in English)"
    )


def test_install_sounds_help_names_the_freepbx_directory():
    done = _cli("--help")
    assert done.returncode == 0
    assert "/usr/share/asterisk/sounds" in done.stdout
    assert "/var/lib/asterisk/sounds" in done.stdout


# --------------------------------------------------------------------- the real Asterisk


@pytest.mark.asterisk
def test_the_lab_root_holds_the_shipped_prompts(pbx: LabAsterisk):
    for language, voice in (("en", EN_DIR), ("ru", RU_DIR)):
        where = resolve_inside(pbx.root, SOUNDS_DIR / language / dialplan_contract.PROMPT_DIR)
        assert where == pbx.root / "usr/share/asterisk/sounds" / voice / "callbackd"
        assert _files(where) == _expected(language)


async def _play(driver: LabDriver, language: str, sound: str, sound_file: str) -> str:
    channel_id = f"lab-prompt-{uuid.uuid4().hex}"
    messages = await driver.action_list(
        {
            "Action": "Originate",
            "Channel": "Local/s@lab-prompts",
            "Application": "Wait",
            "Data": "60",
            "Async": "true",
            "Timeout": "10000",
            "ChannelId": channel_id,
            "OtherChannelId": f"{channel_id};2",
            "Variable": [
                f"LAB_LANGUAGE={language}",
                f"LAB_SOUND={sound}",
                f"LAB_SOUNDS_DIR={SOUNDS_DIR}",
                f"LAB_SOUND_FILE={sound_file}",
            ],
        },
        timeout=12,
    )
    assert messages[0].success, messages[0].get("Message")
    outcome = [m for m in messages[1:] if m.event == "OriginateResponse"]
    assert [m.get("Response") for m in outcome] == ["Success"]
    return f"{channel_id};2"


def _lab_playback_of(channel: str):
    return lambda e: e.get("UserEvent") == "LabPlayback" and e.get("Uniqueid") == channel


@pytest.mark.asterisk
async def test_asterisk_plays_every_prompt_in_the_channels_language(
    pbx: LabAsterisk, ami_driver: LabDriver
):
    # Every prompt in both languages at once, plus a Russian and an English core digit.
    plays = [
        (p.language, dialplan_contract.prompt(p.name), f"callbackd/{p.file_name}") for p in ALL
    ] + [("ru", "digits/7", "digits/7.gsm"), ("en", "digits/7", "digits/7.gsm")]
    async with ami_driver.events("UserEvent") as events:
        channels = await asyncio.gather(*(_play(ami_driver, *play) for play in plays))
        reports = {}
        for channel in channels:
            reports[channel] = await events.next("UserEvent", _lab_playback_of(channel), timeout=30)

    for (language, sound, sound_file), channel in zip(plays, channels, strict=True):
        event = reports[channel]
        assert (event["Sound"], event["Language"], event["Status"]) == (
            sound,
            language,
            "SUCCESS",
        )
        # The file Asterisk found under this language's directory is the one we expect:
        # the shipped recording of that language, or the root's own core sound.
        expected = resolve_inside(pbx.root, SOUNDS_DIR / language / sound_file)
        assert int(event["Bytes"]) == expected.stat().st_size, (language, sound)
    ru_seven = resolve_inside(pbx.root, SOUNDS_DIR / "ru" / "digits" / "7.gsm")
    assert ru_seven.parent.parent.name == RU_DIR
