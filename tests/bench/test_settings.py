"""How levels are measured: option checks and `--concurrency` lists, each a one-line error."""

from __future__ import annotations

import pytest

from tritongen.bench import LoadSettings, check_settings, parse_concurrencies
from tritongen.errors import TritongenError


def test_concurrency_lists_are_sorted_without_repeats() -> None:
    assert parse_concurrencies("16, 1,4,4") == (1, 4, 16)
    for bad in ("1,x", "0,4", "", ","):
        with pytest.raises(TritongenError, match="malformed --concurrency"):
            parse_concurrencies(bad)
    with pytest.raises(TritongenError, match="malformed --instances '-1'"):
        parse_concurrencies("-1", "--instances")


@pytest.mark.parametrize("settings, concurrencies, message", [
    (LoadSettings(protocol="udp"), (1,), "unknown protocol 'udp'"),
    (LoadSettings(duration_s=None), (1,), "neither a duration nor a request count"),
    (LoadSettings(duration_s=0), (1,), "--duration 0 must be positive"),
    (LoadSettings(duration_s=None, requests=0), (1,), "neither a duration nor a request count"),
    (LoadSettings(requests=-3), (1,), "--requests -3 must be at least 1"),
    (LoadSettings(), (), "concurrency levels must be 1 or more"),
    (LoadSettings(), (0, 2), "concurrency levels must be 1 or more"),
])
def test_bad_settings_are_refused(settings: LoadSettings, concurrencies: tuple[int, ...], message: str) -> None:
    with pytest.raises(TritongenError, match=message):
        check_settings(settings, concurrencies)


def test_settling_time_follows_the_window() -> None:
    assert LoadSettings(duration_s=5).settle() == 1.0
    assert LoadSettings(duration_s=1).settle() == pytest.approx(0.2)
    assert LoadSettings(duration_s=None, requests=10).settle() == 0.5
    assert LoadSettings(duration_s=5, settle_s=0).settle() == 0
    check_settings(LoadSettings(duration_s=None, requests=10), (1, 2))  # valid: no error
