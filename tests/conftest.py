"""Suite-wide settings: passive OpenMP waiting before any test imports torch (spin-waiting
threads collapse on the 2 shared cores this suite runs on)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
