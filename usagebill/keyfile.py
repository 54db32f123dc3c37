"""The Stripe key from a file, never from the command line (where ``ps`` and
``/proc/PID/cmdline`` show it to every local user)."""

from __future__ import annotations

import os
import stat

from .errors import ConfigError

MAX_KEY_FILE = 4096  # a key is ~110 characters; anything bigger is not a key file


def read_key_file(path: str | os.PathLike) -> str:
    """The key on the first line of ``path``. Refused unless it is a regular file that only
    its owner can read or write (like ssh's private keys)."""
    shown = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        why = "is a symbolic link" if getattr(e, "errno", None) == 40 else (e.strerror or str(e)).lower()
        raise ConfigError(f"--api-key-file {shown}: cannot read it ({why})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"--api-key-file {shown}: not a regular file")
        if st.st_mode & 0o077:
            raise ConfigError(
                f"--api-key-file {shown}: readable or writable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"run: chmod 600 {shown}"
            )
        data = f.read(MAX_KEY_FILE + 1)
    if len(data) > MAX_KEY_FILE:
        raise ConfigError(f"--api-key-file {shown}: larger than {MAX_KEY_FILE} bytes, not a key file")
    try:
        lines = data.decode("utf-8").strip().splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"--api-key-file {shown}: not UTF-8 text") from None
    if not lines or not lines[0].strip():
        raise ConfigError(f"--api-key-file {shown}: empty")
    return lines[0].strip()
