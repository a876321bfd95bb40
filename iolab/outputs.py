"""Output files: checked before anything is measured, written atomically, kept in a fallback file if the
write fails anyway.

Results go only to regular files. ``check_outputs`` refuses, as a ``UsageError`` (exit 2) naming the option,
a path that is a device, FIFO, socket or directory, a symbolic link to one of them, a dangling link, any
path that passes through /dev, /proc or /sys, itself or by a link (kernel interfaces: as root even
``open("/proc/version", O_WRONLY)`` succeeds, and ``/dev/stdout`` may lead to anybody's file), a path
under something that is not a directory, a directory where no file can be created, and an existing file
that cannot be opened for writing.

Writability is tried for real (a temporary file created and removed in the directory, the existing file
opened for writing without truncating it), never judged by ``os.access``: iolab often runs as root, for
whom mode bits mean little, while a read-only mount (EROFS) or an immutable file (``chattr +i``, EPERM)
still refuse. A file whose mode is read-only is writable by root and is replaced like any other.

Missing directories are created when the file is first written, if their nearest existing ancestor is a
directory in which a file can be created (so the default ``iolab-results/`` appears on the first save).
The check itself leaves nothing behind.

``write_text_atomic`` writes a temporary file in the target's directory and renames it over the target,
re-checking with ``lstat`` just before the rename that the target is absent or a regular file, so a
device, FIFO or symlink put there meanwhile is never replaced. A symbolic link to a regular file is
followed when the write starts: the file it points to is replaced and the link is kept.

``OutputKeeper`` is what a command writes through: when a write fails after the check passed (the
directory removed mid-run, a full disk), it warns once on stderr, keeps that output in a fallback file
(``iolab-<what>-fallback-<timestamp>-<pid><suffix>`` in the current directory, else in $TMPDIR,
created with O_EXCL) and writes there from then on, so a run goes on measuring. At the end
``raise_if_fell_back`` raises ``OutputWriteError`` (exit 9) naming every fallback file. A run that fails
for another reason (a server that died, Ctrl-C) keeps its own exit code; the warning line has named the
fallback file already.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from iolab.errors import OutputWriteError, UsageError

STDOUT = "-"
# Kernel interfaces, not places for files (as root, writes to many of them succeed and mean something else).
_KERNEL_ROOTS = ("/dev", "/proc", "/sys")
_RULE = "results go only to regular files"

OutputPath: TypeAlias = str | os.PathLike[str]


class UnsafeOutputError(OSError):
    """The target stopped being absent or a regular file between the check and the rename."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a plain file"


def _kernel_root(path: str) -> str | None:
    return next((root for root in _KERNEL_ROOTS if path == root or path.startswith(root + "/")), None)


_MAX_LINKS = 40  # the kernel's own limit (MAXSYMLINKS) before ELOOP


def _resolve(path: OutputPath) -> tuple[Path, str | None]:
    """(the path with every symbolic link followed, the first of /dev, /proc, /sys it passes through).

    Done by hand rather than with os.path.realpath so every step is seen: ``/dev/stdout`` resolves to
    wherever fd 1 points (a regular file, maybe someone else's), and a link through /proc/self/fd may
    end anywhere. Missing components are kept as they are, as realpath does.
    """
    pending = [c for c in os.fspath(os.path.abspath(path)).split("/") if c]
    current, through, hops = "/", None, 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            current = os.path.dirname(current)
            continue
        current = os.path.join(current, part)
        through = through or _kernel_root(current)
        try:
            link = os.readlink(current)
        except OSError:  # not a link, or missing
            continue
        hops += 1
        if hops > _MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), os.fspath(path))
        current = "/" if link.startswith("/") else os.path.dirname(current)
        pending = [c for c in link.split("/") if c] + pending
    return Path(current), through


def _nearest_existing(path: Path) -> tuple[Path, os.stat_result]:
    """The closest ancestor of ``path`` that exists (``/`` at worst), with its stat (links followed)."""
    for candidate in path.parents:
        try:
            return candidate, os.stat(candidate)
        except FileNotFoundError:
            continue
    return Path("/"), os.stat("/")  # pragma: no cover - "/" is always among the parents of an absolute path


def _probe_directory(directory: Path) -> str | None:
    """None if a file can be created in ``directory`` (tried: created and removed), else why not."""
    try:
        fd, name = tempfile.mkstemp(prefix=".iolab-check-", dir=directory)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(name)
    return None


def _place_refusal(shown: str, real: Path, exists: bool, probed: dict[Path, str | None]) -> str | None:
    """Why no file can be written at ``real`` (a regular file or nothing yet), tried for real; or None."""
    if exists:
        try:  # opened for writing, never truncated: a read-only mount or chattr +i refuses even root
            os.close(os.open(real, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC))
        except OSError as exc:
            return f"{shown}: cannot be written ({exc.strerror})"
        directory = real.parent
    else:
        directory, dir_stat = _nearest_existing(real)
        if not stat.S_ISDIR(dir_stat.st_mode):
            return f"{shown}: {directory} is not a directory"
    if directory not in probed:
        probed[directory] = _probe_directory(directory)
    why = probed[directory]
    return None if why is None else f"{shown}: cannot create files in {directory} ({why})"


def _refusal(option: str, path: OutputPath, probed: dict[Path, str | None]) -> str | None:
    """Why ``path`` cannot take output (a message naming the option), or None if it can."""
    shown = f"{option} {os.fspath(path)}"
    try:
        real, through = _resolve(path)
        target: os.stat_result | None = os.stat(real)
    except (FileNotFoundError, NotADirectoryError):  # nothing there yet (a non-directory parent: below)
        target = None
    except OSError as exc:
        return f"{shown}: cannot be examined ({exc.strerror})"
    is_link = os.path.islink(os.path.abspath(path))
    via = f" (a symbolic link to {real})" if is_link else ""
    if target is not None and not stat.S_ISREG(target.st_mode):
        return f"{shown}{via}: not a regular file ({_kind(target.st_mode)}); {_RULE}"
    if through:
        return f"{shown}{via}: in {through}, a kernel interface, not a place for files; {_RULE}"
    if is_link and target is None:
        return f"{shown}: a symbolic link to {real}, which does not exist; give the file itself"
    return _place_refusal(shown, real, target is not None, probed)


def check_outputs(*items: tuple[str, OutputPath | None], stdout: Collection[str] = ()) -> None:
    """Refuse (UsageError, exit 2) the first output path that cannot take a file; None paths are skipped.

    ``items`` are (option, path) pairs, e.g. ``("-o", path)``; options in ``stdout`` take ``-`` for
    standard output. Two options naming the same file are refused too (one would overwrite the other).
    """
    probed: dict[Path, str | None] = {}
    seen: dict[str, str] = {}
    for option, path in items:
        if path is None:
            continue
        if os.fspath(path) == STDOUT:
            if option in stdout:
                continue
            raise UsageError(f"{option} -: this option writes a file, not standard output; give a file name")
        why = _refusal(option, path, probed)
        if why is not None:
            raise UsageError(why)
        real = str(_resolve(path)[0])
        if real in seen and seen[real] != option:
            raise UsageError(f"{option} {os.fspath(path)}: also the file of {seen[real]}; "
                             "give each output its own file")
        seen.setdefault(real, option)


def check_output(option: str, path: OutputPath | None, *, stdout_ok: bool = False) -> None:
    check_outputs((option, path), stdout=(option,) if stdout_ok else ())


# --------------------------------------------------------------------------------------------- writing

def _umask() -> int:
    """The process's umask, read without changing it (os.umask can only set it)."""
    # Read here, not through measure/procfs.py: this module sits below the measure layer (results and the
    # CLI import it), and reading one line of our own status cannot race with an exiting process.
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _write_temp(fd: int, text: str) -> None:
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def write_text_atomic(path: OutputPath, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in its directory and a rename.

    Never replaces anything but a regular file (checked with ``lstat`` just before the rename); the
    temporary file is removed on any failure. Raises OSError (``UnsafeOutputError`` for that refusal).
    Returns the path written (a symbolic link's target, when ``path`` was a link to a regular file).
    """
    target, through = _resolve(path)
    if through:
        raise UnsafeOutputError(errno.EPERM, f"in {through}, a kernel interface; {_RULE}", os.fspath(path))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a component is there but is not a directory (mkdir's word for it misleads)
        blocker = _nearest_existing(target)[0]
        raise NotADirectoryError(errno.ENOTDIR, f"{blocker} is not a directory", os.fspath(path)) from None
    try:
        mode = stat.S_IMODE(os.lstat(target).st_mode)  # keep the mode of the file replaced
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=".iolab-", suffix=".tmp", dir=target.parent)
    try:
        try:
            os.fchmod(fd, mode)
        except OSError:
            os.close(fd)
            raise
        _write_temp(fd, text)  # closes fd
        try:
            now = os.lstat(target)
        except FileNotFoundError:
            now = None
        if now is not None and not stat.S_ISREG(now.st_mode):
            raise UnsafeOutputError(errno.EEXIST, f"became {_kind(now.st_mode)} while being written; {_RULE}",
                                    str(target))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# --------------------------------------------------------------------------------------------- fallback

def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _fallback_name(what: str, suffix: str, n: int) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"iolab-{what}-fallback-{stamp}-{os.getpid()}{'' if n == 1 else f'-{n}'}{suffix}"


def create_fallback(what: str, suffix: str) -> Path:
    """A new empty file (O_EXCL: never anyone else's) in the current directory, else in $TMPDIR."""
    reasons = []
    for directory in (os.getcwd, tempfile.gettempdir):
        try:
            where = Path(directory())
        except OSError as exc:
            reasons.append(_reason(exc))
            continue
        for n in range(1, 100):
            path = where / _fallback_name(what, suffix, n)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                continue
            except OSError as exc:
                reasons.append(f"{where}: {_reason(exc)}")
                break
            os.close(fd)
            return path.absolute()
    raise OSError(errno.EACCES, "; ".join(reasons) or "no free name")


def _what(option: str) -> str:
    """The word a fallback file's name carries: ``-o`` → results, ``--hdr-log`` → hdr-log."""
    name = option.lstrip("-")
    return "results" if name in ("o", "output") else name


@dataclass
class _Kept:
    option: str
    path: Path
    reason: str
    fallback: Path


def _stderr_warning(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")
    sys.stderr.flush()


class OutputKeeper:
    """Writes a command's outputs; one that cannot be written where asked is kept in a fallback file."""

    def __init__(self, warn: Callable[[str], None] = _stderr_warning) -> None:
        self._warn = warn
        self._kept: dict[Path, _Kept] = {}

    def where(self, path: OutputPath) -> Path:
        """Where the output asked for at ``path`` really is (its fallback file once it fell back)."""
        kept = self._kept.get(Path(path))
        return kept.fallback if kept else Path(path)

    @property
    def fell_back(self) -> bool:
        return bool(self._kept)

    def write(self, option: str, path: OutputPath, text: str) -> Path:
        """Write ``text`` for the output of ``option``; returns the file it is in."""
        key = Path(path)
        kept = self._kept.get(key)
        if kept is None:
            try:
                write_text_atomic(key, text)
                return key
            except OSError as exc:
                kept = self._fall_back(option, key, _reason(exc))
        try:
            write_text_atomic(kept.fallback, text)
        except OSError as exc:
            raise OutputWriteError(f"could not write {option} {key} ({kept.reason}), nor its fallback file "
                                   f"{kept.fallback} ({_reason(exc)}): this output was lost") from None
        return kept.fallback

    def _fall_back(self, option: str, path: Path, reason: str) -> _Kept:
        try:
            fallback = create_fallback(_what(option), path.suffix)
        except OSError as exc:
            raise OutputWriteError(f"could not write {option} {path} ({reason}), nor a fallback file in the "
                                   f"current directory or $TMPDIR ({_reason(exc)}): this output was lost") from None
        kept = self._kept[path] = _Kept(option, path, reason, fallback)
        self._warn(f"could not write {option} {path} ({reason}); keeping it in {fallback} instead")
        return kept

    def message(self) -> str:
        return "; ".join(f"could not write {k.option} {k.path} ({k.reason}): it is in {k.fallback}"
                         for k in self._kept.values())

    def raise_if_fell_back(self) -> None:
        """OutputWriteError (exit 9) naming every fallback file, if any output went to one."""
        if self._kept:
            raise OutputWriteError(self.message())
