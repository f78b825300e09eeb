"""secagg: secure aggregation (SecAgg, SecAgg+) for federated learning.

The server learns the sum of the clients' quantized updates and nothing about
any single one, even when clients drop out mid-session. See ``specs/protocol.md``
for the normative description.
"""

from secagg.errors import (
    ConfigError,
    CryptoError,
    InvalidKeyError,
    ProtocolError,
    SecAggError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "CryptoError",
    "InvalidKeyError",
    "ProtocolError",
    "SecAggError",
    "__version__",
]
