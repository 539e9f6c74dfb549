"""Ray (>= 2.59) turns on token authentication: the nodes the tests start and this process
must share a token, and Ray reads it when it is imported, so it is set before any test module
imports Ray (a token already set outside is kept)."""

from __future__ import annotations

import os
import secrets

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))
