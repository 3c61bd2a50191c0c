from datetime import date, datetime, timedelta, timezone

import pytest

from observatory_pipelines.core.platform import months


@pytest.mark.parametrize("bad", ["2026-13", "2026-00", "26-03", "2026/03", "2026-3", "", "march", "2026-03-01"])
def test_parse_month_rejects_malformed_keys_with_the_expected_format(bad):
    with pytest.raises(ValueError, match="YYYY-MM"):
        months.parse_month(bad)


def test_month_arithmetic_crosses_year_boundaries():
    assert months.add_months("2026-11", 3) == "2027-02"
    assert months.add_months("2026-01", -1) == "2025-12"
    assert months.month_range("2026-11", "2027-02") == ["2026-11", "2026-12", "2027-01", "2027-02"]
    assert months.month_range("2026-05", "2026-04") == []


def test_bounds_are_half_open_utc_months():
    start, end = months.month_bounds("2026-12")
    assert start == datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert end == datetime(2027, 1, 1, tzinfo=timezone.utc)
    # A moment late on the last evening in Copenhagen (UTC+1) already belongs to the next month.
    cph = timezone(timedelta(hours=1))
    assert months.month_key(datetime(2026, 12, 31, 23, 30, tzinfo=cph)) == "2026-12"
    assert months.month_key(datetime(2027, 1, 1, 0, 30, tzinfo=cph)) == "2026-12"
    assert months.month_key(datetime(2027, 1, 1, 1, 0, tzinfo=cph)) == "2027-01"


def test_partition_names_round_trip():
    assert months.partition_name("2026-03") == "content_records_2026_03"
    assert months.month_of_partition("content_records_2026_03") == "2026-03"
    assert months.month_of_partition("content_records_default") is None
    assert months.month_of_partition("content_records_2026_03; DROP TABLE x") is None
    assert months.parse_month("2026-03") == date(2026, 3, 1)
