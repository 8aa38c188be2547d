"""A free TCP port on the loopback interface, for a process group's rendezvous (torch-free: the
calibration workers and torchrun's launcher import it before anything heavy)."""
from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now (the OS picks it; free until someone binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
