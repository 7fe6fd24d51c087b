"""The CLI's argument parsers, by property: what they accept they read right, and whatever
else they are given is one ArgumentTypeError (argparse's usage line), never a traceback."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keysentry.cli_keys import expiry_time

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
future = st.datetimes(
    min_value=datetime(2026, 6, 3), max_value=datetime(2126, 5, 1), timezones=offsets
)


@given(when=future)
def test_an_iso_time_with_an_offset_is_read_as_that_instant(when: datetime) -> None:
    read = expiry_time(when.isoformat(), NOW)
    assert read == when
    assert read.utcoffset() == timedelta(0)


@given(when=st.datetimes(min_value=datetime(2026, 6, 3), max_value=datetime(2126, 5, 1)))
def test_a_time_without_an_offset_is_utc_and_z_means_utc(when: datetime) -> None:
    utc = when.replace(tzinfo=timezone.utc)
    assert expiry_time(when.isoformat(), NOW) == utc
    assert expiry_time(when.isoformat() + "Z", NOW) == utc
    assert expiry_time(when.date().isoformat(), NOW) == datetime.combine(
        when.date(), datetime.min.time(), timezone.utc
    )


@given(when=st.datetimes(max_value=datetime(2026, 6, 1, 12), timezones=st.just(timezone.utc)))
def test_a_time_not_in_the_future_is_refused(when: datetime) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not later than now"):
        expiry_time(when.isoformat(), NOW)


@given(text=st.text(max_size=40))
def test_anything_else_is_one_argument_error(text: str) -> None:
    try:
        read: datetime | str = expiry_time(text, NOW)
    except argparse.ArgumentTypeError as exc:
        read = str(exc)
    if isinstance(read, str):
        assert read.startswith(repr(text))  # the message names what was given
    else:
        assert NOW < read <= NOW + timedelta(days=36525)
        assert read.utcoffset() == timedelta(0)
