"""The strict YAML reader, as the desired-state loader knows it, and the only way it opens a file.

The reader itself lives in :mod:`adp_yaml`, shared with the emulator's seed loader, so that there is one set of
YAML rules in the project. Desired-state files always use the defaults: anchors and aliases are refused, because
service files come from pull requests.

Files come from pull requests too, so `read_tree_file` opens them defensively (issue 10, "input files"):

- only a regular file inside the stacks tree is read: a symbolic link is followed only when its target stays in
  the tree, and a FIFO, device or socket is refused from its metadata, without reading a byte (opening with
  ``O_NONBLOCK``, so a FIFO cannot make the loader hang, and checking the opened descriptor with ``fstat``, so a
  link swapped in between cannot redirect the read);
- at most ``MAX_BYTES + 1`` bytes are read whatever the file claims its size is (``/dev/zero``, ``/proc``);
- every refusal is one `YamlRefused` line that names the kind of file, never its content.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from adp_yaml import MAX_BYTES, MAX_DEPTH, YamlDocument, YamlRefused, parse_yaml, read_yaml

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "OutsideTree",
    "YamlDocument",
    "YamlRefused",
    "inside_tree",
    "parse_yaml",
    "read_tree_file",
    "read_yaml",
]

_REGULAR_ONLY = "a regular file inside the stacks directory"


class OutsideTree(YamlRefused):
    """A symbolic link whose target leaves the stacks tree."""


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def inside_tree(path: Path, root: Path) -> Path:
    """`path` resolved; `OutsideTree` when it (or a link on the way) points out of `root` (resolved)."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real != real_root and real_root not in real.parents:
        raise OutsideTree("symbolic link to a file outside the stacks directory (not read)", _REGULAR_ONLY)
    return real


def read_tree_file(path: Path, root: Path) -> YamlDocument:
    """Read and strictly parse one YAML file of the tree under `root` (see the module docstring)."""
    real = inside_tree(path, root)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        before = os.lstat(real)
        if not stat.S_ISREG(before.st_mode):
            raise YamlRefused(f"is {_kind(before.st_mode)}, not a file (not read)", _REGULAR_ONLY)
        fd = os.open(real, flags)
    except YamlRefused:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutsideTree("symbolic link changed while it was read (not read)", _REGULAR_ONLY) from None
        raise YamlRefused(f"cannot be read ({exc.strerror or type(exc).__name__})", "a readable file") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            raise YamlRefused(f"is {_kind(opened.st_mode)}, not a file (not read)", _REGULAR_ONLY)
        if opened.st_size > MAX_BYTES:
            raise YamlRefused(
                f"file is larger than {MAX_BYTES // 1024} KiB ({opened.st_size} bytes)",
                f"at most {MAX_BYTES // 1024} KiB",
            )
        chunks: list[bytes] = []
        remaining = MAX_BYTES + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        raise YamlRefused(f"cannot be read ({exc.strerror or type(exc).__name__})", "a readable file") from None
    finally:
        os.close(fd)
    return parse_yaml(b"".join(chunks))
