"""Quota amounts in words and units a person reads: ``3.9 GiB``, ``0.25 cores``, ``3 containers``.

The one place that turns the quota's stored numbers (millicores, bytes, counts)
into text and back, so the API's messages, the dashboard's forms and its tables
say the same thing.
"""

from __future__ import annotations

from decimal import Decimal

KIB = 1024
MIB = 1024**2
GIB = 1024**3
_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")

# what each quota resource is called in a sentence
WORDS = {
    "cpu_millis": "CPU",
    "memory_bytes": "memory",
    "pids": "processes",
    "containers": "containers",
    "volumes": "volumes",
    "disk_bytes": "storage",
}


def _trim(number: float, digits: int = 1) -> str:
    text = f"{number:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def size(n_bytes: int) -> str:
    """``n_bytes`` in binary units with at most one decimal: ``512 B``, ``128 MiB``, ``9.8 TiB``."""
    value = float(n_bytes)
    unit = 0
    while abs(value) >= 1024 and unit < len(_SIZE_UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{_trim(value)} {_SIZE_UNITS[unit]}"


def cores(millis: int) -> str:
    """Millicores as cores: ``0.25 cores``, ``1 core``, ``2.5 cores``."""
    text = _trim(millis / 1000, 3)
    return f"{text} core" if text == "1" else f"{text} cores"


def amount(resource: str, value: int) -> str:
    """A value of quota ``resource`` in its unit (sizes, cores, or a plain count)."""
    if resource.endswith("_bytes"):
        return size(value)
    if resource == "cpu_millis":
        return cores(value)
    return str(value)


def over_text(resource: str, asked: int, left: int) -> str:
    """``memory: 9.8 TiB asked, 3.9 GiB left``: one resource a change would take over the quota."""
    return f"{WORDS.get(resource, resource)}: {amount(resource, asked)} asked, {amount(resource, left)} left"


def millis_of_cores(value: Decimal) -> int:
    """Cores (``1.5``) as millicores (``1500``), rounded to a whole millicore."""
    return int((value * 1000).to_integral_value())


def bytes_of(value: Decimal, unit: int) -> int:
    """``value`` units (``unit`` = GIB, MIB ...) as bytes, rounded to a whole byte."""
    return int((value * unit).to_integral_value())
