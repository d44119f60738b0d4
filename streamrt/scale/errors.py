"""The typed error of the scale-out package (`code` E_SCALE_*, message names the file or problem)."""

from __future__ import annotations


class ScaleError(RuntimeError):
    """Scale-out failures: no Ray, bad inputs, a full cluster, a refused session (`code` attribute)."""

    def __init__(self, code: str, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retry_after_s = retry_after_s
        """For E_SCALE_FULL: seconds after which a retry may find a free slot."""


def import_ray():
    """`import ray`, or E_SCALE_NO_RAY with the install line."""
    try:
        import ray
    except ImportError:
        raise ScaleError(
            "E_SCALE_NO_RAY", "Ray is not installed: pip install 'streamrt[ray]' (ray[serve]==2.60.0)"
        ) from None
    return ray
