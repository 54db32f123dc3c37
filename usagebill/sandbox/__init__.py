"""An offline, stateful emulator of the Stripe API subset usagebill uses, driven through the
real ``stripe`` SDK. Imports nothing from the rest of usagebill."""

from .compat import UnsupportedSDK
from .core import Sandbox
from .faults import FaultConfig
from .server import SandboxServer, serve
from .transport import SandboxHTTPClient

__all__ = ["Sandbox", "SandboxHTTPClient", "SandboxServer", "serve", "FaultConfig", "UnsupportedSDK"]
