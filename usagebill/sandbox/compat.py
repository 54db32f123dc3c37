"""Which stripe SDK the sandbox was built for. It validates requests against the SDK's
generated params types (private modules included) and answers in the shapes of its API
version; an SDK pinned to another API version would be emulated wrongly, so it is refused
with one clear message instead."""

from __future__ import annotations

# The API versions (as the SDK pins them in ``stripe.api_version``) whose shapes the sandbox emits.
BUILT_FOR = ("2026-10-28.endive",)
SDK_REQUIREMENT = "stripe>=16.1,<17"


class UnsupportedSDK(RuntimeError):
    """The installed stripe SDK speaks an API version the sandbox does not emulate."""


def check_sdk(api_version: str | None = None) -> None:
    import stripe

    version = api_version or stripe.api_version
    if version not in BUILT_FOR:
        raise UnsupportedSDK(
            f"the usagebill sandbox emulates Stripe API version {', '.join(BUILT_FOR)}, but the installed stripe "
            f"SDK {getattr(stripe, 'VERSION', '?')} pins {version}: install '{SDK_REQUIREMENT}'"
        )
