"""The client's own floor under the rates a session declares (spec §15.8, §16.3).

The server writes the SessionConfig, and the config only checks (k, t) against
the corruption rate γ and dropout rate δ *it declares*: declare γ = 0 and the
Harary finder returns (k, t) = (2, 2), the complete graph accepts t = n/2 + 1.
A :class:`ClientPolicy` is what the client brings itself: the smallest γ and δ
it accepts, and how many bits of margin against a server that grinds the Harary
permutation it requires. Nothing the server sends can lower it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from secagg import graph as graphs
from secagg.checks import is_plain_int, is_plain_rate
from secagg.config import Mode, SessionConfig
from secagg.errors import ConfigError

__all__ = ["ClientPolicy", "check_rates", "default_policy", "required_ppm",
           "show_ppm"]

_PPM = 1_000_000


def _rate(value: float, name: str) -> Fraction:
    """The rate as written (0.05 -> 1/20), refused unless a number in [0, 1)."""
    if not is_plain_rate(value):
        raise ConfigError(f"{name} must be a number")
    exact = Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
    if not 0 <= exact < 1:
        raise ConfigError(f"{name} must be in [0, 1); got {value}")
    return exact


@dataclass(frozen=True)
class ClientPolicy:
    """What a client requires of any config before it generates a key.

    * ``min_corruption_rate`` (default 0.05, the library's own default γ): the
      declared γ sets t1, the number of corrupt neighbours t must exceed. With
      γ = 0 the threshold drops to 2 and two colluding clients next to a victim
      reconstruct its secrets; 5 % is the smallest rate the published SecAgg+
      parameters (Bell et al., spec §6.6) are quoted for.
    * ``min_dropout_rate`` (default 0): a low δ gives a smaller k but also a
      higher survivor floor (spec §8.0: the server stops below n - floor(δn)
      survivors, and a client refuses a view with more than floor(δn)
      non-surviving neighbours), so it costs liveness, not privacy. A
      deployment that expects real dropouts may raise it to avoid aborts.
    * ``grind_margin_bits`` (default 24, :data:`secagg.graph.GRIND_MARGIN_BITS`):
      a Harary (k, t) must pass the finder's check at 40 + this many bits, so a
      server that evaluates up to 2^margin configurations still faces < 2^-40
      (spec §16.3). Applies to active-mode Harary graphs only: the complete
      graph has no permutation to grind, and a semi-honest server follows the
      protocol, so it derives one config and does not grind it.
    """

    min_corruption_rate: float = 0.05
    min_dropout_rate: float = 0.0
    grind_margin_bits: int = graphs.GRIND_MARGIN_BITS

    def __post_init__(self) -> None:
        _rate(self.min_corruption_rate, "min_corruption_rate")
        _rate(self.min_dropout_rate, "min_dropout_rate")
        bits = self.grind_margin_bits
        if not is_plain_int(bits) or not 0 <= bits <= 200:
            raise ConfigError("grind_margin_bits must be an int in [0, 200]")

    def check(self, config: SessionConfig) -> None:
        """Refuse (ConfigError, naming declared and required values) a config below policy."""
        check_rates(config, self)
        harary = config.graph is graphs.GraphKind.HARARY and config.degree < config.n - 1
        if harary and config.mode is Mode.ACTIVE:
            bits = graphs.DEFAULT_SECURITY_BITS + self.grind_margin_bits
            try:
                graphs.check_harary_params(
                    config.n, config.degree, config.threshold, config.dropout_ppm / _PPM,
                    config.corruption_ppm / _PPM, threat=config.mode.threat, security_bits=bits,
                )
            except ConfigError as exc:
                raise ConfigError(
                    f"Harary (k, t) = ({config.degree}, {config.threshold}) is not safe at "
                    f"{bits} bits, which this client requires against permutation grinding: "
                    f"{exc}"
                ) from None


def check_rates(config: SessionConfig, policy: ClientPolicy) -> None:
    """The declared γ and δ (ppm in the config) must be at least the policy's minimums."""
    for what, ppm, minimum in (
        ("corruption rate", config.corruption_ppm, policy.min_corruption_rate),
        ("dropout rate", config.dropout_ppm, policy.min_dropout_rate),
    ):
        required = required_ppm(minimum, what)
        if ppm < required:
            raise ConfigError(
                f"the session declares a {what} {show_ppm(ppm)} below this client's minimum "
                f"{show_ppm(required)}: the server's config cannot lower a client's policy"
            )


def required_ppm(minimum: float, what: str) -> int:
    """The smallest stored rate (ppm, §2.5) that meets a policy minimum: ``ceil(min · 10^6)``
    (the auditor's rule A13 applies the same bound, spec §18.8)."""
    return math.ceil(_rate(minimum, what) * _PPM)


def show_ppm(ppm: int) -> str:
    """A stored rate as the number it stands for (50000 -> "0.05")."""
    return f"{ppm / _PPM:g}"


def default_policy(mode: Mode) -> ClientPolicy | None:
    """The policy a client applies when given none: the defaults in active mode;
    none in semi-honest mode, where the server follows the protocol (and so
    declares honest rates), unless the caller passes one."""
    return ClientPolicy() if mode is Mode.ACTIVE else None
