"""How the web console's browser sends its token on a WebSocket: as a subprotocol.

A browser cannot set ``Authorization`` on a WebSocket, so the console offers the subprotocols
``rock-env`` and ``bearer.<token as unpadded base64url>``; the server accepts ``rock-env``.
"""

from __future__ import annotations

import base64
import binascii

#: The prefix of the token subprotocol.
TOKEN_PREFIX = "bearer."


def token_subprotocol(token: str) -> str:
    """The subprotocol that carries ``token``."""
    return TOKEN_PREFIX + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def token_from_subprotocols(offered: list[str]) -> str | None:
    """The token in an offered ``bearer.`` subprotocol (None if there is none or it is not valid base64url)."""
    for item in offered:
        if item.startswith(TOKEN_PREFIX):
            text = item[len(TOKEN_PREFIX) :]
            try:
                return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return ""
    return None
