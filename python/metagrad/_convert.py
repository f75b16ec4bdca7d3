"""Argument checks at the boundary: arrays are converted to the dtype the engine reads when
that is lossless, and refused with the argument named otherwise."""

from __future__ import annotations

import json
import numbers

import numpy as np

_INT53 = 2.0**53
#: 2**64: seeds, counts and indices of the engine are unsigned 64-bit integers.
U64 = 2**64


def whole(name: str, value, least: int = 0, most: int = U64 - 1) -> int:
    """``value`` as an integer in [least, most]: ``TypeError`` for a non-integer (a float
    such as 1.5 or 2.0 included, never rounded), ``ValueError`` out of range, both naming
    ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"invalid {name}: expected an integer, got {value!r} (type {type(value).__name__})")
    if value < least and most == U64 - 1:
        raise ValueError(f"invalid {name}: must be at least {least}, got {value}")
    if not least <= value <= most:
        top = f"2**64 - {U64 - most}" if most > 2**63 else str(most)
        raise ValueError(f"invalid {name}: must lie in [{least}, {top}], got {value}")
    return int(value)


def wholes(name: str, values, least: int = 0) -> list:
    """An integer or a sequence of them, each checked by :func:`whole` as ``name[i]``."""
    if isinstance(values, numbers.Integral) and not isinstance(values, bool):
        return [whole(name, values, least)]
    if isinstance(values, (str, bytes)):
        raise TypeError(f"invalid {name}: expected an integer or a list of integers, got {values!r}")
    try:
        items = list(values)
    except TypeError:
        raise TypeError(f"invalid {name}: expected an integer or a list of integers, got {values!r}") from None
    return [whole(f"{name}[{i}]", v, least) for i, v in enumerate(items)]


def real(name: str, value) -> float:
    """``value`` as a float (any real number type; ``TypeError`` naming ``name`` otherwise).
    Its range is the engine's to check."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"invalid {name}: expected a real number, got {value!r} (type {type(value).__name__})")
    return float(value)


def floats(name: str, x, ndim: int) -> np.ndarray:
    """`x` as a C-contiguous float64 array with `ndim` dimensions."""
    try:
        a = np.asarray(x)
    except Exception as e:  # ragged nested lists and the like
        raise ValueError(f"invalid {name}: not an array of numbers ({e})") from None
    if a.dtype.kind == "b" or a.dtype.kind not in "fiu":
        raise TypeError(f"invalid {name}: expected real numbers, got dtype {a.dtype}")
    if a.dtype.kind == "f" and a.dtype.itemsize > 8:
        raise TypeError(f"invalid {name}: dtype {a.dtype} does not convert to float64 without loss")
    if a.dtype.kind in "iu" and a.size and np.abs(a.astype(np.float64)).max() > _INT53:
        raise TypeError(f"invalid {name}: integers above 2**53 do not convert to float64 without loss")
    if a.ndim != ndim:
        raise ValueError(f"invalid {name}: expected a {ndim}-D array, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float64)


def ints(name: str, x, ndim: int) -> np.ndarray:
    """`x` as a C-contiguous int64 array (floats only if every entry is an integer)."""
    try:
        a = np.asarray(x)
    except Exception as e:
        raise ValueError(f"invalid {name}: not an array of integers ({e})") from None
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if not finite.all():
            i = tuple(int(j) for j in np.argwhere(~finite)[0])
            raise ValueError(f"invalid {name}{list(i)}: expected an integer, got {a[i]}")
        frac = a != np.round(a)
        if frac.any():
            i = tuple(int(j) for j in np.argwhere(frac)[0])
            raise ValueError(f"invalid {name}{list(i)}: expected an integer, got {a[i]}")
        if a.size and np.abs(a).max() > _INT53:
            raise ValueError(f"invalid {name}: integers beyond 2**53 in a float array are not exact")
    elif a.dtype.kind == "u":
        if a.size and a.max() > np.iinfo(np.int64).max:
            raise ValueError(f"invalid {name}: {a.max()} does not fit in int64")
    elif a.dtype.kind != "i":
        raise TypeError(f"invalid {name}: expected integers, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"invalid {name}: expected a {ndim}-D array, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.int64)


def _plain(x):
    """numpy scalars and arrays as plain Python values (for the settings JSON)."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"cannot pass a value of type {type(x).__name__}")


# Settings where ∞ means "none" (no loss guard, no clip): JSON has no infinity, so the
# engine reads and writes them as the string "inf" (see settings_from_json).
UNBOUNDED = ("divergence_threshold", "taypo2_pair_clip")


def settings_json(function: str, settings: dict) -> str:
    """Keyword settings as JSON for the engine (which names unknown or mistyped ones)."""
    settings = dict(settings)
    for k in UNBOUNDED:
        v = settings.get(k)
        if isinstance(v, (float, np.floating)) and np.isinf(v):
            settings[k] = "inf" if v > 0 else "-inf"
    for k, v in settings.items():
        values = list(np.ravel(v)) if isinstance(v, (list, tuple, np.ndarray)) else [v]
        for x in values:
            if isinstance(x, (float, np.floating)) and not np.isfinite(x):
                hint = " (∞ is allowed only for " + ", ".join(UNBOUNDED) + ")" if np.isinf(x) else ""
                raise ValueError(f"invalid {k}: must be finite, got {x}{hint}")
        if isinstance(v, bool) or v is None or isinstance(v, (str, numbers.Number, list, tuple, np.ndarray, np.generic)):
            continue
        raise TypeError(f"invalid keyword argument of {function}: {k}={v!r} (type {type(v).__name__})")
    return json.dumps(settings, default=_plain, allow_nan=False)


def settings_from_json(text: str) -> dict:
    """The engine's settings JSON as a dict, with the settings of :data:`UNBOUNDED` that it
    writes as "inf" given back as floats."""

    def hook(pairs):
        return {k: float(v) if k in UNBOUNDED and v in ("inf", "-inf") else v for k, v in pairs}

    return json.loads(text, object_pairs_hook=hook)


def name_list(name: str, x) -> str:
    """A comma-separated list from a string or a sequence of strings."""
    if isinstance(x, str):
        return x
    try:
        items = list(x)
    except TypeError:
        raise TypeError(f"invalid {name}: expected a string or a list of strings, got {x!r}") from None
    if not all(isinstance(i, str) for i in items):
        raise TypeError(f"invalid {name}: expected strings, got {items!r}")
    return ",".join(items)
