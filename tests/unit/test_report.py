"""The fleet report's page, pure: what each kind of key looks like, and the empty fleet."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from byok_keeper.errors import InputError
from byok_keeper.kms import KmsUnavailable
from byok_keeper.lease import parse_lease
from byok_keeper.plan import Decision, Policy
from byok_keeper.report import Fleet, render_html, rows_from, write_html

NOW = datetime(2026, 11, 29, 8, 0, tzinfo=timezone.utc)


def page_for(*decisions: Decision, errors=()) -> str:
    rows = rows_from(decisions, errors, Policy())
    return render_html(Fleet(NOW, NOW + timedelta(minutes=15), "cn-hangzhou", tuple(rows)))


def test_each_kind_of_key_is_drawn_and_explained():
    page = page_for(
        Decision("key-never", "OK", "material never expires", "Enabled", "EC_P256", None),
        Decision(
            "key-far",
            "OK",
            "far",
            "Enabled",
            "EC_P256",
            NOW + timedelta(days=900),
            parse_lease("365d"),
        ),
        Decision("key-gone", "ALERT", "no longer exists", "NotFound", "EC_P256", None),
        Decision("key-dying", "SKIP", "pending deletion", "PendingDeletion", "RSA_2048", None),
        errors=[("key-lost", KmsUnavailable("DescribeKey", "timeout"))],
    )
    assert ">never</text>" in page  # a never-expiring key reaches the axis end
    assert "\u2192 2029-05-17" in page  # beyond the axis: an arrow and the date
    assert "key gone from KMS" in page and "pending deletion" in page
    assert "KMS could not describe it" in page and "no answer from KMS" in page
    assert ">ALERT: 2 keys</h2>" in page and ">OK: 2 keys</h2>" in page
    assert "next sweep 2026-11-29 08:15 UTC" in page


def test_an_empty_fleet_says_so():
    page = page_for()
    assert "No keys enrolled." in page and "0 keys" in page


def test_an_unwritable_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot write the report"):
        write_html(tmp_path / "missing" / "fleet.html", "<html></html>")


def test_reasons_are_text_on_the_page_and_no_material_is_not_never():
    """What a screenshot in a ticket shows: why each ALERT and HOLD key is so, in the page's
    text (not only in tooltips), and a key without material never reads "never"."""
    page = page_for(
        Decision(
            "key-gone",
            "ALERT",
            "enrolled, but KMS no longer has the key",
            "NotFound",
            "EC_P256",
            None,
        ),
        Decision("key-held", "HOLD", "held: INC-7 kill switch", "PendingImport", "EC_P256", None),
        Decision("key-never", "OK", "material never expires", "Enabled", "EC_P256", None),
    )
    body = page.split("<svg", 1)[0] + "".join(
        part.split("</svg>", 1)[-1] for part in page.split("<svg")[1:]
    )  # the page without its drawings: what is written, not drawn
    assert "enrolled, but KMS no longer has the key" in body
    assert "held: INC-7 kill switch" in body
    assert "no material (deleted or expired)" in body  # the held PendingImport key
    assert "key-held EC_P256 PendingImport: HOLD, no material" in page  # its tooltip too
    assert "HOLD, expires never" not in page and "OK, never expires" in page


def test_the_page_names_account_target_and_where_its_schedule_came_from():
    from byok_keeper.report import report_schedule

    schedule, source = report_schedule(None, "0 0 0/6 * * *")  # the FC timer's default cron
    assert schedule == "0 0 0/6 * * *" and "BYOK_SWEEP_INTERVAL" in source
    assert report_schedule(None, "") == ("*/15 * * * *", "the daemon's default")
    assert report_schedule("@every 1h", "6h") == ("@every 1h", "--schedule")
    fleet = Fleet(NOW, NOW + timedelta(hours=4), "eu-central-1", (), account_id="1234567890123456",
                  target="prod-fra", schedule=f"{schedule} ({source})")  # fmt: skip
    page = render_html(fleet)
    assert "target prod-fra \u00b7 account 1234567890123456 \u00b7 region eu-central-1" in page
    assert "next sweep 2026-11-29 12:00 UTC (schedule 0 0 0/6 * * * (BYOK_SWEEP_INTERVAL" in page
